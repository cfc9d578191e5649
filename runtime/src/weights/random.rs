//! Deterministic random weights of the real shapes.
//!
//! # Algorithm (stable; other tools may reproduce it)
//!
//! 1. Per-tensor seed: `s = fnv1a64(seed.to_le_bytes() ++ name.as_bytes())`, with FNV-1a 64
//!    (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`). It depends only on the global
//!    seed and the tensor's name, never on the order tensors are generated in.
//! 2. The tensor's elements (row-major) are split into chunks of [`RANDOM_CHUNK`] elements;
//!    chunk `c` is drawn from `ChaCha8Rng::seed_from_u64(s)` switched to stream `c`
//!    (`set_stream(c)`), so chunks can be generated in parallel with identical results.
//! 3. [`WeightInit::Normal`]: each element is `std * z` with `z` a `StandardNormal` `f32`
//!    sample (rand_distr's ziggurat), rounded to bf16 (round to nearest even).
//!    [`WeightInit::Ones`]: every element is 1.0.
//!
//! [`random_tensor_f32`] returns exactly the bf16 values widened to f32, so running with random
//! f32 weights equals loading a directory written from [`random_tensor_bf16`].

use half::bf16;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::error::WeightsError;
use super::spec::{WeightInit, WeightSpec};

/// Elements per independently seeded ChaCha8 stream (2^16).
pub const RANDOM_CHUNK: usize = 1 << 16;

/// Upper bound on generator threads.
const MAX_THREADS: usize = 16;

/// FNV-1a 64-bit hash of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Per-tensor seed: FNV-1a 64 of the global seed's 8 little-endian bytes followed by the
/// tensor name's UTF-8 bytes.
pub fn tensor_seed(seed: u64, name: &str) -> u64 {
    let mut bytes = Vec::with_capacity(8 + name.len());
    bytes.extend_from_slice(&seed.to_le_bytes());
    bytes.extend_from_slice(name.as_bytes());
    fnv1a64(&bytes)
}

/// Checks that `spec` can be generated: element count fits `usize` (and its bf16 byte size
/// fits too) and a normal's `std` is finite and non-negative.
pub fn validate_spec(spec: &WeightSpec) -> Result<(), WeightsError> {
    let bad = |reason: String| WeightsError::BadSpec {
        name: spec.name.clone(),
        reason,
    };
    if spec.numel().and_then(|n| n.checked_mul(4)).is_none() {
        return Err(bad(format!(
            "element count of shape {:?} overflows",
            spec.shape
        )));
    }
    if let WeightInit::Normal { std } = spec.init {
        if !std.is_finite() || std < 0.0 {
            return Err(bad(format!("std must be finite and >= 0, got {std}")));
        }
    }
    Ok(())
}

/// Number of generator threads: the machine's parallelism, at least 2, at most 16.
fn thread_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, MAX_THREADS)
}

/// Fills `out` with the tensor's values, converted by `conv`, in parallel over chunks.
fn fill<T: Send + Copy>(seed: u64, spec: &WeightSpec, out: &mut [T], conv: fn(bf16) -> T) {
    let std = match spec.init {
        WeightInit::Ones => {
            out.fill(conv(bf16::ONE));
            return;
        }
        WeightInit::Normal { std } => std,
    };
    let s = tensor_seed(seed, &spec.name);
    let fill_chunk = |c: usize, chunk: &mut [T]| {
        let mut rng = ChaCha8Rng::seed_from_u64(s);
        rng.set_stream(c as u64);
        for v in chunk.iter_mut() {
            let z: f32 = rng.sample(StandardNormal);
            *v = conv(bf16::from_f32(std * z));
        }
    };
    let n_chunks = out.len().div_ceil(RANDOM_CHUNK);
    let threads = thread_count().min(n_chunks);
    if threads <= 1 {
        for (c, chunk) in out.chunks_mut(RANDOM_CHUNK).enumerate() {
            fill_chunk(c, chunk);
        }
        return;
    }
    // Contiguous runs of whole chunks per thread.
    let per_thread = n_chunks.div_ceil(threads) * RANDOM_CHUNK;
    std::thread::scope(|scope| {
        for (t, part) in out.chunks_mut(per_thread).enumerate() {
            let first = t * per_thread / RANDOM_CHUNK;
            let fill_chunk = &fill_chunk;
            scope.spawn(move || {
                for (c, chunk) in part.chunks_mut(RANDOM_CHUNK).enumerate() {
                    fill_chunk(first + c, chunk);
                }
            });
        }
    });
}

/// A zeroed vector of `n` values, or an error naming the tensor and the bytes it needs when
/// the allocator cannot provide them (instead of aborting the process).
fn alloc_values<T: Clone>(spec: &WeightSpec, n: usize, zero: T) -> Result<Vec<T>, WeightsError> {
    let mut out = Vec::new();
    out.try_reserve_exact(n)
        .map_err(|_| crate::resources::NotEnough {
            resource: "host memory".into(),
            what: format!("random tensor {}", spec.name),
            needed: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
            available: crate::resources::host_memory_available().unwrap_or(0),
        })?;
    out.resize(n, zero);
    Ok(out)
}

/// Random bf16 values for `spec`, deterministic per `(seed, spec.name)` (see the module docs
/// for the exact algorithm). Generated on several threads.
///
/// Errors when [`validate_spec`] rejects `spec` (shape overflow, negative or non-finite std)
/// or the values do not fit in memory.
pub fn random_tensor_bf16(seed: u64, spec: &WeightSpec) -> Result<Vec<bf16>, WeightsError> {
    validate_spec(spec)?;
    let mut out = alloc_values(spec, spec.numel().unwrap_or(0), bf16::ZERO)?;
    fill(seed, spec, &mut out, |v| v);
    Ok(out)
}

/// The values of [`random_tensor_bf16`] widened to f32 (exactly); the same errors.
pub fn random_tensor_f32(seed: u64, spec: &WeightSpec) -> Result<Vec<f32>, WeightsError> {
    validate_spec(spec)?;
    let mut out = alloc_values(spec, spec.numel().unwrap_or(0), 0.0f32)?;
    fill(seed, spec, &mut out, bf16::to_f32);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn parallel_equals_sequential() {
        let spec = WeightSpec::normal("w", vec![5, RANDOM_CHUNK + 17], 0.02);
        let par = random_tensor_bf16(7, &spec).unwrap();
        let s = tensor_seed(7, "w");
        let mut seq = Vec::new();
        for (c, chunk) in par.chunks(RANDOM_CHUNK).enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(s);
            rng.set_stream(c as u64);
            for _ in 0..chunk.len() {
                let z: f32 = rng.sample(StandardNormal);
                seq.push(bf16::from_f32(0.02 * z));
            }
        }
        assert_eq!(par, seq);
    }
}
