//! Weight targets: `safetensors` (a mutated `model.safetensors`) and `safetensors_index` (a
//! mutated `model.safetensors.index.json` over two fixed shards). An input opens (and then
//! every tensor reads back with the bytes its shape and dtype need) or fails with an error
//! that names the file or directory.

use std::path::Path;

use pio_runtime::weights::{WeightDir, WeightSpec, WeightsError};

use crate::mutate::{Mutator, Rng};
use crate::target::{Ctx, Target};

pub const SINGLE: Target = Target {
    name: "safetensors",
    input_file: "model.safetensors",
    max_len: 64 << 10,
    setup: |_| {},
    run: |ctx, bytes| {
        if let Some(what) = overlapping(bytes) {
            if WeightDir::open_with(&ctx.dir, &expected(), &["lm_head.weight"]).is_ok() {
                return Err(what.to_string());
            }
        }
        open(ctx)
    },
    mutate: Some(mutate_header),
    known: crate::target::none_known,
};

pub const INDEX: Target = Target {
    name: "safetensors_index",
    input_file: "model.safetensors.index.json",
    max_len: 64 << 10,
    setup: |dir| {
        std::fs::write(
            dir.join("model-00001-of-00002.safetensors"),
            file(&[("model.embed_tokens.weight", "BF16", &[4, 2])]),
        )
        .unwrap();
        std::fs::write(
            dir.join("model-00002-of-00002.safetensors"),
            file(&[
                ("model.norm.weight", "F32", &[2]),
                ("lm_head.weight", "BF16", &[4, 2]),
            ]),
        )
        .unwrap();
    },
    run: |ctx, _| open(ctx),
    mutate: None,
    known: crate::target::none_known,
};

/// The tensors the targets expect (the corpus files hold them).
pub fn expected() -> Vec<WeightSpec> {
    vec![
        WeightSpec::normal("model.embed_tokens.weight", vec![4, 2], 0.02),
        WeightSpec::ones("model.norm.weight", vec![2]),
    ]
}

fn dtype_size(name: &str) -> usize {
    match name {
        "F32" => 4,
        _ => 2,
    }
}

/// A safetensors file: header (tensors in order, data packed) then data of byte value i.
pub fn file(tensors: &[(&str, &str, &[usize])]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut at = 0;
    for (name, dtype, shape) in tensors {
        let n = shape.iter().product::<usize>() * dtype_size(dtype);
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + n]}),
        );
        at += n;
    }
    let h = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend((0..at).map(|i| (i % 251) as u8));
    out
}

/// A header whose tensors' data_offsets overlap (aliasing tensors) must be refused.
fn overlapping(bytes: &[u8]) -> Option<&'static str> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let ranges: Vec<(u64, u64)> = header
        .as_object()?
        .values()
        .filter_map(|e| {
            let o = e.get("data_offsets")?.as_array()?;
            Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?))
        })
        .filter(|(s, e)| s < e)
        .collect();
    let overlap = ranges
        .iter()
        .enumerate()
        .any(|(i, a)| ranges[i + 1..].iter().any(|b| a.0 < b.1 && b.0 < a.1));
    overlap.then_some("a header whose data_offsets overlap was accepted")
}

fn open(ctx: &Ctx) -> Result<(), String> {
    match WeightDir::open_with(&ctx.dir, &expected(), &["lm_head.weight"]) {
        Ok(wd) => {
            let mut spans: Vec<(usize, usize, String)> = Vec::new();
            for name in wd.names().map(str::to_string).collect::<Vec<_>>() {
                let (dtype, bytes) = wd.tensor_bytes(&name).map_err(|e| e.to_string())?;
                let shape = wd.shape(&name).unwrap().to_vec();
                let want = shape.iter().product::<usize>() * dtype.size();
                if bytes.len() != want {
                    return Err(format!(
                        "{name}: {} bytes for shape {shape:?} {dtype:?}",
                        bytes.len()
                    ));
                }
                let at = bytes.as_ptr() as usize;
                if let Some((_, _, other)) = spans
                    .iter()
                    .find(|(s, e, _)| !bytes.is_empty() && *s < at + bytes.len() && at < *e)
                {
                    return Err(format!("tensors {other} and {name} share bytes"));
                }
                spans.push((at, at + bytes.len(), name.clone()));
                let f = wd.tensor_f32(&name).map_err(|e| e.to_string())?;
                if f.len() != want / dtype.size() {
                    return Err(format!("{name}: {} f32 values", f.len()));
                }
            }
            Ok(())
        }
        Err(e) => names_file(&e, &ctx.dir),
    }
}

/// The message names the file involved (a corrupt file: that file; others: the directory).
pub fn names_file(e: &WeightsError, dir: &Path) -> Result<(), String> {
    let msg = e.to_string();
    let need = match e {
        WeightsError::Corrupt { path, .. }
        | WeightsError::BadIndex { path, .. }
        | WeightsError::Io { path, .. } => path.clone(),
        _ => dir.to_path_buf(),
    };
    if msg.contains(&need.display().to_string()) && msg.contains(&dir.display().to_string()) {
        Ok(())
    } else {
        Err(format!("the error does not name {}: {msg}", need.display()))
    }
}

/// Mutates the JSON header and rewrites the length prefix to fit (else a raw mutation).
fn mutate_header(m: &Mutator, rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let split = |b: &[u8]| -> Option<(Vec<u8>, Vec<u8>)> {
        let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
        let end = 8usize.checked_add(n)?;
        Some((b.get(8..end)?.to_vec(), b[end..].to_vec()))
    };
    let Some((header, data)) = split(input) else {
        return m.mutate(rng, input, other, 3);
    };
    let other_header = split(other).map(|(h, _)| h).unwrap_or_default();
    let header = m.mutate(rng, &header, &other_header, 3);
    let mut data = data;
    if rng.chance(20) {
        data.truncate(rng.below(data.len() + 1));
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    out
}
