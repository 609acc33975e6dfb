//! The promises of `agora-wallet`, checked on real files in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

use agora_wallet::{
    KdfParams, KeyKind, Keyfile, KeyfileError, Mnemonic, Overwrite, Password, Protection,
    SecretKey, Wallet, WalletError, WordCount,
};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Tests use the cheapest Argon2 costs; the format and code path are the same as with strong ones.
const FAST: KdfParams = KdfParams::INSECURE_FAST;

fn password() -> Password {
    Password::from_string("correct horse battery staple".into())
}

fn wrong_password() -> Password {
    Password::from_string("incorrect horse battery staple".into())
}

fn encrypted(password: &Password) -> Protection<'_> {
    Protection::Encrypted {
        password,
        kdf: FAST,
    }
}

fn new_wallet(dir: &Path) -> Wallet {
    Wallet::new(dir, "alice").unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn keyfile_error(err: &WalletError) -> &KeyfileError {
    err.keyfile_error()
        .unwrap_or_else(|| panic!("expected a keyfile error, got {err}"))
}

#[test]
fn create_then_restore_from_mnemonic_gives_the_same_keys() {
    for words in [WordCount::Twelve, WordCount::TwentyFour] {
        let dir = tempfile::tempdir().unwrap();
        let first = new_wallet(dir.path());
        let pw = password();
        let cold = first
            .create_coldkey(words, &pw, FAST, Overwrite::Refuse)
            .unwrap();
        let hot = first
            .create_hotkey("default", words, encrypted(&pw), Overwrite::Refuse)
            .unwrap();
        let expected_words = if words == WordCount::Twelve { 12 } else { 24 };
        assert_eq!(cold.mnemonic.word_count(), expected_words);
        assert_eq!(hot.mnemonic.word_count(), expected_words);
        assert_ne!(cold.public, hot.public);

        // Restore into a different directory, from the written-down phrases only.
        let other = tempfile::tempdir().unwrap();
        let second = new_wallet(other.path());
        let cold_phrase = Mnemonic::parse(&cold.mnemonic.phrase()).unwrap();
        let hot_phrase = Mnemonic::parse(&hot.mnemonic.phrase()).unwrap();
        let new_pw = Password::from_string("another password entirely".into());
        let restored_cold = second
            .restore_coldkey(&cold_phrase, &new_pw, FAST, Overwrite::Refuse)
            .unwrap();
        let restored_hot = second
            .restore_hotkey(
                "default",
                &hot_phrase,
                Protection::Plaintext,
                Overwrite::Refuse,
            )
            .unwrap();
        assert_eq!(restored_cold, cold.public);
        assert_eq!(restored_hot, hot.public);

        let a = first.unlock_coldkey(&pw).unwrap();
        let b = second.unlock_coldkey(&new_pw).unwrap();
        assert_eq!(a.seed(), b.seed());
        let a = first.unlock_hotkey("default", Some(&pw)).unwrap();
        let b = second.unlock_hotkey("default", None).unwrap();
        assert_eq!(a.seed(), b.seed());
    }
}

#[test]
fn derivation_is_fixed() {
    // A regression vector: if this changes, every backed-up phrase restores the wrong key.
    let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let mnemonic = Mnemonic::parse(phrase).unwrap();
    let cold = mnemonic.derive_key(KeyKind::Coldkey).public().to_hex();
    let hot = mnemonic.derive_key(KeyKind::Hotkey).public().to_hex();
    assert_ne!(
        cold, hot,
        "one phrase must give different cold and hot keys"
    );
    assert_eq!(cold, COLD_VECTOR);
    assert_eq!(hot, HOT_VECTOR);
    // Case and spacing do not matter when typing a phrase back in.
    let sloppy = format!("  {}\n", phrase.to_uppercase().replace(' ', "   "));
    assert_eq!(
        Mnemonic::parse(&sloppy)
            .unwrap()
            .derive_key(KeyKind::Coldkey)
            .public()
            .to_hex(),
        cold
    );
}

const COLD_VECTOR: &str = "3c3a956e5b63839c058bafa7d0d09cdbd2743eb44cc89796d4460b5c5484628e";
const HOT_VECTOR: &str = "58e49abd7d4c16e0d7ffb522d309584fead4f0045f308e70e550fdf536ce2cd4";

#[test]
fn derivation_follows_the_documented_steps() {
    // Step 1 is plain BIP-39: this phrase's seed (empty passphrase) is the published test vector.
    let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    let bip39_seed = hex::decode(
        "5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc1\
         9a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4",
    )
    .unwrap();
    // Step 2 is blake3 derive_key with the role's context.
    let mnemonic = Mnemonic::parse(phrase).unwrap();
    for (kind, context) in [
        (KeyKind::Coldkey, agora_wallet::mnemonic::COLDKEY_CONTEXT),
        (KeyKind::Hotkey, agora_wallet::mnemonic::HOTKEY_CONTEXT),
    ] {
        let seed = blake3::derive_key(context, &bip39_seed);
        assert_eq!(mnemonic.derive_key(kind).seed(), seed);
    }
}

#[test]
fn invalid_mnemonics_are_rejected_with_a_reason() {
    let bad_checksum = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon";
    for phrase in [
        bad_checksum,
        "abandon about",
        "notaword abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        "",
    ] {
        let err = Mnemonic::parse(phrase).unwrap_err();
        assert!(matches!(err, WalletError::InvalidMnemonic(_)), "{err}");
    }
}

#[test]
fn files_are_private_and_public_keys_sit_beside_them() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let pw = password();
    let cold = wallet
        .create_coldkey(WordCount::Twelve, &pw, FAST, Overwrite::Refuse)
        .unwrap();
    let hot = wallet
        .create_hotkey(
            "miner",
            WordCount::Twelve,
            Protection::Plaintext,
            Overwrite::Refuse,
        )
        .unwrap();
    assert_eq!(mode(&wallet.coldkey_path()), 0o600);
    assert_eq!(mode(&wallet.hotkey_path("miner").unwrap()), 0o600);
    assert_eq!(mode(wallet.dir()), 0o700);
    assert_eq!(mode(&wallet.dir().join("hotkeys")), 0o700);
    assert_eq!(
        fs::read_to_string(wallet.coldkey_pub_path())
            .unwrap()
            .trim(),
        cold.public.to_hex()
    );
    assert_eq!(
        fs::read_to_string(wallet.hotkey_pub_path("miner").unwrap())
            .unwrap()
            .trim(),
        hot.public.to_hex()
    );
    assert_eq!(wallet.coldkey_public_from_pub_file().unwrap(), cold.public);
    assert_eq!(wallet.hotkey_names().unwrap(), vec!["miner".to_string()]);
    assert_eq!(
        agora_wallet::list_wallets(dir.path()).unwrap(),
        vec!["alice".to_string()]
    );
    // The coldkey file holds no plaintext seed, the public key is readable without a password.
    let file = wallet.coldkey_file().unwrap();
    assert!(file.is_encrypted());
    assert_eq!(file.kdf_params(), Some(FAST));
    assert_eq!(file.public(), cold.public);
    let seed_hex = hex::encode(wallet.unlock_coldkey(&pw).unwrap().seed());
    assert!(
        !fs::read_to_string(wallet.coldkey_path())
            .unwrap()
            .contains(&seed_hex)
    );
    // No temporary files are left behind.
    let leftovers: Vec<_> = fs::read_dir(wallet.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn each_file_gets_its_own_salt_and_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let pw = password();
    let mnemonic = Mnemonic::generate(WordCount::Twelve).unwrap();
    let a = Wallet::new(dir.path(), "a").unwrap();
    let b = Wallet::new(dir.path(), "b").unwrap();
    a.restore_coldkey(&mnemonic, &pw, FAST, Overwrite::Refuse)
        .unwrap();
    b.restore_coldkey(&mnemonic, &pw, FAST, Overwrite::Refuse)
        .unwrap();
    let fa: serde_json::Value =
        serde_json::from_slice(&fs::read(a.coldkey_path()).unwrap()).unwrap();
    let fb: serde_json::Value =
        serde_json::from_slice(&fs::read(b.coldkey_path()).unwrap()).unwrap();
    assert_eq!(fa["public_key"], fb["public_key"]);
    assert_ne!(fa["secret"]["kdf"]["salt"], fb["secret"]["kdf"]["salt"]);
    assert_ne!(
        fa["secret"]["cipher"]["nonce"],
        fb["secret"]["cipher"]["nonce"]
    );
    assert_ne!(fa["secret"]["ciphertext"], fb["secret"]["ciphertext"]);
}

#[test]
fn strong_default_parameters_are_recorded_in_the_file() {
    // One real-cost run, to show the default is what the file records.
    let key = SecretKey::generate();
    let pw = password();
    let file = Keyfile::seal(
        KeyKind::Coldkey,
        &key,
        Protection::Encrypted {
            password: &pw,
            kdf: KdfParams::default(),
        },
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&file.to_bytes().unwrap()).unwrap();
    assert_eq!(json["secret"]["kdf"]["name"], "argon2id");
    assert_eq!(json["secret"]["kdf"]["m_cost_kib"], 65536);
    assert_eq!(json["secret"]["kdf"]["t_cost"], 3);
    assert_eq!(json["secret"]["kdf"]["p_cost"], 1);
    assert_eq!(json["secret"]["cipher"]["name"], "xchacha20poly1305");
    let reparsed = Keyfile::parse(&file.to_bytes().unwrap()).unwrap();
    assert_eq!(reparsed.open(Some(&pw)).unwrap().public(), key.public());
}

#[test]
fn wrong_password_fails_cleanly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let pw = password();
    wallet
        .create_coldkey(WordCount::Twelve, &pw, FAST, Overwrite::Refuse)
        .unwrap();
    wallet
        .create_hotkey(
            "default",
            WordCount::Twelve,
            encrypted(&pw),
            Overwrite::Refuse,
        )
        .unwrap();
    let before = fs::read(wallet.coldkey_path()).unwrap();
    let err = wallet.unlock_coldkey(&wrong_password()).unwrap_err();
    assert!(
        matches!(keyfile_error(&err), KeyfileError::WrongPassword),
        "{err}"
    );
    assert!(err.to_string().contains("wrong password"), "{err}");
    assert!(err.to_string().contains("coldkey"), "names the file: {err}");
    assert_eq!(fs::read(wallet.coldkey_path()).unwrap(), before);
    assert_eq!(mode(&wallet.coldkey_path()), 0o600);

    let err = wallet
        .unlock_hotkey("default", Some(&wrong_password()))
        .unwrap_err();
    assert!(
        matches!(keyfile_error(&err), KeyfileError::WrongPassword),
        "{err}"
    );
    let err = wallet.unlock_hotkey("default", None).unwrap_err();
    assert!(
        matches!(keyfile_error(&err), KeyfileError::PasswordRequired),
        "{err}"
    );
    // And the right one still works afterwards.
    wallet.unlock_coldkey(&pw).unwrap();
}

/// Writes a coldkey, lets `damage` alter its JSON, and returns the error from unlocking it.
fn unlock_after(damage: impl FnOnce(&mut serde_json::Value)) -> WalletError {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let pw = password();
    wallet
        .create_coldkey(WordCount::Twelve, &pw, FAST, Overwrite::Refuse)
        .unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&fs::read(wallet.coldkey_path()).unwrap()).unwrap();
    damage(&mut json);
    fs::write(wallet.coldkey_path(), serde_json::to_vec(&json).unwrap()).unwrap();
    wallet.unlock_coldkey(&pw).unwrap_err()
}

fn flip_hex(value: &mut serde_json::Value) {
    let text = value.as_str().unwrap();
    let mut bytes = hex::decode(text).unwrap();
    bytes[0] ^= 0x01;
    *value = serde_json::Value::String(hex::encode(bytes));
}

#[test]
fn tampered_ciphertext_is_told_apart_from_a_wrong_password() {
    let err = unlock_after(|j| flip_hex(&mut j["secret"]["ciphertext"]));
    assert!(
        matches!(keyfile_error(&err), KeyfileError::Tampered),
        "{err}"
    );
    assert!(err.to_string().contains("tampered"), "{err}");
}

#[test]
fn tampered_header_fields_fail_authentication() {
    // The nonce and the public key are bound to the ciphertext: changing either fails to open.
    let err = unlock_after(|j| flip_hex(&mut j["secret"]["cipher"]["nonce"]));
    assert!(
        matches!(keyfile_error(&err), KeyfileError::Tampered),
        "{err}"
    );
    let other = SecretKey::generate().public().to_hex();
    let err = unlock_after(|j| j["public_key"] = other.into());
    assert!(
        matches!(keyfile_error(&err), KeyfileError::Tampered),
        "{err}"
    );
    // The KDF inputs change the derived key itself, so they read as a wrong password.
    let err = unlock_after(|j| flip_hex(&mut j["secret"]["kdf"]["salt"]));
    assert!(
        matches!(keyfile_error(&err), KeyfileError::WrongPassword),
        "{err}"
    );
    let err = unlock_after(|j| j["secret"]["kdf"]["t_cost"] = 2.into());
    assert!(
        matches!(keyfile_error(&err), KeyfileError::WrongPassword),
        "{err}"
    );
}

#[test]
fn absurd_kdf_costs_in_a_file_are_refused_before_running() {
    let err = unlock_after(|j| j["secret"]["kdf"]["m_cost_kib"] = u32::MAX.into());
    assert!(
        matches!(keyfile_error(&err), KeyfileError::KdfParams(_)),
        "{err}"
    );
    let err = unlock_after(|j| j["secret"]["kdf"]["t_cost"] = 1_000_000.into());
    assert!(
        matches!(keyfile_error(&err), KeyfileError::KdfParams(_)),
        "{err}"
    );
}

#[test]
fn corrupt_and_truncated_files_are_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let pw = password();
    wallet
        .create_coldkey(WordCount::Twelve, &pw, FAST, Overwrite::Refuse)
        .unwrap();
    let good = fs::read(wallet.coldkey_path()).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01not json at all".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        (
            "missing field",
            br#"{"format":"agora-keyfile","version":1,"kind":"coldkey"}"#.to_vec(),
        ),
        ("not a keyfile", br#"{"hello":"world"}"#.to_vec()),
    ];
    for (name, bytes) in cases {
        fs::write(wallet.coldkey_path(), &bytes).unwrap();
        let err = wallet.unlock_coldkey(&pw).unwrap_err();
        assert!(
            matches!(keyfile_error(&err), KeyfileError::Corrupt(_)),
            "{name}: {err}"
        );
        assert!(err.to_string().contains("corrupt keyfile"), "{name}: {err}");
        // Reading never rewrites.
        assert_eq!(fs::read(wallet.coldkey_path()).unwrap(), bytes, "{name}");
    }
    let mut json: serde_json::Value = serde_json::from_slice(&good).unwrap();
    json["version"] = 2.into();
    fs::write(wallet.coldkey_path(), serde_json::to_vec(&json).unwrap()).unwrap();
    let err = wallet.unlock_coldkey(&pw).unwrap_err();
    assert!(
        matches!(keyfile_error(&err), KeyfileError::UnsupportedVersion(2)),
        "{err}"
    );
    fs::write(wallet.coldkey_path(), vec![b' '; 100_000]).unwrap();
    let err = wallet.unlock_coldkey(&pw).unwrap_err();
    assert!(
        matches!(keyfile_error(&err), KeyfileError::TooLarge(_)),
        "{err}"
    );
}

#[test]
fn a_hotkey_file_is_not_accepted_as_a_coldkey() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let pw = password();
    wallet
        .create_hotkey(
            "default",
            WordCount::Twelve,
            encrypted(&pw),
            Overwrite::Refuse,
        )
        .unwrap();
    fs::copy(
        wallet.hotkey_path("default").unwrap(),
        wallet.coldkey_path(),
    )
    .unwrap();
    fs::set_permissions(wallet.coldkey_path(), fs::Permissions::from_mode(0o600)).unwrap();
    let err = wallet.unlock_coldkey(&pw).unwrap_err();
    assert!(
        matches!(keyfile_error(&err), KeyfileError::WrongKind { .. }),
        "{err}"
    );
}

#[test]
fn secret_files_open_to_others_are_refused_with_a_chmod_hint() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let pw = password();
    wallet
        .create_coldkey(WordCount::Twelve, &pw, FAST, Overwrite::Refuse)
        .unwrap();
    wallet
        .create_hotkey(
            "default",
            WordCount::Twelve,
            Protection::Plaintext,
            Overwrite::Refuse,
        )
        .unwrap();
    for m in [0o644, 0o640, 0o604, 0o660] {
        fs::set_permissions(wallet.coldkey_path(), fs::Permissions::from_mode(m)).unwrap();
        let err = wallet.unlock_coldkey(&pw).unwrap_err();
        assert!(
            matches!(err, WalletError::PermissionsTooOpen { mode, .. } if mode == m),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        // Reading the public key from the keyfile is refused too: the file is what is exposed.
        assert!(matches!(
            wallet.coldkey_file(),
            Err(WalletError::PermissionsTooOpen { .. })
        ));
        // Nothing was "fixed" behind the user's back.
        assert_eq!(mode(&wallet.coldkey_path()), m);
    }
    let hot = wallet.hotkey_path("default").unwrap();
    fs::set_permissions(&hot, fs::Permissions::from_mode(0o644)).unwrap();
    let err = wallet.unlock_hotkey("default", None).unwrap_err();
    assert!(
        matches!(err, WalletError::PermissionsTooOpen { .. }),
        "{err}"
    );
    // 0400 (read-only for the owner) is fine.
    fs::set_permissions(wallet.coldkey_path(), fs::Permissions::from_mode(0o400)).unwrap();
    wallet.unlock_coldkey(&pw).unwrap();
}

#[test]
fn existing_keys_are_never_overwritten_without_asking() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let pw = password();
    let first = wallet
        .create_coldkey(WordCount::Twelve, &pw, FAST, Overwrite::Refuse)
        .unwrap();
    wallet
        .create_hotkey(
            "default",
            WordCount::Twelve,
            Protection::Plaintext,
            Overwrite::Refuse,
        )
        .unwrap();
    let cold_before = fs::read(wallet.coldkey_path()).unwrap();
    let hot_before = fs::read(wallet.hotkey_path("default").unwrap()).unwrap();

    let err = wallet
        .create_coldkey(WordCount::Twelve, &pw, FAST, Overwrite::Refuse)
        .unwrap_err();
    assert!(matches!(err, WalletError::AlreadyExists { .. }), "{err}");
    let other = Mnemonic::generate(WordCount::Twelve).unwrap();
    let err = wallet
        .restore_coldkey(&other, &pw, FAST, Overwrite::Refuse)
        .unwrap_err();
    assert!(matches!(err, WalletError::AlreadyExists { .. }), "{err}");
    let err = wallet
        .restore_hotkey("default", &other, Protection::Plaintext, Overwrite::Refuse)
        .unwrap_err();
    assert!(matches!(err, WalletError::AlreadyExists { .. }), "{err}");
    assert_eq!(fs::read(wallet.coldkey_path()).unwrap(), cold_before);
    assert_eq!(
        fs::read(wallet.hotkey_path("default").unwrap()).unwrap(),
        hot_before
    );
    assert_eq!(wallet.coldkey_public().unwrap(), first.public);

    // Asked explicitly, the replacement is atomic and the public file follows.
    let replaced = wallet
        .restore_coldkey(&other, &pw, FAST, Overwrite::Allow)
        .unwrap();
    assert_ne!(replaced, first.public);
    assert_eq!(wallet.coldkey_public().unwrap(), replaced);
    assert_eq!(wallet.coldkey_public_from_pub_file().unwrap(), replaced);
    assert_eq!(mode(&wallet.coldkey_path()), 0o600);
}

#[test]
fn weak_passwords_and_bad_names_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let short = Password::from_string("short".into());
    let err = wallet
        .create_coldkey(WordCount::Twelve, &short, FAST, Overwrite::Refuse)
        .unwrap_err();
    assert!(
        matches!(keyfile_error(&err), KeyfileError::WeakPassword { .. }),
        "{err}"
    );
    assert!(!wallet.coldkey_path().exists());
    for name in ["../escape", "a/b", ".hidden", "x.pub", ""] {
        assert!(matches!(
            Wallet::new(dir.path(), name),
            Err(WalletError::InvalidName { .. })
        ));
        assert!(matches!(
            wallet.hotkey_path(name),
            Err(WalletError::InvalidName { .. })
        ));
    }
}

#[test]
fn missing_keys_say_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let err = wallet.unlock_coldkey(&password()).unwrap_err();
    assert!(matches!(err, WalletError::NotFound { .. }), "{err}");
    let err = wallet.hotkey_public("nope").unwrap_err();
    assert!(matches!(err, WalletError::NotFound { .. }), "{err}");
    assert!(
        agora_wallet::list_wallets(&dir.path().join("absent"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn sign_verify_round_trip_and_a_flipped_bit_fails() {
    let key = SecretKey::generate();
    let message = b"I, alice, own this coldkey";
    let signature = agora_wallet::sign_message(&key, message);
    assert!(agora_wallet::verify_message(
        &key.public(),
        message,
        &signature
    ));

    let mut bad_sig = signature;
    bad_sig.0[10] ^= 0x04;
    assert!(!agora_wallet::verify_message(
        &key.public(),
        message,
        &bad_sig
    ));
    let mut bad_msg = message.to_vec();
    bad_msg[0] ^= 0x01;
    assert!(!agora_wallet::verify_message(
        &key.public(),
        &bad_msg,
        &signature
    ));
    let other = SecretKey::generate().public();
    assert!(!agora_wallet::verify_message(&other, message, &signature));
    // A wallet message signature is useless under any other domain.
    let receipt = agora_protocols::Domain::new("receipt/provider", 1);
    assert!(!receipt.verify(&key.public(), message, &signature));
}

#[test]
fn peer_id_is_the_hotkey() {
    let dir = tempfile::tempdir().unwrap();
    let wallet = new_wallet(dir.path());
    let hot = wallet
        .create_hotkey(
            "default",
            WordCount::Twelve,
            Protection::Plaintext,
            Overwrite::Refuse,
        )
        .unwrap();
    let key = wallet.unlock_hotkey("default", None).unwrap();
    let keypair = agora_wallet::libp2p_keypair(&key).unwrap();
    let from_keypair = keypair.public().to_peer_id();
    let from_public = agora_wallet::peer_id(&hot.public).unwrap();
    assert_eq!(from_keypair, from_public);
    // The libp2p public key is byte for byte the hotkey.
    let ed = keypair.public().try_into_ed25519().unwrap();
    assert_eq!(ed.to_bytes(), hot.public.to_bytes());
    // And a libp2p signature checks against the hotkey as an ed25519 key.
    let sig = keypair.sign(b"hello").unwrap();
    assert!(ed.verify(b"hello", &sig));
}

#[test]
fn password_sources() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    fs::write(&path, "s3cret pass\n").unwrap();
    assert_eq!(
        Password::from_file(&path).unwrap().as_bytes(),
        b"s3cret pass"
    );
    fs::write(&path, "s3cret pass\r\n").unwrap();
    assert_eq!(
        Password::from_file(&path).unwrap().as_bytes(),
        b"s3cret pass"
    );
    fs::write(&path, "  spaces kept  ").unwrap();
    assert_eq!(
        Password::from_file(&path).unwrap().as_bytes(),
        b"  spaces kept  "
    );
    fs::write(&path, "\n").unwrap();
    assert!(matches!(
        Password::from_file(&path),
        Err(WalletError::Password(_))
    ));
    assert!(matches!(
        Password::from_file(&dir.path().join("absent")),
        Err(WalletError::Password(_))
    ));
    assert!(matches!(
        Password::from_env("AGORA_WALLET_TEST_SURELY_UNSET_VARIABLE"),
        Err(WalletError::Password(_))
    ));
    assert_eq!(
        format!("{:?}", Password::from_string("x".into())),
        "Password(<redacted>)"
    );
}
