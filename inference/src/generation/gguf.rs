//! A reader for GGUF files (the llama.cpp / ggml model format) and dequantisation of its tensors.
//!
//! A GGUF file is untrusted input: it may come from any peer or any download. Every count, length and
//! offset read from it is checked against the bytes actually present before anything is allocated or
//! indexed, so a truncated or corrupt file gives a [`GgufError`], never a panic or a huge allocation.
//!
//! Layout (version 2 and 3, little-endian): magic `GGUF`, version `u32`, tensor count `u64`, metadata
//! count `u64`, the metadata key/values, the tensor infos (name, dims, type, offset), padding to the
//! alignment (`general.alignment`, default 32), then the tensor data; each tensor's offset is relative
//! to the start of that data section.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// The four bytes every GGUF file starts with.
const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section when the file does not say otherwise (`general.alignment`).
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml supports at most four dimensions; more is a corrupt file.
const MAX_DIMS: usize = 4;
/// Arrays of arrays are allowed by the format; deeper nesting than this is only an attack on the stack.
const MAX_ARRAY_DEPTH: usize = 4;
/// Fewest bytes one metadata entry can take (key length, empty key, type, one-byte value).
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Fewest bytes one tensor info can take (name length, n_dims, one dim, type, offset).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// Why a GGUF file could not be read or a tensor not dequantised.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be read from disk.
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file ends before a field it announces.
    #[error(
        "GGUF file truncated: {what} at byte {offset} needs {needed} bytes, the file has {len}"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The length of the whole file.
        len: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file (magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// Only versions 2 and 3 are read (version 1 used 32-bit counts and is long obsolete).
    #[error("unsupported GGUF version {0} (2 and 3 are supported)")]
    UnsupportedVersion(u32),
    /// A count cannot fit in the bytes left in the file.
    #[error("GGUF {what} count {count} cannot fit in the {remaining} bytes left in the file")]
    CountTooLarge {
        /// What was counted.
        what: &'static str,
        /// The count read from the file.
        count: u64,
        /// Bytes left after the count.
        remaining: u64,
    },
    /// A metadata value type tag that the format does not define.
    #[error("unknown GGUF metadata value type {0}")]
    BadValueType(u32),
    /// A string that is not UTF-8.
    #[error("GGUF string at byte {offset} is not UTF-8")]
    InvalidUtf8 {
        /// Where the string's bytes start.
        offset: u64,
    },
    /// Arrays nested deeper than any real file needs.
    #[error("GGUF metadata arrays nested more than {MAX_ARRAY_DEPTH} deep")]
    NestingTooDeep,
    /// The same metadata key twice.
    #[error("GGUF metadata key {0:?} appears twice")]
    DuplicateKey(String),
    /// `general.alignment` is not a power of two (or is absurdly large).
    #[error("GGUF alignment {0} is not a power of two up to 65536")]
    BadAlignment(u64),
    /// A tensor with zero or more than four dimensions, or a zero-sized or overflowing shape.
    #[error("GGUF tensor {name:?} has an invalid shape {dims:?}")]
    BadShape {
        /// The tensor.
        name: String,
        /// Its dimensions as read (innermost first, as ggml stores them).
        dims: Vec<u64>,
    },
    /// A tensor type tag this reader does not know (it cannot even size the tensor).
    #[error("GGUF tensor {name:?} has unknown type {ty}")]
    UnknownTensorType {
        /// The tensor.
        name: String,
        /// Its type tag.
        ty: u32,
    },
    /// A tensor's offset is not aligned or its data runs past the end of the file.
    #[error(
        "GGUF tensor {name:?} data (offset {offset}, {size} bytes) is misaligned or outside the file"
    )]
    TensorOutOfBounds {
        /// The tensor.
        name: String,
        /// Its offset inside the data section.
        offset: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// The same tensor name twice.
    #[error("GGUF tensor {0:?} appears twice")]
    DuplicateTensor(String),
    /// A metadata key the model needs is absent.
    #[error("GGUF metadata key {0:?} is missing")]
    MissingKey(String),
    /// A metadata key holds another type than the model needs.
    #[error("GGUF metadata key {key:?} is not {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A tensor the model needs is absent.
    #[error("GGUF tensor {0:?} is missing")]
    MissingTensor(String),
    /// A tensor of a type this reader can size but not dequantise.
    #[error("GGUF tensor {name:?} has type {ty:?}, which is not dequantised here")]
    UnsupportedDequant {
        /// The tensor.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
}

/// A ggml tensor element type, with the block layout that determines its size on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs, non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

impl GgmlType {
    /// The type for a tag in the file, or `None` for a tag this reader does not know.
    pub fn from_tag(tag: u32) -> Option<Self> {
        Some(match tag {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            9 => Self::Q8_1,
            10 => Self::Q2_K,
            11 => Self::Q3_K,
            12 => Self::Q4_K,
            13 => Self::Q5_K,
            14 => Self::Q6_K,
            15 => Self::Q8_K,
            24 => Self::I8,
            25 => Self::I16,
            26 => Self::I32,
            27 => Self::I64,
            28 => Self::F64,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// Elements per block and bytes per block, as in ggml's type traits.
    pub fn block_layout(self) -> (u64, u64) {
        match self {
            Self::F32 | Self::I32 => (1, 4),
            Self::F16 | Self::BF16 | Self::I16 => (1, 2),
            Self::I8 => (1, 1),
            Self::I64 | Self::F64 => (1, 8),
            Self::Q4_0 => (32, 2 + 16),
            Self::Q4_1 => (32, 2 + 2 + 16),
            Self::Q5_0 => (32, 2 + 4 + 16),
            Self::Q5_1 => (32, 2 + 2 + 4 + 16),
            Self::Q8_0 => (32, 2 + 32),
            Self::Q8_1 => (32, 4 + 4 + 32),
            Self::Q2_K => (256, 256 / 16 + 256 / 4 + 2 + 2),
            Self::Q3_K => (256, 256 / 8 + 256 / 4 + 12 + 2),
            Self::Q4_K => (256, 2 + 2 + 12 + 256 / 2),
            Self::Q5_K => (256, 2 + 2 + 12 + 256 / 8 + 256 / 2),
            Self::Q6_K => (256, 256 / 2 + 256 / 4 + 256 / 16 + 2),
            Self::Q8_K => (256, 4 + 256 + 16 * 2),
        }
    }
}

/// One metadata value. Arrays are typed so that their memory stays proportional to their bytes on disk.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(MetadataArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array: all elements share one type.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum MetadataArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<MetadataArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl MetadataArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where one tensor lives in the file and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`, ...).
    pub name: String,
    /// Dimensions, innermost first (ggml's `ne`): a `[rows, cols]` matrix is stored as `[cols, rows]`.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Number of elements.
    pub n_elements: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

/// A parsed GGUF file: its metadata, its tensor infos and its bytes.
pub struct Gguf {
    version: u32,
    metadata: BTreeMap<String, MetadataValue>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: u64,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// A bounds-checked little-endian cursor over the file's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn remaining(&self) -> u64 {
        self.bytes.len().saturating_sub(self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        let truncated = || GgufError::Truncated {
            what,
            offset: self.pos as u64,
            needed: n,
            len: self.len(),
        };
        let n_usize = usize::try_from(n).map_err(|_| truncated())?;
        let end = self.pos.checked_add(n_usize).ok_or_else(truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let slice = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, GgufError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Reads a count and checks that `count` items of at least `min_item_bytes` each fit in the rest of
    /// the file, so that whatever is allocated for them is bounded by the file's own size.
    fn count(&mut self, what: &'static str, min_item_bytes: u64) -> Result<usize, GgufError> {
        let count = self.u64(what)?;
        let remaining = self.remaining();
        let fits = count
            .checked_mul(min_item_bytes)
            .is_some_and(|total| total <= remaining);
        if !fits {
            return Err(GgufError::CountTooLarge {
                what,
                count,
                remaining,
            });
        }
        usize::try_from(count).map_err(|_| GgufError::CountTooLarge {
            what,
            count,
            remaining,
        })
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let offset = self.pos as u64;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 { offset })
    }
}

/// Metadata value type tags.
mod tag {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// Fewest bytes one value of a type takes on disk (for bounding array counts).
fn min_value_bytes(ty: u32) -> Result<u64, GgufError> {
    Ok(match ty {
        tag::U8 | tag::I8 | tag::BOOL => 1,
        tag::U16 | tag::I16 => 2,
        tag::U32 | tag::I32 | tag::F32 => 4,
        tag::U64 | tag::I64 | tag::F64 | tag::STRING => 8,
        tag::ARRAY => 4 + 8,
        other => return Err(GgufError::BadValueType(other)),
    })
}

fn read_value(cur: &mut Cursor<'_>, ty: u32, depth: usize) -> Result<MetadataValue, GgufError> {
    Ok(match ty {
        tag::U8 => MetadataValue::U8(cur.u8("u8 value")?),
        tag::I8 => MetadataValue::I8(i8::from_le_bytes(cur.array("i8 value")?)),
        tag::U16 => MetadataValue::U16(cur.u16("u16 value")?),
        tag::I16 => MetadataValue::I16(i16::from_le_bytes(cur.array("i16 value")?)),
        tag::U32 => MetadataValue::U32(cur.u32("u32 value")?),
        tag::I32 => MetadataValue::I32(i32::from_le_bytes(cur.array("i32 value")?)),
        tag::F32 => MetadataValue::F32(f32::from_le_bytes(cur.array("f32 value")?)),
        tag::BOOL => MetadataValue::Bool(cur.u8("bool value")? != 0),
        tag::STRING => MetadataValue::String(cur.string("string value")?),
        tag::ARRAY => MetadataValue::Array(read_array(cur, depth + 1)?),
        tag::U64 => MetadataValue::U64(cur.u64("u64 value")?),
        tag::I64 => MetadataValue::I64(i64::from_le_bytes(cur.array("i64 value")?)),
        tag::F64 => MetadataValue::F64(f64::from_le_bytes(cur.array("f64 value")?)),
        other => return Err(GgufError::BadValueType(other)),
    })
}

fn read_array(cur: &mut Cursor<'_>, depth: usize) -> Result<MetadataArray, GgufError> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep);
    }
    let ty = cur.u32("array element type")?;
    let n = cur.count("array element", min_value_bytes(ty)?)?;
    macro_rules! fixed {
        ($variant:ident, $t:ty) => {{
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(<$t>::from_le_bytes(cur.array("array element")?));
            }
            MetadataArray::$variant(v)
        }};
    }
    Ok(match ty {
        tag::U8 => fixed!(U8, u8),
        tag::I8 => fixed!(I8, i8),
        tag::U16 => fixed!(U16, u16),
        tag::I16 => fixed!(I16, i16),
        tag::U32 => fixed!(U32, u32),
        tag::I32 => fixed!(I32, i32),
        tag::F32 => fixed!(F32, f32),
        tag::U64 => fixed!(U64, u64),
        tag::I64 => fixed!(I64, i64),
        tag::F64 => fixed!(F64, f64),
        tag::BOOL => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(cur.u8("array element")? != 0);
            }
            MetadataArray::Bool(v)
        }
        tag::STRING => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(cur.string("array string")?);
            }
            MetadataArray::String(v)
        }
        tag::ARRAY => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_array(cur, depth + 1)?);
            }
            MetadataArray::Array(v)
        }
        other => return Err(GgufError::BadValueType(other)),
    })
}

impl Gguf {
    /// Reads and parses a GGUF file.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let bytes = std::fs::read(path).map_err(|source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Parses a GGUF file held in memory. Never panics, whatever the bytes.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, GgufError> {
        let mut cur = Cursor {
            bytes: &bytes,
            pos: 0,
        };
        let magic: [u8; 4] = cur.array("magic")?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = cur.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        // Both counts come before the entries they count, so the tensor count can only be bounded
        // loosely here and is checked again once the metadata is read.
        let n_tensors_raw = cur.u64("tensor count")?;
        let n_kv = cur.count("metadata", MIN_KV_BYTES)?;

        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = cur.string("metadata key")?;
            let ty = cur.u32("metadata value type")?;
            let value = read_value(&mut cur, ty, 0)?;
            if metadata.contains_key(&key) {
                return Err(GgufError::DuplicateKey(key));
            }
            metadata.insert(key, value);
        }

        let remaining = cur.remaining();
        let n_tensors = n_tensors_raw
            .checked_mul(MIN_TENSOR_INFO_BYTES)
            .filter(|total| *total <= remaining)
            .and_then(|_| usize::try_from(n_tensors_raw).ok())
            .ok_or(GgufError::CountTooLarge {
                what: "tensor",
                count: n_tensors_raw,
                remaining,
            })?;

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(MetadataValue::U32(a)) => u64::from(*a),
            Some(_) => {
                return Err(GgufError::WrongType {
                    key: "general.alignment".into(),
                    expected: "u32",
                });
            }
        };
        if !alignment.is_power_of_two() || alignment > 65536 {
            return Err(GgufError::BadAlignment(alignment));
        }

        let mut tensors = Vec::with_capacity(n_tensors);
        let mut names = HashSet::with_capacity(n_tensors);
        for _ in 0..n_tensors {
            let name = cur.string("tensor name")?;
            let n_dims = cur.u32("tensor dimension count")?;
            let n_dims = usize::try_from(n_dims).unwrap_or(usize::MAX);
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::BadShape { name, dims: vec![] });
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(cur.u64("tensor dimension")?);
            }
            let tag = cur.u32("tensor type")?;
            let ty = GgmlType::from_tag(tag).ok_or_else(|| GgufError::UnknownTensorType {
                name: name.clone(),
                ty: tag,
            })?;
            let offset = cur.u64("tensor offset")?;
            let (block, block_bytes) = ty.block_layout();
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, d| acc.checked_mul(*d))
                .filter(|n| *n > 0);
            let inner_ok = dims.first().is_some_and(|d| d % block == 0);
            let (Some(n_elements), true) = (n_elements, inner_ok) else {
                return Err(GgufError::BadShape { name, dims });
            };
            let size = (n_elements / block)
                .checked_mul(block_bytes)
                .ok_or_else(|| GgufError::BadShape {
                    name: name.clone(),
                    dims: dims.clone(),
                })?;
            if !names.insert(name.clone()) {
                return Err(GgufError::DuplicateTensor(name));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                n_elements,
                size,
            });
        }

        let header_end = cur.pos as u64;
        let data_start = header_end.div_ceil(alignment).saturating_mul(alignment);
        let file_len = bytes.len() as u64;
        for t in &tensors {
            let end = data_start
                .checked_add(t.offset)
                .and_then(|start| start.checked_add(t.size));
            let in_file = end.is_some_and(|end| end <= file_len);
            if t.offset % alignment != 0 || !in_file {
                return Err(GgufError::TensorOutOfBounds {
                    name: t.name.clone(),
                    offset: t.offset,
                    size: t.size,
                });
            }
        }

        Ok(Self {
            version,
            metadata,
            tensors,
            alignment,
            data_start,
            bytes,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data section's alignment.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// All metadata, by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetadataValue> {
        &self.metadata
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of one tensor, if present.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    fn value(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.metadata
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    fn wrong(key: &str, expected: &'static str) -> GgufError {
        GgufError::WrongType {
            key: key.to_string(),
            expected,
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        match self.value(key)? {
            MetadataValue::String(s) => Ok(s),
            _ => Err(Self::wrong(key, "a string")),
        }
    }

    /// An unsigned integer value of any width (files differ in which width they use for counts).
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        match self.value(key)? {
            MetadataValue::U8(v) => Ok(u64::from(*v)),
            MetadataValue::U16(v) => Ok(u64::from(*v)),
            MetadataValue::U32(v) => Ok(u64::from(*v)),
            MetadataValue::U64(v) => Ok(*v),
            MetadataValue::I8(v) => u64::try_from(*v).map_err(|_| Self::wrong(key, "unsigned")),
            MetadataValue::I16(v) => u64::try_from(*v).map_err(|_| Self::wrong(key, "unsigned")),
            MetadataValue::I32(v) => u64::try_from(*v).map_err(|_| Self::wrong(key, "unsigned")),
            MetadataValue::I64(v) => u64::try_from(*v).map_err(|_| Self::wrong(key, "unsigned")),
            _ => Err(Self::wrong(key, "an integer")),
        }
    }

    /// An unsigned integer value that must fit in `usize`.
    pub fn get_usize(&self, key: &str) -> Result<usize, GgufError> {
        usize::try_from(self.get_u64(key)?).map_err(|_| Self::wrong(key, "a usize"))
    }

    /// A float value (f32 or f64 in the file).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        match self.value(key)? {
            MetadataValue::F32(v) => Ok(*v),
            MetadataValue::F64(v) => Ok(*v as f32),
            _ => Err(Self::wrong(key, "a float")),
        }
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        match self.value(key)? {
            MetadataValue::Bool(v) => Ok(*v),
            _ => Err(Self::wrong(key, "a bool")),
        }
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<&MetadataArray, GgufError> {
        match self.value(key)? {
            MetadataValue::Array(a) => Ok(a),
            _ => Err(Self::wrong(key, "an array")),
        }
    }

    /// An array of strings.
    pub fn get_string_array(&self, key: &str) -> Result<&[String], GgufError> {
        match self.get_array(key)? {
            MetadataArray::String(v) => Ok(v),
            _ => Err(Self::wrong(key, "an array of strings")),
        }
    }

    /// The raw bytes of a tensor (bounds were checked when the file was parsed).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<&[u8], GgufError> {
        let out_of_bounds = || GgufError::TensorOutOfBounds {
            name: info.name.clone(),
            offset: info.offset,
            size: info.size,
        };
        let start = self
            .data_start
            .checked_add(info.offset)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(out_of_bounds)?;
        let size = usize::try_from(info.size).map_err(|_| out_of_bounds())?;
        let end = start.checked_add(size).ok_or_else(out_of_bounds)?;
        self.bytes.get(start..end).ok_or_else(out_of_bounds)
    }

    /// A tensor dequantised to `f32`, in ggml's element order (innermost dimension fastest).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self
            .tensor(name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))?;
        let bytes = self.tensor_bytes(info)?;
        dequantize(info.ty, bytes).ok_or_else(|| GgufError::UnsupportedDequant {
            name: info.name.clone(),
            ty: info.ty,
        })
    }
}

/// IEEE 754 half precision to single precision, exactly (every f16 is representable as an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = man * 2^-24, normalise it for f32.
            let shift = man.leading_zeros() - 21; // bring the top set bit to position 10
            let man = (man << shift) & 0x3ff;
            let exp = 127 - 15 + 1 - shift;
            sign | (exp << 23) | (man << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// bfloat16 to single precision (the top half of an f32).
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

fn half(bytes: &[u8], at: usize) -> f32 {
    match bytes.get(at..at + 2) {
        Some(&[a, b]) => f16_to_f32(u16::from_le_bytes([a, b])),
        _ => 0.0,
    }
}

/// Dequantises a whole tensor's bytes of type `ty`, computing each value as ggml's reference
/// `dequantize_row_*` does (and as the `gguf` Python package used by transformers does): for Q4_1
/// `q * d + m`, for Q8_0 `q * d`, both in f32 with the scales read from f16. Returns `None` for a type
/// not handled here. The byte length must be a whole number of blocks; a ragged tail is ignored.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    let (block, block_bytes) = ty.block_layout();
    let (block, block_bytes) = (block as usize, block_bytes as usize);
    let n_blocks = bytes.len() / block_bytes;
    let mut out = Vec::with_capacity(n_blocks * block);
    let blocks = bytes.chunks_exact(block_bytes);
    match ty {
        GgmlType::F32 => out.extend(blocks.map(|b| {
            let mut a = [0u8; 4];
            a.copy_from_slice(b);
            f32::from_le_bytes(a)
        })),
        GgmlType::F16 => out.extend(blocks.map(|b| half(b, 0))),
        GgmlType::BF16 => out.extend(blocks.map(|b| match b {
            &[x, y] => bf16_to_f32(u16::from_le_bytes([x, y])),
            _ => 0.0,
        })),
        GgmlType::Q4_0 => {
            for b in blocks {
                let d = half(b, 0);
                let qs = b.get(2..18)?;
                let mut vals = [0f32; 32];
                for (j, q) in qs.iter().enumerate() {
                    vals[j] = (f32::from(q & 0x0f) - 8.0) * d;
                    vals[j + 16] = (f32::from(q >> 4) - 8.0) * d;
                }
                out.extend_from_slice(&vals);
            }
        }
        GgmlType::Q4_1 => {
            for b in blocks {
                let d = half(b, 0);
                let m = half(b, 2);
                let qs = b.get(4..20)?;
                let mut vals = [0f32; 32];
                for (j, q) in qs.iter().enumerate() {
                    vals[j] = f32::from(q & 0x0f) * d + m;
                    vals[j + 16] = f32::from(q >> 4) * d + m;
                }
                out.extend_from_slice(&vals);
            }
        }
        GgmlType::Q8_0 => {
            for b in blocks {
                let d = half(b, 0);
                let qs = b.get(2..34)?;
                out.extend(qs.iter().map(|q| f32::from(*q as i8) * d));
            }
        }
        _ => return None,
    }
    Some(out)
}
