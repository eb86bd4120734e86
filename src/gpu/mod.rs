//! GPU layer.
