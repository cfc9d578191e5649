//! The sampler's selection primitives: candidates in one total order, the top-k heap, a
//! vectorisable argmax and the nucleus (top-p) cut by weighted quickselect.

use std::cmp::Ordering;

/// A candidate token: its penalised logit, unnormalised probability
/// `exp((logit - max) / T)` (1 for the argmax), and id.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cand {
    pub(super) logit: f32,
    pub(super) w: f32,
    pub(super) id: u32,
}

/// Descending logit, ties by ascending id: the total order every filter cuts a prefix of.
pub(super) fn desc(a: &Cand, b: &Cand) -> Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Largest `top_k` handled with a bounded heap; above it, `select_nth_unstable`.
pub(super) const TOP_K_HEAP_MAX: usize = 4096;

/// [`Cand`] ordered by [`desc`], so that a max-heap's top is the worst candidate kept.
struct Worst(Cand);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        desc(&self.0, &other.0) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        desc(&self.0, &other.0)
    }
}

/// The `k` best finite logits in [`desc`] order (unsorted) into `out`, in one pass with a
/// bounded heap: ids are visited in increasing order, so a later id only enters on a strictly
/// larger logit, which keeps the lower id on ties.
pub(super) fn top_k_heap(logits: &[f32], k: usize, out: &mut Vec<Cand>) {
    const L: usize = 16;
    let mut heap = std::collections::BinaryHeap::with_capacity(k + 1);
    // -inf until the heap holds k candidates, then the worst kept logit.
    let mut threshold = f32::NEG_INFINITY;
    for (ci, chunk) in logits.chunks(L).enumerate() {
        // Vectorisable test that skips most chunks once the heap is full.
        if !chunk.iter().fold(false, |any, &x| any | (x > threshold)) {
            continue;
        }
        for (j, &logit) in chunk.iter().enumerate() {
            if logit > threshold {
                let id = (ci * L + j) as u32;
                heap.push(Worst(Cand { logit, w: 0.0, id }));
                if heap.len() > k {
                    heap.pop();
                }
                if heap.len() == k {
                    threshold = heap.peek().map_or(f32::NEG_INFINITY, |w| w.0.logit);
                }
            }
        }
    }
    out.extend(heap.into_iter().map(|w| w.0));
}

/// Maximum of non-NaN, non-empty `v` and the lowest index holding it. Lane-wise maxima first
/// (vectorisable), then a scan for the first index equal to the maximum.
pub(super) fn argmax(v: &[f32]) -> (usize, f32) {
    const L: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; L];
    let chunks = v.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    let max = lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    let best = v.iter().position(|&x| x == max).unwrap_or(0);
    (best, max)
}

pub(super) fn mass(c: &[Cand]) -> f64 {
    c.iter().map(|c| c.w as f64).sum()
}

/// Reorders `cand` so that its first `r` elements are the smallest prefix of the [`desc`]
/// order whose mass reaches `target` (all of `cand` if its mass never does), and returns `r`.
/// Weighted quickselect: expected O(n), no full sort.
pub(super) fn nucleus(cand: &mut [Cand], target: f64) -> usize {
    let (mut lo, mut hi) = (0usize, cand.len());
    let mut acc = 0.0f64; // mass of cand[..lo], all of which is in the nucleus
    while hi - lo > 64 {
        let mid = (hi - lo) / 2;
        cand[lo..hi].select_nth_unstable_by(mid, desc);
        let upper = mass(&cand[lo..lo + mid + 1]);
        if acc + upper >= target {
            hi = lo + mid + 1;
        } else {
            acc += upper;
            lo += mid + 1;
        }
    }
    cand[lo..hi].sort_unstable_by(desc);
    for (j, c) in cand[lo..hi].iter().enumerate() {
        acc += c.w as f64;
        if acc >= target {
            return lo + j + 1;
        }
    }
    hi
}
