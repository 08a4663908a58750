//! The trace crate's integration tests, one binary.

mod replay;
