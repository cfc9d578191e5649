//! `pio list` and `pio check-kernels`: what the specs and the compiled kernels are.

use anyhow::{Context, Result};
use pio::{errln, outln};
use pio_compiler::summary::{bytes_human, thousands};
use std::path::PathBuf;

pub(crate) fn check_kernels(dir: &std::path::Path, arch: &str) -> Result<()> {
    use pio::runtime::cuda::nvrtc;
    let artifact = pio_artifact::Artifact::load_dir(dir)?;
    let mut base = artifact.nvrtc_options.clone();
    base.push("--ptxas-options=-v".into());
    let options = nvrtc::options_for(arch, &base);
    let (major, minor) = nvrtc::version()?;
    outln!("NVRTC {major}.{minor}, options: {}", options.join(" "))?;
    let kernels: Vec<(String, String)> = artifact
        .kernels
        .iter()
        .map(|k| (k.name.clone(), k.source.clone()))
        .collect();
    let scratch = std::env::temp_dir().join(format!("pio-check-kernels-{}", std::process::id()));
    let cache = nvrtc::KernelCache::new(scratch.clone());
    let start = std::time::Instant::now();
    let compiled = cache.compile_all(&kernels, &options);
    let _ = std::fs::remove_dir_all(&scratch);
    let compiled = compiled?;
    for c in &compiled {
        let usage: Vec<&str> = c
            .log
            .lines()
            .filter(|l| l.contains("registers") || l.contains("spill"))
            .map(str::trim)
            .collect();
        outln!(
            "ok  {:<32} {:>7} bytes  {}",
            c.name,
            c.image.len(),
            usage.join(" | ")
        )?;
    }
    outln!(
        "{} kernels compiled for {arch} in {:.2} s",
        compiled.len(),
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}

pub(crate) fn list(dir: PathBuf) -> Result<()> {
    let files = pio_compiler::spec::discover(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?;
    outln!(
        "{:<26} {:<8} {:>15} {:>10} {:>7} {:>9}  SPEC",
        "MODEL",
        "FAMILY",
        "PARAMS",
        "WEIGHTS",
        "LAYERS",
        "CONTEXT"
    )?;
    let mut broken = 0;
    for path in files {
        let shown = path.display();
        // Sizes come from the declarations: listing never builds a graph.
        match pio_compiler::spec::load(&path) {
            Ok(spec) => {
                let size = spec.size();
                outln!(
                    "{:<26} {:<8} {:>15} {:>10} {:>7} {:>9}  {shown}",
                    spec.name(),
                    spec.family.name,
                    thousands(size.params),
                    bytes_human(size.weight_bytes),
                    size.layers,
                    spec.context_bound()
                        .map(|c| thousands(c as u64))
                        .unwrap_or_default(),
                )?;
            }
            Err(e) => {
                broken += 1;
                errln!("{shown}: not a usable spec:\n{e}");
            }
        }
    }
    if broken > 0 {
        anyhow::bail!("{broken} spec file(s) could not be loaded (see above)");
    }
    Ok(())
}
