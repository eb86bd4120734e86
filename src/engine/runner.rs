//! Runs one scheduled step on the model: the scheduler's sequences become
//! the model's varlen batch (token ids, positions, slot mapping, block
//! tables), and the model's outputs come back in the same order.

use crate::model::ModelError;
use crate::model::batch::BatchInputs;
use crate::model::causal_lm::{CausalLm, ForwardOutput, Output};

use super::scheduler::ScheduledSeq;

pub struct ModelRunner {
    model: Box<dyn CausalLm>,
}

impl ModelRunner {
    pub fn new(model: Box<dyn CausalLm>) -> Self {
        Self { model }
    }

    pub fn model(&self) -> &dyn CausalLm {
        self.model.as_ref()
    }

    /// Row `i` of the output belongs to `scheduled[i]` (sampled at its last
    /// new token; the engine ignores rows of mid-prompt chunks).
    pub fn execute(&self, scheduled: &[ScheduledSeq], output: Output) -> Result<ForwardOutput, ModelError> {
        let block_size = self.model.block_size();
        let mut batch = BatchInputs::default();
        for seq in scheduled {
            batch.push_sequence(&seq.token_ids, seq.start_position, &seq.block_table, block_size);
        }
        self.model.forward(&batch, output)
    }
}
