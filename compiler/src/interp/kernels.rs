//! The CPU executor's kernels: one plain function per op. f32 storage; reductions (norms,
//! softmax, attention dot products) accumulate in f64.

use super::Tensor;

pub fn embed(table: &Tensor, ids: &[f32], shape: Vec<usize>) -> Tensor {
    let d = table.shape[1];
    let mut out = Vec::with_capacity(ids.len() * d);
    for &id in ids {
        let row = id as usize;
        out.extend_from_slice(&table.data[row * d..(row + 1) * d]);
    }
    Tensor::new(shape, out)
}

/// `embed` over rows `first..first + rows` of a larger table, `table` holding just those rows:
/// ids outside them give zero rows (one rank's part of a vocabulary-split embedding).
pub fn embed_rows(table: &Tensor, ids: &[f32], first: usize, shape: Vec<usize>) -> Tensor {
    let (rows, d) = (table.shape[0], table.shape[1]);
    let mut out = Vec::with_capacity(ids.len() * d);
    for &id in ids {
        match (id as usize).checked_sub(first).filter(|&r| r < rows) {
            Some(r) => out.extend_from_slice(&table.data[r * d..(r + 1) * d]),
            None => out.extend(std::iter::repeat_n(0.0, d)),
        }
    }
    Tensor::new(shape, out)
}

/// `x · wᵀ` with `w` stored `[n, k]`.
pub fn linear(x: &Tensor, w: &Tensor, shape: Vec<usize>) -> Tensor {
    let (n, k) = (w.shape[0], w.shape[1]);
    let m = x.data.len() / k;
    if m <= 8 {
        return Tensor::new(shape, linear_few_rows(&x.data, &w.data, m, n, k));
    }
    // x is m×k row-major; w (n×k row-major) read as its transpose k×n.
    Tensor::new(shape, sgemm(m, k, n, &x.data, (k, 1), &w.data, (1, k)))
}

/// `a · b` for an m×k `a` and a k×n `b` given by (row, column) strides; row-major m×n result.
fn sgemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
) -> Vec<f32> {
    sgemm_checked(m, k, n, a, a_strides, b, b_strides)
        .expect("the operands' strides stay inside their slices")
}

/// [`sgemm`], or None when a stride reaches past its slice.
pub(super) fn sgemm_checked(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_strides: (usize, usize),
    b: &[f32],
    b_strides: (usize, usize),
) -> Option<Vec<f32>> {
    let last =
        |(rs, cs): (usize, usize), rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    if m * k * n != 0 && (last(a_strides, m, k) >= a.len() || last(b_strides, k, n) >= b.len()) {
        return None;
    }
    let mut out = vec![0f32; m * n];
    // SAFETY: the check above keeps every element the strides reach inside `a` and `b`;
    // `out` is m×n row-major.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            a_strides.0 as isize,
            a_strides.1 as isize,
            b.as_ptr(),
            b_strides.0 as isize,
            b_strides.1 as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    Some(out)
}

/// Decode-sized products (a few rows of x): one dot product per weight row, the weight rows
/// split over threads. A general GEMM would first copy (pack) the whole weight matrix, which
/// doubles the memory traffic when x has one row.
fn linear_few_rows(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    // Threads only pay for themselves on large matrices (spawning costs tens of microseconds).
    let threads = if n * k < 1 << 20 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .min(16)
    };
    let rows_per = n.div_ceil(threads).max(64);
    let mut out_t = vec![0f32; n * m]; // [n, m]: each thread owns a block of weight rows
    let work = |chunk: &[f32], out: &mut [f32]| {
        for (wrow, o) in chunk.chunks(k).zip(out.chunks_mut(m)) {
            for (i, oi) in o.iter_mut().enumerate() {
                *oi = dot(&x[i * k..(i + 1) * k], wrow);
            }
        }
    };
    if threads == 1 {
        work(w, &mut out_t);
    } else {
        std::thread::scope(|s| {
            for (chunk, out) in w.chunks(rows_per * k).zip(out_t.chunks_mut(rows_per * m)) {
                s.spawn(move || work(chunk, out));
            }
        });
    }
    let mut out = vec![0f32; m * n];
    for j in 0..n {
        for i in 0..m {
            out[i * n + j] = out_t[j * m + i];
        }
    }
    out
}

/// A dot product with 8 independent accumulators (vectorizes well).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// `a · b` with `b` stored `[k, n]`.
pub fn matmul(a: &Tensor, b: &Tensor, shape: Vec<usize>) -> Tensor {
    let (k, n) = (b.shape[0], b.shape[1]);
    let m = a.data.len() / k;
    Tensor::new(shape, sgemm(m, k, n, &a.data, (k, 1), &b.data, (n, 1)))
}

/// RMSNorm over the last axis: `x * rsqrt(mean(x²) + eps) * w`.
pub fn rmsnorm(x: &Tensor, w: &Tensor, eps: f64) -> Tensor {
    let mut out = Vec::with_capacity(x.data.len());
    for row in x.rows() {
        let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / row.len() as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        out.extend(
            row.iter()
                .zip(&w.data)
                .map(|(&v, &g)| ((v as f64 * inv) as f32) * g),
        );
    }
    Tensor::new(x.shape.clone(), out)
}

/// Rotate-half (NeoX) rotary embedding of `[batch, seq, heads, d]` at the given positions
/// (`[batch, seq]`, row-major), with the frequencies of `rope` (its scaling included) and cos
/// and sin times its attention factor.
pub fn rope(x: &Tensor, positions: &[f32], rope: &crate::ir::Rope) -> Tensor {
    let (tokens, heads, d) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3]);
    let half = d / 2;
    let inv_freq = crate::rope::inv_freq_f64(rope, d);
    let scale = rope.scaling.attention_factor();
    let mut out = x.data.clone();
    for (s, &pos) in positions.iter().enumerate().take(tokens) {
        let pos = pos as f64;
        for h in 0..heads {
            let base = (s * heads + h) * d;
            for (i, f) in inv_freq.iter().enumerate() {
                let (sin, cos) = (pos * f).sin_cos();
                let (sin, cos) = (sin * scale, cos * scale);
                let (a, b) = (x.data[base + i] as f64, x.data[base + i + half] as f64);
                out[base + i] = (a * cos - b * sin) as f32;
                out[base + i + half] = (b * cos + a * sin) as f32;
            }
        }
    }
    Tensor::new(x.shape.clone(), out)
}

/// Causal GQA attention: query at position p of sequence b attends to rows 0..=p of b's cache.
/// q is `[batch, seq, heads, d]`, k and v `[batch, ctx, kv_heads, d]`, positions `[batch, seq]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, positions: &[f32], scale: f64) -> Tensor {
    let (batch, seq, heads, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    let (ctx, kv_heads) = (k.shape[1], k.shape[2]);
    let group = heads / kv_heads;
    let mut out = vec![0f32; q.data.len()];
    let mut scores = vec![0f64; ctx];
    for t in 0..batch * seq {
        let visible = (positions[t] as usize + 1).min(ctx);
        // This sequence's cache rows.
        let kv_rows = (t / seq) * ctx * kv_heads * d;
        let (k, v) = (&k.data[kv_rows..], &v.data[kv_rows..]);
        for h in 0..heads {
            let kvh = h / group;
            let qrow = &q.data[(t * heads + h) * d..][..d];
            let mut max = f64::NEG_INFINITY;
            for (j, score) in scores.iter_mut().enumerate().take(visible) {
                let krow = &k[(j * kv_heads + kvh) * d..][..d];
                let dot: f64 = qrow
                    .iter()
                    .zip(krow)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                *score = dot * scale;
                max = max.max(*score);
            }
            let mut total = 0.0;
            for score in scores.iter_mut().take(visible) {
                *score = (*score - max).exp();
                total += *score;
            }
            let orow = &mut out[(t * heads + h) * d..][..d];
            let mut acc = vec![0f64; d];
            for (j, &p) in scores.iter().enumerate().take(visible) {
                let vrow = &v[(j * kv_heads + kvh) * d..][..d];
                for (a, &x) in acc.iter_mut().zip(vrow) {
                    *a += p / total * x as f64;
                }
            }
            for (o, a) in orow.iter_mut().zip(acc) {
                *o = a as f32;
            }
        }
    }
    Tensor::new(q.shape.clone(), out)
}

/// Features `start..start + len` of the last axis.
pub fn slice(x: &Tensor, start: usize, len: usize, shape: Vec<usize>) -> Tensor {
    let width = *x.shape.last().expect("rank >= 1");
    let data = x
        .data
        .chunks(width)
        .flat_map(|row| &row[start..start + len])
        .copied()
        .collect();
    Tensor::new(shape, data)
}

pub fn map(x: &Tensor, f: impl Fn(f32) -> f32) -> Tensor {
    Tensor::new(x.shape.clone(), x.data.iter().map(|&v| f(v)).collect())
}

pub fn zip(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Tensor {
    Tensor::new(
        a.shape.clone(),
        a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect(),
    )
}

/// `x + b` with the bias `b` (`[n]`) added to every row of `x` (`[.., n]`).
pub fn bias_add(x: &Tensor, b: &Tensor) -> Tensor {
    let n = b.data.len();
    Tensor::new(
        x.shape.clone(),
        x.data
            .iter()
            .enumerate()
            .map(|(i, &v)| v + b.data[i % n])
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor::new(shape.to_vec(), data.to_vec())
    }

    #[test]
    fn linear_is_x_times_w_transposed() {
        let x = t(&[1, 2, 3], &[1., 2., 3., 4., 5., 6.]);
        let w = t(&[2, 3], &[1., 0., 0., 0., 1., 1.]);
        assert_eq!(linear(&x, &w, vec![1, 2, 2]).data, vec![1., 5., 4., 11.]);
    }

    #[test]
    fn few_rows_path_matches_gemm_path() {
        let (m, n, k) = (3, 70, 37);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let fast = linear_few_rows(&x, &w, m, n, k);
        let mut slow = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                slow[i * n + j] = (0..k).map(|l| x[i * k + l] * w[j * k + l]).sum();
            }
        }
        assert_eq!(fast, slow);
    }

    #[test]
    fn matmul_small() {
        let a = t(&[2, 2], &[1., 2., 3., 4.]);
        let b = t(&[2, 1], &[1., 1.]);
        assert_eq!(matmul(&a, &b, vec![2, 1]).data, vec![3., 7.]);
    }

    #[test]
    fn rmsnorm_unit_rows() {
        let x = t(&[1, 2], &[3., 4.]);
        let w = t(&[2], &[1., 2.]);
        let y = rmsnorm(&x, &w, 0.0);
        let r = (12.5f64).sqrt();
        assert!((y.data[0] as f64 - 3.0 / r).abs() < 1e-6);
        assert!((y.data[1] as f64 - 8.0 / r).abs() < 1e-6);
    }

    #[test]
    fn rope_at_position_zero_is_identity_and_preserves_norm() {
        let x = t(&[1, 2, 1, 4], &[1., 2., 3., 4., 1., 2., 3., 4.]);
        let y = rope(&x, &[0., 5.], &crate::ir::Rope::plain(10000.0));
        assert_eq!(&y.data[..4], &x.data[..4]);
        let n0: f32 = x.data[4..].iter().map(|v| v * v).sum();
        let n1: f32 = y.data[4..].iter().map(|v| v * v).sum();
        assert!((n0 - n1).abs() < 1e-4);
        // pair (0, 2) rotates by 5 rad at frequency 1
        let (s, c) = 5f64.sin_cos();
        assert!((y.data[4] as f64 - (1.0 * c - 3.0 * s)).abs() < 1e-5);
    }

    #[test]
    fn attention_is_causal_and_grouped() {
        // 2 query heads share 1 kv head; 2 positions; d = 1.
        let q = t(&[1, 2, 2, 1], &[1., 1., 1., 1.]);
        let k = t(&[1, 2, 1, 1], &[0., 0.]);
        let v = t(&[1, 2, 1, 1], &[2., 4.]);
        let y = attention(&q, &k, &v, &[0., 1.], 1.0);
        // position 0 sees only v0 = 2; position 1 averages 2 and 4 equally.
        assert_eq!(y.data, vec![2., 2., 3., 3.]);
    }

    #[test]
    fn rmsnorm_eps_counts_where_it_matters() {
        // mean(x^2) = 1e-6 = eps: the norm is 1 / sqrt(2e-6), not 1 / sqrt(1e-6).
        let x = t(&[1, 2], &[1e-3, -1e-3]);
        let w = t(&[2], &[1., 1.]);
        let y = rmsnorm(&x, &w, 1e-6);
        let want = 1e-3 / (2e-6f64).sqrt();
        assert!((y.data[0] as f64 - want).abs() < 1e-6, "{:?}", y.data);
        assert!((y.data[1] as f64 + want).abs() < 1e-6, "{:?}", y.data);
    }

    #[test]
    fn rope_pairs_rotate_at_theta_to_the_minus_2i_over_d() {
        // d = 4: pair (0, 2) at frequency 1, pair (1, 3) at 10000^(-2/4) = 0.01.
        let x = t(&[1, 1, 1, 4], &[1., 2., 3., 4.]);
        let y = rope(&x, &[5.], &crate::ir::Rope::plain(10000.0));
        let (s0, c0) = 5f64.sin_cos();
        let (s1, c1) = 0.05f64.sin_cos();
        let want = [
            1. * c0 - 3. * s0,
            2. * c1 - 4. * s1,
            3. * c0 + 1. * s0,
            4. * c1 + 2. * s1,
        ];
        for (got, want) in y.data.iter().zip(want) {
            assert!(
                (*got as f64 - want).abs() < 1e-6,
                "{:?} vs {want:?}",
                y.data
            );
        }
    }

    #[test]
    fn attention_maps_query_heads_to_kv_heads_in_blocks() {
        // 4 query heads over 2 kv heads: heads 0 and 1 read kv head 0, heads 2 and 3 kv head 1
        // (as HF's repeat_kv), not alternately.
        let q = t(&[1, 1, 4, 1], &[1., 1., 1., 1.]);
        let k = t(&[1, 1, 2, 1], &[0., 0.]);
        let v = t(&[1, 1, 2, 1], &[10., 20.]);
        let y = attention(&q, &k, &v, &[0.], 1.0);
        assert_eq!(y.data, vec![10., 10., 20., 20.]);
    }

    #[test]
    fn attention_reads_each_sequence_of_a_batch_from_its_own_cache() {
        // Two sequences, one query each (d = 1, one head): sequence 0 at position 0 sees only
        // its row 0 (v = 1); sequence 1 at position 1 averages its rows (v = 10, 30).
        let q = t(&[2, 1, 1, 1], &[1., 1.]);
        let k = t(&[2, 2, 1, 1], &[0., 0., 0., 0.]);
        let v = t(&[2, 2, 1, 1], &[1., 99., 10., 30.]);
        let y = attention(&q, &k, &v, &[0., 1.], 1.0);
        assert_eq!(y.data, vec![1., 20.]);
        // rope rotates each token of a batch at its own position.
        let x = t(&[2, 1, 1, 2], &[1., 0., 1., 0.]);
        let r = rope(&x, &[0., 1.], &crate::ir::Rope::plain(10000.0));
        assert_eq!(&r.data[..2], &[1., 0.]);
        assert!((r.data[2] as f64 - 1f64.cos()).abs() < 1e-6);
    }
}
