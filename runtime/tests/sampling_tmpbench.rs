use pio_runtime::sampling::{Sampler, SamplingParams};
use rand::{Rng, SeedableRng};
#[test]
fn bench() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for scale in [0.5f32, 20.0] {
    let logits: Vec<f32> = (0..151_936).map(|_| rng.random_range(-scale..scale)).collect();
    let ctx: Vec<u32> = (0..4000).map(|i| (i * 37) % 151_936).collect();
    for (name, p) in [
        ("greedy", SamplingParams::greedy()),
        ("k20", SamplingParams { temperature: 0.6, top_k: 20, top_p: 0.95, ..SamplingParams::greedy() }),
        ("p0.8", SamplingParams { temperature: 0.7, top_p: 0.8, ..SamplingParams::greedy() }),
        ("plain", SamplingParams { temperature: 0.7, ..SamplingParams::greedy() }),
        ("k20pen", SamplingParams { temperature: 0.7, top_k: 20, top_p: 0.8, repetition_penalty: 1.1, presence_penalty: 1.5, ..SamplingParams::greedy() }),
    ] {
        let mut s = Sampler::new(p).unwrap();
        s.sample(&logits, &ctx, &ctx[..100]).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..200 { s.sample(&logits, &ctx, &ctx[..100]).unwrap(); }
        eprintln!("scale {scale} {name}: {:?}", t.elapsed() / 200);
    }
    }
}
