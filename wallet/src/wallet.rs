//! A wallet on disk: one coldkey and any number of named hotkeys under one directory.
//!
//! ```text
//! <root>/<wallet>/coldkey            encrypted keyfile, 0600
//! <root>/<wallet>/coldkeypub.txt     public key, hex, 0644
//! <root>/<wallet>/hotkeys/<name>     keyfile (encrypted or not), 0600
//! <root>/<wallet>/hotkeys/<name>.pub public key, hex, 0644
//! ```
//!
//! The keyfile is the authority on the public key (it is bound into the encryption); the `.pub` and
//! `pub.txt` files are copies for other tools and for people, written beside each key.

use crate::error::{KeyfileError, WalletError};
use crate::fsio::{self, Overwrite, PUBLIC_MODE, SECRET_MODE};
use crate::keyfile::{KdfParams, KeyKind, Keyfile, MAX_KEYFILE_BYTES, Password, Protection};
use crate::mnemonic::{Mnemonic, WordCount};
use agora_protocols::{PublicKey, SecretKey};
use std::path::{Path, PathBuf};

const COLDKEY_FILE: &str = "coldkey";
const COLDKEY_PUB_FILE: &str = "coldkeypub.txt";
const HOTKEYS_DIR: &str = "hotkeys";
const PUB_SUFFIX: &str = ".pub";

/// `~/.agora/wallets`, the default root of all wallets.
pub fn default_root() -> Result<PathBuf, WalletError> {
    dirs::home_dir()
        .map(|home| home.join(".agora").join("wallets"))
        .ok_or(WalletError::NoHome)
}

/// Names of the wallets under `root` (directories with a valid name), sorted. A missing root is an
/// empty list.
pub fn list_wallets(root: &Path) -> Result<Vec<String>, WalletError> {
    Ok(fsio::list_dir(root)?
        .into_iter()
        .filter(|(name, path)| valid_name(name) && path.is_dir())
        .map(|(name, _)| name)
        .collect())
}

/// Names can become path components, so they are restricted to a safe alphabet: no separators, no
/// leading dot (hidden and temporary files), no `.pub` suffix (public key files).
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && !name.ends_with(PUB_SUFFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_name(what: &'static str, name: &str) -> Result<(), WalletError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(WalletError::InvalidName {
            what,
            name: name.into(),
        })
    }
}

/// A key just created: its public half and the phrase that restores it (show it once, then drop it).
#[derive(Debug)]
pub struct NewKey {
    /// The public key.
    pub public: PublicKey,
    /// The backup phrase.
    pub mnemonic: Mnemonic,
}

/// One wallet directory. Creating the value touches nothing on disk.
#[derive(Debug, Clone)]
pub struct Wallet {
    name: String,
    dir: PathBuf,
}

impl Wallet {
    /// The wallet `name` under `root`.
    pub fn new(root: &Path, name: &str) -> Result<Self, WalletError> {
        check_name("wallet", name)?;
        Ok(Self {
            name: name.into(),
            dir: root.join(name),
        })
    }

    /// The wallet's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The wallet's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the wallet directory exists.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Path of the encrypted coldkey.
    pub fn coldkey_path(&self) -> PathBuf {
        self.dir.join(COLDKEY_FILE)
    }

    /// Path of the coldkey's public key file.
    pub fn coldkey_pub_path(&self) -> PathBuf {
        self.dir.join(COLDKEY_PUB_FILE)
    }

    /// Path of hotkey `name`.
    pub fn hotkey_path(&self, name: &str) -> Result<PathBuf, WalletError> {
        check_name("hotkey", name)?;
        Ok(self.dir.join(HOTKEYS_DIR).join(name))
    }

    /// Path of hotkey `name`'s public key file.
    pub fn hotkey_pub_path(&self, name: &str) -> Result<PathBuf, WalletError> {
        check_name("hotkey", name)?;
        Ok(self
            .dir
            .join(HOTKEYS_DIR)
            .join(format!("{name}{PUB_SUFFIX}")))
    }

    /// Whether a coldkey file is present (its contents are not checked).
    pub fn has_coldkey(&self) -> bool {
        std::fs::symlink_metadata(self.coldkey_path()).is_ok()
    }

    /// Whether hotkey `name` is present (its contents are not checked).
    pub fn has_hotkey(&self, name: &str) -> Result<bool, WalletError> {
        Ok(std::fs::symlink_metadata(self.hotkey_path(name)?).is_ok())
    }

    /// Names of the hotkeys, sorted.
    pub fn hotkey_names(&self) -> Result<Vec<String>, WalletError> {
        Ok(fsio::list_dir(&self.dir.join(HOTKEYS_DIR))?
            .into_iter()
            .filter(|(name, path)| valid_name(name) && path.is_file())
            .map(|(name, _)| name)
            .collect())
    }

    /// Creates a coldkey from a fresh phrase, always encrypted.
    pub fn create_coldkey(
        &self,
        words: WordCount,
        password: &Password,
        kdf: KdfParams,
        overwrite: Overwrite,
    ) -> Result<NewKey, WalletError> {
        let mnemonic = Mnemonic::generate(words)?;
        let public = self.restore_coldkey(&mnemonic, password, kdf, overwrite)?;
        Ok(NewKey { public, mnemonic })
    }

    /// Restores the coldkey from its phrase (the same phrase always gives the same key).
    pub fn restore_coldkey(
        &self,
        mnemonic: &Mnemonic,
        password: &Password,
        kdf: KdfParams,
        overwrite: Overwrite,
    ) -> Result<PublicKey, WalletError> {
        let key = mnemonic.derive_key(KeyKind::Coldkey);
        self.store(
            KeyKind::Coldkey,
            &self.coldkey_path(),
            &self.coldkey_pub_path(),
            &key,
            Protection::Encrypted { password, kdf },
            overwrite,
        )?;
        Ok(key.public())
    }

    /// Creates hotkey `name` from a fresh phrase.
    pub fn create_hotkey(
        &self,
        name: &str,
        words: WordCount,
        protection: Protection<'_>,
        overwrite: Overwrite,
    ) -> Result<NewKey, WalletError> {
        let mnemonic = Mnemonic::generate(words)?;
        let public = self.restore_hotkey(name, &mnemonic, protection, overwrite)?;
        Ok(NewKey { public, mnemonic })
    }

    /// Restores hotkey `name` from its phrase.
    pub fn restore_hotkey(
        &self,
        name: &str,
        mnemonic: &Mnemonic,
        protection: Protection<'_>,
        overwrite: Overwrite,
    ) -> Result<PublicKey, WalletError> {
        let key = mnemonic.derive_key(KeyKind::Hotkey);
        self.store(
            KeyKind::Hotkey,
            &self.hotkey_path(name)?,
            &self.hotkey_pub_path(name)?,
            &key,
            protection,
            overwrite,
        )?;
        Ok(key.public())
    }

    fn store(
        &self,
        kind: KeyKind,
        path: &Path,
        pub_path: &Path,
        key: &SecretKey,
        protection: Protection<'_>,
        overwrite: Overwrite,
    ) -> Result<(), WalletError> {
        // Fail before the slow Argon2 run when the key exists.
        if overwrite == Overwrite::Refuse && std::fs::symlink_metadata(path).is_ok() {
            return Err(WalletError::AlreadyExists { path: path.into() });
        }
        let file = Keyfile::seal(kind, key, protection).map_err(|source| WalletError::Keyfile {
            path: path.into(),
            source,
        })?;
        let bytes = file.to_bytes().map_err(|source| WalletError::Keyfile {
            path: path.into(),
            source,
        })?;
        if let Some(parent) = path.parent() {
            fsio::ensure_private_dir(parent)?;
        }
        fsio::write_atomic(path, &bytes, SECRET_MODE, overwrite)?;
        let public = format!("{}\n", key.public().to_hex());
        fsio::write_atomic(pub_path, public.as_bytes(), PUBLIC_MODE, Overwrite::Allow)
    }

    /// Reads and parses the coldkey file (no password needed).
    pub fn coldkey_file(&self) -> Result<Keyfile, WalletError> {
        read_keyfile(&self.coldkey_path(), KeyKind::Coldkey, "coldkey".into())
    }

    /// Reads and parses hotkey `name` (no password needed).
    pub fn hotkey_file(&self, name: &str) -> Result<Keyfile, WalletError> {
        read_keyfile(
            &self.hotkey_path(name)?,
            KeyKind::Hotkey,
            format!("hotkey {name:?}"),
        )
    }

    /// The coldkey's public key.
    pub fn coldkey_public(&self) -> Result<PublicKey, WalletError> {
        Ok(self.coldkey_file()?.public())
    }

    /// Hotkey `name`'s public key.
    pub fn hotkey_public(&self, name: &str) -> Result<PublicKey, WalletError> {
        Ok(self.hotkey_file(name)?.public())
    }

    /// The coldkey's public key from `coldkeypub.txt`, for tools that only have the public file.
    pub fn coldkey_public_from_pub_file(&self) -> Result<PublicKey, WalletError> {
        read_pub_file(&self.coldkey_pub_path(), "coldkey public key")
    }

    /// Hotkey `name`'s public key from its `.pub` file.
    pub fn hotkey_public_from_pub_file(&self, name: &str) -> Result<PublicKey, WalletError> {
        read_pub_file(&self.hotkey_pub_path(name)?, "hotkey public key")
    }

    /// Decrypts the coldkey.
    pub fn unlock_coldkey(&self, password: &Password) -> Result<SecretKey, WalletError> {
        let path = self.coldkey_path();
        self.coldkey_file()?
            .open(Some(password))
            .map_err(|source| WalletError::Keyfile { path, source })
    }

    /// Opens hotkey `name`; `password` is needed only if it is encrypted.
    pub fn unlock_hotkey(
        &self,
        name: &str,
        password: Option<&Password>,
    ) -> Result<SecretKey, WalletError> {
        let path = self.hotkey_path(name)?;
        self.hotkey_file(name)?
            .open(password)
            .map_err(|source| WalletError::Keyfile { path, source })
    }
}

fn read_keyfile(path: &Path, kind: KeyKind, what: String) -> Result<Keyfile, WalletError> {
    let bytes = fsio::read_secret(path, &what, MAX_KEYFILE_BYTES)?;
    let file = Keyfile::parse(&bytes).map_err(|source| WalletError::Keyfile {
        path: path.into(),
        source,
    })?;
    if file.kind() != kind {
        return Err(WalletError::Keyfile {
            path: path.into(),
            source: KeyfileError::WrongKind {
                expected: kind,
                found: file.kind(),
            },
        });
    }
    Ok(file)
}

fn read_pub_file(path: &Path, what: &str) -> Result<PublicKey, WalletError> {
    let bytes = fsio::read_public(path, what, 1024)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| WalletError::BadPublicKeyFile {
        path: path.into(),
        reason: "not UTF-8 text".into(),
    })?;
    PublicKey::from_hex(text.trim()).map_err(|e| WalletError::BadPublicKeyFile {
        path: path.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_that_could_escape_or_clash_are_rejected() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "x.pub",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["default", "miner-1", "my_wallet", "v1.2", &"a".repeat(64)] {
            assert!(valid_name(good), "{good:?}");
        }
    }
}
