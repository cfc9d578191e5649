//! Determinism and statistics of the random weights.

use pio_runtime::weights::{
    random_tensor_bf16, random_tensor_f32, tensor_seed, WeightSpec, RANDOM_CHUNK,
};

#[test]
fn same_seed_same_values() {
    let s = WeightSpec::normal("model.layers.0.mlp.up_proj.weight", vec![300, 700], 0.02);
    assert_eq!(
        random_tensor_bf16(1, &s).unwrap(),
        random_tensor_bf16(1, &s).unwrap()
    );
    assert_ne!(
        random_tensor_bf16(1, &s).unwrap(),
        random_tensor_bf16(2, &s).unwrap()
    );
}

#[test]
fn different_names_different_values() {
    let a = WeightSpec::normal("model.layers.0.mlp.up_proj.weight", vec![64, 64], 0.02);
    let b = WeightSpec::normal("model.layers.1.mlp.up_proj.weight", vec![64, 64], 0.02);
    let (va, vb) = (
        random_tensor_bf16(5, &a).unwrap(),
        random_tensor_bf16(5, &b).unwrap(),
    );
    let equal = va.iter().zip(&vb).filter(|(x, y)| x == y).count();
    assert!(equal < va.len() / 20, "{equal} equal elements");
    assert_ne!(tensor_seed(5, &a.name), tensor_seed(5, &b.name));
}

#[test]
fn order_and_shape_prefix_independent() {
    let a = WeightSpec::normal("a", vec![1000], 0.02);
    let b = WeightSpec::normal("b", vec![1000], 0.02);
    let ab = (
        random_tensor_bf16(3, &a).unwrap(),
        random_tensor_bf16(3, &b).unwrap(),
    );
    let ba_b = random_tensor_bf16(3, &b).unwrap();
    let ba_a = random_tensor_bf16(3, &a).unwrap();
    assert_eq!(ab, (ba_a, ba_b));
    // Chunks are independent streams: a larger tensor of the same name starts the same way,
    // whatever the thread split.
    let big = WeightSpec::normal("a", vec![3 * RANDOM_CHUNK + 5], 0.02);
    let bigger = WeightSpec::normal("a", vec![7 * RANDOM_CHUNK + 1], 0.02);
    let (x, y) = (
        random_tensor_bf16(3, &big).unwrap(),
        random_tensor_bf16(3, &bigger).unwrap(),
    );
    assert_eq!(x[..1000], ab.0[..]);
    assert_eq!(x[..3 * RANDOM_CHUNK], y[..3 * RANDOM_CHUNK]);
}

#[test]
fn normal_statistics() {
    let s = WeightSpec::normal("w", vec![1024, 1024], 0.02);
    let v = random_tensor_f32(11, &s).unwrap();
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 1e-4, "mean {mean}");
    assert!((var.sqrt() - 0.02).abs() < 2e-4, "std {}", var.sqrt());
    // About 68% within one std, 95% within two.
    let within1 = v.iter().filter(|x| x.abs() < 0.02).count() as f64 / n;
    let within2 = v.iter().filter(|x| x.abs() < 0.04).count() as f64 / n;
    assert!((within1 - 0.6827).abs() < 0.01, "{within1}");
    assert!((within2 - 0.9545).abs() < 0.01, "{within2}");
}

#[test]
fn ones_and_f32_widening() {
    let o = WeightSpec::ones("model.norm.weight", vec![1024]);
    assert!(random_tensor_bf16(1, &o)
        .unwrap()
        .iter()
        .all(|x| x.to_f32() == 1.0));
    assert!(random_tensor_f32(1, &o).unwrap().iter().all(|&x| x == 1.0));
    let s = WeightSpec::normal("w", vec![RANDOM_CHUNK * 2 + 3], 0.02);
    let widened: Vec<f32> = random_tensor_bf16(8, &s)
        .unwrap()
        .iter()
        .map(|x| x.to_f32())
        .collect();
    assert_eq!(widened, random_tensor_f32(8, &s).unwrap());
}

#[test]
fn scalar_and_empty_shapes() {
    assert_eq!(
        random_tensor_bf16(1, &WeightSpec::normal("s", vec![], 0.02))
            .unwrap()
            .len(),
        1
    );
    assert!(
        random_tensor_bf16(1, &WeightSpec::normal("e", vec![0, 5], 0.02))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn bad_std_is_an_error_not_a_panic() {
    for std in [f32::NAN, -1.0, f32::INFINITY] {
        let e = random_tensor_bf16(1, &WeightSpec::normal("w", vec![2], std)).unwrap_err();
        assert!(e.to_string().contains("std must be finite and >= 0"), "{e}");
        let e = random_tensor_f32(1, &WeightSpec::normal("w", vec![2], std)).unwrap_err();
        assert!(e.to_string().contains("w"), "{e}");
    }
}

#[test]
fn a_tensor_too_big_for_memory_is_an_error_not_an_abort() {
    // 2^61 elements: the element count and its f32 bytes fit u64 but no allocator has them.
    let huge = WeightSpec::normal("huge", vec![1 << 31, 1 << 30], 0.02);
    let e = random_tensor_f32(1, &huge).unwrap_err().to_string();
    assert!(
        e.contains("not enough host memory for random tensor huge"),
        "{e}"
    );
}

/// `cargo test --release -p pio-runtime --test weights_random -- --ignored --nocapture`
#[test]
#[ignore]
fn speed_qwen3_0_6b_sized() {
    let t = std::time::Instant::now();
    let specs = [
        WeightSpec::normal("model.embed_tokens.weight", vec![151936, 1024], 0.02),
        WeightSpec::normal("layers", vec![440_000_000], 0.02),
    ];
    let n: usize = specs
        .iter()
        .map(|s| random_tensor_bf16(0, s).unwrap().len())
        .sum();
    eprintln!("{n} params in {:?}", t.elapsed());
}
