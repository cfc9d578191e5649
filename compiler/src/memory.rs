//! The memory planner: buffers with lifetimes over the launch schedule get offsets in one
//! activation arena (alignment 256), so that buffers whose lifetimes overlap never share bytes.
//! Weights, the KV cache and the step's inputs/outputs live in their own regions and are not
//! planned here. There is no in-place aliasing between buffers: a value written over its
//! operand's bytes is the same buffer to the planner (see codegen's LinearAdd).

/// One arena buffer to place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufReq {
    pub bytes: u64,
    /// Index of the first step that writes it.
    pub first: usize,
    /// Index of the last step that reads it (>= first).
    pub last: usize,
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

/// Places every buffer, largest first (ties: earliest first step, then index), at the lowest
/// offset that is free for its whole lifetime.
pub fn plan(reqs: &[BufReq]) -> Plan {
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(align(reqs[i].bytes)), reqs[i].first, i));
    let mut placed: Vec<(u64, u64, usize, usize)> = Vec::new(); // (offset, bytes, first, last)
    let mut offsets = vec![0u64; reqs.len()];
    let mut arena = 0u64;
    for i in order {
        let (bytes, first, last) = (align(reqs[i].bytes), reqs[i].first, reqs[i].last);
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
        offsets[i] = offset;
        arena = arena.max(offset + bytes);
    }
    Plan {
        offsets,
        arena_bytes: arena,
        unplanned_bytes: reqs.iter().map(|r| align(r.bytes)).sum(),
    }
}

/// Checks a plan: buffers alive at the same time (lifetimes that overlap or touch: a step that
/// is one's last and the other's first uses both) never overlap. Returns the first conflict.
pub fn check(reqs: &[BufReq], plan: &Plan) -> Result<(), String> {
    for i in 0..reqs.len() {
        for j in i + 1..reqs.len() {
            let (a, b) = (&reqs[i], &reqs[j]);
            let live = a.first <= b.last && b.first <= a.last;
            let (ao, bo) = (plan.offsets[i], plan.offsets[j]);
            let overlap = ao < bo + b.bytes && bo < ao + a.bytes;
            if live && overlap {
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
    fn check_rejects_buffers_alive_together_at_the_same_bytes() {
        let (a, b) = (req(512, 0, 2), req(512, 2, 4));
        let shared = |offsets: Vec<u64>| Plan {
            offsets,
            arena_bytes: 512,
            unplanned_bytes: 1024,
        };
        // Touching lifetimes: step 2 reads `a` and writes `b`.
        let e = check(&[a.clone(), b.clone()], &shared(vec![0, 0])).unwrap_err();
        assert_eq!(e, "buffers 'b0' and 'b2' are alive together but overlap");
        // Overlapping lifetimes, and bytes that overlap in part.
        let c = req(512, 1, 3);
        assert!(check(&[a.clone(), c.clone()], &shared(vec![0, 0])).is_err());
        assert!(check(&[a.clone(), c], &shared(vec![0, 256])).is_err());
        // Disjoint lifetimes may share bytes; the planner places touching ones apart.
        check(&[a.clone(), req(512, 3, 4)], &shared(vec![0, 0])).unwrap();
        let p = plan(&[a.clone(), b.clone()]);
        assert_ne!(p.offsets[0], p.offsets[1]);
        check(&[a, b], &p).unwrap();
    }
}
