//! Deterministic test weights and the error measure shared by the executor-level tests
//! (`pipeline.rs`, `tensor_parallel.rs`).

/// Pseudo-random weights (a hash of name and index), norm weights near 1 but not all ones, so
/// that a norm weight applied twice or not at all shows.
pub fn load(name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
    let n: usize = shape.iter().product();
    if name.contains("norm") {
        return Ok((0..n).map(|i| 1.0 + 0.1 * ((i % 7) as f32 - 3.0)).collect());
    }
    let mut h = 0xcbf29ce484222325u64;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    Ok((0..n)
        .map(|i| {
            let mut x = h ^ (i as u64).wrapping_mul(0x9E3779B97F4A7C15);
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51afd7ed558ccd);
            x ^= x >> 33;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.08
        })
        .collect())
}

/// `|a - b| / |b|` (L2 norms, in f64).
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}
