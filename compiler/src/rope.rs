//! RoPE frequencies from a [`Rope`] (base and scaling), in two independent forms:
//! - [`inv_freq_f32`]: HF transformers' arithmetic, f32 step by step as its tensors compute it
//!   (`modeling_rope_utils.py`); the kernels' constant tables are these values.
//! - [`inv_freq_f64`]: the same formulas in f64, what the CPU executor (the oracle) uses.
//!
//! The decisions transformers makes in Python floats (YaRN's correction range, the llama3
//! wavelength bands) are made in f64 in both.

use pio_artifact::{Rope, RopeScaling, Yarn};

/// `1 / theta^(2i / d)` for `i < d / 2`, then the scaling, in f32 as HF computes it.
pub fn inv_freq_f32(rope: &Rope, d: usize) -> Vec<f32> {
    // HF: `base ** (arange(0, dim, 2).float() / dim)`: the exponent rounded to f32, the power
    // in f32, its reciprocal.
    let pos_freqs: Vec<f32> = (0..d / 2)
        .map(|i| (rope.theta as f32).powf((2 * i) as f32 / d as f32))
        .collect();
    let plain: Vec<f32> = pos_freqs.iter().map(|&p| 1.0f32 / p).collect();
    match rope.scaling {
        RopeScaling::Default => plain,
        RopeScaling::Linear { factor } => plain.iter().map(|&f| f / factor as f32).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => {
            let low_wavelen = (old / low_freq_factor) as f32;
            let high_wavelen = (old / high_freq_factor) as f32;
            let factor32 = factor as f32;
            plain
                .iter()
                .map(|&f| {
                    // `2 * math.pi / inv_freq`: a scalar over a tensor is its reciprocal times
                    // the scalar in torch.
                    let wavelen = (1.0f32 / f) * (2.0 * std::f64::consts::PI) as f32;
                    let scaled = if wavelen > low_wavelen {
                        f / factor32
                    } else {
                        f
                    };
                    // HF: `~(wavelen < high) * ~(wavelen > low)` (no NaN here).
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    if !medium {
                        return scaled;
                    }
                    let smooth = ((1.0f32 / wavelen) * old as f32 - low_freq_factor as f32)
                        / (high_freq_factor - low_freq_factor) as f32;
                    (1.0 - smooth) * scaled / factor32 + smooth * scaled
                })
                .collect()
        }
        RopeScaling::Yarn(y) => {
            let (low, high) = yarn_range(rope.theta, d, &y);
            let span = if low == high {
                high + 0.001 - low
            } else {
                high - low
            };
            pos_freqs
                .iter()
                .enumerate()
                .map(|(i, &p)| {
                    let extrapolation = 1.0f32 / p;
                    let interpolation = 1.0f32 / (y.factor as f32 * p);
                    let ramp = ((i as f32 - low as f32) / span as f32).clamp(0.0, 1.0);
                    let extra = 1.0f32 - ramp;
                    interpolation * (1.0 - extra) + extrapolation * extra
                })
                .collect()
        }
    }
}

/// The same frequencies in f64 (the CPU executor's).
pub fn inv_freq_f64(rope: &Rope, d: usize) -> Vec<f64> {
    let plain: Vec<f64> = (0..d / 2)
        .map(|i| rope.theta.powf(-(2.0 * i as f64) / d as f64))
        .collect();
    match rope.scaling {
        RopeScaling::Default => plain,
        RopeScaling::Linear { factor } => plain.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old,
        } => plain
            .iter()
            .map(|&f| {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen < old / high_freq_factor {
                    f
                } else if wavelen > old / low_freq_factor {
                    f / factor
                } else {
                    let smooth =
                        (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            })
            .collect(),
        RopeScaling::Yarn(y) => {
            let (low, high) = yarn_range(rope.theta, d, &y);
            let span = if low == high { 0.001 } else { high - low };
            plain
                .iter()
                .enumerate()
                .map(|(i, &f)| {
                    let ramp = ((i as f64 - low) / span).clamp(0.0, 1.0);
                    f / y.factor * ramp + f * (1.0 - ramp)
                })
                .collect()
        }
    }
}

/// What cos and sin are multiplied by (YaRN's attention factor), as the kernels use it.
pub fn attention_factor_f32(rope: &Rope) -> f32 {
    rope.scaling.attention_factor() as f32
}

/// YaRN's correction range: the dimensions between which the ramp runs, from the number of
/// rotations `beta_fast` and `beta_slow` make over the pretrained context (f64, as Python
/// computes it; rounded outwards to whole dimensions unless `truncate` is false).
fn yarn_range(theta: f64, d: usize, y: &Yarn) -> (f64, f64) {
    // Without original_max_position_embeddings transformers uses max_position_embeddings;
    // lowering fills it in (`with_context`), so here it is always set.
    let context = y.original_max_position_embeddings.unwrap_or(1.0);
    let correction_dim = |rotations: f64| {
        (d as f64 * (context / (rotations * 2.0 * std::f64::consts::PI)).ln()) / (2.0 * theta.ln())
    };
    let (mut low, mut high) = (
        correction_dim(y.beta_fast.unwrap_or(32.0)),
        correction_dim(y.beta_slow.unwrap_or(1.0)),
    );
    if y.truncate.unwrap_or(true) {
        low = low.floor();
        high = high.ceil();
    }
    (low.max(0.0), high.min(d as f64 - 1.0))
}

/// Whether a scaling needs the model's `max_position_embeddings` (YaRN without its own
/// `original_max_position_embeddings`).
pub fn needs_context(scaling: &RopeScaling) -> bool {
    matches!(scaling, RopeScaling::Yarn(y) if y.original_max_position_embeddings.is_none())
}

/// The scaling with YaRN's pretrained context named: `max_position_embeddings` where the config
/// leaves `original_max_position_embeddings` out (as transformers does).
pub fn with_context(mut scaling: RopeScaling, max_position_embeddings: usize) -> RopeScaling {
    if let RopeScaling::Yarn(y) = &mut scaling {
        y.original_max_position_embeddings
            .get_or_insert(max_position_embeddings as f64);
    }
    scaling
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scaled(theta: f64, v: serde_json::Value) -> Rope {
        Rope {
            theta,
            scaling: RopeScaling::from_json(&v).unwrap(),
        }
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    #[test]
    fn f32_and_f64_agree_for_every_scaling() {
        let ropes = [
            Rope::plain(1e6),
            scaled(1e4, json!({"rope_type": "linear", "factor": 4.0})),
            scaled(
                5e5,
                json!({"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
            ),
            scaled(
                1e6,
                json!({"rope_type": "yarn", "factor": 4.0,
                               "original_max_position_embeddings": 32768}),
            ),
            scaled(
                1e4,
                json!({"rope_type": "yarn", "factor": 8.0, "beta_fast": 16.0,
                               "original_max_position_embeddings": 64, "truncate": false}),
            ),
        ];
        for rope in ropes {
            for d in [32, 64, 128] {
                let (a, b) = (inv_freq_f32(&rope, d), inv_freq_f64(&rope, d));
                for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
                    assert!(rel(x as f64, y) < 4e-6, "{rope} d={d} i={i}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn llama3_keeps_high_divides_low_blends_between() {
        let rope = scaled(
            5e5,
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        );
        let plain = inv_freq_f64(&Rope::plain(5e5), 128);
        let f = inv_freq_f64(&rope, 128);
        let two_pi = 2.0 * std::f64::consts::PI;
        let (mut kept, mut divided, mut blended) = (0, 0, 0);
        for (p, s) in plain.iter().zip(&f) {
            let wavelen = two_pi / p;
            if wavelen < 2048.0 {
                assert_eq!(s, p);
                kept += 1;
            } else if wavelen > 8192.0 {
                assert!(rel(*s, p / 8.0) < 1e-15);
                divided += 1;
            } else {
                assert!(*s < *p && *s > p / 8.0);
                blended += 1;
            }
        }
        assert!(
            kept > 0 && divided > 0 && blended > 0,
            "{kept} {divided} {blended}"
        );
    }

    #[test]
    fn yarn_interpolates_low_extrapolates_high() {
        let rope = scaled(
            1e6,
            json!({"rope_type": "yarn", "factor": 4.0,
                                      "original_max_position_embeddings": 32768}),
        );
        let plain = inv_freq_f64(&Rope::plain(1e6), 128);
        let f = inv_freq_f64(&rope, 128);
        // Dimension 0 rotates fastest: extrapolated (unchanged); the last, slowest: divided.
        assert_eq!(f[0], plain[0]);
        assert!(rel(f[63], plain[63] / 4.0) < 1e-15);
        // The correction range for theta 1e6, d 128, context 32768: floor(23.6)..ceil(39.7).
        let y = match rope.scaling {
            RopeScaling::Yarn(y) => y,
            _ => unreachable!(),
        };
        assert_eq!(yarn_range(1e6, 128, &y), (23.0, 40.0));
        assert_eq!(f[23], plain[23]);
        assert!(rel(f[40], plain[40] / 4.0) < 1e-15);
    }

    #[test]
    fn plain_rope_is_the_default() {
        let f = inv_freq_f32(&Rope::plain(1e6), 128);
        assert_eq!(f[0], 1.0);
        assert_eq!(f[1], 0.805_842_2);
        let linear = scaled(1e6, json!({"rope_type": "linear", "factor": 2.0}));
        assert_eq!(inv_freq_f32(&linear, 128)[1], 0.805_842_2 / 2.0);
    }

    #[test]
    fn yarn_context_defaults_to_max_positions() {
        let bare = scaled(1e6, json!({"rope_type": "yarn", "factor": 2.0})).scaling;
        assert!(needs_context(&bare));
        assert!(matches!(with_context(bare, 4096), RopeScaling::Yarn(y)
            if y.original_max_position_embeddings == Some(4096.0)));
        let given = scaled(
            1e6,
            json!({"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 100}),
        )
        .scaling;
        assert!(!needs_context(&given));
        assert!(matches!(with_context(given, 4096), RopeScaling::Yarn(y)
            if y.original_max_position_embeddings == Some(100.0)));
    }
}
