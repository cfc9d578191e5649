//! Tensor parallel on the CPU: N simulated ranks, one thread each, running the shard pass's
//! graph on their own slices of the weights, with the collectives done in memory (an
//! all-reduce is a sum over ranks in rank order, so every rank gets bit-identical values). It is
//! the oracle of the sharding: its logits equal the unsharded graph's within f32 rounding.

use super::{CpuExecutor, InterpError, PagedSeq, PartLoader, Tensor};
use crate::ir::{Graph, OutputRole};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// The collectives a rank's executor calls. Every rank of a group must make the same calls in
/// the same order.
pub trait Collective: Send + Sync {
    /// The sum over ranks of each rank's `x` (same shapes).
    fn all_reduce(&self, rank: usize, x: &Tensor) -> Result<Tensor, InterpError>;
    /// The ranks' `x` concatenated along the last axis, in rank order.
    fn all_gather(&self, rank: usize, x: &Tensor) -> Result<Tensor, InterpError>;
    /// A rank failed: every rank waiting in (or later entering) a collective gets an error
    /// instead of waiting forever.
    fn abort(&self);
}

/// Which rank an executor is, and how it reaches the others.
#[derive(Clone)]
pub struct Rank {
    pub rank: usize,
    pub ranks: usize,
    pub collective: Arc<dyn Collective>,
}

/// The collectives of ranks that are threads of one process.
pub struct LocalCollective {
    ranks: usize,
    state: Mutex<Exchange>,
    arrived: Condvar,
}

#[derive(Default)]
struct Exchange {
    /// This round's contributions, by rank.
    slots: Vec<Option<Arc<Tensor>>>,
    /// Rounds completed.
    round: u64,
    /// The last completed round's contributions, in rank order.
    published: Arc<Vec<Arc<Tensor>>>,
    aborted: bool,
}

impl LocalCollective {
    pub fn new(ranks: usize) -> Arc<Self> {
        Arc::new(LocalCollective {
            ranks,
            state: Mutex::new(Exchange {
                slots: vec![None; ranks],
                ..Exchange::default()
            }),
            arrived: Condvar::new(),
        })
    }

    /// Makes an aborted group usable again (after every rank's thread has returned).
    pub fn reset(&self) {
        let mut s = self.lock();
        s.slots = vec![None; self.ranks];
        s.aborted = false;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Exchange> {
        // A rank that panicked mid-exchange poisons the lock; the data is still consistent
        // (every write is a whole slot), so go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every rank's `x` for this round, in rank order.
    fn exchange(&self, rank: usize, x: &Tensor) -> Result<Arc<Vec<Arc<Tensor>>>, InterpError> {
        let aborted = || InterpError::Collective("another rank failed; this step is void".into());
        let mut s = self.lock();
        if s.aborted {
            return Err(aborted());
        }
        if rank >= self.ranks || s.slots[rank].is_some() {
            return Err(InterpError::Collective(format!(
                "rank {rank} of {} entered a collective twice or does not exist",
                self.ranks
            )));
        }
        s.slots[rank] = Some(Arc::new(x.clone()));
        let round = s.round;
        if s.slots.iter().all(Option::is_some) {
            let all = s
                .slots
                .iter_mut()
                .map(|t| t.take().expect("all set"))
                .collect();
            s.published = Arc::new(all);
            s.round += 1;
            self.arrived.notify_all();
        } else {
            while s.round == round && !s.aborted {
                s = self.arrived.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            if s.round == round {
                return Err(aborted());
            }
        }
        Ok(s.published.clone())
    }
}

impl Collective for LocalCollective {
    fn all_reduce(&self, rank: usize, x: &Tensor) -> Result<Tensor, InterpError> {
        let all = self.exchange(rank, x)?;
        if let Some(bad) = all.iter().find(|t| t.shape != x.shape) {
            return Err(InterpError::Collective(format!(
                "all_reduce of shapes {:?} and {:?}",
                x.shape, bad.shape
            )));
        }
        let mut sum = vec![0f32; x.data.len()];
        for t in all.iter() {
            for (s, v) in sum.iter_mut().zip(&t.data) {
                *s += v;
            }
        }
        Ok(Tensor::new(x.shape.clone(), sum))
    }

    fn all_gather(&self, rank: usize, x: &Tensor) -> Result<Tensor, InterpError> {
        let all = self.exchange(rank, x)?;
        // Every part `[lead.., w_r]` with the same leading axes.
        let lead = x.shape.split_last().map(|(_, lead)| lead);
        if let Some(bad) = all
            .iter()
            .find(|t| lead.is_none() || t.shape.split_last().map(|(_, l)| l) != lead)
        {
            return Err(InterpError::Collective(format!(
                "all_gather of shapes {:?} and {:?}",
                x.shape, bad.shape
            )));
        }
        let widths: Vec<usize> = all.iter().map(|t| t.shape[t.shape.len() - 1]).collect();
        let rows: usize = lead.unwrap_or_default().iter().product();
        let mut data = Vec::with_capacity(rows * widths.iter().sum::<usize>());
        for row in 0..rows {
            for (t, &w) in all.iter().zip(&widths) {
                data.extend_from_slice(&t.data[row * w..(row + 1) * w]);
            }
        }
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("checked: rank 1 or more") = widths.iter().sum();
        Ok(Tensor::new(shape, data))
    }

    fn abort(&self) {
        self.lock().aborted = true;
        self.arrived.notify_all();
    }
}

/// A tensor-parallel model on the CPU: one executor per rank over a sharded graph, each step
/// run on every rank at once (one thread each); rank 0's outputs are the model's.
pub struct RankGroup {
    execs: Vec<CpuExecutor>,
    collective: Arc<LocalCollective>,
}

impl RankGroup {
    /// Prepares every rank of `graph` (the shard pass's output), each loading its parts of the
    /// weights through `load` (see [`CpuExecutor::new_rank`]).
    pub fn new(graph: Graph, load: &mut PartLoader<'_>) -> Result<Self, InterpError> {
        let ranks = graph.ranks.max(1);
        let collective = LocalCollective::new(ranks);
        let execs = (0..ranks)
            .map(|rank| {
                let ctx = Rank {
                    rank,
                    ranks,
                    collective: collective.clone(),
                };
                CpuExecutor::new_rank(graph.clone(), load, ctx)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RankGroup { execs, collective })
    }

    pub fn ranks(&self) -> usize {
        self.execs.len()
    }

    /// Rank 0's executor (its graph, its cache length).
    pub fn first(&self) -> &CpuExecutor {
        &self.execs[0]
    }

    /// Runs `f` on every rank at once; rank 0's result, or the first error.
    fn on_all<T: Send>(
        &mut self,
        f: impl Fn(&mut CpuExecutor) -> Result<T, InterpError> + Sync,
    ) -> Result<T, InterpError> {
        let collective = &self.collective;
        let results: Vec<Result<T, InterpError>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .execs
                .iter_mut()
                .map(|e| {
                    s.spawn(|| {
                        // A rank that panics must still release the ranks waiting for it.
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(e)));
                        r.unwrap_or_else(|_| {
                            collective.abort();
                            Err(InterpError::Collective("a rank's thread panicked".into()))
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(InterpError::Collective("a rank's thread panicked".into()))
                    })
                })
                .collect()
        });
        self.collective.reset();
        let mut first = None;
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(v) => {
                    first.get_or_insert(v);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            return Ok(first.expect("at least one rank"));
        }
        // Ranks that disagree on what is cached would go on from different positions: start
        // the sequence over on every rank.
        let len = self.execs[0].cached_len();
        if self.execs.iter().any(|e| e.cached_len() != len) {
            self.reset();
        }
        // A real error first, not another rank's "this step is void".
        let i = errors
            .iter()
            .position(|e| !matches!(e, InterpError::Collective(_)))
            .unwrap_or(0);
        Err(errors.swap_remove(i))
    }

    /// [`CpuExecutor::step`] on every rank.
    pub fn step(&mut self, tokens: &[u32]) -> Result<HashMap<OutputRole, Tensor>, InterpError> {
        self.on_all(|e| e.step(tokens))
    }

    /// [`CpuExecutor::step_paged`] on every rank.
    pub fn step_paged(
        &mut self,
        seqs: &[PagedSeq<'_>],
    ) -> Result<HashMap<OutputRole, Tensor>, InterpError> {
        self.on_all(|e| e.step_paged(seqs))
    }

    /// [`CpuExecutor::enable_paged_cache`] on every rank (each holds its own KV heads).
    pub fn enable_paged_cache(
        &mut self,
        num_blocks: usize,
        block_size: usize,
    ) -> Result<(), InterpError> {
        for e in &mut self.execs {
            e.enable_paged_cache(num_blocks, block_size)?;
        }
        Ok(())
    }

    /// [`CpuExecutor::set_context_bound`] on every rank.
    pub fn set_context_bound(&mut self, n: usize) -> Result<(), InterpError> {
        for e in &mut self.execs {
            e.set_context_bound(n)?;
        }
        Ok(())
    }

    /// [`CpuExecutor::reset`] on every rank.
    pub fn reset(&mut self) {
        for e in &mut self.execs {
            e.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_and_gather_in_rank_order() {
        let c = LocalCollective::new(3);
        let out: Vec<(Tensor, Tensor)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .map(|r| {
                    let c = &c;
                    s.spawn(move || {
                        // [2 rows, 1 + r features]
                        let w = 1 + r;
                        let x = Tensor::new(
                            vec![2, w],
                            (0..2 * w).map(|i| (10 * r + i) as f32).collect(),
                        );
                        let sum = c
                            .all_reduce(r, &Tensor::new(vec![2], vec![r as f32, 1.0]))
                            .unwrap();
                        (sum, c.all_gather(r, &x).unwrap())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (sum, gathered) in &out {
            assert_eq!(sum.data, vec![3.0, 3.0]);
            assert_eq!(gathered.shape, vec![2, 6]);
            // Row 0: rank 0's [0], rank 1's [10, 11], rank 2's [20, 21, 22].
            assert_eq!(&gathered.data[..6], &[0.0, 10.0, 11.0, 20.0, 21.0, 22.0]);
            assert_eq!(&gathered.data[6..], &[1.0, 12.0, 13.0, 23.0, 24.0, 25.0]);
        }
    }

    #[test]
    fn a_rank_enters_a_round_once_and_must_exist() {
        let c = LocalCollective::new(2);
        let x = Tensor::new(vec![1], vec![1.0]);
        std::thread::scope(|s| {
            let first = s.spawn(|| c.all_reduce(0, &x));
            // Rank 0 again while its first entry waits for rank 1: refused at once.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let again = c.all_reduce(0, &x).unwrap_err().to_string();
            assert!(again.contains("twice"), "{again}");
            assert!(c.all_reduce(2, &x).is_err(), "rank 2 of 2 does not exist");
            c.all_reduce(1, &x).unwrap();
            assert_eq!(first.join().unwrap().unwrap().data, vec![2.0]);
        });
    }

    #[test]
    fn an_abort_wakes_the_waiting_ranks() {
        let c = LocalCollective::new(2);
        let waiting = std::thread::scope(|s| {
            let h = s.spawn(|| c.all_reduce(0, &Tensor::new(vec![1], vec![1.0])));
            std::thread::sleep(std::time::Duration::from_millis(20));
            c.abort();
            h.join().unwrap()
        });
        assert!(matches!(waiting, Err(InterpError::Collective(_))));
        assert!(c.all_reduce(1, &Tensor::new(vec![1], vec![1.0])).is_err());
        c.reset();
        let ok = std::thread::scope(|s| {
            let h = s.spawn(|| c.all_reduce(0, &Tensor::new(vec![1], vec![1.0])));
            let mine = c.all_reduce(1, &Tensor::new(vec![1], vec![2.0])).unwrap();
            (h.join().unwrap().unwrap(), mine)
        });
        assert_eq!((ok.0.data[0], ok.1.data[0]), (3.0, 3.0));
    }
}
