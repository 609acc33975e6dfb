//! File handling for key material: private directories, atomic no-clobber writes, guarded reads.
//!
//! Unix only: the guarantees (0600 files, 0700 directories, refusing group- or world-readable
//! secrets) are expressed in Unix permission bits.

use crate::error::WalletError;
use agora_protocols::keys::fill_random;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Mode of secret key files.
pub(crate) const SECRET_MODE: u32 = 0o600;
/// Mode of public key files.
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode of wallet directories.
const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its parents, private to the user where we create them.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), WalletError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| WalletError::io(dir, e))
}

/// Whether overwriting an existing file is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with [`WalletError::AlreadyExists`] if the file exists (the default).
    Refuse,
    /// Replace the file atomically.
    Allow,
}

/// Writes `bytes` to `path` atomically: a temporary file with `mode` in the same directory, synced,
/// then moved into place. Readers see the old file or the new one, never half of one. With
/// [`Overwrite::Refuse`] the move is a hard link, which fails if the target exists, so two writers
/// racing cannot clobber each other either.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    overwrite: Overwrite,
) -> Result<(), WalletError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if overwrite == Overwrite::Refuse && fs::symlink_metadata(path).is_ok() {
        return Err(WalletError::AlreadyExists { path: path.into() });
    }
    let mut suffix = [0u8; 8];
    fill_random(&mut suffix);
    let tmp = dir.join(format!(".{file_name}.tmp-{}", hex::encode(suffix)));
    let result = write_tmp(&tmp, bytes, mode).and_then(|()| place(&tmp, path, overwrite));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Make the rename durable; a failure here leaves a correct file, so it is not an error.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_tmp(tmp: &Path, bytes: &[u8], mode: u32) -> Result<(), WalletError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)
        .map_err(|e| WalletError::io(tmp, e))?;
    // The umask may have narrowed `mode`; it never widens it, but set it exactly so it is predictable.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| WalletError::io(tmp, e))?;
    file.write_all(bytes).map_err(|e| WalletError::io(tmp, e))?;
    file.sync_all().map_err(|e| WalletError::io(tmp, e))
}

fn place(tmp: &Path, path: &Path, overwrite: Overwrite) -> Result<(), WalletError> {
    match overwrite {
        Overwrite::Allow => fs::rename(tmp, path).map_err(|e| WalletError::io(path, e)),
        Overwrite::Refuse => match fs::hard_link(tmp, path) {
            Ok(()) => {
                let _ = fs::remove_file(tmp);
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(WalletError::AlreadyExists { path: path.into() })
            }
            // Filesystems without hard links: fall back to check-then-rename.
            Err(_) => {
                if fs::symlink_metadata(path).is_ok() {
                    return Err(WalletError::AlreadyExists { path: path.into() });
                }
                fs::rename(tmp, path).map_err(|e| WalletError::io(path, e))
            }
        },
    }
}

/// Reads a secret key file after checking that it is a regular file that only its owner can read or
/// write, and no larger than `max_len`. The returned buffer is wiped on drop.
pub(crate) fn read_secret(
    path: &Path,
    what: &str,
    max_len: u64,
) -> Result<Zeroizing<Vec<u8>>, WalletError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(WalletError::NotFound {
                what: what.into(),
                path: path.into(),
            });
        }
        Err(e) => return Err(WalletError::io(path, e)),
    };
    // Checked on the open handle, so the file cannot be swapped between the check and the read.
    let meta = file.metadata().map_err(|e| WalletError::io(path, e))?;
    if !meta.is_file() {
        return Err(WalletError::NotAFile { path: path.into() });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(WalletError::PermissionsTooOpen {
            path: path.into(),
            mode,
        });
    }
    read_limited(file, path, max_len)
}

/// Reads a file that holds no secret (a public key), with a size limit.
pub(crate) fn read_public(
    path: &Path,
    what: &str,
    max_len: u64,
) -> Result<Zeroizing<Vec<u8>>, WalletError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => WalletError::NotFound {
            what: what.into(),
            path: path.into(),
        },
        _ => WalletError::io(path, e),
    })?;
    read_limited(file, path, max_len)
}

fn read_limited(file: File, path: &Path, max_len: u64) -> Result<Zeroizing<Vec<u8>>, WalletError> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    file.take(max_len.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| WalletError::io(path, e))?;
    if bytes.len() as u64 > max_len {
        return Err(WalletError::Keyfile {
            path: path.into(),
            source: crate::error::KeyfileError::TooLarge(bytes.len() as u64),
        });
    }
    Ok(bytes)
}

/// Names of the entries of `dir` (empty if it does not exist), sorted.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, WalletError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WalletError::io(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalletError::io(dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_owned(), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}
