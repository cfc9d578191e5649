//! `pio run`: generate text, streamed to stdout, timings to stderr.

use crate::RunArgs;
use anyhow::Result;
use pio::runtime::chat::{ChatOptions, Message};
use pio::runtime::sampling::SamplingParams;
use pio::{errln, outln, LoadOptions, WeightsSource};

/// The sampling flags the user gave, over neutral values: checked before anything loads.
fn sampling_flags(a: &RunArgs) -> SamplingParams {
    let n = SamplingParams::greedy();
    SamplingParams {
        temperature: a.temperature.unwrap_or(n.temperature),
        top_k: a.top_k.unwrap_or(n.top_k),
        top_p: a.top_p.unwrap_or(n.top_p),
        min_p: a.min_p.unwrap_or(n.min_p),
        repetition_penalty: a.repetition_penalty.unwrap_or(n.repetition_penalty),
        presence_penalty: a.presence_penalty.unwrap_or(n.presence_penalty),
        frequency_penalty: n.frequency_penalty,
        seed: a.seed,
    }
}

pub(crate) fn run_model(a: RunArgs) -> Result<()> {
    // Argument errors first: nothing is loaded for a command line that cannot run.
    if !a.chat && (a.system.is_some() || a.no_think) {
        anyhow::bail!("--system and --no-think need --chat");
    }
    sampling_flags(&a).validate()?;
    let opts = LoadOptions {
        max_context: a.max_context,
        tensor_parallel: a.tp.map(|n| n as usize),
        progress: true,
        ..Default::default()
    };
    let weights = WeightsSource::from_arg(&a.weights, a.seed);
    let mut model = a.model.load(&weights, a.device, &opts)?;
    if model.has_random_weights() {
        errln!(
            "note: {} runs with random weights: the output is gibberish",
            model.info().name
        );
    }
    let prompt = if a.chat {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(Message::system(s.clone()));
        }
        msgs.push(Message::user(a.prompt.clone()));
        let thinking = model.info().thinking;
        if a.no_think && !thinking {
            errln!("note: --no-think has no effect: this model never thinks");
        }
        let opts = ChatOptions {
            add_generation_prompt: true,
            enable_thinking: (thinking && a.no_think).then_some(false),
        };
        model
            .tokenizer()
            .encode(&model.chat_template()?.render(&msgs, &opts)?)?
    } else {
        model.tokenizer().encode_prompt(&a.prompt)?
    };
    let d = model.defaults().sampling.clone();
    let sampling = SamplingParams {
        temperature: a.temperature.unwrap_or(d.temperature),
        top_k: a.top_k.unwrap_or(d.top_k),
        top_p: a.top_p.unwrap_or(d.top_p),
        min_p: a.min_p.unwrap_or(d.min_p),
        repetition_penalty: a.repetition_penalty.unwrap_or(d.repetition_penalty),
        presence_penalty: a.presence_penalty.unwrap_or(d.presence_penalty),
        frequency_penalty: d.frequency_penalty,
        seed: a.seed,
    };
    sampling.validate()?;
    let mut opts = model.generate_options(a.max_new_tokens, Some(sampling));
    if a.ignore_eos {
        opts.eos_token_ids.clear();
    }
    if !a.chat {
        pio::cli::out_text(&a.prompt)?;
    }
    let mut gen = model.generate(&prompt, opts)?;
    for token in gen.by_ref() {
        pio::cli::out_text(&token?.text)?;
    }
    let tail = gen.flush()?;
    outln!("{tail}")?;
    let s = gen.stats().clone();
    drop(gen);
    if let Some(c) = model.cuda() {
        errln!("memory: {}", c.model().memory_report());
        if let Some(p) = c.model().profile_report() {
            errln!("{}", p.trim_end());
        }
        if let Some(why) = &c.model().graph_fallback {
            errln!("note: decode ran without a CUDA graph: {why}");
        }
    }
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_string(), |r| format!("{r:.1}"));
    errln!(
        "{} | prompt: {} tokens, {} tokens/s | generated: {} tokens, {} tokens/s | stop: {}",
        model.device_name(),
        s.prompt_tokens,
        rate(s.prefill_tokens_per_s()),
        s.generated_tokens,
        rate(s.decode_tokens_per_s()),
        match s.stop {
            Some(pio::runtime::generate::StopReason::Eos(id)) => format!("eos ({id})"),
            Some(pio::runtime::generate::StopReason::MaxTokens) => "max tokens".into(),
            Some(pio::runtime::generate::StopReason::ContextFull) => "context full".into(),
            None => "?".into(),
        }
    );
    Ok(())
}
