//! One request's state across steps, and what a step does with it: its
//! sampler picks the next token from its row of the forward output, the
//! detokenizer turns tokens into text, and the stop checks (stop ids, stop
//! strings) decide when it ends.

use crate::model::causal_lm::ForwardOutput;
use crate::text::{Detokenizer, Tokenizer};

use super::constraint::Constraint;
use super::core::EngineError;
use super::request::{FinishReason, TokenOutput};
use super::sampler::{Sampler, SamplingParams};
use super::sequence::Sequence;
use super::stop::StopMatcher;

pub(super) struct RequestState {
    pub(super) sampler: Sampler,
    pub(super) detokenizer: Detokenizer,
    pub(super) stop: StopMatcher,
    pub(super) stop_token_ids: Vec<u32>,
    pub(super) stopped: bool,
    /// Where its output stands in the grammar it must follow.
    pub(super) constraint: Option<Constraint>,
    /// The constrained row, reused step to step.
    masked: Vec<f32>,
}

impl RequestState {
    /// A request ends on its own stop ids and, unless it ignores EOS, on
    /// the model's end-of-generation ids (EOS and end-of-turn tokens such
    /// as Gemma's `<end_of_turn>`).
    pub(super) fn new(params: SamplingParams, eos_token_ids: &[u32], constraint: Option<Constraint>) -> Self {
        let mut stop_token_ids = params.stop_token_ids.clone();
        if !params.ignore_eos {
            stop_token_ids.extend(eos_token_ids);
        }
        Self {
            stop: StopMatcher::new(params.stop.clone()),
            sampler: Sampler::new(params),
            detokenizer: Detokenizer::new(true),
            stop_token_ids,
            stopped: false,
            constraint,
            masked: Vec::new(),
        }
    }

    /// Its sampling reads the logits on the CPU: a sampler that is not
    /// plain greedy, or a grammar's mask.
    pub(super) fn needs_logits(&self) -> bool {
        self.sampler.params().needs_logits() || self.constraint.is_some()
    }
}

/// What sampling one row needs besides the request's own state.
pub(super) struct SampleContext<'a> {
    pub(super) forward: &'a ForwardOutput,
    pub(super) row: usize,
    pub(super) seq: &'a Sequence,
    pub(super) tokenizer: &'a Tokenizer,
    pub(super) vocab_size: usize,
}

/// Samples the request's next token and runs it through the detokenizer
/// and the stop checks.
pub(super) fn next_token(
    state: &mut RequestState,
    context: &SampleContext<'_>,
) -> Result<TokenOutput, EngineError> {
    let SampleContext { forward, row, seq, tokenizer, .. } = context;
    let sampled = match forward {
        ForwardOutput::TokenIds(ids) => {
            let id =
                *ids.get(*row).ok_or_else(|| EngineError::Failed(format!("no sampled id for row {row}")))?;
            super::sampler::SampledToken { id, logprob: None, top_logprobs: Vec::new() }
        }
        ForwardOutput::Logits(logits) => {
            let vocab = context.vocab_size;
            let row_logits = logits
                .get(row * vocab..(row + 1) * vocab)
                .ok_or_else(|| EngineError::Failed(format!("no logits for row {row}")))?;
            match &mut state.constraint {
                Some(constraint) => {
                    state.masked.clear();
                    state.masked.extend_from_slice(row_logits);
                    constraint.mask(&mut state.masked).map_err(constraint_error)?;
                    state.sampler.sample(&state.masked, seq.prompt(), seq.generated())
                }
                None => state.sampler.sample(row_logits, seq.prompt(), seq.generated()),
            }
        }
    };
    // A grammar that completed while its mask was computed allowed only an
    // end token: the output ends there, whatever the request's stop ids.
    let grammar_ended = state.constraint.as_ref().is_some_and(Constraint::is_finished);
    if let Some(constraint) = &mut state.constraint
        && !grammar_ended
        && !state.stop_token_ids.contains(&sampled.id)
    {
        constraint.consume(sampled.id).map_err(constraint_error)?;
    }
    let mut text = String::new();
    if grammar_ended || state.stop_token_ids.contains(&sampled.id) {
        state.stopped = true;
    } else if tokenizer.id_to_token(sampled.id).is_none() {
        // An output row past the tokenizer's vocabulary (Qwen pads 151,665
        // tokens to 151,936 rows): a token without text, as transformers
        // and vLLM decode it.
    } else {
        let delta = state.detokenizer.step(tokenizer, sampled.id)?;
        let result = state.stop.push(&delta);
        text = result.emit;
        state.stopped = result.stopped;
    }
    // A complete grammar that allows nothing more (a closed JSON object)
    // ends the output, as an end-of-sequence token would.
    if state.constraint.as_ref().is_some_and(Constraint::is_finished) {
        state.stopped = true;
    }
    Ok(TokenOutput { id: sampled.id, text, logprob: sampled.logprob, top_logprobs: sampled.top_logprobs })
}

fn constraint_error(cause: String) -> EngineError {
    EngineError::Constraint(cause)
}

/// The finish reason of a request the scheduler ended, and the text held
/// back until now (a partial character, a possible stop string).
pub(super) fn finish_text(
    mut state: RequestState,
    tokenizer: &Tokenizer,
) -> Result<(FinishReason, String), EngineError> {
    if state.stopped {
        return Ok((FinishReason::Stop, String::new()));
    }
    let tail = state.detokenizer.flush(tokenizer)?;
    let mut text = state.stop.push(&tail).emit;
    text.push_str(&state.stop.flush());
    Ok((FinishReason::Length, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::TextError;
    use crate::text::tokenizer::token_type;
    use crate::text::{SpmStyle, SpmVocab};

    /// A Gemma-like SentencePiece vocabulary: 0 <pad>, 1 <eos>, 2 <bos>,
    /// 3 <unk>, 4 <start_of_turn>, 5 <end_of_turn>, the 256 byte tokens,
    /// then a few pieces.
    fn gemma_like() -> Result<Tokenizer, TextError> {
        let mut tokens: Vec<String> =
            ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
                .map(String::from)
                .to_vec();
        let mut token_types = vec![token_type::CONTROL; tokens.len()];
        for b in 0u8..=255 {
            tokens.push(format!("<0x{b:02X}>"));
            token_types.push(token_type::BYTE);
        }
        for piece in ["▁", "P", "a", "r", "i", "s", ".", "Paris"] {
            tokens.push(piece.into());
            token_types.push(token_type::NORMAL);
        }
        let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
        Tokenizer::from_spm_vocab(SpmVocab {
            tokens,
            scores,
            token_types,
            style: SpmStyle::Gemma,
            add_space_prefix: false,
            bos_id: Some(2),
            eos_id: Some(1),
            unk_id: Some(3),
            add_bos: true,
        })
    }

    /// Feeds `sampled` ids through the request's stop checks as a greedy
    /// step would; returns the ids taken (the stopping one included), the
    /// text emitted and whether it stopped.
    fn run(state: &mut RequestState, tokenizer: &Tokenizer, sampled: &[u32]) -> (Vec<u32>, String, bool) {
        let seq = Sequence::new(0, vec![2], sampled.len());
        let (mut taken, mut text) = (Vec::new(), String::new());
        for &id in sampled {
            let forward = ForwardOutput::TokenIds(vec![id]);
            let context = SampleContext {
                forward: &forward,
                row: 0,
                seq: &seq,
                tokenizer,
                vocab_size: tokenizer.vocab_size(),
            };
            let token = next_token(state, &context).unwrap_or_else(|e| panic!("step: {e}"));
            taken.push(token.id);
            text.push_str(&token.text);
            if state.stopped {
                break;
            }
        }
        (taken, text, state.stopped)
    }

    #[test]
    fn a_gemma_reply_ends_at_end_of_turn_and_leaves_it_out_of_the_text() -> Result<(), TextError> {
        let tokenizer = gemma_like()?;
        // No eot id declared by the file: <end_of_turn> is found by name.
        let eos_ids = tokenizer.end_of_generation_ids(&[]);
        assert_eq!(eos_ids, vec![1, 5]);
        let reply = tokenizer.encode("Paris.", false)?;
        let sampled: Vec<u32> = reply.iter().copied().chain([5, 4]).collect();

        let mut state = RequestState::new(SamplingParams::default(), &eos_ids, None);
        let (taken, text, stopped) = run(&mut state, &tokenizer, &sampled);
        assert!(stopped);
        assert_eq!(taken, [reply.as_slice(), &[5]].concat(), "nothing after <end_of_turn>");
        assert_eq!(text, "Paris.");

        // ignore_eos lets it run on, through <end_of_turn>, as vLLM does.
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::default() };
        let mut state = RequestState::new(params, &eos_ids, None);
        let (taken, _, stopped) = run(&mut state, &tokenizer, &sampled);
        assert!(!stopped);
        assert_eq!(taken, sampled);
        Ok(())
    }
}
