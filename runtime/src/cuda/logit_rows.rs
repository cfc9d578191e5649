//! Which rows of a step the logits GEMM computes (and a tensor-parallel logits gather takes).
//! Generation wants one row, the last; a decode batch every row; a chunk step of several
//! sequences the last row of each. For the last, those rows of the GEMM's input are first
//! moved, in place, to the step's last rows (so that the GEMM reads one contiguous block of
//! rows and writes the sequences' logits to rows 0.. of the io region, in order).

use super::device::{drv, CudaError, Gpu};
use super::gemm::row_class;
use cudarc::driver::result;

/// The rows of a step whose logits are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogitRows<'a> {
    /// Every row.
    All,
    /// The last row only.
    Last,
    /// The rows listed (strictly ascending, below the step's row count): each sequence's last
    /// row of a chunk step of several sequences.
    Ends(&'a [u32]),
}

impl LogitRows<'_> {
    /// `true` for every row, `false` for the last (the older callers' flag).
    pub(crate) fn every_row(all: bool) -> LogitRows<'static> {
        match all {
            true => LogitRows::All,
            false => LogitRows::Last,
        }
    }

    /// Rows computed in a step of `rows` rows.
    pub(crate) fn count(&self, rows: u32) -> u32 {
        match self {
            LogitRows::All => rows,
            LogitRows::Last => rows.min(1),
            LogitRows::Ends(ends) => (ends.len() as u32).min(rows),
        }
    }

    /// What the GEMM tuning of a launch list is keyed on besides the step's rows: `None` for
    /// every row, else the class of the count of rows (see `gemm::row_class`).
    pub(crate) fn tuning_key(&self) -> Option<u32> {
        match self {
            LogitRows::All => None,
            LogitRows::Last => Some(1),
            LogitRows::Ends(ends) => Some(row_class(ends.len() as u32)),
        }
    }
}

/// The row copies (source, destination) that move `ends` to the last `ends.len()` of `rows`
/// rows, in the order to make them: from the last down, so that no copy overwrites a row a
/// later one reads (each destination lies at or past its source, and past every earlier end).
/// Rows already in place are left out.
pub(crate) fn gather_plan(ends: &[u32], rows: u32) -> Vec<(u32, u32)> {
    let k = ends.len() as u32;
    ends.iter()
        .enumerate()
        .rev()
        .map(|(i, &src)| (src, rows - k + i as u32))
        .filter(|(src, dst)| src != dst)
        .collect()
}

/// Checks `ends` for a step of `rows` rows: strictly ascending and below `rows`.
pub(crate) fn check_ends(ends: &[u32], rows: u32) -> Result<(), CudaError> {
    let ascending = ends.windows(2).all(|w| w[0] < w[1]);
    match ends.last() {
        Some(&last) if ascending && last < rows => Ok(()),
        _ => Err(CudaError::Other(format!(
            "logits rows {ends:?} of a step of {rows} rows: they must be ascending and below \
             the row count"
        ))),
    }
}

/// Moves `ends`' rows of the matrix at `base` (rows of `row_bytes`, `pitch` bytes apart) to its
/// last rows, on the GPU's stream (see [`gather_plan`]).
pub(crate) fn gather_rows(
    gpu: &Gpu,
    base: u64,
    pitch: u64,
    row_bytes: usize,
    ends: &[u32],
    rows: u32,
) -> Result<(), CudaError> {
    check_ends(ends, rows)?;
    for (src, dst) in gather_plan(ends, rows) {
        // SAFETY: both rows lie within the step's `rows` rows of the GEMM's input, which the
        // artifact's checks keep inside its region; they are distinct rows.
        drv(
            "move a sequence's last row before the logits GEMM",
            unsafe {
                result::memcpy_dtod_async(
                    base + dst as u64 * pitch,
                    base + src as u64 * pitch,
                    row_bytes,
                    gpu.stream,
                )
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the plan on rows labelled by their index and returns the last `ends.len()` rows.
    fn simulate(ends: &[u32], rows: u32) -> Vec<u32> {
        let mut m: Vec<u32> = (0..rows).collect();
        for (src, dst) in gather_plan(ends, rows) {
            m[dst as usize] = m[src as usize];
        }
        m[(rows as usize - ends.len())..].to_vec()
    }

    #[test]
    fn every_sequence_end_lands_in_order_whatever_the_lengths() {
        // Sequences of 1, 3 and 1 rows (ends 0, 3, 4): row 0 moves to row 2, the others stay.
        assert_eq!(simulate(&[0, 3, 4], 5), vec![0, 3, 4]);
        // Every length pattern of up to 6 sequences of 1..=4 rows.
        let mut cases = 0;
        let mut stack = vec![vec![]];
        while let Some(lens) = stack.pop() {
            if !lens.is_empty() {
                let ends: Vec<u32> = lens
                    .iter()
                    .scan(0u32, |at, &l| {
                        *at += l;
                        Some(*at - 1)
                    })
                    .collect();
                let rows = ends.last().unwrap() + 1;
                check_ends(&ends, rows).unwrap();
                assert_eq!(simulate(&ends, rows), ends, "lengths {lens:?}");
                cases += 1;
            }
            if lens.len() < 6 {
                for l in 1..=4u32 {
                    let mut next = lens.clone();
                    next.push(l);
                    stack.push(next);
                }
            }
        }
        assert_eq!(cases, (1..=6).map(|n| 4usize.pow(n)).sum::<usize>());
    }

    #[test]
    fn rows_in_place_are_not_copied_and_bad_lists_are_refused() {
        assert!(gather_plan(&[4], 5).is_empty());
        assert!(gather_plan(&[2, 3, 4], 5).is_empty());
        assert_eq!(gather_plan(&[511, 1023], 1024), vec![(511, 1022)]);
        assert!(check_ends(&[], 4).is_err());
        assert!(check_ends(&[3, 3], 4).is_err());
        assert!(check_ends(&[2, 1], 4).is_err());
        assert!(check_ends(&[4], 4).is_err());
    }

    #[test]
    fn counts_and_tuning_keys() {
        assert_eq!(LogitRows::All.count(7), 7);
        assert_eq!(LogitRows::Last.count(7), 1);
        assert_eq!(LogitRows::Ends(&[1, 4, 6]).count(7), 3);
        assert_eq!(LogitRows::every_row(true), LogitRows::All);
        assert_eq!(LogitRows::Ends(&[1, 4, 6]).tuning_key(), Some(4));
        assert_eq!(LogitRows::All.tuning_key(), None);
        // One sequence's end is the last row: what generation asks for, tuned alike.
        assert_eq!(LogitRows::Ends(&[6]).count(7), LogitRows::Last.count(7));
        assert_eq!(
            LogitRows::Ends(&[6]).tuning_key(),
            LogitRows::Last.tuning_key()
        );
        assert!(gather_plan(&[6], 7).is_empty());
    }
}
