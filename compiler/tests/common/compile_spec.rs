//! A spec of `model-specs/` compiled with given codegen and pass options (the codegen tests).

use pio_artifact::Artifact;
use pio_compiler::codegen::CodegenOptions;
use pio_compiler::pass::PassOptions;
use pio_compiler::CompileOptions;
use std::path::Path;

pub fn compile(file: &str, opts: &CodegenOptions, pass_opts: PassOptions) -> Artifact {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-specs");
    let spec = pio_compiler::spec::load(&root.join(file)).unwrap();
    let opts = CompileOptions {
        passes: pass_opts,
        codegen: opts.clone(),
    };
    pio_compiler::compile(&spec, &opts).unwrap().artifact
}
