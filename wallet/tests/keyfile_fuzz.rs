//! Whatever bytes sit where a keyfile should be, reading them returns an error or a key, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

use agora_wallet::{KdfParams, KeyKind, Keyfile, Password, Protection, SecretKey};
use proptest::prelude::*;
use std::sync::OnceLock;

fn password() -> Password {
    Password::from_string("correct horse battery staple".into())
}

/// One valid keyfile (cheap Argon2 costs) to mutate.
fn valid_file() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let pw = password();
        let file = Keyfile::seal(
            KeyKind::Coldkey,
            &SecretKey::from_seed(&[7u8; 32]),
            Protection::Encrypted {
                password: &pw,
                kdf: KdfParams::INSECURE_FAST,
            },
        )
        .unwrap();
        file.to_bytes().unwrap().to_vec()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(file) = Keyfile::parse(&bytes) {
            let _ = file.open(Some(&password()));
        }
    }

    #[test]
    fn mutated_keyfiles_never_panic_and_never_open_to_another_key(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = valid_file().to_vec();
        for (index, value) in edits {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(file) = Keyfile::parse(&bytes) {
            // Costs stay small: single-byte edits of the digits cannot raise them much, and
            // validation caps them anyway.
            if let Ok(key) = file.open(Some(&password())) {
                // A file that still opens (an edit in whitespace, say) opens to the original key.
                prop_assert_eq!(key.seed(), [7u8; 32]);
            }
        }
    }
}
