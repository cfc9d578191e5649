//! The engine's error type.

use std::path::PathBuf;

/// Anything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum PioError {
    #[error(transparent)]
    Spec(#[from] pio_compiler::SpecErrors),
    #[error(transparent)]
    FromConfig(#[from] pio_compiler::spec::from_config::FromConfigError),
    #[error(transparent)]
    Ir(#[from] pio_compiler::IrError),
    #[error(transparent)]
    Compile(#[from] pio_compiler::CompileError),
    #[error(transparent)]
    Artifact(#[from] pio_artifact::ArtifactError),
    #[error(transparent)]
    Weights(#[from] pio_runtime::weights::WeightsError),
    #[error(transparent)]
    Executor(#[from] pio_compiler::interp::InterpError),
    #[error(transparent)]
    Tokenizer(#[from] pio_runtime::tokenizer::TokenizerError),
    #[error(transparent)]
    Chat(#[from] pio_runtime::chat::ChatError),
    #[error(transparent)]
    Generate(#[from] pio_runtime::generate::GenerateError),
    #[error(transparent)]
    Sampling(#[from] pio_runtime::sampling::SamplingError),
    /// A device that cannot be used as asked (no driver, no GPU, a path it lacks).
    #[error("{0}")]
    Device(String),
    #[error(transparent)]
    NotEnough(#[from] pio_runtime::resources::NotEnough),
    #[error(transparent)]
    Cuda(#[from] pio_runtime::cuda::device::CudaError),
    #[error(transparent)]
    Admission(#[from] crate::scheduler::AdmissionError),
    /// Something the model's device cannot do yet.
    #[error("{0}")]
    Unsupported(String),
    /// Load settings that do not fit the model or the artifact.
    #[error("{0}")]
    Options(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}
