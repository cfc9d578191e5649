//! The prefix cache's index: full KV blocks identified by their tokens and by the prefix before
//! them, so that requests sharing a prompt prefix (a system prompt, a few-shot preamble, an
//! earlier turn of a chat) share its blocks instead of prefilling it again.
//!
//! A block's key is its tokens plus a hash chained over every earlier block of its sequence
//! (as vLLM's block hashes are). Keys compare by tokens *and* chain hash, so two blocks with
//! the same tokens after different prefixes never match; the chain hash is keyed randomly per
//! process ([`std::collections::hash_map::RandomState`]), so a client cannot craft a prompt to
//! collide with another's prefix.

use crate::blocks::BlockId;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::OnceLock;

/// What a full block holds: its tokens after a given prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockKey {
    /// Hash of this block's tokens chained over its whole prefix.
    chain: u64,
    /// The chain hash of the block before (0 for a sequence's first block).
    parent: u64,
    tokens: Box<[u32]>,
}

impl Hash for BlockKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.chain);
    }
}

fn hasher() -> &'static RandomState {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new)
}

impl BlockKey {
    /// The key of a block holding `tokens` after the block keyed `parent` (None: the sequence's
    /// first block).
    pub fn new(parent: Option<&BlockKey>, tokens: &[u32]) -> BlockKey {
        let parent = parent.map_or(0, |p| p.chain);
        let mut h = hasher().build_hasher();
        h.write_u64(parent);
        h.write_usize(tokens.len());
        for &t in tokens {
            h.write_u32(t);
        }
        BlockKey {
            chain: h.finish(),
            parent,
            tokens: tokens.into(),
        }
    }

    /// The keys of every full block of `tokens`, in order.
    pub fn chain_of(tokens: &[u32], block_size: usize) -> Vec<BlockKey> {
        let mut keys: Vec<BlockKey> = Vec::with_capacity(tokens.len() / block_size);
        for chunk in tokens.chunks_exact(block_size) {
            let k = BlockKey::new(keys.last(), chunk);
            keys.push(k);
        }
        keys
    }
}

/// Cached keys and the least-recently-used order of the cached blocks nobody holds.
#[derive(Debug)]
pub struct PrefixCache {
    by_key: HashMap<BlockKey, BlockId>,
    key_of: Vec<Option<BlockKey>>,
    /// Unused cached blocks by the tick they were released at (oldest first).
    parked: BTreeMap<u64, BlockId>,
    parked_at: Vec<Option<u64>>,
    tick: u64,
}

impl PrefixCache {
    pub fn new(num_blocks: usize) -> Self {
        PrefixCache {
            by_key: HashMap::new(),
            key_of: vec![None; num_blocks],
            parked: BTreeMap::new(),
            parked_at: vec![None; num_blocks],
            tick: 0,
        }
    }

    /// Unused cached blocks (they can be evicted).
    pub fn evictable(&self) -> usize {
        self.parked.len()
    }

    pub fn parked(&self) -> impl Iterator<Item = BlockId> + '_ {
        self.parked.values().copied()
    }

    pub fn find(&self, key: &BlockKey) -> Option<BlockId> {
        self.by_key.get(key).copied()
    }

    /// Records that `b` holds `key` (unless another block already does, or `b` holds one).
    pub fn insert(&mut self, b: BlockId, key: BlockKey) {
        if self.key_of[b as usize].is_some() || self.by_key.contains_key(&key) {
            return;
        }
        self.key_of[b as usize] = Some(key.clone());
        self.by_key.insert(key, b);
    }

    /// A block nobody holds any more: kept as evictable if it is cached (returns true).
    pub fn park(&mut self, b: BlockId) -> bool {
        if self.key_of[b as usize].is_none() {
            return false;
        }
        self.tick += 1;
        self.parked.insert(self.tick, b);
        self.parked_at[b as usize] = Some(self.tick);
        true
    }

    /// A parked block taken again by a prefix hit.
    pub fn unpark(&mut self, b: BlockId) {
        if let Some(t) = self.parked_at[b as usize].take() {
            self.parked.remove(&t);
        }
    }

    /// Takes the least recently used parked block and forgets its key.
    pub fn evict_lru(&mut self) -> Option<BlockId> {
        let (_, b) = self.parked.pop_first()?;
        self.parked_at[b as usize] = None;
        if let Some(k) = self.key_of[b as usize].take() {
            self.by_key.remove(&k);
        }
        Some(b)
    }

    /// Forgets every key; returns the blocks that were cached.
    pub fn clear(&mut self) -> Vec<BlockId> {
        self.by_key.clear();
        self.parked.clear();
        self.parked_at.iter_mut().for_each(|t| *t = None);
        let mut was = Vec::new();
        for (b, k) in self.key_of.iter_mut().enumerate() {
            if k.take().is_some() {
                was.push(b as BlockId);
            }
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_depend_on_the_whole_prefix() {
        let a = BlockKey::chain_of(&[1, 2, 3, 4], 2);
        let b = BlockKey::chain_of(&[9, 9, 3, 4], 2);
        assert_eq!(a.len(), 2);
        assert_ne!(a[1], b[1], "same tokens after a different prefix");
        assert_eq!(
            a,
            BlockKey::chain_of(&[1, 2, 3, 4, 5], 2),
            "partial block ignored"
        );
    }

    #[test]
    fn a_block_holds_one_key_and_a_key_one_block() {
        let mut c = PrefixCache::new(2);
        let k = BlockKey::new(None, &[1]);
        c.insert(0, k.clone());
        c.insert(1, k.clone());
        assert_eq!(c.find(&k), Some(0));
        assert!(!c.park(1), "block 1 holds nothing");
        assert!(c.park(0));
        assert_eq!(c.evict_lru(), Some(0));
        assert_eq!(c.find(&k), None);
    }
}
