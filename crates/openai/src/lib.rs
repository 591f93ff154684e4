//! OpenAI-compatible HTTP backend for optillm-rs (vLLM, llama-server, hosted endpoints)
