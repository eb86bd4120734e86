#![allow(dead_code)]
pub mod cpu_bert;
pub mod cpu_llama;
pub mod golden;
pub mod gpu;
pub mod openai_client;
pub mod server;
pub mod temp_dir;
// gguf_writer.rs is included by path where needed (tests/formats.rs, the
// fuzz harness): those binaries need none of the rest.
