//! The record framing shared by the ledger's append-only files: the local log ([`crate::log`]) and
//! the anchor journal ([`crate::anchor::journal`]).
//!
//! One record is `magic [4] | kind u8 | len u32 LE | header check [4] | body check [32] | payload`,
//! where the header check is the first 4 bytes of blake3 over magic, kind and len, and the body check
//! is blake3 over kind, len and payload. Each file picks its own magic, kinds and payload limit
//! ([`Format`]), so a record of one file can never be read as a record of the other.
//!
//! A crash mid-write leaves a *torn tail*: a partial record, a last record whose checksum fails, or
//! a zero-filled end. Those are told apart from damage before the end, which is corruption: a reader
//! reports it with its byte offset and never repairs it. Appends are fsynced and rolled back on
//! failure, and one writer at a time holds a lock file ([`WriterLock`]); both live here so that the
//! two files behave identically after a crash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes before the payload: magic, kind, length, header check, body check.
pub(crate) const HEADER_LEN: usize = 4 + 1 + 4 + 4 + 32;

/// How one kind of file frames its records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    /// The first 4 bytes of every record.
    pub magic: [u8; 4],
    /// The record kinds this file may hold; any other is corruption.
    pub kinds: &'static [u8],
    /// The longest payload a record may carry.
    pub max_payload: usize,
}

/// One record parsed from a buffer that runs to the end of the file.
pub(crate) enum Parsed<'a> {
    /// A whole, checked record; `next` is the offset just after it.
    Record {
        /// Its kind.
        kind: u8,
        /// Its payload.
        payload: &'a [u8],
        /// Offset of the next record in the buffer.
        next: usize,
    },
    /// The rest of the buffer is a torn tail starting here.
    Torn,
    /// A damaged record (not at the end of the file).
    Corrupt(String),
}

/// What the header of a record says.
enum Header {
    /// A header that checks out.
    Good { kind: u8, len: usize },
    /// Magic or header check wrong.
    Bad,
    /// A good header, but a kind or length this file does not allow.
    Refused(String),
}

fn header_check(magic: &[u8; 4], kind: u8, len: u32) -> [u8; 4] {
    let mut h = blake3::Hasher::new();
    h.update(magic);
    h.update(&[kind]);
    h.update(&len.to_le_bytes());
    let mut out = [0u8; 4];
    out.copy_from_slice(&h.finalize().as_bytes()[..4]);
    out
}

fn body_check(kind: u8, len: u32, payload: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[kind]);
    h.update(&len.to_le_bytes());
    h.update(payload);
    *h.finalize().as_bytes()
}

impl Format {
    /// Frames `payload` as a record of `kind`. `Err(len)` when the payload is over the limit.
    pub(crate) fn encode(&self, kind: u8, payload: &[u8]) -> Result<Vec<u8>, usize> {
        if payload.len() > self.max_payload {
            return Err(payload.len());
        }
        let len = u32::try_from(payload.len()).map_err(|_| payload.len())?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&self.magic);
        out.push(kind);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&header_check(&self.magic, kind, len));
        out.extend_from_slice(&body_check(kind, len, payload));
        out.extend_from_slice(payload);
        Ok(out)
    }

    fn header(&self, head: &[u8; HEADER_LEN]) -> Header {
        let kind = head[4];
        let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
        if head[..4] != self.magic || head[9..13] != header_check(&self.magic, kind, len) {
            return Header::Bad;
        }
        let len_usize = len as usize;
        if !self.kinds.contains(&kind) || len_usize > self.max_payload {
            return Header::Refused(format!("record of kind {kind} and length {len}"));
        }
        Header::Good {
            kind,
            len: len_usize,
        }
    }

    fn body_ok(head: &[u8; HEADER_LEN], kind: u8, payload: &[u8]) -> bool {
        // The length was read from this header and bounded by `max_payload`, so it fits a u32.
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        head[13..HEADER_LEN] == body_check(kind, len, payload)
    }

    /// Parses the record at `at` in `buf`, where `buf` runs to the end of the file.
    pub(crate) fn parse<'a>(&self, buf: &'a [u8], at: usize) -> Parsed<'a> {
        let rest = buf.get(at..).unwrap_or(&[]);
        let Some((head, _)) = rest.split_first_chunk::<HEADER_LEN>() else {
            return Parsed::Torn;
        };
        let (kind, len) = match self.header(head) {
            Header::Good { kind, len } => (kind, len),
            Header::Bad if rest.iter().all(|b| *b == 0) => return Parsed::Torn,
            Header::Bad => return Parsed::Corrupt("bad record header".into()),
            Header::Refused(reason) => return Parsed::Corrupt(reason),
        };
        let end = HEADER_LEN + len;
        let Some(payload) = rest.get(HEADER_LEN..end) else {
            return Parsed::Torn;
        };
        if !Self::body_ok(head, kind, payload) {
            if end == rest.len() {
                return Parsed::Torn;
            }
            return Parsed::Corrupt("record checksum mismatch".into());
        }
        Parsed::Record {
            kind,
            payload,
            next: at + end,
        }
    }

    /// Reads the record at `at` of a file `file_len` bytes long, holding at most one record in
    /// memory: the payload lands in `payload`. The same rules as [`Self::parse`], for files too
    /// large to read whole.
    pub(crate) fn read_at(
        &self,
        mut file: &File,
        at: u64,
        file_len: u64,
        payload: &mut Vec<u8>,
    ) -> std::io::Result<Frame> {
        let rest = file_len.saturating_sub(at);
        if rest == 0 {
            return Ok(Frame::End);
        }
        if rest < HEADER_LEN as u64 {
            return Ok(Frame::Torn);
        }
        let mut head = [0u8; HEADER_LEN];
        file.seek(SeekFrom::Start(at))?;
        file.read_exact(&mut head)?;
        let (kind, len) = match self.header(&head) {
            Header::Good { kind, len } => (kind, len),
            Header::Bad if head.iter().all(|b| *b == 0) && zeros_to_end(file)? => {
                return Ok(Frame::Torn);
            }
            Header::Bad => return Ok(Frame::Corrupt("bad record header".into())),
            Header::Refused(reason) => return Ok(Frame::Corrupt(reason)),
        };
        let end = HEADER_LEN as u64 + len as u64;
        if end > rest {
            return Ok(Frame::Torn);
        }
        payload.clear();
        payload.resize(len, 0);
        file.read_exact(payload)?;
        if !Self::body_ok(&head, kind, payload) {
            if end == rest {
                return Ok(Frame::Torn);
            }
            return Ok(Frame::Corrupt("record checksum mismatch".into()));
        }
        Ok(Frame::Record { next: at + end })
    }
}

/// What [`Format::read_at`] found.
pub(crate) enum Frame {
    /// A whole, checked record (its payload is in the caller's buffer).
    Record {
        /// Offset just after it.
        next: u64,
    },
    /// The end of the file, exactly at a record boundary.
    End,
    /// The rest of the file is a torn tail.
    Torn,
    /// A damaged record before the end.
    Corrupt(String),
}

/// Whether everything from the reader's position to the end is zero bytes (read in small pieces).
fn zeros_to_end(mut file: impl std::io::Read) -> std::io::Result<bool> {
    let mut buf = [0u8; 4096];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf.get(..n).is_some_and(|b| b.iter().any(|x| *x != 0)) {
            return Ok(false);
        }
    }
}

/// Creates `path`'s directory if needed and opens the file for reading and appending.
pub(crate) fn open_for_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Cuts a torn tail off at `valid_len` and makes that, and the file's creation, durable.
pub(crate) fn truncate_tail(file: &File, path: &Path, valid_len: u64) -> std::io::Result<()> {
    file.set_len(valid_len)?;
    file.sync_all()?;
    sync_dir(path);
    Ok(())
}

/// Makes a file's creation durable by syncing its directory; not every platform can open one.
pub(crate) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Why an append failed.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// The write or the fsync failed; the partial record was rolled back.
    Io(std::io::Error),
    /// The write failed and so did the rollback: the file must be reopened to recover its tail.
    Poisoned(std::io::Error),
}

/// Writes `record` at `at` (the end of the valid prefix) and fsyncs it before returning. On
/// failure the partial record is cut off again, so later appends never follow garbage.
pub(crate) fn append_synced(file: &mut File, at: u64, record: &[u8]) -> Result<(), AppendError> {
    let result = file
        .seek(SeekFrom::Start(at))
        .and_then(|_| file.write_all(record))
        .and_then(|()| file.sync_data());
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            if file.set_len(at).and_then(|()| file.sync_data()).is_err() {
                Err(AppendError::Poisoned(e))
            } else {
                Err(AppendError::Io(e))
            }
        }
    }
}

/// Why the writer lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another live process holds it.
    Held {
        /// The lock file.
        lock: PathBuf,
        /// The pid written in it (0 if unreadable).
        pid: u32,
    },
    /// The lock file could not be written.
    Io {
        /// The lock file.
        lock: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The lock file held by a file's one writer: `<file>.lock`, created with `O_EXCL` and holding the
/// writer's pid; removed on drop. A lock left by a dead process (its pid no longer in `/proc`) is
/// taken over; elsewhere, remove the file by hand.
#[derive(Debug)]
pub(crate) struct WriterLock {
    path: PathBuf,
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Whether `pid` is certainly dead: only answerable where `/proc` exists.
fn pid_is_dead(pid: u32) -> bool {
    pid != 0 && Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
}

impl WriterLock {
    /// Takes the lock of `file`.
    pub(crate) fn acquire(file: &Path) -> Result<Self, LockError> {
        let lock = lock_path(file);
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&lock) {
                Ok(mut f) => {
                    let written = writeln!(f, "{}", std::process::id()).and_then(|()| f.sync_all());
                    if let Err(source) = written {
                        let _ = std::fs::remove_file(&lock);
                        return Err(LockError::Io { lock, source });
                    }
                    return Ok(Self { path: lock });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = std::fs::read_to_string(&lock)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok())
                        .unwrap_or(0);
                    if pid_is_dead(pid) {
                        // A crashed writer's lock: take it over (once).
                        let _ = std::fs::remove_file(&lock);
                        continue;
                    }
                    return Err(LockError::Held { lock, pid });
                }
                Err(source) => return Err(LockError::Io { lock, source }),
            }
        }
        Err(LockError::Held { lock, pid: 0 })
    }
}
