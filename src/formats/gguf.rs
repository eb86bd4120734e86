//! GGUF v2/v3 reader (helper fills this in).
