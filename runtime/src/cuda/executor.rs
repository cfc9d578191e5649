//! The static executor: every buffer allocated once from the artifact's memory plan, the launch
//! lists replayed as they are, per-step values (token ids, positions) written to device memory,
//! and the decode step captured once as a CUDA graph and replayed for every token (with an eager
//! fallback that says why). Sampling runs on the GPU.

use super::device::{drv, launch, CudaError, DeviceBuffer, Gpu};
use super::nvrtc::{arch_number, options_for, target_arch_from_env, KernelCache};
use crate::sampling::SamplingParams;
use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::driver::{result, sys};
use pio_artifact::{Arg, Artifact, Region, Step, WeightEntry};
use std::collections::HashMap;
use std::ffi::c_void;

/// The most candidates the GPU sampler keeps (its top-k limit).
pub const GPU_MAX_TOP_K: usize = 64;

/// Whether the GPU sampler draws exactly from `p`: greedy, or top-k between 1 and 64 (without
/// top-k the whole vocabulary is a candidate, which the host sampler handles).
pub fn gpu_sampling_supported(p: &SamplingParams) -> bool {
    p.temperature == 0.0 || (1..=GPU_MAX_TOP_K).contains(&p.top_k)
}

struct SamplerKernels {
    partial: sys::CUfunction,
    finish: sys::CUfunction,
    cand_v: DeviceBuffer,
    cand_i: DeviceBuffer,
    seen: DeviceBuffer,
    gen_count: DeviceBuffer,
    out_token: DeviceBuffer,
}

const SLICE: usize = 2048;

/// A compiled model resident on the GPU.
pub struct CudaModel {
    gpu: Gpu,
    pub artifact: Artifact,
    funcs: HashMap<String, sys::CUfunction>,
    regions: [DeviceBuffer; 4],
    cublas: blas_sys::cublasHandle_t,
    _cublas_workspace: DeviceBuffer,
    graph: Option<sys::CUgraphExec>,
    /// Why the decode step runs eagerly, if it does.
    pub graph_fallback: Option<String>,
    use_graph: bool,
    /// Single tokens run through the prefill launch list (cuBLAS GEMMs) instead of the decode
    /// list: a diagnostic for parity checks, off by default.
    single_tokens_as_prefill: bool,
    /// Launch kernels as programmatic dependent launches (Hopper and later; `PIO_NO_PDL` turns
    /// it off).
    pdl: bool,
    sampler: SamplerKernels,
    cached: usize,
    /// Rows of logits the last step left in the io region (its last token's row is the last).
    logit_rows: usize,
    /// The prefill's logits GEMM computes every row of the step (for `step_all_logits`), not
    /// just the last.
    logits_all_rows: std::cell::Cell<bool>,
    /// The prefill's logits come from a marked GEMM (`Gemm::logits`), which can compute the
    /// last row alone.
    logits_gemm: bool,
    /// With `PIO_PROFILE` set: GPU time per kernel family and phase (decode runs eagerly).
    profile: Option<std::cell::RefCell<Profile>>,
}

/// GPU time per (phase, kernel family), measured with CUDA events around every launch.
#[derive(Default)]
pub struct Profile {
    pub entries: std::collections::BTreeMap<(String, String), (f64, u64)>,
}

impl Profile {
    /// A table: phase, family, launches, total ms, share.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for phase in ["decode", "prefill"] {
            let total: f64 = self
                .entries
                .iter()
                .filter(|(k, _)| k.0 == phase)
                .map(|(_, v)| v.0)
                .sum();
            if total == 0.0 {
                continue;
            }
            out.push_str(&format!("{phase}: {total:.3} ms of GPU time\n"));
            let mut rows: Vec<_> = self.entries.iter().filter(|(k, _)| k.0 == phase).collect();
            rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
            for ((_, fam), (ms, n)) in rows {
                out.push_str(&format!(
                    "  {fam:<56} {n:>6} launches {ms:>10.3} ms {:>5.1}%  {:>8.2} us/launch\n",
                    100.0 * ms / total,
                    1e3 * ms / *n as f64
                ));
            }
        }
        out
    }
}

fn region_index(r: Region) -> usize {
    match r {
        Region::Weights => 0,
        Region::Kv => 1,
        Region::Io => 2,
        Region::Arena => 3,
    }
}

impl CudaModel {
    /// Compiles the kernels (disk cache), allocates every region, uploads the weights through
    /// `fill` (which writes one weight's bf16 bytes, parts concatenated) and prepares sampling.
    pub fn new(
        gpu: Gpu,
        artifact: Artifact,
        cache: &KernelCache,
        mut fill: impl FnMut(&WeightEntry, &mut [u8]) -> Result<(), String>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<CudaModel, CudaError> {
        let mut sources: Vec<(String, String)> = artifact
            .kernels
            .iter()
            .map(|k| (k.name.clone(), k.source.clone()))
            .collect();
        sources.push(("pio_sampler".into(), include_str!("sample.cu").to_string()));
        let arch = target_arch_from_env(&gpu.arch).map_err(CudaError::Other)?;
        let options = options_for(&arch, &artifact.nvrtc_options);
        let compiled = cache.compile_all(&sources, &options)?;
        let mut funcs = HashMap::new();
        for c in &compiled {
            if c.name == "pio_sampler" {
                for f in ["pio_topk_partial", "pio_sample_final"] {
                    funcs.insert(f.to_string(), gpu.load_function(&c.image, f)?);
                }
            } else {
                funcs.insert(c.name.clone(), gpu.load_function(&c.image, &c.name)?);
            }
        }
        let r = &artifact.regions;
        let regions = [
            gpu.alloc(r.weights, "the weights")?,
            gpu.alloc(r.kv, "the KV cache")?,
            gpu.alloc(r.io, "inputs and logits")?,
            gpu.alloc(r.arena, "the activation arena")?,
        ];
        // The KV region also holds the decode attention's span counts, which start at 0.
        // SAFETY: the region is r.kv bytes long.
        drv("clear the KV cache", unsafe {
            result::memset_d8_async(regions[1].ptr, 0, r.kv as usize, gpu.stream)
        })?;
        // Weights: one staging buffer per weight, uploaded at its offset.
        let total: u64 = artifact.weights.iter().map(|w| w.bytes).sum();
        let mut done = 0u64;
        for w in &artifact.weights {
            let mut host = vec![0u8; w.bytes as usize];
            fill(w, &mut host).map_err(|m| CudaError::Other(format!("weight {}: {m}", w.name)))?;
            gpu.upload(regions[0].ptr + w.offset, &host)?;
            done += w.bytes;
            progress(done, total);
        }
        let cublas = blas::create_handle().map_err(|e| CudaError::Cublas {
            what: "create".into(),
            message: e.to_string(),
        })?;
        let workspace = gpu.alloc(32 << 20, "the cuBLAS workspace")?;
        // SAFETY: valid handle, stream and workspace allocation.
        unsafe {
            blas::set_stream(cublas, gpu.stream as _).map_err(|e| CudaError::Cublas {
                what: "set stream".into(),
                message: e.to_string(),
            })?;
            blas_sys::cublasSetWorkspace_v2(
                cublas,
                workspace.ptr as *mut c_void,
                workspace.bytes as usize,
            )
            .result()
            .map_err(|e| CudaError::Cublas {
                what: "workspace".into(),
                message: e.to_string(),
            })?;
        }
        let vocab = artifact.model.vocab_size;
        let blocks = vocab.div_ceil(SLICE);
        let sampler = SamplerKernels {
            partial: funcs["pio_topk_partial"],
            finish: funcs["pio_sample_final"],
            cand_v: gpu.alloc((blocks * GPU_MAX_TOP_K * 4) as u64, "sampling")?,
            cand_i: gpu.alloc((blocks * GPU_MAX_TOP_K * 4) as u64, "sampling")?,
            seen: gpu.alloc(vocab as u64, "sampling")?,
            gen_count: gpu.alloc(vocab as u64 * 4, "sampling")?,
            out_token: gpu.alloc(4, "sampling")?,
        };
        if blocks * GPU_MAX_TOP_K > 4864 {
            return Err(CudaError::Other(format!(
                "vocabulary of {vocab} is too large for the GPU sampler"
            )));
        }
        let use_graph = std::env::var_os("PIO_NO_CUDA_GRAPH").is_none();
        let logits_gemm = artifact
            .prefill
            .iter()
            .any(|s| matches!(s, Step::Gemm(g) if g.logits));
        // PDL from sm_90 on; kernels compiled for an older architecture have no griddepcontrol.
        let pdl =
            arch_number(&arch).is_some_and(|n| n >= 90) && std::env::var_os("PIO_NO_PDL").is_none();
        let mut m = CudaModel {
            gpu,
            artifact,
            funcs,
            regions,
            cublas,
            _cublas_workspace: workspace,
            graph: None,
            graph_fallback: (!use_graph).then(|| "PIO_NO_CUDA_GRAPH is set".to_string()),
            use_graph,
            single_tokens_as_prefill: false,
            pdl,
            sampler,
            cached: 0,
            logit_rows: 0,
            logits_all_rows: std::cell::Cell::new(false),
            logits_gemm,
            profile: std::env::var_os("PIO_PROFILE").map(|_| Default::default()),
        };
        m.reset()?;
        Ok(m)
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// "weights 1.19 GB, KV cache 3.76 GB, activations 10 MB, io 78 MB; 6.2 GB of 85 GB in use".
    pub fn memory_report(&self) -> String {
        let gb = |b: u64| format!("{:.2} GB", b as f64 / 1e9);
        let r = &self.artifact.regions;
        let (free, total) = self.gpu.memory();
        format!(
            "weights {}, KV cache {}, activations {}, io {}; {} of {} in use on the GPU",
            gb(r.weights),
            gb(r.kv),
            gb(r.arena),
            gb(r.io),
            gb(total - free),
            gb(total)
        )
    }

    pub fn cached_len(&self) -> usize {
        self.cached
    }

    pub fn context_bound(&self) -> usize {
        self.artifact.max_context
    }

    /// Forgets the sequence (cache contents are overwritten by the next steps).
    pub fn reset(&mut self) -> Result<(), CudaError> {
        self.cached = 0;
        self.logit_rows = 0;
        let v = self.artifact.model.vocab_size;
        // SAFETY: both buffers are v (resp. 4v) bytes long.
        unsafe {
            drv(
                "clear",
                result::memset_d8_async(self.sampler.seen.ptr, 0, v, self.gpu.stream),
            )?;
            drv(
                "clear",
                result::memset_d8_async(self.sampler.gen_count.ptr, 0, v * 4, self.gpu.stream),
            )?;
        }
        self.gpu.sync()
    }

    /// Goes back to the first `len` cached tokens, with `next` as the next decode step's input.
    /// The cache keeps what it holds up to `len` (the next steps overwrite the rest): a decode
    /// can be repeated from the same context without prefilling it again.
    pub fn rewind(&mut self, len: usize, next: u32) -> Result<(), CudaError> {
        if len > self.cached {
            return Err(CudaError::Other(format!(
                "cannot rewind to {len} tokens: only {} are cached",
                self.cached
            )));
        }
        self.check_tokens(&[next])?;
        self.cached = len;
        self.logit_rows = 0;
        self.write_inputs(&[next], len)?;
        self.gpu.sync()
    }

    /// Every token id is inside the vocabulary.
    fn check_tokens(&self, tokens: &[u32]) -> Result<(), CudaError> {
        match tokens
            .iter()
            .find(|&&t| t as usize >= self.artifact.model.vocab_size)
        {
            Some(bad) => Err(CudaError::Other(format!(
                "token id {bad} is out of range for a vocabulary of {}",
                self.artifact.model.vocab_size
            ))),
            None => Ok(()),
        }
    }

    /// Marks tokens as seen (the prompt, for the repetition penalty).
    pub fn mark_seen(&mut self, tokens: &[u32]) -> Result<(), CudaError> {
        let mut host = vec![0u8; self.artifact.model.vocab_size];
        self.gpu.download(&mut host, self.sampler.seen.ptr)?;
        for &t in tokens {
            if let Some(x) = host.get_mut(t as usize) {
                *x = 1;
            }
        }
        self.gpu.upload(self.sampler.seen.ptr, &host)
    }

    fn addr(&self, region: Region, offset: u64) -> u64 {
        self.regions[region_index(region)].ptr + offset
    }

    fn write_inputs(&self, tokens: &[u32], start: usize) -> Result<(), CudaError> {
        let io = &self.artifact.io;
        if let [token] = tokens {
            // The per-token path: no host allocation.
            self.gpu.upload_async(
                self.addr(Region::Io, io.tokens),
                &(*token as i32).to_le_bytes(),
            )?;
            return self.gpu.upload_async(
                self.addr(Region::Io, io.positions),
                &(start as i32).to_le_bytes(),
            );
        }
        let ids: Vec<u8> = tokens
            .iter()
            .flat_map(|&t| (t as i32).to_le_bytes())
            .collect();
        let pos: Vec<u8> = (start..start + tokens.len())
            .flat_map(|p| (p as i32).to_le_bytes())
            .collect();
        self.gpu
            .upload_async(self.addr(Region::Io, io.tokens), &ids)?;
        self.gpu
            .upload_async(self.addr(Region::Io, io.positions), &pos)
    }

    fn run_steps(&self, steps: &[Step], tokens: u32) -> Result<(), CudaError> {
        let phase = if std::ptr::eq(steps, self.artifact.decode.as_slice()) {
            "decode"
        } else {
            "prefill"
        };
        for s in steps {
            let timer = match &self.profile {
                Some(_) => {
                    let ev = |_| {
                        drv(
                            "event",
                            result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT),
                        )
                    };
                    let (a, b) = (ev(0)?, ev(1)?);
                    // SAFETY: fresh events recorded on our stream.
                    drv("event", unsafe {
                        result::event::record(a, self.gpu.stream)
                    })?;
                    Some((a, b))
                }
                None => None,
            };
            self.run_step(s, tokens)?;
            if let (Some((a, b)), Some(p)) = (timer, &self.profile) {
                // SAFETY: both events were recorded on our stream; destroyed once.
                let ms = unsafe {
                    drv("event", result::event::record(b, self.gpu.stream))?;
                    drv("event", result::event::synchronize(b))?;
                    let ms = drv("event", result::event::elapsed(a, b))?;
                    let _ = result::event::destroy(a);
                    let _ = result::event::destroy(b);
                    ms
                };
                // Kernel family and the node with its layer number dropped, e.g.
                // "gemv layers.*.mlp.down_proj".
                let (family, node) = match s {
                    Step::Kernel(l) => (
                        l.kernel
                            .rsplit_once('_')
                            .map_or(l.kernel.clone(), |x| x.0.to_string()),
                        &l.node,
                    ),
                    Step::Gemm(g) => ("cublas_gemm".to_string(), &g.node),
                };
                let node: Vec<&str> = node
                    .split('.')
                    .map(|p| if p.parse::<u64>().is_ok() { "*" } else { p })
                    .collect();
                let family = format!("{family} {}", node.join("."));
                let mut p = p.borrow_mut();
                let e = p.entries.entry((phase.to_string(), family)).or_default();
                e.0 += ms as f64;
                e.1 += 1;
            }
        }
        Ok(())
    }

    /// The profile so far (with `PIO_PROFILE` set).
    pub fn profile_report(&self) -> Option<String> {
        self.profile.as_ref().map(|p| p.borrow().report())
    }

    fn run_step(&self, s: &Step, tokens: u32) -> Result<(), CudaError> {
        {
            match s {
                Step::Kernel(l) => {
                    let f = *self.funcs.get(&l.kernel).ok_or_else(|| {
                        CudaError::Other(format!("kernel {} was not compiled", l.kernel))
                    })?;
                    let mut values: Vec<u64> = Vec::with_capacity(l.args.len());
                    let mut ints: Vec<i32> = Vec::new();
                    let mut kinds = Vec::with_capacity(l.args.len());
                    for a in &l.args {
                        match a {
                            Arg::Ptr { region, offset } => {
                                values.push(self.addr(*region, *offset));
                                kinds.push(0);
                            }
                            Arg::Tokens => {
                                ints.push(tokens as i32);
                                kinds.push(1);
                            }
                            Arg::I32(v) => {
                                ints.push(*v);
                                kinds.push(1);
                            }
                        }
                    }
                    let (mut vi, mut ii) = (0, 0);
                    let mut params: Vec<*mut c_void> = kinds
                        .iter()
                        .map(|&k| {
                            if k == 0 {
                                vi += 1;
                                &mut values[vi - 1] as *mut u64 as *mut c_void
                            } else {
                                ii += 1;
                                &mut ints[ii - 1] as *mut i32 as *mut c_void
                            }
                        })
                        .collect();
                    let g = (
                        l.grid[0].eval(tokens),
                        l.grid[1].eval(tokens),
                        l.grid[2].eval(tokens),
                    );
                    // SAFETY: the artifact's arguments match the kernel's parameters (pointers
                    // into our regions, i32 counts); params outlive the call.
                    drv(&format!("launching {} ({})", l.kernel, l.node), unsafe {
                        launch(
                            f,
                            g,
                            (l.block[0], l.block[1], l.block[2]),
                            l.shared_bytes,
                            self.gpu.stream,
                            &mut params,
                            self.pdl,
                        )
                    })?;
                }
                Step::Gemm(gm) => self.gemm(gm, tokens)?,
            }
        }
        Ok(())
    }

    fn gemm(&self, g: &pio_artifact::Gemm, tokens: u32) -> Result<(), CudaError> {
        let ptr = |a: &Arg| match a {
            Arg::Ptr { region, offset } => Ok(self.addr(*region, *offset)),
            _ => Err(CudaError::Other(format!(
                "gemm {}: operand is not a pointer",
                g.node
            ))),
        };
        let (mut a, b, c) = (ptr(&g.a)?, ptr(&g.b)?, ptr(&g.c)?);
        let mut m = g.m.eval(tokens);
        if g.logits && !self.logits_all_rows.get() && m > 1 {
            // Generation wants the last row's logits only: A's last row, C's first.
            a += (m as u64 - 1) * g.lda as u64 * 2;
            m = 1;
        }
        let (alpha, beta) = (1.0f32, g.beta);
        // Row-major C[m,n] = A[m,k] · B[n,k]ᵀ is column-major Cᵀ[n,m] = B · Aᵀ.
        // SAFETY: pointers are inside our regions with the shapes the artifact gives.
        unsafe {
            blas::gemm_ex(
                self.cublas,
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                g.n as i32,
                m as i32,
                g.k as i32,
                &alpha as *const f32 as *const c_void,
                b as *const c_void,
                blas_sys::cudaDataType::CUDA_R_16BF,
                g.k as i32,
                a as *const c_void,
                blas_sys::cudaDataType::CUDA_R_16BF,
                g.lda as i32,
                &beta as *const f32 as *const c_void,
                c as *mut c_void,
                blas_sys::cudaDataType::CUDA_R_16BF,
                g.ldc as i32,
                blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| CudaError::Cublas {
            what: format!("gemm {}", g.node),
            message: e.to_string(),
        })
    }

    /// Runs `tokens` at the positions after the cached ones: prefill in chunks of at most
    /// `max_prefill` tokens, a single token through the decode launch list (CUDA graph) unless
    /// [`Self::set_single_tokens_as_prefill`] says otherwise. Only the last token's logits are
    /// computed (where the artifact's logits GEMM allows it); [`Self::step_all_logits`] gives
    /// every row's.
    pub fn step(&mut self, tokens: &[u32]) -> Result<(), CudaError> {
        self.check_step(tokens)?;
        if tokens.len() == 1 && !self.single_tokens_as_prefill {
            self.write_inputs(tokens, self.cached)?;
            self.decode_launch()?;
            self.cached += 1;
            self.logit_rows = 1;
            // No sync: reading the logits or the sampled token waits for the step.
            return Ok(());
        }
        for chunk in tokens.chunks(self.artifact.max_prefill) {
            self.prefill_chunk(chunk)?;
        }
        self.gpu.sync()
    }

    /// Runs `tokens` as [`Self::step`] does and returns the logits of every one of them (as
    /// f32). Prefill steps then take at most `io.logits_rows` tokens each, the rows the io
    /// region holds.
    pub fn step_all_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, CudaError> {
        self.check_step(tokens)?;
        if tokens.len() == 1 && !self.single_tokens_as_prefill {
            self.step(tokens)?;
            return self.logits();
        }
        let mut rows = Vec::with_capacity(tokens.len());
        self.logits_all_rows.set(true);
        let mut done = Ok(());
        for chunk in tokens.chunks(self.artifact.io.logits_rows.max(1)) {
            done = self.prefill_chunk(chunk).and_then(|()| {
                rows.extend(self.logits()?);
                Ok(())
            });
            if done.is_err() {
                break;
            }
        }
        self.logits_all_rows.set(false);
        done.map(|()| rows)
    }

    /// The step fits the context and its token ids the vocabulary.
    fn check_step(&self, tokens: &[u32]) -> Result<(), CudaError> {
        if tokens.is_empty() {
            return Err(CudaError::Other("a step needs at least one token".into()));
        }
        if self.cached + tokens.len() > self.artifact.max_context {
            return Err(CudaError::Other(format!(
                "context full: {} cached + {} new tokens exceed the context of {} (pio-compile --max-context)",
                self.cached,
                tokens.len(),
                self.artifact.max_context
            )));
        }
        self.check_tokens(tokens)
    }

    /// One prefill launch list run over `chunk` (at most `max_prefill` tokens).
    fn prefill_chunk(&mut self, chunk: &[u32]) -> Result<(), CudaError> {
        self.write_inputs(chunk, self.cached)?;
        self.run_steps(&self.artifact.prefill, chunk.len() as u32)?;
        self.cached += chunk.len();
        self.logit_rows = if self.logits_all_rows.get() || !self.logits_gemm {
            chunk.len()
        } else {
            1
        };
        Ok(())
    }

    /// One decode step with the inputs already in device memory: graph replay, else eager.
    fn decode_launch(&mut self) -> Result<(), CudaError> {
        if self.profile.is_some() {
            return self.run_steps(&self.artifact.decode, 1);
        }
        if self.use_graph && self.graph.is_none() && self.graph_fallback.is_none() {
            match self.capture() {
                Ok(g) => self.graph = Some(g),
                Err(e) => {
                    self.graph_fallback = Some(format!("CUDA graph capture failed: {e}"));
                    eprintln!("note: decoding without a CUDA graph: {e}");
                }
            }
        }
        match self.graph {
            // SAFETY: the graph was instantiated from our stream's work and is still valid.
            Some(g) => drv("graph launch", unsafe {
                result::graph::launch(g, self.gpu.stream)
            }),
            None => self.run_steps(&self.artifact.decode, 1),
        }
    }

    fn capture(&self) -> Result<sys::CUgraphExec, CudaError> {
        // SAFETY: capture on our own stream; nothing allocates or frees while capturing.
        unsafe {
            drv(
                "begin capture",
                result::stream::begin_capture(
                    self.gpu.stream,
                    sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
                ),
            )?;
            let launched = self.run_steps(&self.artifact.decode, 1);
            let graph = drv("end capture", result::stream::end_capture(self.gpu.stream))?;
            launched?;
            drv(
                "instantiate graph",
                result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)),
            )
        }
    }

    /// Turns the CUDA graph off or on (for the graph-vs-eager check).
    pub fn set_graph(&mut self, on: bool) {
        self.use_graph = on;
    }

    /// Runs single tokens through the prefill launch list (cuBLAS GEMMs, the tensor-core
    /// attention) instead of the decode list. Slower; for parity checks that separate the
    /// decode GEMVs' summation order from everything else.
    pub fn set_single_tokens_as_prefill(&mut self, on: bool) {
        self.single_tokens_as_prefill = on;
    }

    /// Turns programmatic dependent launch off or on (on Hopper and later only); the decode
    /// graph is captured again at the next step.
    pub fn set_pdl(&mut self, on: bool) {
        let on = on && self.gpu.major >= 9;
        if on != self.pdl {
            self.pdl = on;
            let _ = self.gpu.sync();
            if let Some(g) = self.graph.take() {
                // SAFETY: instantiated by us, no longer referenced.
                let _ = unsafe { result::graph::exec_destroy(g) };
            }
        }
    }

    /// The logits of the last step's rows, as f32.
    pub fn logits(&self) -> Result<Vec<Vec<f32>>, CudaError> {
        let v = self.artifact.model.vocab_size;
        let rows = self.logit_rows;
        let mut raw = vec![0u8; rows * v * 2];
        self.gpu
            .download(&mut raw, self.addr(Region::Io, self.artifact.io.logits))?;
        Ok(raw
            .chunks(v * 2)
            .map(|row| {
                row.chunks(2)
                    .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                    .collect()
            })
            .collect())
    }

    /// Samples the next token from the last row of logits on the GPU; the id also becomes the
    /// next decode step's input. `step` numbers the draw (for the RNG).
    pub fn sample(&mut self, p: &SamplingParams, step: u64) -> Result<u32, CudaError> {
        self.enqueue_sample(p, step)?;
        let mut id = [0u8; 4];
        self.gpu.download(&mut id, self.sampler.out_token.ptr)?;
        let id = i32::from_le_bytes(id);
        u32::try_from(id)
            .map_err(|_| CudaError::Other("the GPU sampler found no finite logit".into()))
    }

    /// Queues the sampler kernels (the token lands in the next step's input and in the sampler's
    /// output buffer) without waiting for them.
    fn enqueue_sample(&mut self, p: &SamplingParams, step: u64) -> Result<(), CudaError> {
        let v = self.artifact.model.vocab_size;
        let k = if p.temperature == 0.0 {
            1
        } else {
            p.top_k.clamp(1, GPU_MAX_TOP_K)
        };
        let row = self.addr(Region::Io, self.artifact.io.logits)
            + ((self.logit_rows.max(1) - 1) * v * 2) as u64;
        let blocks = v.div_ceil(SLICE);
        let s = &self.sampler;
        let (mut logits, mut vocab, mut kk) = (row, v as i32, k as i32);
        let (mut seen, mut gen) = (s.seen.ptr, s.gen_count.ptr);
        let (mut rep, mut pres) = (p.repetition_penalty, p.presence_penalty);
        let (mut cv, mut ci) = (s.cand_v.ptr, s.cand_i.ptr);
        let mut params: [*mut c_void; 9] = [
            &mut logits as *mut u64 as _,
            &mut vocab as *mut i32 as _,
            &mut kk as *mut i32 as _,
            &mut seen as *mut u64 as _,
            &mut gen as *mut u64 as _,
            &mut rep as *mut f32 as _,
            &mut pres as *mut f32 as _,
            &mut cv as *mut u64 as _,
            &mut ci as *mut u64 as _,
        ];
        // SAFETY: parameters match pio_topk_partial's signature; buffers are sized above.
        drv("sampling", unsafe {
            result::launch_kernel(
                s.partial,
                (blocks as u32, 1, 1),
                (256, 1, 1),
                0,
                self.gpu.stream,
                &mut params,
            )
        })?;
        let mut n_cand = (blocks * k) as i32;
        let (mut temp, mut top_p, mut min_p) = (p.temperature, p.top_p, p.min_p);
        let (mut seed, mut stepv) = (p.seed, step);
        let mut out = s.out_token.ptr;
        let mut next = self.addr(Region::Io, self.artifact.io.tokens);
        let mut params: [*mut c_void; 13] = [
            &mut cv as *mut u64 as _,
            &mut ci as *mut u64 as _,
            &mut n_cand as *mut i32 as _,
            &mut kk as *mut i32 as _,
            &mut temp as *mut f32 as _,
            &mut top_p as *mut f32 as _,
            &mut min_p as *mut f32 as _,
            &mut seed as *mut u64 as _,
            &mut stepv as *mut u64 as _,
            &mut out as *mut u64 as _,
            &mut next as *mut u64 as _,
            &mut seen as *mut u64 as _,
            &mut gen as *mut u64 as _,
        ];
        // SAFETY: parameters match pio_sample_final's signature.
        drv("sampling", unsafe {
            result::launch_kernel(
                s.finish,
                (1, 1, 1),
                (1024, 1, 1),
                0,
                self.gpu.stream,
                &mut params,
            )
        })?;
        Ok(())
    }

    /// GPU time (ms, CUDA events) of `steps` decode steps after the cached tokens, each one a
    /// graph replay plus GPU sampling, with the sampled token fed to the next step on the device
    /// (no host round trip). The cache must have room for them.
    pub fn timed_decode(&mut self, steps: usize, p: &SamplingParams) -> Result<f64, CudaError> {
        if self.cached + steps > self.artifact.max_context {
            return Err(CudaError::Other(format!(
                "{} cached + {steps} decode steps exceed the context of {}",
                self.cached, self.artifact.max_context
            )));
        }
        let ev = || {
            drv(
                "event",
                result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT),
            )
        };
        let (start, end) = (ev()?, ev()?);
        // Positions for every step, uploaded before timing.
        let pos: Vec<i32> = (self.cached..self.cached + steps)
            .map(|p| p as i32)
            .collect();
        let mut staged = Vec::with_capacity(steps);
        for &p in &pos {
            staged.push(p.to_le_bytes());
        }
        // SAFETY: events recorded on our stream, destroyed once below.
        drv("event", unsafe {
            result::event::record(start, self.gpu.stream)
        })?;
        let positions = self.addr(Region::Io, self.artifact.io.positions);
        for (i, p_bytes) in staged.iter().enumerate() {
            self.gpu.upload_async(positions, p_bytes)?;
            self.decode_launch()?;
            self.cached += 1;
            self.logit_rows = 1;
            self.enqueue_sample(p, i as u64)?;
        }
        let ms = unsafe {
            drv("event", result::event::record(end, self.gpu.stream))?;
            drv("event", result::event::synchronize(end))?;
            let ms = drv("event", result::event::elapsed(start, end))?;
            let _ = result::event::destroy(start);
            let _ = result::event::destroy(end);
            ms
        };
        Ok(ms as f64)
    }

    /// Device-to-device copy bandwidth: bytes read plus written per second, over a 1 GiB copy
    /// (median of 5, after a warm-up).
    pub fn copy_bandwidth(&self) -> Result<f64, CudaError> {
        let bytes = 1u64 << 30;
        let (a, b) = (
            self.gpu.alloc(bytes, "bandwidth test")?,
            self.gpu.alloc(bytes, "bandwidth test")?,
        );
        let ev = || {
            drv(
                "event",
                result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT),
            )
        };
        let (start, end) = (ev()?, ev()?);
        let mut times = Vec::new();
        for i in 0..6 {
            // SAFETY: two allocations of `bytes`; events on our stream.
            let ms = unsafe {
                drv("event", result::event::record(start, self.gpu.stream))?;
                drv(
                    "copy",
                    result::memcpy_dtod_async(b.ptr, a.ptr, bytes as usize, self.gpu.stream),
                )?;
                drv("event", result::event::record(end, self.gpu.stream))?;
                drv("event", result::event::synchronize(end))?;
                drv("event", result::event::elapsed(start, end))?
            };
            if i > 0 {
                times.push(ms as f64);
            }
        }
        // SAFETY: created above, destroyed once.
        unsafe {
            let _ = result::event::destroy(start);
            let _ = result::event::destroy(end);
        }
        times.sort_by(f64::total_cmp);
        Ok(2.0 * bytes as f64 / (times[times.len() / 2] / 1e3))
    }

    /// Device memory pio allocated beyond the four regions (cuBLAS workspace, sampler buffers).
    pub fn workspace_bytes(&self) -> u64 {
        let s = &self.sampler;
        self._cublas_workspace.bytes
            + s.cand_v.bytes
            + s.cand_i.bytes
            + s.seen.bytes
            + s.gen_count.bytes
            + s.out_token.bytes
    }
}

impl Drop for CudaModel {
    fn drop(&mut self) {
        if let Some(g) = self.graph.take() {
            // SAFETY: instantiated by us, destroyed once.
            let _ = unsafe { result::graph::exec_destroy(g) };
        }
        // SAFETY: created by us, destroyed once.
        let _ = unsafe { blas::destroy_handle(self.cublas) };
    }
}
