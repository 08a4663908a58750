//! The debate's integration tests, one binary.

mod debate;
mod driver;
