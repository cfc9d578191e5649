//! The KV block pool's bookkeeping: which blocks are in use, by how many sequences, and which
//! free ones still hold a cached prefix (see [`crate::prefix_cache`]).
//!
//! A block is in exactly one of three states: **used** (reference count > 0), **cached** (count
//! 0, its tokens' hash registered, evictable least recently used first), or **free** (count 0,
//! nothing registered). Allocation takes a free block first and evicts the least recently used
//! cached one only when none is free, so a cached prefix survives as long as memory allows.

use crate::prefix_cache::{BlockKey, PrefixCache};
use std::collections::VecDeque;

/// Index of a block in the pool.
pub type BlockId = u32;

/// Reference counts and free lists of a pool of `num_blocks` blocks.
#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    refcount: Vec<u32>,
    /// Count 0 and not cached, in release order.
    free: VecDeque<BlockId>,
    cache: PrefixCache,
    caching: bool,
}

/// Counters of a pool, for stats and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub total: usize,
    /// Blocks some sequence holds.
    pub used: usize,
    /// Unused blocks that keep a cached prefix (evictable).
    pub cached: usize,
    /// Unused blocks with nothing cached.
    pub free: usize,
}

impl BlockPool {
    /// A pool of `num_blocks` blocks of `block_size` positions; `caching` turns the prefix
    /// cache on.
    pub fn new(num_blocks: usize, block_size: usize, caching: bool) -> Self {
        BlockPool {
            block_size,
            refcount: vec![0; num_blocks],
            free: (0..num_blocks as BlockId).collect(),
            cache: PrefixCache::new(num_blocks),
            caching,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.refcount.len()
    }

    pub fn caching(&self) -> bool {
        self.caching
    }

    /// Blocks an allocation can get now (free plus evictable cached ones).
    pub fn available(&self) -> usize {
        self.free.len() + self.cache.evictable()
    }

    pub fn usage(&self) -> PoolUsage {
        PoolUsage {
            total: self.num_blocks(),
            used: self.refcount.iter().filter(|&&c| c > 0).count(),
            cached: self.cache.evictable(),
            free: self.free.len(),
        }
    }

    /// A block for one sequence (count 1), or None when every block is in use.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let b = match self.free.pop_front() {
            Some(b) => b,
            None => self.cache.evict_lru()?,
        };
        debug_assert_eq!(self.refcount[b as usize], 0);
        self.refcount[b as usize] = 1;
        Some(b)
    }

    /// Drops one sequence's hold on `b`; a block nobody holds becomes cached (if its prefix is
    /// registered) or free.
    pub fn release(&mut self, b: BlockId) {
        let c = &mut self.refcount[b as usize];
        assert!(*c > 0, "block {b} released more often than it was taken");
        *c -= 1;
        if *c == 0 && !self.cache.park(b) {
            self.free.push_back(b);
        }
    }

    /// The cached block holding `key`, taken for one more sequence; None on a miss (or with
    /// the cache off).
    pub fn lookup(&mut self, key: &BlockKey) -> Option<BlockId> {
        if !self.caching {
            return None;
        }
        let b = self.cache.find(key)?;
        if self.refcount[b as usize] == 0 {
            self.cache.unpark(b);
        }
        self.refcount[b as usize] += 1;
        Some(b)
    }

    /// Whether `key` is cached, and whether taking it would use an evictable block (which
    /// [`Self::available`] counts): `None` on a miss, `Some(true)` for an unused cached block.
    pub fn peek(&self, key: &BlockKey) -> Option<bool> {
        if !self.caching {
            return None;
        }
        let b = self.cache.find(key)?;
        Some(self.refcount[b as usize] == 0)
    }

    /// Registers a full block's contents (held by the caller) so that later prompts with the
    /// same prefix can share it. A key already cached in another block is left as it is.
    pub fn register(&mut self, b: BlockId, key: BlockKey) {
        if self.caching {
            debug_assert!(self.refcount[b as usize] > 0);
            self.cache.insert(b, key);
        }
    }

    /// Forgets every cached prefix (blocks in use keep their contents; unused ones become
    /// free).
    pub fn clear_cache(&mut self) {
        for b in self.cache.clear() {
            if self.refcount[b as usize] == 0 {
                self.free.push_back(b);
            }
        }
    }

    /// Checks the pool's invariants (for tests): every block in exactly one state.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = vec![0u8; self.num_blocks()];
        for &b in &self.free {
            seen[b as usize] += 1;
            if self.refcount[b as usize] != 0 {
                return Err(format!("block {b} is free but held"));
            }
        }
        for b in self.cache.parked() {
            seen[b as usize] += 1;
            if self.refcount[b as usize] != 0 {
                return Err(format!("block {b} is evictable but held"));
            }
        }
        for (b, &c) in self.refcount.iter().enumerate() {
            let expect = u8::from(c == 0);
            if seen[b] != expect {
                return Err(format!(
                    "block {b} (held {c} times) is listed {} times as unused",
                    seen[b]
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prefix_cache::BlockKey;

    #[test]
    fn allocate_until_empty_then_release() {
        let mut p = BlockPool::new(3, 4, false);
        let got: Vec<_> = (0..3).map(|_| p.allocate().unwrap()).collect();
        assert_eq!(p.allocate(), None);
        assert_eq!(p.usage().used, 3);
        for b in got {
            p.release(b);
        }
        assert_eq!(p.available(), 3);
        p.check().unwrap();
    }

    #[test]
    fn a_released_cached_block_is_found_again_and_evicted_last_used_first() {
        let mut p = BlockPool::new(2, 2, true);
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        let ka = BlockKey::new(None, &[1, 2]);
        let kb = BlockKey::new(Some(&ka), &[3, 4]);
        p.register(a, ka.clone());
        p.register(b, kb.clone());
        // Released tail first, as a finished sequence does: the head is used last.
        p.release(b);
        p.release(a);
        assert_eq!(p.usage().cached, 2);
        assert_eq!(p.peek(&ka), Some(true));
        assert_eq!(p.lookup(&ka), Some(a));
        assert_eq!(p.available(), 1);
        // The one allocation left evicts b (the only evictable block).
        assert_eq!(p.allocate(), Some(b));
        assert_eq!(p.lookup(&kb), None);
        p.check().unwrap();
    }

    #[test]
    fn a_shared_block_is_freed_by_its_last_holder_only() {
        let mut p = BlockPool::new(1, 2, true);
        let a = p.allocate().unwrap();
        let k = BlockKey::new(None, &[7, 7]);
        p.register(a, k.clone());
        assert_eq!(p.lookup(&k), Some(a));
        p.release(a);
        assert_eq!(p.usage().used, 1);
        p.release(a);
        assert_eq!(p.usage().cached, 1);
        p.clear_cache();
        assert_eq!(p.usage().free, 1);
        p.check().unwrap();
    }

    #[test]
    #[should_panic(expected = "released more often")]
    fn double_release_is_a_bug_not_a_silent_leak() {
        let mut p = BlockPool::new(1, 2, false);
        let a = p.allocate().unwrap();
        p.release(a);
        p.release(a);
    }
}
