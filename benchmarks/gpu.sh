#!/usr/bin/env bash
# The prepared GPU benchmark (issue 14): a 7B-config decoder, random bf16 weights, one CUDA GPU.
#   bash benchmarks/gpu.sh            # writes gpu_out/gpu_bench.json (each part as it finishes) and gpu_out/gpu_bench.txt (aim: < 8 min)
#   bash benchmarks/gpu.sh --no-hf    # without the transformers baseline (saves writing a 7B checkpoint)
# Check it on a CPU first: .venv/bin/python benchmarks/gpu_bench.py --dry-run
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
mkdir -p "$root/gpu_out"
cd "$root/benchmarks"
timeout 480 "$py" gpu_bench.py --json "$root/gpu_out/gpu_bench.json" "$@" | tee "$root/gpu_out/gpu_bench.txt"
