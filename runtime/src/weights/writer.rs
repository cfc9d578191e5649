//! Writing an HF-layout weight directory: `model.safetensors` or
//! `model-0000i-of-0000N.safetensors` shards plus `model.safetensors.index.json`, and the
//! side files (config.json, generation_config.json, tokenizer files).
//!
//! Guarantees:
//! - **No overwrite** unless [`WriteOptions::force`]: every file it would write, and any
//!   existing weight file of the other layout (`model.safetensors`, the index,
//!   `model-*-of-*.safetensors`, which would make the directory ambiguous), is checked first;
//!   if any exists, nothing is written and the error names them all. With `force`, stale weight
//!   files of the other layout are removed after the new files are in place.
//! - **No half files**: every file is written under a hidden temporary name in the same
//!   directory, synced, and renamed only once all files were written successfully; on error
//!   the temporaries are removed.
//! - **Streaming**: tensor data is requested one tensor at a time from the caller's closure and
//!   written straight to disk, so an 8 GB checkpoint never sits in memory at once.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::bf16;

use super::dir::{is_plain_file_name, INDEX_FILE_NAME, SINGLE_FILE_NAME};
use super::error::WeightsError;
use super::random::{random_tensor_bf16, validate_spec};
use super::spec::{numel, WeightSpec};
use super::temporaries::{create_tmp, finish, remove_abandoned_temporaries, Cleanup};

/// Default maximum shard size: 5 GB (5 * 10^9 bytes), the default `max_shard_size="5GB"` of
/// HF transformers' `save_pretrained`. Qwen3-0.6B (1.19 GB) is written as a single
/// `model.safetensors`, Qwen3-4B (8.05 GB) as two shards.
pub const DEFAULT_SHARD_BYTES: u64 = 5_000_000_000;

/// Options of [`write_hf_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replace existing files (otherwise any existing target file is an error).
    pub force: bool,
    /// Maximum bytes of tensor data per shard; split exactly like HF's
    /// `split_torch_state_dict_into_shards`. A single shard is written as `model.safetensors`.
    pub shard_bytes: u64,
}

impl Default for WriteOptions {
    /// `force: false`, `shard_bytes: DEFAULT_SHARD_BYTES`.
    fn default() -> Self {
        WriteOptions {
            force: false,
            shard_bytes: DEFAULT_SHARD_BYTES,
        }
    }
}

/// Name and shape of one tensor to write (stored as bf16).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// HF tensor name.
    pub name: String,
    /// Shape in HF order.
    pub shape: Vec<usize>,
}

impl From<&WeightSpec> for TensorInfo {
    fn from(s: &WeightSpec) -> Self {
        TensorInfo {
            name: s.name.clone(),
            shape: s.shape.clone(),
        }
    }
}

/// What [`write_hf_dir`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteSummary {
    /// Every file written, in the order renamed into place.
    pub files: Vec<PathBuf>,
    /// The safetensors file names (one, or the shards in order).
    pub weight_files: Vec<String>,
    /// Total bytes of tensor data.
    pub total_bytes: u64,
}

/// Is `name` a weight file of either HF layout?
fn is_weight_file_name(name: &str) -> bool {
    if name == SINGLE_FILE_NAME || name == INDEX_FILE_NAME {
        return true;
    }
    // model-00001-of-00002.safetensors (any digit count)
    let Some(rest) = name
        .strip_prefix("model-")
        .and_then(|r| r.strip_suffix(".safetensors"))
    else {
        return false;
    };
    let Some((a, b)) = rest.split_once("-of-") else {
        return false;
    };
    !a.is_empty()
        && !b.is_empty()
        && a.bytes().all(|c| c.is_ascii_digit())
        && b.bytes().all(|c| c.is_ascii_digit())
}

/// HF's shard split (`huggingface_hub.split_state_dict_into_shards_factory`): walk tensors in
/// order; a tensor bigger than the limit gets a shard of its own; otherwise start a new shard
/// when adding it would exceed the limit.
fn split_shards(sizes: &[u64], max: u64) -> Vec<Vec<usize>> {
    let mut shards = Vec::new();
    let mut current = Vec::new();
    let mut current_size = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        if size > max {
            shards.push(vec![i]);
            continue;
        }
        if current_size + size > max {
            shards.push(std::mem::take(&mut current));
            current_size = 0;
        }
        current.push(i);
        current_size += size;
    }
    if !current.is_empty() || shards.is_empty() {
        shards.push(current);
    }
    shards
}

/// Writes bf16 values as little-endian bytes through a buffer.
fn write_bf16(w: &mut impl Write, data: &[bf16], path: &Path) -> Result<(), WeightsError> {
    let mut buf = vec![0u8; 1 << 20];
    for chunk in data.chunks(buf.len() / 2) {
        for (dst, v) in buf.chunks_exact_mut(2).zip(chunk) {
            dst.copy_from_slice(&v.to_bits().to_le_bytes());
        }
        w.write_all(&buf[..chunk.len() * 2])
            .map_err(|e| WeightsError::io("cannot write", path, e))?;
    }
    Ok(())
}

/// Writes an HF-layout model directory into `dir` (created if missing).
///
/// - `tensors`: names and shapes, in state-dict order (this order decides shard membership).
///   Tied tensors should simply be left out, as HF does.
/// - `data(i)`: the bf16 values of `tensors[i]` (row-major, `numel` long). Called exactly
///   once per tensor, in the order the tensors are written (shard by shard, sorted by name
///   inside a shard, as the safetensors library lays files out), so only one tensor needs to
///   be in memory at a time. Borrowed data is not copied.
/// - `files`: side files `(file name, contents)` written next to the weights, e.g.
///   `config.json`, `generation_config.json`, `tokenizer.json`, `tokenizer_config.json`.
///
/// Each safetensors file has `{"__metadata__":{"format":"pt"}}` (so HF transformers loads
/// it), bf16 tensors, a header padded with spaces to a multiple of 8 bytes, and contiguous
/// data. With more than one shard, `model.safetensors.index.json` is
/// `{"metadata":{"total_size":N},"weight_map":{name: shard}}` with sorted keys and 2-space
/// indentation, as transformers writes it.
///
/// See the module docs for the no-overwrite and no-half-file guarantees.
pub fn write_hf_dir<'a, F, S, B>(
    dir: &Path,
    tensors: &[TensorInfo],
    mut data: F,
    files: &[(S, B)],
    opts: &WriteOptions,
) -> Result<WriteSummary, WeightsError>
where
    F: FnMut(usize) -> Result<Cow<'a, [bf16]>, WeightsError>,
    S: AsRef<str>,
    B: AsRef<[u8]>,
{
    let bad = |reason: String| WeightsError::BadWriteInput {
        dir: dir.to_path_buf(),
        reason,
    };

    // ---- validate all input before touching the file system ----
    let mut seen = HashSet::new();
    let mut sizes = Vec::with_capacity(tensors.len());
    for t in tensors {
        if t.name.is_empty() || t.name == "__metadata__" {
            return Err(bad(format!("invalid tensor name {:?}", t.name)));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(bad(format!("tensor {} is listed twice", t.name)));
        }
        let bytes = numel(&t.shape)
            .and_then(|n| n.checked_mul(2))
            .ok_or_else(|| bad(format!("tensor {}: shape {:?} overflows", t.name, t.shape)))?;
        sizes.push(bytes as u64);
    }
    if opts.shard_bytes == 0 {
        return Err(bad("shard_bytes must be > 0".to_string()));
    }
    let mut side_names = HashSet::new();
    for (name, _) in files {
        let name = name.as_ref();
        if !is_plain_file_name(name) {
            return Err(bad(format!(
                "side file name {name:?} is not a plain file name"
            )));
        }
        if is_weight_file_name(name) {
            return Err(bad(format!(
                "side file name {name} clashes with the weight files"
            )));
        }
        if !side_names.insert(name) {
            return Err(bad(format!("side file {name} is listed twice")));
        }
    }

    let shards = split_shards(&sizes, opts.shard_bytes);
    let n = shards.len();
    let shard_names: Vec<String> = if n == 1 {
        vec![SINGLE_FILE_NAME.to_string()]
    } else {
        (1..=n)
            .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
            .collect()
    };
    let mut targets: Vec<String> = shard_names.clone();
    if n > 1 {
        targets.push(INDEX_FILE_NAME.to_string());
    }
    targets.extend(files.iter().map(|(name, _)| name.as_ref().to_string()));

    // ---- existing files ----
    if dir.exists() && !dir.is_dir() {
        return Err(WeightsError::io(
            "cannot write into",
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
        ));
    }
    let mut stale_weight_files = Vec::new();
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).map_err(|e| WeightsError::io("cannot list", dir, e))? {
            let entry = entry.map_err(|e| WeightsError::io("cannot list", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_weight_file_name(&name) && !targets.contains(&name) {
                stale_weight_files.push(dir.join(&name));
            }
        }
        stale_weight_files.sort();
    }
    if !opts.force {
        let mut existing: Vec<PathBuf> = targets
            .iter()
            .map(|t| dir.join(t))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        existing.extend(stale_weight_files.iter().cloned());
        if !existing.is_empty() {
            return Err(WeightsError::WouldOverwrite {
                dir: dir.to_path_buf(),
                paths: existing,
            });
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| WeightsError::io("cannot create", dir, e))?;
    remove_abandoned_temporaries(dir);
    let side_bytes: u64 = files.iter().map(|(_, b)| b.as_ref().len() as u64).sum();
    let tensor_bytes = sizes.iter().fold(0u64, |a, &b| a.saturating_add(b));
    crate::resources::check_disk(
        dir,
        tensor_bytes.saturating_add(side_bytes),
        &format!("the weight files in {}", dir.display()),
    )?;

    // ---- write everything under temporary names ----
    let mut cleanup = Cleanup(Vec::new());
    let mut pending = Vec::new();
    let mut weight_map = BTreeMap::new();
    let mut total_bytes = 0u64;
    for (shard, file_name) in shards.iter().zip(&shard_names) {
        let mut order: Vec<usize> = shard.clone();
        order.sort_by(|&a, &b| tensors[a].name.cmp(&tensors[b].name));
        // Header: names sorted; JSON map keys are written in this order by hand so the file
        // layout does not depend on serde_json's map ordering features.
        let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
        let mut offset = 0u64;
        for &i in &order {
            let t = &tensors[i];
            let end = offset + sizes[i];
            header.push(',');
            header.push_str(&serde_json::to_string(&t.name).expect("string serializes"));
            header.push_str(&format!(
                ":{{\"dtype\":\"BF16\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
                serde_json::to_string(&t.shape).expect("shape serializes")
            ));
            offset = end;
            weight_map.insert(t.name.clone(), file_name.clone());
        }
        header.push('}');
        while header.len() % 8 != 0 {
            header.push(' ');
        }
        total_bytes += offset;

        let (f, p) = create_tmp(dir, file_name, &mut cleanup)?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let io = |e| WeightsError::io("cannot write", &p.tmp, e);
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(header.as_bytes()).map_err(io)?;
        for &i in &order {
            let t = &tensors[i];
            let values = data(i)?;
            let want = (sizes[i] / 2) as usize;
            if values.len() != want {
                return Err(bad(format!(
                    "tensor {}: got {} values for shape {:?} ({want} elements)",
                    t.name,
                    values.len(),
                    t.shape
                )));
            }
            write_bf16(&mut w, &values, &p.tmp)?;
        }
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        finish(f, &p.tmp)?;
        pending.push(p);
    }
    if n > 1 {
        let index = serde_json::json!({
            "metadata": { "total_size": total_bytes },
            "weight_map": weight_map,
        });
        let mut text = serde_json::to_string_pretty(&index).expect("index serializes");
        text.push('\n');
        let (mut f, p) = create_tmp(dir, INDEX_FILE_NAME, &mut cleanup)?;
        f.write_all(text.as_bytes())
            .map_err(|e| WeightsError::io("cannot write", &p.tmp, e))?;
        finish(f, &p.tmp)?;
        pending.push(p);
    }
    for (name, contents) in files {
        let (mut f, p) = create_tmp(dir, name.as_ref(), &mut cleanup)?;
        f.write_all(contents.as_ref())
            .map_err(|e| WeightsError::io("cannot write", &p.tmp, e))?;
        finish(f, &p.tmp)?;
        pending.push(p);
    }

    // ---- move into place ----
    let mut written = Vec::new();
    for p in &pending {
        std::fs::rename(&p.tmp, &p.dst)
            .map_err(|e| WeightsError::io("cannot rename into", &p.dst, e))?;
        written.push(p.dst.clone());
    }
    cleanup.disarm();
    for stale in &stale_weight_files {
        std::fs::remove_file(stale)
            .map_err(|e| WeightsError::io("cannot remove stale", stale, e))?;
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(WriteSummary {
        files: written,
        weight_files: shard_names,
        total_bytes,
    })
}

/// Writes a directory of random weights for `specs` (see [`random_tensor_bf16`]) plus the side
/// `files`, through [`write_hf_dir`]. Each tensor is generated just before it is written.
pub fn write_random_hf_dir<S, B>(
    dir: &Path,
    seed: u64,
    specs: &[WeightSpec],
    files: &[(S, B)],
    opts: &WriteOptions,
) -> Result<WriteSummary, WeightsError>
where
    S: AsRef<str>,
    B: AsRef<[u8]>,
{
    write_random_hf_dir_with_progress(dir, seed, specs, files, opts, &|_| {})
}

/// [`write_random_hf_dir`], calling `progress(bytes)` after each tensor is generated with its
/// bf16 byte count (for a progress bar).
pub fn write_random_hf_dir_with_progress<S, B>(
    dir: &Path,
    seed: u64,
    specs: &[WeightSpec],
    files: &[(S, B)],
    opts: &WriteOptions,
    progress: &dyn Fn(u64),
) -> Result<WriteSummary, WeightsError>
where
    S: AsRef<str>,
    B: AsRef<[u8]>,
{
    for s in specs {
        validate_spec(s)?;
    }
    // One tensor is generated at a time.
    if let Some(largest) = specs.iter().max_by_key(|s| s.numel().unwrap_or(0)) {
        let bytes = largest.numel().unwrap_or(0) as u64 * 2;
        crate::resources::check_host_memory(
            bytes,
            &format!("random tensor {} (bf16)", largest.name),
        )?;
    }
    let infos: Vec<TensorInfo> = specs.iter().map(TensorInfo::from).collect();
    write_hf_dir(
        dir,
        &infos,
        |i| {
            let values = random_tensor_bf16(seed, &specs[i])?;
            progress(2 * values.len() as u64);
            Ok(Cow::Owned(values))
        },
        files,
        opts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_file_names() {
        assert!(is_weight_file_name("model.safetensors"));
        assert!(is_weight_file_name("model.safetensors.index.json"));
        assert!(is_weight_file_name("model-00001-of-00002.safetensors"));
        assert!(!is_weight_file_name("model-x-of-2.safetensors"));
        assert!(!is_weight_file_name("config.json"));
    }

    #[test]
    fn hf_split() {
        assert_eq!(split_shards(&[4, 4, 4], 8), vec![vec![0, 1], vec![2]]);
        assert_eq!(split_shards(&[4, 20, 4], 8), vec![vec![1], vec![0, 2]]);
        assert_eq!(split_shards(&[], 8), vec![Vec::<usize>::new()]);
        assert_eq!(split_shards(&[8, 1], 8), vec![vec![0], vec![1]]);
    }
}
