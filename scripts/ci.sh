#!/usr/bin/env bash
# CI: the crate's tests, then every notebook executed headless and checked, on the small
# MNIST copy. On a fresh 2-core machine: evcxr_jupyter install (about 10 min), the workspace
# build and tests, the kernel's build of Burn (about 5 min), the notebooks (see the README).
#
# Needs Rust (rustup), Python 3.9+ with venv, and access to crates.io and PyPI.
# Usage: scripts/ci.sh [MNIST_DIR]   (default: ../shared/data/mnist-mini)
# Executed notebooks are left in .lab/runs/ (keep them as the job's artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/mnist-mini}"

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "set-up: evcxr_jupyter, JupyterLab, the kernel and its build"
time cargo run --quiet -p xtask -- setup

step "tests: cargo test --workspace, then the notebooks on $data"
time cargo run --quiet -p xtask -- test --data "$data"
