//! Memory-mapping one safetensors file and validating its header before any tensor data is
//! touched.
//!
//! Format: 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{"__metadata__": {...}, "name": {"dtype": "BF16", "shape": [..], "data_offsets": [s, e]}}`),
//! then the data section; offsets are relative to the start of the data section.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde_json::Value;

use super::error::WeightsError;
use super::spec::{numel, safetensors_dtype_size, ShapeDisplay};

/// The safetensors crate rejects headers above 100 MB; so do we.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor entry of a validated header.
#[derive(Debug, Clone)]
pub(crate) struct RawTensor {
    /// HF tensor name.
    pub name: String,
    /// safetensors dtype name as stored (`BF16`, `I64`, ...).
    pub dtype: String,
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Absolute byte range in the file, guaranteed within the mapping.
    pub range: std::ops::Range<usize>,
}

/// A memory-mapped safetensors file whose header has been validated: every tensor's byte range
/// lies inside the file and, for dtypes of known size, matches shape x dtype size.
pub(crate) struct MappedFile {
    pub path: PathBuf,
    pub mmap: Mmap,
    pub tensors: Vec<RawTensor>,
}

impl MappedFile {
    /// Opens, maps and validates `path`.
    pub fn open(path: &Path) -> Result<MappedFile, WeightsError> {
        let file = File::open(path).map_err(|e| WeightsError::io("cannot open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| WeightsError::io("cannot stat", path, e))?
            .len();
        if len < 8 {
            return Err(WeightsError::corrupt(
                path,
                format!("file is {len} bytes, too short for the 8-byte header length"),
            ));
        }
        // SAFETY: the mapping is read-only. As with every mmap-based loader, the file must not
        // be truncated or modified by another process while the WeightDir is alive.
        let mmap =
            unsafe { Mmap::map(&file) }.map_err(|e| WeightsError::io("cannot mmap", path, e))?;
        let tensors = parse_header(path, &mmap)?;
        Ok(MappedFile {
            path: path.to_path_buf(),
            mmap,
            tensors,
        })
    }
}

fn as_usize(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|x| usize::try_from(x).ok())
}

/// Validates the header of a mapped file (of at least 8 bytes) and returns its tensors in
/// header order.
pub(crate) fn parse_header(path: &Path, bytes: &[u8]) -> Result<Vec<RawTensor>, WeightsError> {
    let file_len = bytes.len() as u64;
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[..8]);
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(WeightsError::corrupt(
            path,
            format!("header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"),
        ));
    }
    if header_len > file_len - 8 {
        return Err(WeightsError::corrupt(
            path,
            format!(
                "header length {header_len} runs past the end of the file ({file_len} bytes): \
                 truncated?"
            ),
        ));
    }
    let data_start = 8 + header_len as usize;
    let data_len = bytes.len() - data_start;
    let header: Value = serde_json::from_slice(&bytes[8..data_start])
        .map_err(|e| WeightsError::corrupt(path, format!("header is not valid JSON: {e}")))?;
    let Value::Object(header) = header else {
        return Err(WeightsError::corrupt(path, "header is not a JSON object"));
    };
    let mut tensors = Vec::with_capacity(header.len());
    for (name, entry) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| WeightsError::corrupt(path, format!("tensor {name}: {what}"));
        let Value::Object(entry) = entry else {
            return Err(bad("header entry is not an object"));
        };
        let dtype = entry
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing or non-string \"dtype\""))?
            .to_string();
        let shape = entry
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(as_usize).collect::<Option<Vec<usize>>>())
            .ok_or_else(|| bad("missing or invalid \"shape\" (expected an array of sizes)"))?;
        let offsets = entry
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(as_usize).collect::<Option<Vec<usize>>>())
            .filter(|o| o.len() == 2)
            .ok_or_else(|| bad("missing or invalid \"data_offsets\" (expected [start, end])"))?;
        let (start, end) = (offsets[0], offsets[1]);
        if start > end {
            return Err(bad(&format!("data_offsets [{start}, {end}] are reversed")));
        }
        if end > data_len {
            return Err(bad(&format!(
                "data_offsets [{start}, {end}] run past the end of the data section \
                 ({data_len} bytes): truncated?"
            )));
        }
        if let Some(size) = safetensors_dtype_size(&dtype) {
            let want = numel(&shape).and_then(|n| n.checked_mul(size));
            if want != Some(end - start) {
                return Err(bad(&format!(
                    "shape {} of dtype {dtype} needs {} bytes but data_offsets [{start}, {end}] \
                     span {} bytes",
                    ShapeDisplay(&shape),
                    want.map_or_else(|| "an overflowing number of".to_string(), |w| w.to_string()),
                    end - start
                )));
            }
        }
        tensors.push(RawTensor {
            name,
            dtype,
            shape,
            range: data_start + start..data_start + end,
        });
    }
    check_disjoint(path, &tensors)?;
    Ok(tensors)
}

/// No two tensors may share bytes (empty tensors share none): overlapping ranges mean a
/// corrupt or crafted header whose tensors would silently alias each other.
fn check_disjoint(path: &Path, tensors: &[RawTensor]) -> Result<(), WeightsError> {
    let mut by_start: Vec<&RawTensor> = tensors.iter().filter(|t| !t.range.is_empty()).collect();
    by_start.sort_by_key(|t| (t.range.start, t.range.end));
    for pair in by_start.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.range.start < a.range.end {
            return Err(WeightsError::corrupt(
                path,
                format!(
                    "tensors {} and {} overlap: their data_offsets share bytes {}..{} of the \
                     file",
                    a.name,
                    b.name,
                    b.range.start,
                    a.range.end.min(b.range.end)
                ),
            ));
        }
    }
    Ok(())
}
