//! The one entry point of the compiler: a spec becomes an [`Artifact`]. It is the only place
//! that chains lowering, the pass pipeline and codegen; `pio-compile`, the engine's load and
//! the benches all call it.

use crate::codegen::{self, CodegenOptions};
use crate::error::CompileError;
use crate::ir::{serial, Graph};
use crate::pass::{default_pipeline, PassOptions, PassReport};
use crate::spec::ModelSpec;
use pio_artifact::{self as art, Artifact, Attachment};

/// How to compile: the pass pipeline's settings and codegen's.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    pub passes: PassOptions,
    pub codegen: CodegenOptions,
}

/// What a compile makes: the artifact, and the graphs before and after the passes (for
/// `pio-compile`'s dumps and summary).
pub struct Compiled {
    pub artifact: Artifact,
    /// The lowered graph, before any pass (the artifact's reference graph).
    pub lowered: Graph,
    /// The graph codegen ran on.
    pub optimized: Graph,
    /// Which of `optimized`'s nodes each step of each launch list computes, and where their
    /// values live (for per-kernel checks; not in the artifact).
    pub trace: codegen::Trace,
    pub report: PassReport,
}

/// The graphs of a compile without codegen: lowered and after the pass pipeline.
pub struct Optimized {
    pub lowered: Graph,
    pub optimized: Graph,
    pub report: PassReport,
}

/// Lowers `spec`, verifies it and runs the pass pipeline (the shard pass too, with
/// `opts.passes.tensor_parallel` above 1).
pub fn optimize(spec: &ModelSpec, opts: &CompileOptions) -> Result<Optimized, CompileError> {
    let lowered = crate::lower::lower(spec)?;
    crate::ir::verify::verify(&lowered, Some("lower"))?;
    let mut optimized = lowered.clone();
    let report = default_pipeline(opts.passes.clone())?.run(&mut optimized)?;
    Ok(Optimized {
        lowered,
        optimized,
        report,
    })
}

/// Lowers `spec`, verifies it, runs the pass pipeline and generates the artifact.
pub fn compile(spec: &ModelSpec, opts: &CompileOptions) -> Result<Compiled, CompileError> {
    let Optimized {
        lowered,
        optimized,
        report,
    } = optimize(spec, opts)?;
    let model = model_info(spec, &lowered)?;
    let reference = Attachment::new(
        "reference-graph.json",
        serial::to_json(&lowered).into_bytes(),
    );
    let (artifact, trace) = codegen::generate_traced(&optimized, &opts.codegen, model, reference)?;
    Ok(Compiled {
        artifact,
        lowered,
        optimized,
        trace,
        report,
    })
}

/// What the artifact says about the model: from the spec's variant (names, manifest, config
/// fields) and from the IR (vocabulary, context bound).
pub fn model_info(spec: &ModelSpec, g: &Graph) -> Result<art::ModelInfo, CompileError> {
    let file = &spec.variant.file;
    let invalid = |message: String| CompileError::Options(format!("{}: {message}", file.display()));
    let vocab_size = g.vocab_size().ok_or_else(|| {
        invalid("the graph has no logits output with a fixed last dim (the vocabulary)".into())
    })?;
    let context_bound = g
        .context_bound()
        .ok_or_else(|| invalid("the graph declares no context dim ('ctx' under dims)".into()))?;
    let m = &spec.variant.manifest;
    let in_vocab = |what: &str, id: u32| {
        if (id as usize) < vocab_size {
            Ok(id)
        } else {
            Err(invalid(format!(
                "manifest.{what} {id} is outside the vocabulary of {vocab_size}"
            )))
        }
    };
    let eos_token_ids = m
        .eos_token_ids
        .iter()
        .map(|&id| in_vocab("eos_token_ids", id))
        .collect::<Result<Vec<_>, _>>()?;
    let bos_token_id = m
        .bos_token_id
        .map(|id| in_vocab("bos_token_id", id))
        .transpose()?;
    let pad_token_id = m
        .pad_token_id
        .map(|id| in_vocab("pad_token_id", id))
        .transpose()?;
    let read = |name: &str, path: &std::path::Path| -> Result<Attachment, CompileError> {
        let data = pio_artifact::read::read_bounded(path, pio_artifact::read::MAX_TOKENIZER_BYTES)
            .map_err(|e| CompileError::io(path, e))?;
        Ok(Attachment::new(name, data))
    };
    let s = &m.sampling;
    Ok(art::ModelInfo {
        name: spec.name().to_string(),
        family: spec.family.name.clone(),
        architecture: spec.family.architecture.clone(),
        spec_file: file.display().to_string(),
        vocab_size,
        context_bound,
        bos_token_id,
        eos_token_ids,
        pad_token_id,
        sampling: art::SamplingDefaults {
            temperature: s.temperature as f32,
            top_k: s.top_k.max(0) as usize,
            top_p: s.top_p as f32,
            min_p: s.min_p as f32,
            repetition_penalty: s.repetition_penalty as f32,
            presence_penalty: s.presence_penalty as f32,
        },
        thinking: m.thinking,
        tokenizer: read("tokenizer.json", &m.tokenizer)?,
        tokenizer_config: tokenizer_config(&m.chat_template)?,
        hf_config: spec.hf_config.clone(),
        hf_defaults: spec.hf_defaults.clone(),
        weights_dtype: spec.family.dtype,
    })
}

/// The spec's tokenizer_config.json, with the `chat_template.jinja` beside it (which wins, as in
/// transformers) folded into its `chat_template` field, so that the artifact carries one file.
fn tokenizer_config(path: &std::path::Path) -> Result<Attachment, CompileError> {
    let data = pio_artifact::read::read_bounded(path, pio_artifact::read::MAX_TOKENIZER_BYTES)
        .map_err(|e| CompileError::io(path, e))?;
    let jinja = path.with_file_name("chat_template.jinja");
    if !jinja.is_file() {
        return Ok(Attachment::new("tokenizer_config.json", data));
    }
    let template =
        pio_artifact::read::read_bounded_text(&jinja, pio_artifact::read::MAX_TOKENIZER_BYTES)
            .map_err(|e| CompileError::io(&jinja, e))?;
    let mut config: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| CompileError::Options(format!("{}: not JSON: {e}", path.display())))?;
    let Some(object) = config.as_object_mut() else {
        return Err(CompileError::Options(format!(
            "{}: not a JSON object",
            path.display()
        )));
    };
    object.insert("chat_template".into(), template.into());
    let text = serde_json::to_string_pretty(&config).expect("JSON values serialize");
    Ok(Attachment::new("tokenizer_config.json", text.into_bytes()))
}
