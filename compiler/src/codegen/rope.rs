//! The kernels' RoPE arithmetic: the tests run a host replica of `sincos_accurate` with the
//! constants read out of templates/common/pio.cuh itself, so that the kernel's own literals are
//! what is tested. The frequencies are `crate::rope`'s.

#[cfg(test)]
mod tests {
    use crate::ir::Rope;

    fn inv_freq(theta: f64, d: usize) -> Vec<f32> {
        crate::rope::inv_freq_f32(&Rope::plain(theta), d)
    }

    /// The float literals of `sincos_accurate` in the CUDA header, in source order.
    fn kernel_constants() -> Vec<f32> {
        let src = include_str!("../../../templates/common/pio.cuh");
        let start = src
            .find("void sincos_accurate(")
            .expect("pio.cuh defines sincos_accurate");
        let end = start + src[start..].find("\n}\n").expect("the function ends");
        let body = &src[start..end];
        let mut out = Vec::new();
        let mut run = String::new();
        for ch in body.chars() {
            if ch.is_ascii_digit() || matches!(ch, '.' | 'e' | 'E' | '+' | '-') {
                run.push(ch);
                continue;
            }
            if ch == 'f' && run.contains('.') {
                out.push(run.parse::<f32>().expect("a float literal"));
            }
            run.clear();
        }
        out
    }

    /// sin and cos of an f32 angle: the operations of `sincos_accurate` in pio.cuh, with its
    /// constants (2/pi, the three parts of pi/2, the sine and cosine polynomials, -0.5, 1).
    fn sincos_accurate(x: f32) -> (f32, f32) {
        thread_local! {
            static K: Vec<f32> = kernel_constants();
        }
        let c = K.with(|k| k.clone());
        let k = (x * c[0]).round_ties_even();
        let mut r = (-k).mul_add(c[1], x);
        r = (-k).mul_add(c[2], r);
        r = (-k).mul_add(c[3], r);
        let z = r * r;
        let sr = (r * z).mul_add(z.mul_add(z.mul_add(c[4], c[5]), c[6]), r);
        let cr = (z * z).mul_add(
            z.mul_add(z.mul_add(c[7], c[8]), c[9]),
            c[10].mul_add(z, c[11]),
        );
        match (k as i64) & 3 {
            0 => (sr, cr),
            1 => (cr, -sr),
            2 => (-sr, -cr),
            _ => (-cr, sr),
        }
    }

    #[test]
    fn the_kernel_constants_are_found() {
        let c = kernel_constants();
        assert_eq!(c.len(), 12, "{c:?}");
        assert_eq!(c[0], std::f32::consts::FRAC_2_PI);
        assert_eq!(c[1], std::f32::consts::FRAC_PI_2);
        assert_eq!((c[10], c[11]), (-0.5, 1.0));
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
