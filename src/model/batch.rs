//! One step's inputs for the forward pass: a varlen batch of sequences,
//! each with its new tokens, their positions and cache slots, and its
//! block table. Built by the engine, consumed by `CausalLm::forward`. And the
//! encoder's batch of whole sequences, consumed by `Bert::forward`.

/// Token `i` of the batch belongs to sequence `token_seq[i]`, sits at
/// position `positions[i]` and writes its K/V to `slot_mapping[i]`
/// (`block * block_size + offset`). Sequence `s` reads its context through
/// `block_tables[s * max_blocks_per_seq..]` and samples from the logits of
/// token `sample_indices[s]` (its last new token).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchInputs {
    pub token_ids: Vec<u32>,
    pub positions: Vec<u32>,
    pub slot_mapping: Vec<u32>,
    pub token_seq: Vec<u32>,
    /// [num_seqs, max_blocks_per_seq]
    pub block_tables: Vec<u32>,
    pub max_blocks_per_seq: usize,
    pub sample_indices: Vec<u32>,
}

impl BatchInputs {
    pub fn num_tokens(&self) -> usize {
        self.token_ids.len()
    }

    pub fn num_seqs(&self) -> usize {
        self.sample_indices.len()
    }

    /// Appends a sequence: `new_tokens` start at `start_position`, and the
    /// whole context lives in `block_table`.
    pub fn push_sequence(
        &mut self,
        new_tokens: &[u32],
        start_position: usize,
        block_table: &[u32],
        block_size: usize,
    ) {
        let seq = self.num_seqs() as u32;
        for (i, &token) in new_tokens.iter().enumerate() {
            let pos = start_position + i;
            self.token_ids.push(token);
            self.positions.push(pos as u32);
            self.token_seq.push(seq);
            self.slot_mapping
                .push(block_table[pos / block_size] * block_size as u32 + (pos % block_size) as u32);
        }
        self.sample_indices.push((self.token_ids.len() - 1) as u32);
        // Rows are re-laid at the widest table when a longer one arrives.
        if block_table.len() > self.max_blocks_per_seq {
            let old = std::mem::take(&mut self.block_tables);
            let width = block_table.len();
            for row in old.chunks(self.max_blocks_per_seq.max(1)).take(seq as usize) {
                self.block_tables.extend_from_slice(row);
                self.block_tables.resize(self.block_tables.len() + width - row.len(), 0);
            }
            self.max_blocks_per_seq = width;
        }
        self.block_tables.extend_from_slice(block_table);
        self.block_tables.resize((seq as usize + 1) * self.max_blocks_per_seq, 0);
    }
}

/// A varlen batch for an encoder (BERT): whole sequences, no KV cache.
/// Token `i` belongs to sequence `token_seq[i]` at position `positions[i]`
/// within it; sequence `s` is tokens `seq_start[s]..seq_start[s + 1]`.
/// Nothing is padded: attention stays within each sequence's own range.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderBatch {
    pub token_ids: Vec<u32>,
    /// Segment A (0) or B (1) of BERT's sentence pairs; 0 for one text.
    pub token_type_ids: Vec<u32>,
    pub positions: Vec<u32>,
    pub token_seq: Vec<u32>,
    /// [num_seqs + 1]: where each sequence starts, then the token count.
    pub seq_start: Vec<u32>,
}

impl Default for EncoderBatch {
    fn default() -> Self {
        Self {
            token_ids: Vec::new(),
            token_type_ids: Vec::new(),
            positions: Vec::new(),
            token_seq: Vec::new(),
            seq_start: vec![0],
        }
    }
}

impl EncoderBatch {
    pub fn num_tokens(&self) -> usize {
        self.token_ids.len()
    }

    pub fn num_seqs(&self) -> usize {
        self.seq_start.len() - 1
    }

    /// Appends one sequence (a single text: token type 0 throughout).
    pub fn push_sequence(&mut self, token_ids: &[u32]) {
        let seq = self.num_seqs() as u32;
        for (pos, &id) in token_ids.iter().enumerate() {
            self.token_ids.push(id);
            self.token_type_ids.push(0);
            self.positions.push(pos as u32);
            self.token_seq.push(seq);
        }
        self.seq_start.push(self.token_ids.len() as u32);
    }
}
