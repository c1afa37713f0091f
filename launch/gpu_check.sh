#!/usr/bin/env bash
# Everything that needs a GPU, in one go, on a machine with one (docs/cuda.md):
#   bash launch/gpu_check.sh [BUILD_DIR] [LOG_DIR]
# 1. the CUDA tests (ctest label cuda: kernels against their CPU twins, the model against the CPU
#    model, two ranks sharing the GPU against one rank), 2. moe-gpu-bench and eager PyTorch on
#    configs/gpu_bench_mixtral.yaml (launch/bench_vs_pytorch.sh --gpu; skipped when no python3 has
#    torch), 3. moe-train with train.precision bf16 on configs/quickstart.yaml: one rank, then two
#    data-parallel ranks and two expert-parallel ones (parallel.ep 2) (one GPU each where there are
#    two, else sharing one through host staging);
#    their validation losses next to the CPU run's (2.50 / 2.24 / 2.14 at steps 100 / 200 / 300).
# Logs under LOG_DIR (default runs/gpu_check); exits non-zero when a test or a training run fails.
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
echo "== moe-train on the GPU (train.precision bf16, configs/quickstart.yaml)"
if [ ! -f data/corpus/train.bin ] || [ ! -f data/corpus/valid.bin ]; then
  "$BUILD/moe-data" --out data/corpus --valid-fraction 0.05 /usr/share/games/fortunes /usr/include/*.h \
    > "$LOG/corpus.log" 2>&1 || echo "gpu_check: corpus not built (see $LOG/corpus.log)" >&2
fi
"$BUILD/moe-train" configs/quickstart.yaml --set train.precision=bf16 --set run.out_dir="$LOG/train_1rank" \
  2>&1 | tee "$LOG/train_1rank.log" | grep -E " val |rror"
train1=${PIPESTATUS[0]}
train2=skipped
if command -v mpirun > /dev/null; then
  mpirun --oversubscribe -np 2 "$BUILD/moe-train" configs/quickstart.yaml --set train.precision=bf16 \
    --set run.out_dir="$LOG/train_2ranks" 2>&1 | tee "$LOG/train_2ranks.log" | grep -E " val |communicator|rror"
  train2=${PIPESTATUS[0]}
  mpirun --oversubscribe -np 2 "$BUILD/moe-train" configs/quickstart.yaml --set train.precision=bf16 \
    --set parallel.ep=2 --set run.out_dir="$LOG/train_2ranks_ep" 2>&1 | tee "$LOG/train_2ranks_ep.log" |
    grep -E " val |communicator|rror"
  ep_rc=${PIPESTATUS[0]}
  [ "$ep_rc" = 0 ] || train2=$ep_rc
else
  echo "gpu_check: no mpirun: the two-rank run was skipped" >&2
fi
echo "gpu_check: tests exit $tests, benchmark exit $bench, training exit $train1 (1 rank) / $train2 (2 ranks) (logs in $LOG)"
[ "$tests" = 0 ] && [ "$train1" = 0 ] && { [ "$train2" = 0 ] || [ "$train2" = skipped ]; }
