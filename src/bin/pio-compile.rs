//! `pio-compile SPEC -o DIR`: lowers a model spec to the IR and writes the compiler's output.
//! Needs no GPU.

use anyhow::Result;
use clap::Parser;
use pio_compiler::summary::{bytes_human, thousands};
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
    /// The variant spec (a path, or a name in model-specs/ such as qwen3-0.6b).
    spec: String,
    /// Output folder (created; an existing folder must be empty or a previous pio-compile output).
    #[arg(short, long)]
    output: PathBuf,
    /// Write into a non-empty folder that pio-compile did not create.
    #[arg(long)]
    force: bool,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    let path = specs::resolve_spec(&args.spec)?;
    let start = Instant::now();
    let spec = pio_compiler::spec::load(&path)?;
    let graph = pio_compiler::lower::lower(&spec)?;
    pio_compiler::ir::verify::verify(&graph, Some("lower"))?;
    let summary = pio_compiler::summary::summarize(&graph);
    let elapsed = start.elapsed();

    use pio_compiler::output::{prepare_dir, write_file};
    let dir = &args.output;
    prepare_dir(dir, args.force)?;
    write_file(
        dir,
        "ir.txt",
        pio_compiler::ir::print::print(&graph).as_bytes(),
    )?;
    write_file(
        dir,
        "ir.dot",
        pio_compiler::ir::dot::to_dot(&graph).as_bytes(),
    )?;
    let json = serde_json::to_string_pretty(&summary)?;
    write_file(dir, "summary.json", format!("{json}\n").as_bytes())?;

    println!(
        "{}: {} nodes, {} params ({} weights), {} KV bytes/token, {} layer(s) -> {} ({:.1} ms)",
        summary.model,
        summary.nodes,
        thousands(summary.params),
        bytes_human(summary.weight_bytes),
        thousands(summary.kv_bytes_per_token),
        summary.layers,
        dir.display(),
        elapsed.as_secs_f64() * 1e3
    );
    Ok(())
}
