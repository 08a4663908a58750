//! Placeholder: the region-structured RMP is being written.
