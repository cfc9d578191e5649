//! pio: the command-line layer over [`pio_engine`] (load a compiled model and generate), plus
//! the benchmark suite and its reports.
//!
//! Everything a program needs to run a model is [`pio_engine`]'s, re-exported here: see
//! [`Model`].

pub mod bench;
pub mod cli;
pub mod npy;

pub use pio_engine::*;
