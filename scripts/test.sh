#!/usr/bin/env bash
# The whole test suite: build dependencies, the default model (pulled by the project's
# own `optillm pull`, SHA-256 checked, cached), then every crate's tests in release mode
# (one llama.cpp build serves both the binary and the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p optillm
./target/release/optillm pull
cargo test --release --workspace
