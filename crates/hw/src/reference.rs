//! Placeholder: the dense reference RMP is being written.
