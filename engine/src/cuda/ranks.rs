//! Tensor parallel on GPUs: ranks 1..N of a model split over N GPUs, each a [`CudaModel`] on
//! its own GPU, driven by a thread of its own; rank 0 stays with the backend's owner. Every
//! call runs on all ranks at once ([`Followers::each`]): the ranks' steps meet in their NCCL
//! collectives, and rank 0's result is the model's.

use crate::error::PioError;
use crate::options::{LoadOptions, WeightsSource};
use crate::weights::{fill_rank_bf16, Rank};
use pio_artifact::Artifact;
use pio_runtime::cuda::collective::RankComm;
use pio_runtime::cuda::device::{CudaError, Gpu};
use pio_runtime::cuda::executor::CudaModel;
use pio_runtime::cuda::nvrtc::KernelCache;
use pio_runtime::weights::WeightDir;
use std::sync::Mutex;

/// Ranks 1..N and the threads that drive them (thread i drives rank i + 1).
pub struct Followers {
    models: Vec<Mutex<CudaModel>>,
    pool: rayon::ThreadPool,
}

impl Followers {
    /// Tensor-parallel ranks, rank 0 included.
    pub fn ranks(&self) -> usize {
        self.models.len() + 1
    }

    /// Runs `f` on `rank0` (on this thread) and on every follower (on its thread) at once;
    /// returns rank 0's result, or the first error of any rank (a follower's names its rank).
    pub fn each<R>(
        &self,
        rank0: &mut CudaModel,
        f: impl Fn(&mut CudaModel) -> Result<R, CudaError> + Sync,
    ) -> Result<R, CudaError> {
        let failed: Mutex<Option<(usize, CudaError)>> = Mutex::new(None);
        let (models, f) = (&self.models, &f);
        let first = self.pool.in_place_scope(|s| {
            s.spawn_broadcast(|_, ctx| {
                let mut m = models[ctx.index()]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Err(e) = f(&mut m) {
                    let mut slot = failed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    slot.get_or_insert((ctx.index() + 1, e));
                }
            });
            f(rank0)
        });
        let first = first?;
        match failed
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some((rank, e)) => Err(CudaError::Other(format!(
                "tensor-parallel rank {rank}: {e}"
            ))),
            None => Ok(first),
        }
    }
}

/// A tensor-parallel model's ranks loaded: rank 0's model and the followers.
pub struct Loaded {
    pub rank0: CudaModel,
    pub followers: Followers,
}

/// Loads `artifact` (compiled with `--tp ranks`) onto GPUs 0..ranks: one communicator per GPU,
/// each rank's weight slices uploaded by its own thread (straight from the checkpoint's memory
/// map, never the whole tensor). `progress` follows rank 0's upload.
pub fn load(
    ranks: usize,
    artifact: &Artifact,
    source: &WeightsSource,
    dir: Option<&WeightDir>,
    opts: &LoadOptions,
    progress: impl FnMut(u64, u64) + Send,
) -> Result<Loaded, PioError> {
    let what =
        format!("{ranks} tensor-parallel ranks (--tp {ranks}, or an artifact compiled with it)");
    let count = Gpu::count().map_err(|e| PioError::Device(format!("{what}: {e}")))?;
    if count < ranks {
        return Err(PioError::Device(format!(
            "{what} need {ranks} GPUs, one per rank; the driver sees {count} (--device cpu runs \
             the ranks simulated on the CPU)"
        )));
    }
    let gpus = (0..ranks)
        .map(Gpu::open_ordinal)
        .collect::<Result<Vec<_>, _>>()?;
    for g in &gpus {
        g.bind_to_thread()?;
        crate::footprint::check_gpu(artifact, g.memory().0)
            .map_err(|e| PioError::Device(format!("GPU {} ({}): {e}", g.ordinal, g.name)))?;
    }
    let cache_dir = opts
        .kernel_cache
        .clone()
        .unwrap_or_else(KernelCache::default_dir);
    // Compiled once here, so that the ranks' loads find every kernel in the disk cache rather
    // than compiling (and writing) the same kernels at once.
    let arch = gpus[0].arch.clone();
    super::compile_kernels(artifact, &arch, &cache_dir)?;
    let cache = KernelCache::new(cache_dir);
    let comms = RankComm::init_all(&gpus.iter().collect::<Vec<_>>())?;
    let mut progress = Some(progress);
    let results: Vec<Result<CudaModel, PioError>> = std::thread::scope(|s| {
        let handles: Vec<_> = gpus
            .into_iter()
            .zip(comms)
            .enumerate()
            .map(|(rank, (gpu, comm))| {
                let (cache, mut progress) = (&cache, progress.take());
                s.spawn(move || -> Result<CudaModel, PioError> {
                    gpu.bind_to_thread()?;
                    let fill = |w: &pio_artifact::WeightEntry, out: &mut [u8]| {
                        fill_rank_bf16(w, out, dir, source, Some(Rank { ranks, rank }))
                    };
                    let report = |done: u64, total: u64| {
                        if let Some(p) = progress.as_mut() {
                            p(done, total)
                        }
                    };
                    let model =
                        CudaModel::new_rank(gpu, artifact.clone(), cache, fill, report, Some(comm))
                            .map_err(|e| {
                                PioError::Device(format!("tensor-parallel rank {rank}: {e}"))
                            })?;
                    Ok(model)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(PioError::Device(
                        "a tensor-parallel rank's load panicked".into(),
                    ))
                })
            })
            .collect()
    });
    let mut models = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let rank0 = models.remove(0);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(models.len())
        .thread_name(|i| format!("pio-tp-rank-{}", i + 1))
        .build()
        .map_err(|e| PioError::Device(format!("starting the ranks' threads: {e}")))?;
    Ok(Loaded {
        rank0,
        followers: Followers {
            models: models.into_iter().map(Mutex::new).collect(),
            pool,
        },
    })
}
