//! The consistency of a description read from disk: what the runtime would otherwise trust
//! blindly (a launch's kernel, a pointer's region bounds, the weights' layout).

use crate::{Arg, Artifact, Region, Step};
use std::collections::HashSet;

/// Every launch names one of the artifact's kernels, every pointer argument lies inside its
/// region, and the weights, KV caches and io buffers fit their regions.
pub fn check(a: &Artifact) -> Result<(), String> {
    let kernels: HashSet<&str> = a.kernels.iter().map(|k| k.name.as_str()).collect();
    if kernels.len() != a.kernels.len() {
        return Err("two kernels have the same name".into());
    }
    if a.max_prefill == 0 || a.max_context == 0 || a.model.vocab_size == 0 {
        return Err(format!(
            "max_prefill ({}), max_context ({}) and vocab_size ({}) must be at least 1",
            a.max_prefill, a.max_context, a.model.vocab_size
        ));
    }
    let within = |what: &str, region: Region, offset: u64, bytes: u64| {
        let size = a.regions.size(region);
        match offset.checked_add(bytes) {
            Some(end) if end <= size => Ok(()),
            _ => Err(format!(
                "{what}: bytes {offset}..+{bytes} lie outside the {region:?} region of {size} bytes"
            )),
        }
    };
    for w in &a.weights {
        let elems = w
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        let expected = elems.and_then(|n| n.checked_mul(w.dtype.size() as u64));
        if expected != Some(w.bytes) {
            return Err(format!(
                "weight {}: {} bytes for shape {:?} of {}",
                w.name, w.bytes, w.shape, w.dtype
            ));
        }
        let rows: usize = w.parts.iter().map(|p| p.rows).sum();
        if w.shape.first() != Some(&rows) {
            return Err(format!(
                "weight {}: its parts have {rows} rows, its shape is {:?}",
                w.name, w.shape
            ));
        }
        within(
            &format!("weight {}", w.name),
            Region::Weights,
            w.offset,
            w.bytes,
        )?;
    }
    for kv in &a.kv_caches {
        let what = format!("layer {} {} cache", kv.layer, kv.cache);
        within(&what, Region::Kv, kv.offset, kv.bytes)?;
    }
    let io = &a.io;
    let prefill = a.max_prefill as u64 * 4;
    within("token ids", Region::Io, io.tokens, prefill)?;
    within("positions", Region::Io, io.positions, prefill)?;
    let logits = io.logits_rows as u64 * a.model.vocab_size as u64 * io.logits_dtype.size() as u64;
    within("logits", Region::Io, io.logits, logits)?;
    let pg = &a.paged;
    if pg.block_size == 0 || pg.max_seqs == 0 || pg.max_tokens == 0 || pg.max_blocks_per_seq == 0 {
        return Err(
            "paged: block_size, max_seqs, max_tokens and max_blocks_per_seq must be at least 1"
                .into(),
        );
    }
    if pg.max_seqs > io.logits_rows.max(1) || pg.max_tokens > a.max_prefill {
        return Err(format!(
            "paged: {} sequences and {} tokens exceed the logits rows ({}) or max_prefill ({})",
            pg.max_seqs, pg.max_tokens, io.logits_rows, a.max_prefill
        ));
    }
    let tokens = pg.max_tokens as u64 * 4;
    within("paged slots", Region::Io, pg.slots, tokens)?;
    within("paged sequence indices", Region::Io, pg.seq_index, tokens)?;
    let tables = (pg.max_seqs as u64)
        .checked_mul(pg.max_blocks_per_seq as u64 * 4)
        .ok_or("paged: block tables overflow")?;
    within("paged block tables", Region::Io, pg.block_tables, tables)?;
    within(
        "paged split counts",
        Region::Io,
        pg.split_counts,
        pg.split_counts_bytes,
    )?;
    for e in &pg.pool {
        let bytes = (e.kv_heads * pg.block_size * e.head_dim * 2) as u64;
        if e.offset
            .checked_add(bytes)
            .is_none_or(|end| end > pg.block_bytes)
        {
            return Err(format!(
                "paged: layer {} {} lies outside a pool block of {} bytes",
                e.layer, e.cache, pg.block_bytes
            ));
        }
    }
    for (list, steps) in [
        ("decode", &a.decode),
        ("prefill", &a.prefill),
        ("paged", &a.paged.steps),
        ("paged chunk", &a.paged.chunk_steps),
        ("paged single", &a.paged.single_steps),
    ] {
        for (i, s) in steps.iter().enumerate() {
            let at = format!("{list} step {i} ({})", s.node());
            let args: Vec<&Arg> = match s {
                Step::Kernel(l) => {
                    if !kernels.contains(l.kernel.as_str()) {
                        return Err(format!("{at}: kernel {} is not in the artifact", l.kernel));
                    }
                    l.args.iter().collect()
                }
                Step::Gemm(g) => vec![&g.a, &g.b, &g.c],
                Step::Collective(c) => {
                    if a.tensor_parallel.is_none() {
                        return Err(format!("{at}: a collective in an artifact of one rank"));
                    }
                    if c.logits && c.op != crate::CollectiveOp::AllGather {
                        return Err(format!("{at}: only an all_gather takes the logits' rows"));
                    }
                    [&c.input, &c.output]
                        .into_iter()
                        .chain(&c.scratch)
                        .collect()
                }
            };
            for arg in args {
                match arg {
                    Arg::Ptr {
                        region: Region::Pool,
                        offset,
                    } if *offset >= pg.block_bytes => {
                        return Err(format!(
                            "{at}: pool offset {offset} is outside a block of {} bytes",
                            pg.block_bytes
                        ));
                    }
                    Arg::Ptr {
                        region: Region::Pool,
                        ..
                    } => {}
                    Arg::Ptr { region, offset } => within(&at, *region, *offset, 0)?,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
