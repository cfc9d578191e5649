//! The CPU kernels against naive formulas written index by index (mutation testing showed the
//! hand-sized kernel tests blind to off-by-a-factor index and scale mistakes): attention over
//! several sequences, query heads, kv heads, positions and a scale; rope over several tokens
//! and heads at offset positions; the products at decode and prefill row counts.

use super::kernels::{attention, bias_add, linear, rope, sgemm_checked};
use super::Tensor;

/// Deterministic values in [-1, 1).
fn values(n: usize, salt: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let x = (i.wrapping_add(salt << 32))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29)
                .wrapping_mul(0xBF58_476D_1CE4_E5B9);
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

#[test]
fn attention_matches_the_formula() {
    let (batch, seq, heads, kvh, d, ctx) = (2, 3, 4, 2, 3, 6);
    let q = Tensor::new(
        vec![batch, seq, heads, d],
        values(batch * seq * heads * d, 1),
    );
    let k = Tensor::new(vec![batch, ctx, kvh, d], values(batch * ctx * kvh * d, 2));
    let v = Tensor::new(vec![batch, ctx, kvh, d], values(batch * ctx * kvh * d, 3));
    // Sequence 0 at positions 1..4, sequence 1 at 3..6.
    let positions = [1., 2., 3., 3., 4., 5.];
    let scale = 0.7;
    let got = attention(&q, &k, &v, &positions, scale);
    let qi = |b: usize, s: usize, h: usize, e: usize| q.data[((b * seq + s) * heads + h) * d + e];
    let ki = |t: &Tensor, b: usize, j: usize, g: usize, e: usize| {
        t.data[((b * ctx + j) * kvh + g) * d + e]
    };
    let mut want = Vec::new();
    for b in 0..batch {
        for s in 0..seq {
            let p = positions[b * seq + s] as usize;
            for h in 0..heads {
                let g = h * kvh / heads;
                let scores: Vec<f64> = (0..=p)
                    .map(|j| {
                        scale
                            * (0..d)
                                .map(|e| qi(b, s, h, e) as f64 * ki(&k, b, j, g, e) as f64)
                                .sum::<f64>()
                    })
                    .collect();
                let top = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|x| (x - top).exp()).collect();
                let total: f64 = w.iter().sum();
                for e in 0..d {
                    want.push(
                        (0..=p)
                            .map(|j| w[j] / total * ki(&v, b, j, g, e) as f64)
                            .sum(),
                    );
                }
            }
        }
    }
    close(&got.data, &want, "attention");
}

#[test]
fn rope_matches_the_formula() {
    // Two sequences of three tokens (batch x seq, not batch + seq, rows).
    let (batch, seq, heads, d, theta) = (2, 3, 2, 8, 500.0f64);
    let tokens = batch * seq;
    let x = Tensor::new(vec![batch, seq, heads, d], values(tokens * heads * d, 4));
    let positions = [7., 11., 2., 0., 1., 30.];
    let got = rope(&x, &positions, &crate::ir::Rope::plain(theta));
    let mut want = vec![0f64; x.data.len()];
    for (s, &pos) in positions.iter().enumerate() {
        for h in 0..heads {
            for i in 0..d / 2 {
                let angle = pos as f64 / theta.powf(2.0 * i as f64 / d as f64);
                let at = |e: usize| (s * heads + h) * d + e;
                let (a, b) = (x.data[at(i)] as f64, x.data[at(i + d / 2)] as f64);
                want[at(i)] = a * angle.cos() - b * angle.sin();
                want[at(i + d / 2)] = b * angle.cos() + a * angle.sin();
            }
        }
    }
    close(&got.data, &want, "rope");
}

#[test]
fn linear_matches_the_formula_at_every_row_count() {
    let (n, k) = (67, 300);
    let w = Tensor::new(vec![n, k], values(n * k, 5));
    for m in [1, 3, 8, 9, 20] {
        let x = Tensor::new(vec![m, k], values(m * k, 6 + m as u64));
        let got = linear(&x, &w, vec![m, n]);
        let want: Vec<f64> = (0..m * n)
            .map(|o| {
                let (i, j) = (o / n, o % n);
                (0..k)
                    .map(|e| x.data[i * k + e] as f64 * w.data[j * k + e] as f64)
                    .sum()
            })
            .collect();
        close(&got.data, &want, &format!("linear, {m} rows"));
    }
}

#[test]
fn the_product_refuses_strides_past_its_slices() {
    let a = vec![1f32; 6];
    // 2x3 a, 3x2 b: fine with whole slices, refused one element short.
    assert!(sgemm_checked(2, 3, 2, &a, (3, 1), &a, (2, 1)).is_some());
    assert!(sgemm_checked(2, 3, 2, &a[..5], (3, 1), &a, (2, 1)).is_none());
    assert!(sgemm_checked(2, 3, 2, &a, (3, 1), &a[..5], (2, 1)).is_none());
    assert!(sgemm_checked(2, 3, 2, &a, (3, 1), &a, (2, 2)).is_none());
    assert_eq!(
        sgemm_checked(0, 3, 2, &[], (3, 1), &a, (2, 1)),
        Some(vec![])
    );
}

#[test]
fn attention_survives_scores_whose_exponent_overflows() {
    // Scores of about 900: exp() of them overflows f64, the softmax shifted by its max does not.
    let q = Tensor::new(vec![1, 1, 1, 2], vec![30.0, 0.0]);
    let k = Tensor::new(vec![1, 2, 1, 2], vec![30.0, 0.0, 29.0, 0.0]);
    let v = Tensor::new(vec![1, 2, 1, 2], vec![1.0, 0.0, 0.0, 1.0]);
    let got = attention(&q, &k, &v, &[1.0], 1.0);
    // Weights e^900 : e^870, i.e. 1 : e^-30.
    let w1 = (-30f64).exp() / (1.0 + (-30f64).exp());
    close(&got.data, &[1.0 - w1, w1], "attention at large scores");
}

#[test]
fn scaled_rope_uses_the_scaled_frequencies_and_the_attention_factor() {
    // YaRN: every frequency from the scaling, cos and sin times 0.1 ln(4) + 1.
    let scaling = pio_artifact::RopeScaling::from_json(&serde_json::json!(
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}
    ))
    .unwrap();
    let r = crate::ir::Rope {
        theta: 100.0,
        scaling,
    };
    let (heads, d) = (2, 8);
    let x = Tensor::new(vec![1, 2, heads, d], values(2 * heads * d, 7));
    let positions = [3., 40.];
    let got = rope(&x, &positions, &r);
    let freqs = crate::rope::inv_freq_f64(&r, d);
    let af = 0.1 * 4f64.ln() + 1.0;
    let mut want = vec![0f64; x.data.len()];
    for (s, &pos) in positions.iter().enumerate() {
        for h in 0..heads {
            for i in 0..d / 2 {
                let angle = pos as f64 * freqs[i];
                let at = |e: usize| (s * heads + h) * d + e;
                let (a, b) = (x.data[at(i)] as f64, x.data[at(i + d / 2)] as f64);
                want[at(i)] = af * (a * angle.cos() - b * angle.sin());
                want[at(i + d / 2)] = af * (b * angle.cos() + a * angle.sin());
            }
        }
    }
    close(&got.data, &want, "yarn rope");
}

#[test]
fn bias_add_adds_the_bias_to_every_row() {
    let (rows, n) = (3, 5);
    let x = Tensor::new(vec![1, rows, n], values(rows * n, 8));
    let b = Tensor::new(vec![n], values(n, 9));
    let got = bias_add(&x, &b);
    let want: Vec<f64> = (0..rows * n)
        .map(|e| x.data[e] as f64 + b.data[e % n] as f64)
        .collect();
    close(&got.data, &want, "bias_add");
}
