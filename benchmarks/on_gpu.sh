#!/usr/bin/env bash
# Issue 22's GPU figures in one run of about 10 minutes, for a machine with one CUDA GPU:
#
#     bash benchmarks/on_gpu.sh [RESULTS_DIR]      # default: benchmarks/results/gpu
#
# 1. charlm's training loop against the bare loop on cuDNN, configurations a-c and the larger
#    d (target: ratio >= 0.95 on each);
# 2. sampling at batch 1 and 64 (`num_samples=64` against 64 calls);
# 3. Tiny Shakespeare after 5 minutes of GPU training with the GPU recipe below, scored on
#    the whole held-out text.
# Each step writes its JSON (and the 5-minute run its plot) into RESULTS_DIR.
set -euo pipefail

out=$(realpath -m "${1:-benchmarks/results/gpu}")  # as given, before moving to the project
cd "$(dirname "$0")/.."  # `python -m benchmarks...` runs from the project's root
python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU here")'
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

python -m benchmarks.train_overhead --device cuda --configs a,b,c,d --repeats 3 \
    --out "$out/train_overhead.json"
python -m benchmarks.sampling --device cuda --num-samples 64 --out "$out/sampling.json"
# A candidate for the docs' GPU recipe: a wider, deeper LSTM and a larger batch than the CPU
# defaults, in bf16 (cuDNN's LSTM has bf16 kernels from Ampere on).
python -m benchmarks.shakespeare_5min --name gpu --out "$out/shakespeare_5min.json" -- \
    --device cuda --precision bf16 --layers 3 --hidden 1024 --embed 128 \
    --batch-size 128 --seq-len 256 --dropout 0.25 --output-dropout 0.25 --lr 2e-3
