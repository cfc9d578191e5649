//! `pio bench`: benchmark suites against compiled graphs.

pub mod compare;
pub mod gpu_timing;
pub mod plot;
pub mod report;
pub mod runner;
pub mod serving;
