#![allow(dead_code)]
pub mod cpu_llama;
pub mod gpu;
pub mod server;
