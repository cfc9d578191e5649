//! The memory planner: buffers with lifetimes over the launch schedule get offsets in one
//! activation arena (alignment 256), so that buffers whose lifetimes overlap never share bytes.
//! Weights, the KV cache and the step's inputs/outputs live in their own regions and are not
//! planned here. A buffer may take over its operand's bytes (in place) only where the op's
//! kernel is alias-safe; the caller says so with `inplace_of`.

/// One arena buffer to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufReq {
    pub bytes: u64,
    /// Index of the first step that writes it.
    pub first: usize,
    /// Index of the last step that reads it (>= first).
    pub last: usize,
    /// Reuse this earlier buffer's bytes (its last use must be this buffer's first step).
    pub inplace_of: Option<usize>,
    /// For messages.
    pub name: String,
}

/// The result: an offset per buffer and the arena size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub offsets: Vec<u64>,
    pub arena_bytes: u64,
    /// Sum of all buffer sizes (what an arena without reuse would need).
    pub unplanned_bytes: u64,
}

pub const ALIGN: u64 = 256;

fn align(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

/// Places every buffer: in-place chains share one slot, then slots are placed largest first at
/// the lowest offset free for their whole lifetime.
pub fn plan(reqs: &[BufReq]) -> Plan {
    let n = reqs.len();
    // Resolve in-place chains to a root slot.
    let mut root: Vec<usize> = (0..n).collect();
    for (i, r) in reqs.iter().enumerate() {
        if let Some(src) = r.inplace_of {
            if src < i && reqs[src].last == r.first && reqs[src].bytes >= r.bytes {
                root[i] = root[src];
            }
        }
    }
    // Each slot's size and lifetime.
    let mut slots: Vec<(u64, usize, usize, usize)> = Vec::new(); // (bytes, first, last, root)
    for i in 0..n {
        let r = root[i];
        match slots.iter_mut().find(|s| s.3 == r) {
            Some(s) => {
                s.0 = s.0.max(align(reqs[i].bytes));
                s.1 = s.1.min(reqs[i].first);
                s.2 = s.2.max(reqs[i].last);
            }
            None => slots.push((align(reqs[i].bytes), reqs[i].first, reqs[i].last, r)),
        }
    }
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&s| (std::cmp::Reverse(slots[s].0), slots[s].1, s));
    let mut placed: Vec<(u64, u64, usize, usize)> = Vec::new(); // (offset, bytes, first, last)
    let mut slot_offset = vec![0u64; slots.len()];
    let mut arena = 0u64;
    for s in order {
        let (bytes, first, last, _) = slots[s];
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|p| p.2 <= last && first <= p.3)
            .map(|p| (p.0, p.0 + p.1))
            .collect();
        busy.sort();
        let mut offset = 0u64;
        for (start, end) in busy {
            if offset + bytes <= start {
                break;
            }
            offset = offset.max(end);
        }
        placed.push((offset, bytes, first, last));
        slot_offset[s] = offset;
        arena = arena.max(offset + bytes);
    }
    let offsets = (0..n)
        .map(|i| {
            let s = slots
                .iter()
                .position(|s| s.3 == root[i])
                .expect("every buffer has a slot");
            slot_offset[s]
        })
        .collect();
    Plan {
        offsets,
        arena_bytes: arena,
        unplanned_bytes: reqs.iter().map(|r| align(r.bytes)).sum(),
    }
}

/// Checks a plan: buffers alive at the same time never overlap unless one is in place of the
/// other. Returns the first conflict.
pub fn check(reqs: &[BufReq], plan: &Plan) -> Result<(), String> {
    for i in 0..reqs.len() {
        for j in i + 1..reqs.len() {
            let (a, b) = (&reqs[i], &reqs[j]);
            let live = a.first <= b.last && b.first <= a.last;
            let (ao, bo) = (plan.offsets[i], plan.offsets[j]);
            let overlap = ao < bo + b.bytes && bo < ao + a.bytes;
            let chained = b.inplace_of == Some(i) || a.inplace_of == Some(j);
            if live && overlap && !chained {
                return Err(format!(
                    "buffers '{}' and '{}' are alive together but overlap",
                    a.name, b.name
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bytes: u64, first: usize, last: usize) -> BufReq {
        BufReq {
            bytes,
            first,
            last,
            inplace_of: None,
            name: format!("b{first}"),
        }
    }

    #[test]
    fn disjoint_lifetimes_share_bytes() {
        let reqs = vec![req(1000, 0, 1), req(1000, 2, 3), req(1000, 4, 5)];
        let p = plan(&reqs);
        assert_eq!(p.arena_bytes, 1024);
        assert_eq!(p.unplanned_bytes, 3072);
        check(&reqs, &p).unwrap();
    }

    #[test]
    fn overlapping_lifetimes_do_not() {
        let reqs = vec![req(300, 0, 2), req(300, 1, 3), req(10, 2, 2)];
        let p = plan(&reqs);
        assert_eq!(p.offsets.iter().filter(|&&o| o % ALIGN != 0).count(), 0);
        check(&reqs, &p).unwrap();
        assert_eq!(p.arena_bytes, 512 + 512 + 256);
    }

    #[test]
    fn in_place_only_when_the_source_dies_there() {
        let mut b = req(512, 2, 4);
        b.inplace_of = Some(0);
        let reqs = vec![req(512, 0, 2), req(512, 1, 3), b];
        let p = plan(&reqs);
        assert_eq!(p.offsets[2], p.offsets[0]);
        check(&reqs, &p).unwrap();
        // Not in place when the source is still read later.
        let mut c = req(512, 1, 4);
        c.inplace_of = Some(0);
        let reqs = vec![req(512, 0, 2), c];
        let p = plan(&reqs);
        assert_ne!(p.offsets[1], p.offsets[0]);
    }
}
