//! `pio-compile SPEC -o DIR`: lowers a model spec to the IR, runs the pass pipeline and writes
//! the compiler's output. Needs no GPU.

use anyhow::Result;
use clap::Parser;
use pio::{errln, outln};
use pio_compiler::codegen::{CodegenOptions, GemvTuning};
use pio_compiler::pass::PassOptions;
use pio_compiler::summary::{bytes_human, thousands};
use pio_compiler::CompileOptions;
use std::path::PathBuf;
use std::time::Instant;

#[path = "../specs.rs"]
mod specs;

#[derive(Parser)]
#[command(
    version,
    about = "Compile a pio model spec (YAML) into a static graph; no GPU needed"
)]
struct Args {
    /// The variant spec (a path, or a name in model-specs/ such as qwen3-0.6b), or an HF
    /// checkpoint directory (its config.json names the family).
    spec: String,
    /// Output folder (created; an existing folder must be empty or a previous pio-compile output).
    #[arg(short, long)]
    output: PathBuf,
    /// Write into a non-empty folder that pio-compile did not create.
    #[arg(long)]
    force: bool,
    /// Write the IR after this pass (or `all`) to DIR/ir-after-PASS.txt; repeatable.
    #[arg(long, value_name = "PASS|all")]
    dump_ir_after: Vec<String>,
    /// Skip a pass; repeatable.
    #[arg(long, value_name = "PASS")]
    disable_pass: Vec<String>,
    /// Skip fusion (for differential testing).
    #[arg(long)]
    no_fusion: bool,
    /// Tensor-parallel ranks: the shard pass makes the graph one rank's part of N, and the
    /// artifact is every rank's (collectives as steps, each weight a rank's slice).
    /// `pio run --artifact DIR` runs it on N GPUs (NCCL between them), or with `--device cpu`
    /// on simulated ranks.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    tp: u32,
    /// Most tokens in one prefill step (longer prompts are prefilled in chunks).
    #[arg(long, default_value_t = pio_compiler::codegen::DEFAULT_PREFILL)]
    max_prefill: usize,
    /// KV-cache length in tokens (default: the spec's bound, at most 32768).
    #[arg(long)]
    max_context: Option<usize>,
    /// Launch shape of the decode GEMVs, e.g. `warps=8,rows=2,blocks=4224,unroll=10` (any
    /// subset; a tuning knob, every setting computes the same).
    #[arg(long, value_name = "SETTINGS")]
    gemv: Option<String>,
    /// Spans (thread-block clusters) per kv head of the decode attention, at most; longer
    /// contexts take longer spans (a tuning knob, like --gemv).
    #[arg(long, value_name = "N", default_value_t = pio_compiler::codegen::ATTENTION_SPANS as u32,
          value_parser = clap::value_parser!(u32)
              .range(1..=pio_compiler::codegen::MAX_ATTENTION_SPANS as i64))]
    attention_spans: u32,
    /// Positions per block of the batching engine's paged KV pool.
    #[arg(long, value_name = "N", default_value_t = pio_compiler::codegen::DEFAULT_BLOCK_SIZE as u32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    block_size: u32,
    /// Query heads of a kv head per block of the batching engine's batch decode attention (a divisor
    /// of the model's query heads per kv head; a tuning knob, every setting computes the same).
    /// Default: the largest divisor of the group up to PAGED_ATTENTION_HEADS_PER_BLOCK (8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    paged_attention_heads: Option<u32>,
    /// Blocks per SM the batch decode attention's registers must allow (its launch bound; a
    /// tuning knob, every setting computes the same; 0: the compiler's choice). Default: 4
    /// where a lane holds 8 or more 16-byte query pieces, else 0.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=32))]
    paged_attention_min_blocks: Option<u32>,
    /// Blocks per kv head the batch decode attention aims at: each token's context is split
    /// over ceil(N / tokens) blocks (a tuning knob; every setting computes the same up to the
    /// order of f32 sums). Default: PAGED_ATTENTION_TARGET_BLOCKS (528).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1 << 20))]
    paged_attention_target_blocks: Option<u32>,
    /// Elementwise and per-head kernels read and write rows in 16-byte pieces where the shapes
    /// allow (the same bits as one element per thread; `--wide-row-access false` turns it off).
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    wide_row_access: bool,
    /// The batching engine's chunk steps take their attention in one pass over the keys
    /// (online softmax) instead of two (off by default until GPU-checked).
    #[arg(long)]
    online_chunk_attention: bool,
    /// Blocks per SM the chunk steps' attention kernels' registers must allow (their launch
    /// bound; a tuning knob, every setting computes the same; 0: the compiler's choice).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=8))]
    chunk_attention_min_blocks: u32,
    /// The batching engine's decode-batch projections as fused tensor-core kernels (RMSNorm,
    /// product, residual add or SwiGLU in one launch; off by default until GPU-checked).
    #[arg(long)]
    fused_row_gemm: bool,
}

fn main() {
    pio::cli::finish(run())
}

fn run() -> Result<()> {
    let args = Args::parse();
    let source = specs::source_of(&args.spec)?;
    // The output folder is checked before any work, and written only through a scratch
    // folder that is swapped in at the end (see pio_compiler::output).
    let out = pio_compiler::output::OutputDir::begin(&args.output, args.force)?;
    pio::cli::register_scratch_dir(out.scratch().to_path_buf());
    let start = Instant::now();
    let spec = source.load()?;
    let opts = CompileOptions {
        passes: PassOptions {
            disabled: args.disable_pass.clone(),
            no_fusion: args.no_fusion,
            dump_after: args.dump_ir_after.clone(),
            tensor_parallel: args.tp as usize,
            ..PassOptions::default()
        },
        codegen: CodegenOptions {
            max_prefill: args.max_prefill,
            max_context: args.max_context,
            gemv: match &args.gemv {
                Some(t) => GemvTuning::parse(t).map_err(|e| anyhow::anyhow!("--gemv: {e}"))?,
                None => GemvTuning::default(),
            },
            attention_spans: args.attention_spans as usize,
            block_size: args.block_size as usize,
            paged_attention_heads: args.paged_attention_heads.map(|n| n as usize),
            paged_attention_min_blocks: args.paged_attention_min_blocks.map(|n| n as usize),
            paged_attention_target_blocks: args.paged_attention_target_blocks.map(|n| n as usize),
            wide_row_access: args.wide_row_access,
            online_chunk_attention: args.online_chunk_attention,
            fused_row_gemm: args.fused_row_gemm,
            chunk_attention_min_blocks: args.chunk_attention_min_blocks as usize,
        },
    };
    let compiled = pio_compiler::compile(&spec, &opts)?;
    let elapsed = start.elapsed();
    let (before, graph, report) = (&compiled.lowered, &compiled.optimized, &compiled.report);
    let summary = write_ir(&out, before, graph, report)?;
    let a = &compiled.artifact;
    a.write_dir(out.scratch())?;
    // Readable views of what artifact.json holds.
    out.write(
        "launches-decode.txt",
        pio_compiler::codegen::listing(&a.decode).as_bytes(),
    )?;
    out.write(
        "launches-prefill.txt",
        pio_compiler::codegen::listing(&a.prefill).as_bytes(),
    )?;
    out.write(
        "launches-paged.txt",
        pio_compiler::codegen::listing(&a.paged.steps).as_bytes(),
    )?;
    out.write(
        "memory-plan.json",
        serde_json::to_string_pretty(&serde_json::json!({
            "regions": a.regions, "report": a.memory, "kv_caches": a.kv_caches, "io": a.io,
            "paged_pool": {"block_size": a.paged.block_size, "block_bytes": a.paged.block_bytes,
                           "max_seqs": a.paged.max_seqs, "layers": a.paged.pool},
        }))?
        .as_bytes(),
    )?;
    out.write(
        "weights.json",
        serde_json::to_string_pretty(&a.weights)?.as_bytes(),
    )?;
    let scratch = out.scratch().to_path_buf();
    let committed = out.commit();
    pio::cli::unregister_scratch_dir(&scratch);
    committed?;
    let dir = &args.output;

    for r in &report.records {
        errln!(
            "  pass {:<12} {:>8.2} ms  {:>2} round(s)  {:>5} nodes{}",
            r.name,
            r.time.as_secs_f64() * 1e3,
            r.iterations,
            r.nodes_after,
            if r.changed { "" } else { "  (no change)" }
        );
    }
    outln!(
        "{}: {} -> {} nodes, {} distinct kernels, {} launches per decode step ({:.1} per layer), \
         arena {} (decode {} -> {}, prefill {} -> {} planned), weights {}, KV {} bytes/token, \
         {} params -> {} ({:.0} ms)",
        summary.model,
        before.node_count(),
        graph.node_count(),
        a.kernels.len(),
        a.decode.len(),
        a.decode.len() as f64 / summary.layers.max(1) as f64,
        bytes_human(a.regions.arena),
        bytes_human(a.memory.decode_activation_bytes_unplanned),
        bytes_human(a.memory.decode_arena_bytes),
        bytes_human(a.memory.prefill_activation_bytes_unplanned),
        bytes_human(a.memory.prefill_arena_bytes),
        bytes_human(summary.weight_bytes),
        thousands(summary.kv_bytes_per_token),
        thousands(summary.params),
        dir.display(),
        elapsed.as_secs_f64() * 1e3
    )?;
    if let Some(tp) = a.tensor_parallel {
        let count = |name: &str| {
            graph
                .ids()
                .filter(|&id| graph.node(id).op.name() == name)
                .count()
        };
        // Each rank's keys and values per position: its pool entries (every layer's).
        let kv_per_token: usize = a
            .paged
            .pool
            .iter()
            .map(|e| e.kv_heads * e.head_dim * 2)
            .sum();
        outln!(
            "one rank's part of {} ranks: weights {} and KV {} bytes/token per rank; {} all_reduce, \
             {} all_gather in the graph (each a step of every launch list); run it on {} GPUs with \
             pio run --artifact {} (or on simulated ranks: --device cpu)",
            tp.ranks,
            bytes_human(a.regions.weights),
            thousands(kv_per_token as u64),
            count("all_reduce"),
            count("all_gather"),
            tp.ranks,
            dir.display()
        )?;
        return Ok(());
    }
    outln!(
        "run it: pio run --artifact {} --weights random   (or --weights an HF checkpoint folder)",
        dir.display()
    )?;
    Ok(())
}

/// The IR files: before and after the passes (text and Graphviz), the dumps asked for and the
/// summary.
fn write_ir(
    out: &pio_compiler::output::OutputDir,
    before: &pio_compiler::ir::Graph,
    graph: &pio_compiler::ir::Graph,
    report: &pio_compiler::pass::PassReport,
) -> Result<pio_compiler::summary::Summary> {
    use pio_compiler::ir::{dot::to_dot, print::print};
    let summary = pio_compiler::summary::summarize(before);
    out.write("ir-before.txt", print(before).as_bytes())?;
    out.write("ir-before.dot", to_dot(before).as_bytes())?;
    out.write("ir-after.txt", print(graph).as_bytes())?;
    out.write("ir-after.dot", to_dot(graph).as_bytes())?;
    for (pass, text) in &report.dumps {
        out.write(&format!("ir-after-{pass}.txt"), text.as_bytes())?;
    }
    let json = serde_json::to_string_pretty(&summary)?;
    out.write("summary.json", format!("{json}\n").as_bytes())?;
    Ok(summary)
}
