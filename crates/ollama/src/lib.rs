//! Ollama HTTP backend for optillm-rs
