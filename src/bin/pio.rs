//! `pio`: list models, run them, write random-weight checkpoints.

use anyhow::Result;
use clap::{Parser, Subcommand};
use pio_compiler::summary::{bytes_human, thousands};
use std::path::PathBuf;

#[path = "../specs.rs"]
mod specs;

#[derive(Parser)]
#[command(
    version,
    about = "pio: a declarative model compiler and executor for Qwen3"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the model specs in a folder (default: model-specs/).
    List {
        /// Folder to search.
        #[arg(long)]
        specs: Option<PathBuf>,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Command::List { specs } => list(specs.unwrap_or_else(specs::specs_dir)),
    }
}

fn list(dir: PathBuf) -> Result<()> {
    let files = pio_compiler::spec::discover(&dir)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
    println!(
        "{:<26} {:>15} {:>10} {:>7} {:>9}  {}",
        "MODEL", "PARAMS", "WEIGHTS", "LAYERS", "CONTEXT", "SPEC"
    );
    let mut broken = 0;
    for path in files {
        let shown = path.display();
        let result = pio_compiler::spec::load(&path)
            .map_err(pio_compiler::CompileError::from)
            .and_then(|spec| Ok(pio_compiler::lower::lower(&spec)?));
        match result {
            Ok(graph) => {
                let s = pio_compiler::summary::summarize(&graph);
                println!(
                    "{:<26} {:>15} {:>10} {:>7} {:>9}  {shown}",
                    s.model,
                    thousands(s.params),
                    bytes_human(s.weight_bytes),
                    s.layers,
                    s.max_context
                        .map(|c| thousands(c as u64))
                        .unwrap_or_default(),
                );
            }
            Err(e) => {
                broken += 1;
                eprintln!("{shown}: not a usable spec:\n{e}");
            }
        }
    }
    if broken > 0 {
        eprintln!("{broken} spec file(s) could not be loaded (see above)");
    }
    Ok(())
}
