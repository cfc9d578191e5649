//! RoPE constants as HF transformers computes them; the tests hold a host replica of the
//! kernels' `sincos_accurate` (templates/common/pio.cuh), so that its constants are tested.

/// `1 / theta^(2i / d)` for `i < d / 2`, in f32 step by step as HF does it
/// (`1.0 / (base ** (arange(0, d, 2).float() / d))`).
pub fn inv_freq(theta: f64, d: usize) -> Vec<f32> {
    (0..d / 2)
        .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / d as f32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sin and cos of an f32 angle: the same operations as `sincos_accurate` in pio.cuh (the
    /// literals are the kernel's, digit for digit).
    #[allow(clippy::excessive_precision)]
    fn sincos_accurate(x: f32) -> (f32, f32) {
        let k = (x * std::f32::consts::FRAC_2_PI).round_ties_even();
        let mut r = (-k).mul_add(1.570_796_4, x);
        r = (-k).mul_add(-4.371_138_8e-8, r);
        r = (-k).mul_add(-1.715_124_5e-15, r);
        let z = r * r;
        let sr = (r * z).mul_add(
            z.mul_add(z.mul_add(-1.951_529_6e-4, 8.332_161e-3), -1.666_665_5e-1),
            r,
        );
        let cr = (z * z).mul_add(
            z.mul_add(z.mul_add(2.443_315_7e-5, -1.388_731_6e-3), 4.166_664_6e-2),
            (-0.5f32).mul_add(z, 1.0),
        );
        match (k as i64) & 3 {
            0 => (sr, cr),
            1 => (cr, -sr),
            2 => (-sr, -cr),
            _ => (-cr, sr),
        }
    }

    #[test]
    fn inv_freq_matches_hf_values() {
        let f = inv_freq(1e6, 128);
        assert_eq!(f.len(), 64);
        assert_eq!(f[0], 1.0);
        // 1e6^(-2/128) = 0.805842187..., rounded to f32.
        assert_eq!(f[1], 0.805_842_2);
        assert!((f[63] as f64 - 1.0 / 1e6f64.powf(126.0 / 128.0)).abs() < 1e-12);
    }

    #[test]
    fn sincos_is_accurate_over_long_contexts() {
        // Every angle a 40,960-token context reaches with Qwen3's frequencies, within 2 ulp of
        // f32 (abs. 2^-23 near zero) of the exact sine and cosine.
        let mut worst = 0.0f64;
        for theta in [1e6, 5e6] {
            for &f in &inv_freq(theta, 128) {
                for pos in (0..40_960).step_by(7) {
                    let x = pos as f32 * f;
                    let (s, c) = sincos_accurate(x);
                    let (es, ec) = (x as f64).sin_cos();
                    for (got, want) in [(s as f64, es), (c as f64, ec)] {
                        let ulp = (want.abs().max(1.0 / 64.0) as f32).to_bits();
                        let ulp = f32::from_bits(ulp + 1) as f64 - f32::from_bits(ulp) as f64;
                        worst = worst.max((got - want).abs() / ulp);
                    }
                }
            }
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }
}
