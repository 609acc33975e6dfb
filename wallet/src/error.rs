//! Errors of the wallet crate.
//!
//! Two levels: [`KeyfileError`] says what is wrong with the bytes of one keyfile (it knows no paths, so
//! the format can be checked on bytes alone), and [`WalletError`] adds where on disk it happened. Each
//! failure a user can meet has its own variant, so that a wrong password is never reported as a
//! corrupt file and the reverse.

use std::path::PathBuf;

/// What is wrong with a keyfile's contents or with the password given for it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyfileError {
    /// The bytes are not a keyfile at all: not JSON, a field missing or malformed.
    #[error("corrupt keyfile: {0}")]
    Corrupt(String),
    /// A keyfile written by a newer (or unknown) format version.
    #[error("unsupported keyfile format version {0} (this build reads version 1)")]
    UnsupportedVersion(u64),
    /// The file is larger than any keyfile could be.
    #[error("file too large to be a keyfile ({0} bytes)")]
    TooLarge(u64),
    /// The KDF parameters are outside the range this build accepts (a guard against files crafted to
    /// exhaust memory or time).
    #[error("key derivation parameters out of range: {0}")]
    KdfParams(String),
    /// The password does not open this keyfile.
    #[error("wrong password")]
    WrongPassword,
    /// The password is right but the ciphertext or the header it is bound to was altered.
    #[error(
        "keyfile was tampered with or damaged: the password is right but the ciphertext fails authentication"
    )]
    Tampered,
    /// The decrypted (or plaintext) secret does not belong to the public key stored beside it.
    #[error("the secret key does not match the public key recorded in the keyfile")]
    KeyMismatch,
    /// A hotkey file where a coldkey was expected, or the reverse.
    #[error("this is a {found} file, not a {expected} file")]
    WrongKind {
        /// The role the caller asked for.
        expected: crate::keyfile::KeyKind,
        /// The role recorded in the file.
        found: crate::keyfile::KeyKind,
    },
    /// A coldkey stored, or about to be stored, without encryption. The coldkey controls funds and
    /// stake; it is never kept in the clear.
    #[error("a coldkey must be stored encrypted")]
    UnencryptedColdkey,
    /// The keyfile is encrypted and no password was given.
    #[error("this key is encrypted: a password is needed")]
    PasswordRequired,
    /// A new password is too short to protect a key.
    #[error("password too short: use at least {min} characters")]
    WeakPassword {
        /// The minimum length in bytes.
        min: usize,
    },
    /// Argon2 refused to run (only reachable with parameters that passed validation but that the
    /// library still rejects, or when memory could not be allocated).
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// A wallet operation failed; the message names the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// A wallet or hotkey name that could escape the wallet directory or clash with our own files.
    #[error(
        "invalid {what} name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '.' nor ending in '.pub'"
    )]
    InvalidName {
        /// "wallet" or "hotkey".
        what: &'static str,
        /// The rejected name.
        name: String,
    },
    /// The key file does not exist.
    #[error("no {what} at {}", path.display())]
    NotFound {
        /// "coldkey", "hotkey 'name'", "wallet".
        what: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Refusing to replace a key that exists: losing a key loses what it controls.
    #[error("{} already exists; refusing to overwrite an existing key", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A secret key file readable or writable by others: its secret may already be exposed, and
    /// reading it silently would hide that.
    #[error(
        "{} has permissions {mode:04o}, open to other users; a secret key file must be private: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    PermissionsTooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key path that is not a regular file (a directory, a socket, ...).
    #[error("{} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The keyfile's contents or the password are wrong.
    #[error("{}: {source}", path.display())]
    Keyfile {
        /// The keyfile.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: KeyfileError,
    },
    /// A public key file that does not hold a public key.
    #[error("{}: not a valid public key file: {reason}", path.display())]
    BadPublicKeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The BIP-39 phrase is not valid.
    #[error("invalid mnemonic: {0}")]
    InvalidMnemonic(String),
    /// A password file or environment variable could not be used.
    #[error("password: {0}")]
    Password(String),
    /// The key could not be turned into a libp2p identity.
    #[error("libp2p identity: {0}")]
    Identity(String),
    /// The home directory could not be found for the default wallet path.
    #[error("cannot find the home directory: set the wallet path explicitly")]
    NoHome,
    /// Any other I/O failure.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl WalletError {
    /// The keyfile-level cause, when there is one (for callers that react to a wrong password).
    pub fn keyfile_error(&self) -> Option<&KeyfileError> {
        match self {
            Self::Keyfile { source, .. } => Some(source),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
