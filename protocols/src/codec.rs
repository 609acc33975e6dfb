//! The one codec for every Agora wire type: serde + bincode 2, fixed-width little-endian integers.
//!
//! Fixed-width integers make the encoding canonical (each value has exactly one byte string), which
//! keeps content ids stable across implementations. Every decode is bounded twice: the input may not
//! exceed the caller's limit, and bincode itself refuses to pre-allocate past [`MAX_DECODE_LEN`] when a
//! length prefix lies. Trailing bytes are an error, so a message has one encoding and no hidden tail.
//!
//! bincode 2 is unmaintained upstream; it is used nowhere else in the workspace, so replacing it means
//! replacing this file only.

use serde::{Serialize, de::DeserializeOwned};

/// The largest input any Agora decoder accepts, whatever the caller asks for (64 MiB).
pub const MAX_DECODE_LEN: usize = 64 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<MAX_DECODE_LEN>,
>;

const CONFIG: Config = bincode::config::standard()
    .with_little_endian()
    .with_fixed_int_encoding()
    .with_limit::<MAX_DECODE_LEN>();

/// Why bytes could not be encoded or decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The input is larger than the limit given for this kind of message.
    #[error("input of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Length of the rejected input.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The input ended before the value was complete.
    #[error("input truncated: needed more bytes than the {len} given")]
    Truncated {
        /// Length of the rejected input.
        len: usize,
    },
    /// The value was complete but bytes were left over.
    #[error("{extra} trailing bytes after a complete value")]
    TrailingBytes {
        /// How many bytes were not consumed.
        extra: usize,
    },
    /// The bytes do not form a valid value of the expected type.
    #[error("malformed input: {0}")]
    Malformed(String),
    /// The value could not be encoded (for example it is larger than any decoder would accept).
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Encodes a value to its canonical bytes.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, CONFIG)
        .map_err(|err| CodecError::Encode(err.to_string()))?;
    if bytes.len() > MAX_DECODE_LEN {
        return Err(CodecError::Encode(format!(
            "{} bytes is over the decode limit of {MAX_DECODE_LEN}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes exactly one value from `bytes`, which may be at most `limit` bytes long.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    let limit = limit.min(MAX_DECODE_LEN);
    if bytes.len() > limit {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, CONFIG).map_err(|err| match err {
            bincode::error::DecodeError::UnexpectedEnd { .. } => {
                CodecError::Truncated { len: bytes.len() }
            }
            bincode::error::DecodeError::LimitExceeded => CodecError::TooLarge {
                len: bytes.len(),
                limit,
            },
            other => CodecError::Malformed(other.to_string()),
        })?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes {
            extra: bytes.len() - read,
        });
    }
    Ok(value)
}
