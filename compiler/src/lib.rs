//! pio's model compiler: YAML specs → IR (petgraph) → passes → artifact. Needs no GPU.
//!
//! ```
//! use std::path::Path;
//! let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-specs");
//! let spec = pio_compiler::spec::load(&root.join("qwen3-0.6b.yaml")).unwrap();
//! let graph = pio_compiler::lower::lower(&spec).unwrap();
//! pio_compiler::ir::verify::verify(&graph, None).unwrap();
//! let summary = pio_compiler::summary::summarize(&graph);
//! assert_eq!(summary.params, 596_049_920);
//! ```

pub mod codegen;
pub mod compile;
pub mod error;
pub mod fusion;
pub mod interp;
pub mod ir;
pub mod lower;
pub mod memory;
pub mod output;
pub mod pass;
pub mod rope;
pub mod spec;
pub mod summary;

pub use compile::{compile, CompileOptions, Compiled};
pub use error::{CompileError, IrError, Loc, SpecError, SpecErrors};
