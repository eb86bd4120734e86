#![allow(dead_code)]
pub mod gpu;
