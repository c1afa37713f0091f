#!/usr/bin/env bash
# Everything that needs a GPU, in one go, on a machine with one (docs/cuda.md):
#   bash launch/gpu_check.sh [BUILD_DIR] [LOG_DIR]
# 1. the CUDA tests (ctest label cuda: kernels against their CPU twins, the model against the CPU
#    model, two ranks sharing the GPU against one rank), 2. moe-gpu-bench and eager PyTorch on
#    configs/gpu_bench_mixtral.yaml (launch/bench_vs_pytorch.sh --gpu; skipped when no python3 has
#    torch). Logs under LOG_DIR (default runs/gpu_check); exits non-zero when a test fails.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
LOG=${2:-runs/gpu_check}
mkdir -p "$LOG"
[ -x "$BUILD/moe-gpu-bench" ] || { echo "gpu_check: $BUILD/moe-gpu-bench missing: a build with CUDA (nvcc found) first" >&2; exit 1; }
if ! nvidia-smi -L > "$LOG/gpu.txt" 2>&1 || ! grep -q "^GPU" "$LOG/gpu.txt"; then
  echo "gpu_check: no GPU on this machine (nvidia-smi -L lists none); the CUDA tests would only skip" >&2
  exit 1
fi
cat "$LOG/gpu.txt"
echo "== CUDA tests"
(cd "$BUILD" && ctest -L cuda --output-on-failure) 2>&1 | tee "$LOG/ctest_cuda.log"
tests=${PIPESTATUS[0]}
echo "== benchmark"
bash launch/bench_vs_pytorch.sh --gpu configs/gpu_bench_mixtral.yaml 3 2>&1 | tee "$LOG/bench.log"
bench=${PIPESTATUS[0]}
[ "$bench" = 77 ] && echo "gpu_check: no python3 with torch: the PyTorch comparison was skipped" >&2
echo "gpu_check: tests exit $tests, benchmark exit $bench (logs in $LOG)"
[ "$tests" = 0 ]
