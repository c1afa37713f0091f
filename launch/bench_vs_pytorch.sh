#!/usr/bin/env bash
# moe-train against an eager PyTorch implementation of the same model, on the same machine, in the
# same run: tokens/s of each and the speed-up (docs/performance.md).
#   bash launch/bench_vs_pytorch.sh [--gpu] [CONFIG.yaml] [STEPS]
#     CPU default: configs/bench.yaml, 5 steps; --gpu: build/moe-gpu-bench against torch on CUDA,
#     default configs/gpu_bench_mixtral.yaml.
# Needs a built tree (launch/setup.sh) and torch for Debian's python3 (apt-get install python3-torch);
# exits 77 when torch is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=0
if [ "${1:-}" = "--gpu" ]; then GPU=1; shift; fi
if [ $GPU = 1 ]; then CONFIG=${1:-configs/gpu_bench_mixtral.yaml}; else CONFIG=${1:-configs/bench.yaml}; fi
STEPS=${2:-5}
PY=""
for candidate in /usr/bin/python3 python3; do
  if "$candidate" -c "import torch, yaml" 2>/dev/null; then PY=$candidate; break; fi
done
if [ -z "$PY" ]; then
  echo "bench_vs_pytorch: no python3 with torch and yaml; install them with: apt-get install python3-torch python3-yaml" >&2
  exit 77
fi
THREADS=$(nproc)
if [ $GPU = 1 ]; then
  [ -x build/moe-gpu-bench ] || { echo "bench_vs_pytorch: build/moe-gpu-bench missing (a build with CUDA)" >&2; exit 1; }
  echo "== moe-gpu-bench"
  build/moe-gpu-bench "$CONFIG" --set train.steps="$STEPS" | tee /tmp/moe_bench_$$.txt
  echo "== eager PyTorch (CUDA)"
  "$PY" launch/pytorch_baseline.py "$CONFIG" --steps "$STEPS" --device cuda | tee /tmp/pytorch_bench_$$.txt
else
  [ -x build/moe-bench ] || { echo "bench_vs_pytorch: build/moe-bench missing: run launch/setup.sh first" >&2; exit 1; }
  echo "== moe-bench ($THREADS threads)"
  OMP_NUM_THREADS=$THREADS build/moe-bench "$CONFIG" --set train.steps="$STEPS" | tee /tmp/moe_bench_$$.txt
  echo "== eager PyTorch ($THREADS threads)"
  "$PY" launch/pytorch_baseline.py "$CONFIG" --steps "$STEPS" --threads "$THREADS" | tee /tmp/pytorch_bench_$$.txt
fi
ours=$(awk '/^tokens\/s:/ {print $2}' /tmp/moe_bench_$$.txt)
theirs=$(awk '/^tokens\/s:/ {print $2}' /tmp/pytorch_bench_$$.txt)
rm -f /tmp/moe_bench_$$.txt /tmp/pytorch_bench_$$.txt
awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "speed-up: moe-train %.1f tokens/s, eager PyTorch %.1f tokens/s: %.2fx\n", a, b, a / b }'
