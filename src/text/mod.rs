//! Text: tokenizer, chat template, incremental detokenizer. A leaf: knows
//! nothing of model files or the GPU; it is built from plain data.
