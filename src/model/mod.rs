//! Model layer.
