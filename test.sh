#!/usr/bin/env bash
# Installs what the tests need (nothing beyond Rust yet) and runs them all.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --all-targets
