//! safetensors reader (helper fills this in).
