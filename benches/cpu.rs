//! CPU benchmarks: the reference executor, the tokenizer and the host sampler.
//!
//! - `cpu_executor/decode_step/qwen3-tiny`: one token through the CPU executor's KV cache
//!   (`Model::step_logits`, logits included), at positions 8 to 504 of the tiny spec's 512-token
//!   cache; the cache is reset with an 8-token prefill outside the timed region when full.
//! - `cpu_executor/prefill_64/qwen3-tiny`: a 64-token prefill on an empty cache.
//! - `tokenizer_encode/<text>`: `Tokenizer::encode` with Qwen3's tokenizer on a few KB of
//!   English prose, Chinese/Japanese text, Rust/Python code, and all three together; throughput
//!   in bytes of UTF-8 input.
//! - `detokenize_128_streams/<path>`: streaming detokenization of 128 streams of 256 random
//!   Qwen3 ids, through the byte table (byte-level decoders) and through the window of ids
//!   decoded twice (any other decoder); throughput in ids.
//! - `sampling/<params>`: `Sampler::sample` over a 151,936-long random logits vector (Qwen3's
//!   vocabulary) with a 512-token context: greedy, Qwen3's defaults (top-k 20, top-p 0.95,
//!   temperature 0.6), and top-p 0.95 alone (temperature 1, so every token is a candidate).
//!
//! ```sh
//! cargo bench --bench cpu
//! cargo bench --bench cpu -- sampling       # one group
//! ```

mod common;

use common::root;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pio::{Device, Model, WeightsSource};
use pio_runtime::sampling::{Sampler, SamplingParams};
use pio_runtime::tokenizer::{DecodeState, Tokenizer};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A small deterministic generator (SplitMix64), so the benches need no extra dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Roughly normal (sum of four uniforms), mean 0, standard deviation `std`.
    fn normal(&mut self, std: f32) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum::<f32>() - 2.0;
        // The sum of four U(0,1) has variance 4/12.
        s * std * 3f32.sqrt()
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

// ---------------------------------------------------------------------------------------------
// CPU executor

const TINY: &str = "qwen3-tiny.yaml";
/// The tiny spec's KV-cache bound.
const TINY_CONTEXT: usize = 512;
const PROMPT_LEN: usize = 8;

fn tiny_model() -> Model {
    let path = root().join("model-specs").join(TINY);
    Model::load(&path, &WeightsSource::Random { seed: 0 }, Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

fn bench_cpu_executor(c: &mut Criterion) {
    let mut model = tiny_model();
    let vocab = model.info().vocab_size as u32;
    let mut rng = SplitMix(1);
    let prompt: Vec<u32> = (0..PROMPT_LEN).map(|_| rng.below(vocab)).collect();
    let long: Vec<u32> = (0..64).map(|_| rng.below(vocab)).collect();

    let mut group = c.benchmark_group("cpu_executor");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    group.throughput(Throughput::Elements(1));
    let mut cached = TINY_CONTEXT; // forces a prefill before the first step
    group.bench_function("decode_step/qwen3-tiny", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                if cached + 1 > TINY_CONTEXT - PROMPT_LEN {
                    model.prefill_logits(&prompt).expect("prefill");
                    cached = PROMPT_LEN;
                }
                let token = (i % vocab as u64) as u32;
                let start = Instant::now();
                let logits = model.step_logits(&[token]).expect("decode step");
                total += start.elapsed();
                black_box(logits);
                cached += 1;
            }
            total
        })
    });

    group.throughput(Throughput::Elements(long.len() as u64));
    group.bench_function(format!("prefill_{}/qwen3-tiny", long.len()), |b| {
        b.iter(|| model.prefill_logits(black_box(&long)).expect("prefill"))
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

const ENGLISH: &str = "\
The sky looks blue because air molecules scatter short wavelengths of sunlight much more \
strongly than long ones. This is Rayleigh scattering: the intensity of the scattered light grows \
with the inverse fourth power of the wavelength, so violet and blue light are scattered about \
five to ten times more than red. Our eyes are less sensitive to violet, and some of it is \
absorbed high in the atmosphere, which is why we perceive the daytime sky as blue rather than \
purple. At sunrise and sunset, light travels through a much thicker slice of atmosphere; most of \
the blue is scattered out of the direct beam before it reaches us, leaving the reds and oranges \
that make evenings so striking. Clouds, by contrast, are made of droplets far larger than the \
wavelength of visible light. They scatter all colours about equally (Mie scattering), so they \
look white, or grey when they are thick enough to block much of the light from above. \
Questions? Ask on the forum, or e-mail support@example.com before 5:30 p.m. on Friday, \
2026-11-27. Prices: $19.99/month, or $199 a year (save 17%!). Don't forget: it's \"free\" \
for students, isn't it? ";

const CJK: &str = "\
天空之所以呈现蓝色，是因为空气分子对太阳光中波长较短的光散射得更强烈。这种现象称为瑞利散射：\
散射光的强度与波长的四次方成反比，因此紫光和蓝光的散射比红光强五到十倍。人眼对紫光不太敏感，\
而且一部分紫光在高层大气中被吸收，所以我们看到的白天天空是蓝色而不是紫色。日出和日落时，\
阳光要穿过更厚的大气层，大部分蓝光在到达我们之前就被散射掉了，只剩下红色和橙色。\
空が青く見えるのは、空気中の分子が太陽光の短い波長の光を強く散乱するからです。\
これをレイリー散乱と呼びます。夕焼けが赤いのは、光が厚い大気を通過する間に青い光が散乱され、\
赤い光だけが目に届くためです。雲は光の波長よりずっと大きな水滴でできているので、\
すべての色をほぼ同じように散乱し、白く見えます。";

const CODE: &str = r#"
use std::collections::HashMap;

/// Counts the words of `text`, most frequent first.
pub fn word_counts(text: &str) -> Vec<(String, usize)> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

def softmax(logits, temperature=0.6):
    """Numerically stable softmax over a list of floats."""
    m = max(logits)
    exps = [math.exp((x - m) / temperature) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]

if __name__ == "__main__":
    print(softmax([1.0, 2.0, 3.0]))  # [0.0...] -> {"ok": true}
    for i in range(10):
        print(f"{i:>4}: {i ** 2:#x}")
"#;

fn bench_tokenizer(c: &mut Criterion) {
    let path = root().join("model-specs/tokenizers/qwen3/tokenizer.json");
    let tok = Tokenizer::from_file(&path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    // A few KB each: the texts above repeated.
    let english = ENGLISH.repeat(3);
    let cjk = CJK.repeat(3);
    let code = CODE.repeat(3);
    let mixed = format!("{ENGLISH}{CJK}{CODE}<|im_start|>user\n{ENGLISH}<|im_end|>\n{CJK}{CODE}");
    let texts = [
        ("english", english),
        ("cjk", cjk),
        ("code", code),
        ("mixed", mixed),
    ];

    let mut group = c.benchmark_group("tokenizer_encode");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (name, text) in &texts {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| tok.encode(black_box(text)).expect("encode"))
        });
    }
    group.finish();
}

/// Streaming detokenization as the batching engine does it: 128 streams, 256 ids each pushed
/// in turn (random ids of Qwen3's vocabulary), through the byte table of Qwen3's byte-level
/// decoder and through the window of ids decoded twice (the same tokenizer with its decoder
/// wrapped in a `Sequence`, which any non-byte-level tokenizer takes). Throughput in ids.
fn bench_detokenize(c: &mut Criterion) {
    let path = root().join("model-specs/tokenizers/qwen3/tokenizer.json");
    let bytes = Tokenizer::from_file(&path)
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()));
    bytes.prepare_streaming();
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("tokenizer.json"))
            .expect("tokenizer JSON");
    let decoder = json["decoder"].take();
    json["decoder"] = serde_json::json!({"type": "Sequence", "decoders": [decoder]});
    let window = Tokenizer::from_bytes(json.to_string().as_bytes(), "windowed").expect("windowed");
    let mut rng = SplitMix(11);
    let ids: Vec<u32> = (0..128 * 256).map(|_| rng.below(151_669)).collect();

    let mut group = c.benchmark_group("detokenize_128_streams");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(ids.len() as u64));
    for (name, tok) in [("byte_table", &bytes), ("window", &window)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut streams = vec![DecodeState::default(); 128];
                let mut text = 0;
                for (i, &id) in ids.iter().enumerate() {
                    if let Some(t) = streams[i % 128].push(tok, id).expect("push") {
                        text += t.len();
                    }
                }
                text
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// Sampling

/// Qwen3's vocabulary (the embedding's rows).
const VOCAB: usize = 151_936;

fn bench_sampling(c: &mut Criterion) {
    let mut rng = SplitMix(7);
    let logits: Vec<f32> = (0..VOCAB).map(|_| rng.normal(3.0)).collect();
    let context: Vec<u32> = (0..512).map(|_| rng.below(VOCAB as u32)).collect();
    let generated = &context[448..];

    let qwen = SamplingParams {
        temperature: 0.6,
        top_k: 20,
        top_p: 0.95,
        ..SamplingParams::greedy()
    };
    let top_p = SamplingParams {
        temperature: 1.0,
        top_p: 0.95,
        ..SamplingParams::greedy()
    };
    let cases = [
        ("greedy", SamplingParams::greedy()),
        ("top_k20_top_p0.95_temp0.6", qwen),
        ("top_p0.95", top_p),
    ];

    let mut group = c.benchmark_group("sampling");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (name, params) in cases {
        let mut sampler = Sampler::new(params).expect("valid sampling params");
        group.bench_function(name, |b| {
            b.iter(|| {
                sampler
                    .sample(black_box(&logits), &context, generated)
                    .expect("sample")
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_cpu_executor,
    bench_tokenizer,
    bench_detokenize,
    bench_sampling
);
criterion_main!(benches);
