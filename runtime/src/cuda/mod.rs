//! CUDA: kernels compiled at run time with NVRTC (cached on disk). The CUDA libraries are
//! loaded dynamically, so pio builds and runs its CPU paths on machines without CUDA; every
//! entry point checks for the library first and turns its absence into an error.

pub mod collective;
pub mod device;
pub mod executor;
mod gemm;
pub mod gemm_check;
mod graph;
mod launch;
mod logit_rows;
mod modules;
pub mod nvrtc;
pub mod observe;
pub mod profile;
mod regions;
pub mod sampler;
