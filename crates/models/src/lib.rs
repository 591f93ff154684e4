//! Model and data-set manifest, download, verification and cache for optillm-rs
