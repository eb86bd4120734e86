#![allow(dead_code)]
pub mod cpu_bert;
pub mod cpu_llama;
pub mod gpu;
pub mod server;
pub mod temp_dir;
