//! Opening a Hugging Face weight directory (`model.safetensors`, or shards listed in
//! `model.safetensors.index.json`), validating it against the expected tensors, and reading
//! tensors out of the memory-mapped files.

use pio_artifact::Shard;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::{WeightProblem, WeightsError};
use super::safetensors_file::MappedFile;
use super::spec::{DType, WeightSpec};

/// Name of the single-file checkpoint.
pub const SINGLE_FILE_NAME: &str = "model.safetensors";
/// Name of the shard index of a sharded checkpoint.
pub const INDEX_FILE_NAME: &str = "model.safetensors.index.json";

/// Where one validated tensor lives.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: DType,
    shape: Vec<usize>,
    range: std::ops::Range<usize>,
}

/// A validated, memory-mapped HF weight directory.
///
/// Every expected tensor is present with the expected shape and a float dtype (bf16, f16 or
/// f32), no unexpected tensor is stored, and every tensor's bytes lie inside its file; reading
/// a tensor can therefore not fail except by asking for a name that was not expected.
pub struct WeightDir {
    dir: PathBuf,
    files: Vec<MappedFile>,
    tensors: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for WeightDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeightDir")
            .field("dir", &self.dir)
            .field(
                "files",
                &self.files.iter().map(|m| &m.path).collect::<Vec<_>>(),
            )
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Is `name` a plain file name (no directory part, no `..`)?
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0')
        && Path::new(name).components().count() == 1
        && !Path::new(name).is_absolute()
}

/// Parsed `model.safetensors.index.json`: tensor name -> shard file name.
fn read_index(path: &Path, dir: &Path) -> Result<BTreeMap<String, String>, WeightsError> {
    let bad = |reason: String| WeightsError::BadIndex {
        path: path.to_path_buf(),
        reason,
    };
    let text = pio_artifact::read::read_bounded(path, pio_artifact::read::MAX_JSON_BYTES)
        .map_err(|e| WeightsError::io("cannot read", path, e))?;
    let json: Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no \"weight_map\" object".to_string()))?;
    let mut out = BTreeMap::new();
    let mut bad_names = BTreeSet::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map entry for {name} is not a string")))?;
        if !is_plain_file_name(file) {
            bad_names.insert(file.to_string());
        }
        out.insert(name.clone(), file.to_string());
    }
    if !bad_names.is_empty() {
        return Err(bad(format!(
            "shard names must be plain file names inside {}, found: {}",
            dir.display(),
            bad_names.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let shards: BTreeSet<&String> = out.values().collect();
    let missing: Vec<&str> = shards
        .iter()
        .filter(|f| !dir.join(f.as_str()).is_file())
        .map(|f| f.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "names shard file(s) that do not exist in {}: {}",
            dir.display(),
            missing.join(", ")
        )));
    }
    Ok(out)
}

impl WeightDir {
    /// Opens `dir` and validates it against `expected`; see [`WeightDir::open_with`].
    pub fn open(dir: &Path, expected: &[WeightSpec]) -> Result<WeightDir, WeightsError> {
        Self::open_with(dir, expected, &[])
    }

    /// Opens `dir`, memory-maps its safetensors file(s) and validates every header before any
    /// tensor data is read.
    ///
    /// Finds `model.safetensors` (preferred, as in HF transformers) or
    /// `model.safetensors.index.json`, whose `weight_map` maps each tensor to a shard file that
    /// must be a plain file name inside `dir` (symlinks, as in the HF cache, are fine).
    ///
    /// `ignored` lists tensor names that may be stored although the model does not use them,
    /// e.g. `&["lm_head.weight"]` for a checkpoint that stores the output projection of a model
    /// whose embeddings are tied: they are not reported as unexpected, their dtype and shape
    /// are not checked, and they are not exposed by [`WeightDir::names`] or the tensor
    /// accessors. A name both expected and ignored is expected.
    ///
    /// Errors: [`WeightsError::NoWeights`], [`WeightsError::BadIndex`] (bad JSON, missing
    /// shard, path escape), [`WeightsError::Corrupt`] naming a truncated or corrupt file, or a
    /// single [`WeightsError::Invalid`] listing every missing, unexpected, wrongly shaped or
    /// non-float tensor and every index/shard disagreement.
    pub fn open_with(
        dir: &Path,
        expected: &[WeightSpec],
        ignored: &[&str],
    ) -> Result<WeightDir, WeightsError> {
        let single = dir.join(SINGLE_FILE_NAME);
        let index_path = dir.join(INDEX_FILE_NAME);
        if single.is_file() && index_path.is_file() {
            return Err(WeightsError::AmbiguousLayout {
                dir: dir.to_path_buf(),
            });
        }
        let (file_names, index): (Vec<String>, Option<BTreeMap<String, String>>) =
            if single.is_file() {
                (vec![SINGLE_FILE_NAME.to_string()], None)
            } else if index_path.is_file() {
                let index = read_index(&index_path, dir)?;
                let shards: BTreeSet<String> = index.values().cloned().collect();
                (shards.into_iter().collect(), Some(index))
            } else if !dir.is_dir() {
                return Err(WeightsError::io(
                    "cannot open weights directory",
                    dir,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
                ));
            } else {
                return Err(WeightsError::NoWeights {
                    dir: dir.to_path_buf(),
                });
            };

        let files = file_names
            .iter()
            .map(|f| MappedFile::open(&dir.join(f)))
            .collect::<Result<Vec<_>, _>>()?;

        let mut problems = Vec::new();
        // Tensors as stored, by name: (file index, position in that file's list).
        let mut found: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut absent_from_shard: HashSet<&str> = HashSet::new();
        for (fi, mf) in files.iter().enumerate() {
            for (ti, t) in mf.tensors.iter().enumerate() {
                if let Some(index) = &index {
                    match index.get(&t.name) {
                        Some(f) if *f == file_names[fi] => {}
                        other => {
                            problems.push(WeightProblem::NotInIndex {
                                name: t.name.clone(),
                                file: mf.path.clone(),
                                indexed_file: other.cloned(),
                            });
                            continue;
                        }
                    }
                }
                found.insert(t.name.as_str(), (fi, ti));
            }
        }
        if let Some(index) = &index {
            for (name, file) in index {
                if !found.contains_key(name.as_str()) {
                    problems.push(WeightProblem::AbsentFromShard {
                        name: name.clone(),
                        file: dir.join(file),
                    });
                    absent_from_shard.insert(name.as_str());
                }
            }
        }

        let mut tensors = BTreeMap::new();
        let mut expected_names: HashSet<&str> = HashSet::new();
        for spec in expected {
            if !expected_names.insert(spec.name.as_str()) {
                problems.push(WeightProblem::DuplicateExpected {
                    name: spec.name.clone(),
                });
                continue;
            }
            let Some(&(fi, ti)) = found.get(spec.name.as_str()) else {
                if !absent_from_shard.contains(spec.name.as_str()) {
                    problems.push(WeightProblem::Missing {
                        name: spec.name.clone(),
                        shape: spec.shape.clone(),
                    });
                }
                continue;
            };
            let t = &files[fi].tensors[ti];
            let dtype = DType::from_safetensors_name(&t.dtype);
            if dtype.is_none() {
                problems.push(WeightProblem::WrongDType {
                    name: t.name.clone(),
                    dtype: t.dtype.clone(),
                    file: files[fi].path.clone(),
                });
            }
            if t.shape != spec.shape {
                problems.push(WeightProblem::WrongShape {
                    name: t.name.clone(),
                    expected: spec.shape.clone(),
                    found: t.shape.clone(),
                });
            }
            if let (Some(dtype), true) = (dtype, t.shape == spec.shape) {
                tensors.insert(
                    t.name.clone(),
                    Entry {
                        file: fi,
                        dtype,
                        shape: t.shape.clone(),
                        range: t.range.clone(),
                    },
                );
            }
        }
        let mut unexpected: Vec<WeightProblem> = found
            .iter()
            .filter(|(name, _)| !expected_names.contains(*name) && !ignored.contains(name))
            .map(|(_, &(fi, ti))| {
                let t = &files[fi].tensors[ti];
                WeightProblem::Unexpected {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    file: files[fi].path.clone(),
                }
            })
            .collect();
        unexpected.sort_by(|a, b| match (a, b) {
            (
                WeightProblem::Unexpected { name: x, .. },
                WeightProblem::Unexpected { name: y, .. },
            ) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
        problems.extend(unexpected);

        if !problems.is_empty() {
            return Err(WeightsError::Invalid {
                dir: dir.to_path_buf(),
                problems,
            });
        }
        Ok(WeightDir {
            dir: dir.to_path_buf(),
            files,
            tensors,
        })
    }

    /// The directory this was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Paths of the safetensors files mapped (one, or every shard).
    pub fn files(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path.as_path()).collect()
    }

    /// Names of the available tensors (the expected ones), in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.tensors.keys().map(String::as_str)
    }

    /// Shape of tensor `name`, if available.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.shape.as_slice())
    }

    /// Stored dtype of tensor `name`, if available.
    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.tensors.get(name).map(|e| e.dtype)
    }

    /// Total bytes of tensor data available (the expected tensors, as stored).
    pub fn total_bytes(&self) -> u64 {
        self.tensors
            .values()
            .map(|e| (e.range.end - e.range.start) as u64)
            .sum()
    }

    fn entry(&self, name: &str) -> Result<&Entry, WeightsError> {
        self.tensors
            .get(name)
            .ok_or_else(|| WeightsError::UnknownTensor {
                name: name.to_string(),
                dir: self.dir.clone(),
            })
    }

    /// Raw little-endian bytes of tensor `name` as stored, with their dtype (zero-copy, from
    /// the memory map; for uploading to the GPU).
    pub fn tensor_bytes(&self, name: &str) -> Result<(DType, &[u8]), WeightsError> {
        let e = self.entry(name)?;
        Ok((e.dtype, &self.files[e.file].mmap[e.range.clone()]))
    }

    /// Tensor `name` converted to f32 (exact for bf16 and f16), row-major.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>, WeightsError> {
        let (dtype, bytes) = self.tensor_bytes(name)?;
        Ok(widen(dtype, bytes))
    }

    /// Rank `rank` of `ranks`'s part of tensor `name` as `shard` cuts it, as stored: the bytes
    /// of its rows (one range of the memory map) or of its columns (one range per row), never
    /// the whole tensor.
    pub fn tensor_part_bytes(
        &self,
        name: &str,
        shard: &Shard,
        ranks: usize,
        rank: usize,
    ) -> Result<(DType, Vec<u8>), WeightsError> {
        let (dtype, bytes) = self.tensor_bytes(name)?;
        let shape = self.entry(name)?.shape.clone();
        let bad = |reason: String| WeightsError::BadPart {
            name: name.to_string(),
            shape: shape.clone(),
            shard: *shard,
            ranks,
            rank,
            reason,
        };
        let runs = shard
            .runs(&shape, ranks, rank, dtype.size())
            .map_err(|e| bad(e.to_string()))?;
        let mut part = Vec::with_capacity(runs.iter().map(|r| r.len()).sum());
        for r in runs {
            part.extend_from_slice(&bytes[r]);
        }
        Ok((dtype, part))
    }

    /// [`Self::tensor_part_bytes`] converted to f32.
    pub fn tensor_part_f32(
        &self,
        name: &str,
        shard: &Shard,
        ranks: usize,
        rank: usize,
    ) -> Result<Vec<f32>, WeightsError> {
        let (dtype, bytes) = self.tensor_part_bytes(name, shard, ranks, rank)?;
        Ok(widen(dtype, &bytes))
    }
}

/// Little-endian stored values as f32 (exact for bf16 and f16).
fn widen(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect(),
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}
