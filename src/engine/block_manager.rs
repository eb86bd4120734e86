//! The KV block pool: which block ids are free, which hold a sequence's
//! K/V (with reference counts, since prefix-cached blocks are shared), and
//! which are cached but unused and evictable. It owns block ids and the
//! prefix cache index only; the K/V memory itself lives in the model's KV
//! cache, and scheduling policy (who gets blocks, who is preempted) is the
//! scheduler's.
//!
//! Every block is exactly one of: free (in `free_block_ids`, no hash),
//! cached-evictable (ref count 0, a hash, in the LRU `evictable`), or owned
//! (ref count = number of block tables holding it).
//!
//! Prefix caching: a full block is named by `hash(parent block hash, its
//! token ids)`, so a hash identifies the whole prefix up to that block.
//! Blocks are registered only once their K/V are computed
//! (`cache_full_blocks`, after the step ran), so a hit never reads a block
//! that is still being written.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use super::sequence::Sequence;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("out of KV blocks: {needed} needed, {free} free")]
    OutOfBlocks { needed: usize, free: usize },
    #[error("sequence {id} already holds blocks")]
    AlreadyAllocated { id: u64 },
}

/// Hash of a full block given its parent's: stable within the process.
pub fn hash_block(parent_hash: Option<u64>, token_ids: &[u32]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parent_hash.hash(&mut hasher);
    token_ids.hash(&mut hasher);
    hasher.finish()
}

#[derive(Debug, Clone, Default)]
struct Block {
    ref_count: u32,
    /// Set while the block is in the prefix cache index.
    hash: Option<u64>,
    /// The block's tokens while cached: a hash match is confirmed on them.
    token_ids: Vec<u32>,
    /// Key in `evictable` while the block is cached and unused.
    lru_stamp: Option<u64>,
}

#[derive(Debug)]
pub struct BlockManager {
    block_size: usize,
    enable_prefix_caching: bool,
    blocks: Vec<Block>,
    free_block_ids: VecDeque<u32>,
    /// Prefix cache index: block hash -> block id.
    cached_block_ids: HashMap<u64, u32>,
    /// Cached blocks with ref count 0, oldest release first.
    evictable: BTreeMap<u64, u32>,
    next_stamp: u64,
    prefix_cache_queries: u64,
    prefix_cache_hits: u64,
}

impl BlockManager {
    pub fn new(num_blocks: usize, block_size: usize, enable_prefix_caching: bool) -> Self {
        debug_assert!(block_size > 0);
        Self {
            block_size,
            enable_prefix_caching,
            blocks: vec![Block::default(); num_blocks],
            free_block_ids: (0..num_blocks as u32).collect(),
            cached_block_ids: HashMap::new(),
            evictable: BTreeMap::new(),
            next_stamp: 0,
            prefix_cache_queries: 0,
            prefix_cache_hits: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks available to allocate: free ones and evictable cached ones.
    pub fn num_free_blocks(&self) -> usize {
        self.free_block_ids.len() + self.evictable.len()
    }

    /// Cached blocks that no sequence holds (a subset of the free blocks).
    pub fn num_evictable_blocks(&self) -> usize {
        self.evictable.len()
    }

    /// Blocks held by at least one sequence.
    pub fn num_used_blocks(&self) -> usize {
        self.num_blocks() - self.num_free_blocks()
    }

    /// Tokens looked up in the prefix cache so far.
    pub fn prefix_cache_queries(&self) -> u64 {
        self.prefix_cache_queries
    }

    /// Tokens found in the prefix cache so far.
    pub fn prefix_cache_hits(&self) -> u64 {
        self.prefix_cache_hits
    }

    pub fn blocks_for(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }

    /// Whether `allocate(seq)` would succeed now.
    pub fn can_allocate(&self, seq: &Sequence) -> bool {
        self.blocks_to_allocate(seq, &self.lookup(seq)) <= self.num_free_blocks()
    }

    /// Gives a new (or preempted) sequence blocks for all its tokens, reusing
    /// the cached blocks of its longest cached prefix; sets
    /// `num_cached_tokens` and `num_computed_tokens` to the tokens found.
    pub fn allocate(&mut self, seq: &mut Sequence) -> Result<(), BlockError> {
        if !seq.block_table.is_empty() {
            return Err(BlockError::AlreadyAllocated { id: seq.id });
        }
        let hits = self.lookup(seq);
        let needed = self.blocks_to_allocate(seq, &hits);
        if needed > self.num_free_blocks() {
            return Err(BlockError::OutOfBlocks { needed, free: self.num_free_blocks() });
        }
        let num_cached_tokens = hits.len() * self.block_size;
        if self.enable_prefix_caching {
            self.prefix_cache_queries += seq.num_tokens() as u64;
            self.prefix_cache_hits += num_cached_tokens as u64;
        }
        // Revive the hits before taking fresh blocks, so none gets evicted.
        seq.block_hashes.clear();
        for &(block_id, hash) in &hits {
            let block = &mut self.blocks[block_id as usize];
            if let Some(stamp) = block.lru_stamp.take() {
                self.evictable.remove(&stamp);
            }
            block.ref_count += 1;
            seq.block_table.push(block_id);
            seq.block_hashes.push(hash);
        }
        for _ in hits.len()..self.blocks_for(seq.num_tokens()) {
            let block_id = self.take_free_block().ok_or(BlockError::OutOfBlocks { needed: 1, free: 0 })?;
            self.blocks[block_id as usize].ref_count = 1;
            seq.block_table.push(block_id);
        }
        seq.num_cached_tokens = num_cached_tokens;
        seq.num_computed_tokens = num_cached_tokens;
        Ok(())
    }

    /// Like `allocate`, but the first blocks are `shared` (block ids with
    /// their hashes, possibly none), which another sequence holds with the
    /// same tokens already computed: they are referenced, not computed
    /// again. Not counted as prefix-cache lookups.
    pub fn allocate_shared(
        &mut self,
        seq: &mut Sequence,
        shared: &[(u32, Option<u64>)],
    ) -> Result<(), BlockError> {
        if !seq.block_table.is_empty() {
            return Err(BlockError::AlreadyAllocated { id: seq.id });
        }
        debug_assert!(shared.iter().all(|&(id, _)| self.blocks[id as usize].ref_count > 0));
        let needed = self.blocks_for(seq.num_tokens()).saturating_sub(shared.len());
        if needed > self.num_free_blocks() {
            return Err(BlockError::OutOfBlocks { needed, free: self.num_free_blocks() });
        }
        seq.block_hashes.clear();
        for &(block_id, hash) in shared {
            self.blocks[block_id as usize].ref_count += 1;
            seq.block_table.push(block_id);
            // The hash chain stays a prefix of the table (prefix caching off: empty).
            if let Some(hash) = hash.filter(|_| seq.block_hashes.len() + 1 == seq.block_table.len()) {
                seq.block_hashes.push(hash);
            }
        }
        for _ in shared.len()..self.blocks_for(seq.num_tokens()) {
            let block_id = self.take_free_block().ok_or(BlockError::OutOfBlocks { needed: 1, free: 0 })?;
            self.blocks[block_id as usize].ref_count = 1;
            seq.block_table.push(block_id);
        }
        seq.num_cached_tokens = 0;
        seq.num_computed_tokens = shared.len() * self.block_size;
        Ok(())
    }

    /// Blocks that `allocate_shared(seq, shared)` would take from the pool.
    pub fn can_allocate_shared(&self, seq: &Sequence, num_shared: usize) -> bool {
        self.blocks_for(seq.num_tokens()).saturating_sub(num_shared) <= self.num_free_blocks()
    }

    /// Whether `append_slot(seq)` would succeed now.
    pub fn can_append_slot(&self, seq: &Sequence) -> bool {
        self.missing_blocks(seq) <= self.num_free_blocks()
    }

    /// Makes the block table cover every token of `seq`: after a token was
    /// appended to a full last block, this takes one new block.
    pub fn append_slot(&mut self, seq: &mut Sequence) -> Result<(), BlockError> {
        let needed = self.missing_blocks(seq);
        if needed > self.num_free_blocks() {
            return Err(BlockError::OutOfBlocks { needed, free: self.num_free_blocks() });
        }
        for _ in 0..needed {
            let block_id = self.take_free_block().ok_or(BlockError::OutOfBlocks { needed: 1, free: 0 })?;
            self.blocks[block_id as usize].ref_count = 1;
            seq.block_table.push(block_id);
        }
        Ok(())
    }

    /// Releases the sequence's blocks. Cached ones stay reusable; the tail is
    /// released first so that it is evicted before the shared head.
    pub fn free(&mut self, seq: &mut Sequence) {
        for &block_id in seq.block_table.iter().rev() {
            let block = &mut self.blocks[block_id as usize];
            debug_assert!(block.ref_count > 0, "block {block_id} freed twice");
            block.ref_count = block.ref_count.saturating_sub(1);
            if block.ref_count > 0 {
                continue;
            }
            if block.hash.is_some() {
                block.lru_stamp = Some(self.next_stamp);
                self.evictable.insert(self.next_stamp, block_id);
                self.next_stamp += 1;
            } else {
                self.free_block_ids.push_back(block_id);
            }
        }
        seq.block_table.clear();
        seq.block_hashes.clear();
    }

    /// Registers the sequence's full, computed blocks in the prefix cache.
    /// Call after a step advanced `num_computed_tokens`.
    pub fn cache_full_blocks(&mut self, seq: &mut Sequence) {
        if !self.enable_prefix_caching {
            return;
        }
        let num_full_blocks = (seq.num_computed_tokens / self.block_size).min(seq.block_table.len());
        for index in seq.block_hashes.len()..num_full_blocks {
            let token_ids = seq.block_tokens(index, self.block_size);
            let hash = hash_block(seq.block_hashes.last().copied(), token_ids);
            let block = &mut self.blocks[seq.block_table[index] as usize];
            // A block with the same contents may be cached already (two equal
            // prompts computed in one step): keep that one, this one stays private.
            if block.hash.is_none() && !self.cached_block_ids.contains_key(&hash) {
                block.hash = Some(hash);
                block.token_ids = token_ids.to_vec();
                self.cached_block_ids.insert(hash, seq.block_table[index]);
            }
            seq.block_hashes.push(hash);
        }
    }

    /// Cached blocks of the longest prefix of full blocks, with their hashes.
    /// The last token is never included: its logits must be computed.
    fn lookup(&self, seq: &Sequence) -> Vec<(u32, u64)> {
        let mut hits = Vec::new();
        if !self.enable_prefix_caching {
            return hits;
        }
        let max_blocks = seq.num_tokens().saturating_sub(1) / self.block_size;
        let mut parent_hash = None;
        for index in 0..max_blocks {
            let token_ids = seq.block_tokens(index, self.block_size);
            let hash = hash_block(parent_hash, token_ids);
            match self.cached_block_ids.get(&hash) {
                Some(&block_id) if self.blocks[block_id as usize].token_ids == token_ids => {
                    hits.push((block_id, hash));
                }
                _ => break,
            }
            parent_hash = Some(hash);
        }
        hits
    }

    /// Pool blocks that `allocate` would consume: new blocks plus revived
    /// evictable hits.
    fn blocks_to_allocate(&self, seq: &Sequence, hits: &[(u32, u64)]) -> usize {
        let revived = hits.iter().filter(|&&(id, _)| self.blocks[id as usize].ref_count == 0).count();
        self.blocks_for(seq.num_tokens()) - hits.len() + revived
    }

    fn missing_blocks(&self, seq: &Sequence) -> usize {
        self.blocks_for(seq.num_tokens()).saturating_sub(seq.block_table.len())
    }

    /// A free block, else the least recently released cached one (evicted).
    fn take_free_block(&mut self) -> Option<u32> {
        if let Some(block_id) = self.free_block_ids.pop_front() {
            return Some(block_id);
        }
        let (_, block_id) = self.evictable.pop_first()?;
        let block = &mut self.blocks[block_id as usize];
        block.lru_stamp = None;
        block.token_ids.clear();
        if let Some(hash) = block.hash.take()
            && self.cached_block_ids.get(&hash) == Some(&block_id)
        {
            self.cached_block_ids.remove(&hash);
        }
        Some(block_id)
    }

    /// Checks that every block is exactly one of free, cached-evictable or
    /// owned with the right ref count, given every live block table.
    pub fn check_invariants<'a>(
        &self,
        block_tables: impl IntoIterator<Item = &'a [u32]>,
    ) -> Result<(), String> {
        let n = self.num_blocks();
        let mut owners = vec![0u32; n];
        for table in block_tables {
            for &id in table {
                *owners.get_mut(id as usize).ok_or(format!("block {id} out of range"))? += 1;
            }
        }
        let mut in_free = vec![false; n];
        for &id in &self.free_block_ids {
            let slot = in_free.get_mut(id as usize).ok_or(format!("free block {id} out of range"))?;
            if *slot {
                return Err(format!("block {id} twice in the free list"));
            }
            *slot = true;
        }
        for (&stamp, &id) in &self.evictable {
            let block = self.blocks.get(id as usize).ok_or(format!("evictable block {id} out of range"))?;
            if block.lru_stamp != Some(stamp) || block.ref_count != 0 || block.hash.is_none() {
                return Err(format!("evictable block {id}: {block:?}"));
            }
        }
        for (id, block) in self.blocks.iter().enumerate() {
            let evictable = block.lru_stamp.is_some();
            let state = (owners[id] > 0, in_free[id], evictable);
            match state {
                (true, false, false) if block.ref_count == owners[id] => {}
                (false, true, false) if block.ref_count == 0 && block.hash.is_none() => {}
                (false, false, true) if block.ref_count == 0 => {}
                _ => {
                    return Err(format!(
                        "block {id}: {} owners, free {}, {block:?}",
                        owners[id], in_free[id]
                    ));
                }
            }
            if let Some(hash) = block.hash
                && self.cached_block_ids.get(&hash) != Some(&(id as u32))
            {
                return Err(format!("block {id} has hash {hash:x} but the index disagrees"));
            }
        }
        for (&hash, &id) in &self.cached_block_ids {
            if self.blocks.get(id as usize).and_then(|b| b.hash) != Some(hash) {
                return Err(format!("index entry {hash:x} -> block {id} is stale"));
            }
        }
        Ok(())
    }
}
