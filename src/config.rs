//! One typed configuration, passed down.
