//! The pass manager: runs passes in order, times each, verifies the IR after each, dumps the IR
//! on request, honours `--disable-pass` and `--no-fusion`, and caps fixed-point loops.

mod canonicalize;
mod cse;
mod dce;
mod fuse;
mod kv_cache;
pub mod shard;

pub use canonicalize::Canonicalize;
pub use cse::Cse;
pub use dce::Dce;
pub use fuse::Fuse;
pub use kv_cache::KvCache;
pub use shard::TensorParallel;

use crate::error::CompileError;
use crate::ir::verify::verify;
use crate::ir::Graph;
use std::time::{Duration, Instant};

/// A transformation of the graph.
pub trait Pass {
    /// The name used by `--disable-pass` and `--dump-ir-after`.
    fn name(&self) -> &'static str;
    /// Runs once; returns whether the graph changed.
    fn run(&self, g: &mut Graph) -> Result<bool, CompileError>;
    /// Whether the manager reruns the pass until it changes nothing.
    fn fixed_point(&self) -> bool {
        false
    }
}

/// How the pipeline runs.
#[derive(Clone, Debug)]
pub struct PassOptions {
    /// Passes to skip (by name).
    pub disabled: Vec<String>,
    /// Skip every fusion pass.
    pub no_fusion: bool,
    /// Dump the IR after these passes (`all` for every pass).
    pub dump_after: Vec<String>,
    /// Most runs of a fixed-point pass before it is an error.
    pub max_iterations: usize,
    /// Tensor-parallel ranks (`--tp N`): more than 1 runs the shard pass, and the graph
    /// becomes one rank's part.
    pub tensor_parallel: usize,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            disabled: Vec::new(),
            no_fusion: false,
            dump_after: Vec::new(),
            max_iterations: 64,
            tensor_parallel: 1,
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug)]
pub struct PassRecord {
    pub name: &'static str,
    pub time: Duration,
    pub iterations: usize,
    pub changed: bool,
    pub nodes_after: usize,
}

/// What the pipeline did, with the IR dumps that were asked for.
#[derive(Clone, Debug, Default)]
pub struct PassReport {
    pub records: Vec<PassRecord>,
    /// (pass name, IR text after it).
    pub dumps: Vec<(String, String)>,
}

/// Runs a list of passes.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    opts: PassOptions,
}

/// Every pass of the default pipeline, in order.
pub const PASS_NAMES: &[&str] = &[
    "canonicalize",
    "cse",
    "dce",
    "shard",
    "kv-cache",
    "fuse",
    "dce-final",
];

impl PassManager {
    /// Checks the options: unknown pass names are errors that list the valid ones, and so is a
    /// dump after a pass this pipeline does not run (it would write nothing). Disabling such a
    /// pass is allowed (it changes nothing).
    pub fn new(passes: Vec<Box<dyn Pass>>, opts: PassOptions) -> Result<Self, CompileError> {
        let names: Vec<&str> = passes.iter().map(|p| p.name()).collect();
        let listed = || {
            let absent: Vec<&str> = PASS_NAMES
                .iter()
                .copied()
                .filter(|n| !names.contains(n))
                .collect();
            match absent.is_empty() {
                true => names.join(", "),
                false => format!("{}; not run here: {}", names.join(", "), absent.join(", ")),
            }
        };
        for n in opts.disabled.iter().chain(opts.dump_after.iter()) {
            if n != "all" && !names.contains(&n.as_str()) && !PASS_NAMES.contains(&n.as_str()) {
                return Err(CompileError::Options(format!(
                    "unknown pass '{n}' (passes: {})",
                    listed()
                )));
            }
        }
        if let Some(n) = opts
            .dump_after
            .iter()
            .find(|n| *n != "all" && !names.contains(&n.as_str()))
        {
            let why = match n.as_str() {
                "shard" => ": it runs only in a tensor-parallel compile (--tp N, N above 1)",
                _ => "",
            };
            return Err(CompileError::Options(format!(
                "no IR to dump after pass '{n}'{why} (passes: {})",
                listed()
            )));
        }
        Ok(PassManager { passes, opts })
    }

    /// Runs every enabled pass, verifying the graph after each.
    pub fn run(&self, g: &mut Graph) -> Result<PassReport, CompileError> {
        verify(g, Some("lower"))?;
        let mut report = PassReport::default();
        for pass in &self.passes {
            let name = pass.name();
            if self.opts.disabled.iter().any(|d| d == name) {
                continue;
            }
            if self.opts.no_fusion && name == "fuse" {
                continue;
            }
            let start = Instant::now();
            let mut iterations = 0;
            let mut changed_any = false;
            loop {
                iterations += 1;
                let changed = pass.run(g)?;
                verify(g, Some(name))?;
                changed_any |= changed;
                if !changed || !pass.fixed_point() {
                    break;
                }
                if iterations >= self.opts.max_iterations {
                    return Err(CompileError::Options(format!(
                        "pass '{name}' did not reach a fixed point after {iterations} iterations"
                    )));
                }
            }
            report.records.push(PassRecord {
                name,
                time: start.elapsed(),
                iterations,
                changed: changed_any,
                nodes_after: g.node_count(),
            });
            if self.opts.dump_after.iter().any(|d| d == "all" || d == name) {
                report
                    .dumps
                    .push((name.to_string(), crate::ir::print::print(g)));
            }
        }
        Ok(report)
    }
}

/// The default pipeline, top to bottom.
pub fn default_pipeline(opts: PassOptions) -> Result<PassManager, CompileError> {
    let mut passes: Vec<Box<dyn Pass>> = vec![
        Box::new(Canonicalize),
        Box::new(Cse),
        Box::new(Dce::named("dce")),
    ];
    // Only a tensor-parallel compile has the shard pass (without it, `--disable-pass shard` is
    // allowed and `--dump-ir-after shard` an error that says why).
    if opts.tensor_parallel > 1 {
        passes.push(Box::new(TensorParallel {
            ranks: opts.tensor_parallel,
        }));
    }
    passes.push(Box::new(KvCache));
    passes.push(Box::new(Fuse::default()));
    passes.push(Box::new(Dce::named("dce-final")));
    PassManager::new(passes, opts)
}
