//! How a weight splits over tensor-parallel ranks: which axis, and in how many indivisible groups
//! (attention heads, KV heads, or single rows). The spec says it (`shard:` on a weight), lowering
//! records it on the weight, the compiler's shard pass reads it, and whoever loads the weights
//! for a rank takes [`Shard::range`] of the axis: never the whole tensor per rank.

use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The axis of a `[out, in]` weight (or of a `[n]` bias) that splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardAxis {
    /// Axis 0: output features (column-parallel linear in Megatron's words), or vocabulary rows.
    Rows,
    /// Axis 1: input features (row-parallel linear; its products are partial sums).
    Cols,
}

impl ShardAxis {
    pub const ALL: [ShardAxis; 2] = [ShardAxis::Rows, ShardAxis::Cols];

    /// The spelling in specs (`shard: rows`).
    pub fn name(self) -> &'static str {
        match self {
            ShardAxis::Rows => "rows",
            ShardAxis::Cols => "cols",
        }
    }

    pub fn parse(s: &str) -> Option<ShardAxis> {
        ShardAxis::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The tensor axis.
    pub fn index(self) -> usize {
        match self {
            ShardAxis::Rows => 0,
            ShardAxis::Cols => 1,
        }
    }
}

/// A weight's split: `axis` is cut into `groups` equal groups that never straddle two ranks
/// (attention heads: a rank holds whole heads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    pub axis: ShardAxis,
    pub groups: usize,
}

/// Why an axis cannot split over the ranks asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("{ranks} ranks: a tensor-parallel run needs at least one rank")]
    NoRanks { ranks: usize },
    #[error("an extent of {extent} does not split into {groups} equal groups")]
    Extent { extent: usize, groups: usize },
    #[error(
        "{groups} groups do not spread evenly over {ranks} ranks (one of them must divide the other)"
    )]
    Uneven { groups: usize, ranks: usize },
    #[error("a tensor of shape {shape:?} has no axis {axis} to split")]
    NoAxis { shape: Vec<usize>, axis: usize },
    #[error("{found} values for a tensor of shape {shape:?}")]
    Length { found: usize, shape: Vec<usize> },
}

/// Which groups of `groups` rank `rank` of `ranks` holds: `groups / ranks` consecutive ones
/// when there are at least as many groups as ranks, else the one group it shares with
/// `ranks / groups - 1` other ranks (KV heads replicated when there are fewer than ranks).
pub fn group_range(groups: usize, ranks: usize, rank: usize) -> Result<Range<usize>, ShardError> {
    if ranks == 0 {
        return Err(ShardError::NoRanks { ranks });
    }
    if groups >= ranks && groups % ranks == 0 {
        let per = groups / ranks;
        Ok(rank * per..(rank + 1) * per)
    } else if groups > 0 && groups < ranks && ranks % groups == 0 {
        let g = rank / (ranks / groups);
        Ok(g..g + 1)
    } else {
        Err(ShardError::Uneven { groups, ranks })
    }
}

/// The range of an axis of `extent` elements in `groups` groups that rank `rank` holds.
pub fn axis_range(
    extent: usize,
    groups: usize,
    ranks: usize,
    rank: usize,
) -> Result<Range<usize>, ShardError> {
    if groups == 0 || extent % groups != 0 {
        return Err(ShardError::Extent { extent, groups });
    }
    let size = extent / groups;
    let g = group_range(groups, ranks, rank)?;
    Ok(g.start * size..g.end * size)
}

/// The whole axis's extent from one rank's `local` extent (the inverse of [`axis_range`]'s
/// length).
pub fn global_extent(local: usize, groups: usize, ranks: usize) -> usize {
    local * groups.min(ranks.max(1))
}

/// Whether the ranks' ranges partition the axis (every element on exactly one rank): what a
/// partial sum over ranks needs, so that nothing is counted twice.
pub fn partitions(groups: usize, ranks: usize) -> bool {
    ranks > 0 && groups >= ranks && groups % ranks == 0
}

impl Shard {
    /// The range of the split axis (of `shape`) that rank `rank` of `ranks` holds.
    pub fn range(
        &self,
        shape: &[usize],
        ranks: usize,
        rank: usize,
    ) -> Result<Range<usize>, ShardError> {
        let axis = self.axis.index();
        let extent = *shape.get(axis).ok_or_else(|| ShardError::NoAxis {
            shape: shape.to_vec(),
            axis,
        })?;
        axis_range(extent, self.groups, ranks, rank)
    }

    /// Where rank `rank`'s part lies in a whole row-major tensor of `shape` whose elements are
    /// `elem` units wide (1 for typed values, the dtype's size for raw bytes): one range per
    /// index of the axes before the split one (a single range for rows, one per row for
    /// columns), in order.
    pub fn runs(
        &self,
        shape: &[usize],
        ranks: usize,
        rank: usize,
        elem: usize,
    ) -> Result<Vec<Range<usize>>, ShardError> {
        let r = self.range(shape, ranks, rank)?;
        let axis = self.axis.index();
        let outer: usize = shape[..axis].iter().product();
        let inner = shape[axis + 1..].iter().product::<usize>() * elem;
        let run = shape[axis] * inner;
        Ok((0..outer)
            .map(|o| o * run + r.start * inner..o * run + r.end * inner)
            .collect())
    }

    /// Rank `rank`'s slice of a whole row-major tensor of `shape` (elements of any type).
    pub fn slice<T: Copy>(
        &self,
        whole: &[T],
        shape: &[usize],
        ranks: usize,
        rank: usize,
    ) -> Result<Vec<T>, ShardError> {
        if whole.len() != shape.iter().product::<usize>() {
            return Err(ShardError::Length {
                found: whole.len(),
                shape: shape.to_vec(),
            });
        }
        let runs = self.runs(shape, ranks, rank, 1)?;
        let mut out = Vec::with_capacity(runs.iter().map(Range::len).sum());
        for r in runs {
            out.extend_from_slice(&whole[r]);
        }
        Ok(out)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.axis.name(), self.groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_spread_over_ranks() {
        assert_eq!(group_range(8, 2, 1), Ok(4..8));
        assert_eq!(group_range(8, 4, 3), Ok(6..8));
        // Two KV heads over four ranks: ranks 0 and 1 share head 0, ranks 2 and 3 head 1.
        let held: Vec<_> = (0..4).map(|r| group_range(2, 4, r).unwrap()).collect();
        assert_eq!(held, vec![0..1, 0..1, 1..2, 1..2]);
        assert_eq!(
            group_range(3, 2, 0),
            Err(ShardError::Uneven {
                groups: 3,
                ranks: 2
            })
        );
        assert_eq!(
            group_range(2, 3, 0),
            Err(ShardError::Uneven {
                groups: 2,
                ranks: 3
            })
        );
        assert!(group_range(4, 0, 0).is_err());
        // No groups at all: an error, not a division by zero.
        assert_eq!(
            group_range(0, 2, 0),
            Err(ShardError::Uneven {
                groups: 0,
                ranks: 2
            })
        );
        assert!(partitions(4, 2) && !partitions(2, 4) && !partitions(6, 4));
        assert!(!partitions(4, 0), "no ranks partition nothing");
    }

    #[test]
    fn the_whole_extent_comes_back_from_a_part() {
        // 8 heads over 2 ranks: 4 heads' rows each.
        assert_eq!(global_extent(3 * 4, 8, 2), 3 * 8);
        // 2 KV heads replicated over 4 ranks: each holds one head's rows of the two.
        assert_eq!(global_extent(3, 2, 4), 6);
        for (groups, ranks) in [(8, 2), (2, 4), (4, 4)] {
            for rank in 0..ranks {
                let part = axis_range(24, groups, ranks, rank).unwrap().len();
                assert_eq!(
                    global_extent(part, groups, ranks),
                    24,
                    "{groups} over {ranks}"
                );
            }
        }
    }

    #[test]
    fn axes_parse_by_their_spec_names() {
        assert_eq!(ShardAxis::parse("rows"), Some(ShardAxis::Rows));
        assert_eq!(ShardAxis::parse("cols"), Some(ShardAxis::Cols));
        assert_eq!(ShardAxis::parse("columns"), None);
        assert_eq!(ShardAxis::parse(""), None);
    }

    #[test]
    fn runs_count_in_element_units() {
        // [2, 4] of 2-byte elements, columns in 2 groups: rank 1 holds columns 2..4 of each
        // row, bytes 4..8 of row 0 (bytes 0..8) and 12..16 of row 1.
        let cols = Shard {
            axis: ShardAxis::Cols,
            groups: 2,
        };
        assert_eq!(cols.runs(&[2, 4], 2, 1, 2).unwrap(), vec![4..8, 12..16]);
        // Rows: one run, rows 1..2 of [2, 4] in 2-byte units.
        let rows = Shard {
            axis: ShardAxis::Rows,
            groups: 2,
        };
        assert_eq!(rows.runs(&[2, 4], 2, 1, 2).unwrap(), vec![8..16]);
    }

    #[test]
    fn axis_ranges_hold_whole_groups() {
        // 4 heads of 32: rank 1 of 2 holds features 64..128.
        assert_eq!(axis_range(128, 4, 2, 1), Ok(64..128));
        assert_eq!(
            axis_range(100, 3, 1, 0),
            Err(ShardError::Extent {
                extent: 100,
                groups: 3
            })
        );
    }

    #[test]
    fn slices_rows_and_cols() {
        // [4, 3] = 0..12.
        let whole: Vec<u32> = (0..12).collect();
        let rows = Shard {
            axis: ShardAxis::Rows,
            groups: 4,
        };
        assert_eq!(
            rows.slice(&whole, &[4, 3], 2, 1).unwrap(),
            (6..12).collect::<Vec<_>>()
        );
        // Rank 1's part of [4, 3]: rows 2..4, shape [2, 3].
        assert_eq!(rows.range(&[4, 3], 2, 1).unwrap(), 2..4);
        assert!(matches!(
            rows.slice(&whole[..11], &[4, 3], 2, 1),
            Err(ShardError::Length { found: 11, .. })
        ));
        let cols_of_vector = Shard {
            axis: ShardAxis::Cols,
            groups: 1,
        };
        assert!(matches!(
            cols_of_vector.range(&[4], 1, 0),
            Err(ShardError::NoAxis { axis: 1, .. })
        ));
        let cols = Shard {
            axis: ShardAxis::Cols,
            groups: 3,
        };
        assert_eq!(
            cols.slice(&whole, &[4, 3], 3, 2).unwrap(),
            vec![2, 5, 8, 11]
        );
        // A bias ([n]) splits by rows.
        assert_eq!(rows.slice(&whole[..4], &[4], 4, 3).unwrap(), vec![3]);
        assert_eq!(rows.to_string(), "rows/4");
    }
}
