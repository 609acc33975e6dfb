//! Password sources for headless use: a file or a named environment variable. (Prompting on a terminal
//! is the command line's business.)

use crate::error::WalletError;
use crate::keyfile::Password;
use std::io::Read;
use std::path::Path;
use zeroize::Zeroizing;

/// A password longer than this is surely the wrong file.
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

impl Password {
    /// Reads a password from a file: its whole contents less one trailing newline (`\n` or `\r\n`),
    /// so that `echo secret > file` works. Whitespace inside or before is kept.
    pub fn from_file(path: &Path) -> Result<Self, WalletError> {
        let file = std::fs::File::open(path).map_err(|e| {
            WalletError::Password(format!("cannot read password file {}: {e}", path.display()))
        })?;
        let mut bytes = Zeroizing::new(Vec::with_capacity(256));
        file.take(MAX_PASSWORD_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| {
                WalletError::Password(format!("cannot read password file {}: {e}", path.display()))
            })?;
        if bytes.len() as u64 > MAX_PASSWORD_FILE_BYTES {
            return Err(WalletError::Password(format!(
                "password file {} is larger than {MAX_PASSWORD_FILE_BYTES} bytes",
                path.display()
            )));
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(WalletError::Password(format!(
                "password file {} is empty",
                path.display()
            )));
        }
        Ok(Self::new(std::mem::take(&mut *bytes)))
    }

    /// Reads a password from the environment variable named `var` (the name is given on the command
    /// line, the password itself never is, so it stays out of `ps` and shell history).
    pub fn from_env(var: &str) -> Result<Self, WalletError> {
        match std::env::var_os(var) {
            None => Err(WalletError::Password(format!(
                "environment variable {var} is not set"
            ))),
            Some(value) => {
                let bytes = std::os::unix::ffi::OsStringExt::into_vec(value);
                if bytes.is_empty() {
                    return Err(WalletError::Password(format!(
                        "environment variable {var} is empty"
                    )));
                }
                Ok(Self::new(bytes))
            }
        }
    }
}
