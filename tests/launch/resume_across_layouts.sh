#!/usr/bin/env bash
# Continuation across layouts (issue 4): a run on 4 ranks (dp 2 x ep 2) checkpoints at step 2; the
# same command line resumed from that checkpoint on 1 rank and on 2 ranks (tp 2) must read the same
# data and reach the same losses and weights as the uninterrupted 4-rank run, within float32
# tolerance; on the same layout, bit for bit.   resume_across_layouts.sh BUILD_DIR WORK_DIR
set -u
source "$(dirname "$0")/common.sh"
prepare_work "$1" "$2"
cat > "$WORK/cfg.yaml" <<YAML
model: {vocab_size: 256, d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 96, max_seq_len: 32,
        moe: {num_experts: 4, top_k: 2, expert_hidden: 48, first_dense_layers: 1, router: {bias_update_rate: 0.001}}}
train: {seq_len: 32, global_batch: 8, micro_batch: 2, steps: 4, log_every: 1}
optim: {lr: 0.003, warmup_steps: 1}
data: {train: $WORK/data/train.bin}
checkpoint: {every: 2, keep: 5}
YAML
run() {  # name ranks extra-args...
  local name=$1 np=$2; shift 2
  mpirun --oversubscribe -np "$np" "$BUILD/moe-train" "$WORK/cfg.yaml" --set run.out_dir="$WORK/$name" "$@" \
    > "$WORK/$name.log" 2>&1 || { echo "FAIL: run $name"; tail -5 "$WORK/$name.log"; exit 1; }
}
losses() { grep -o '"step": [34], "loss": [0-9.]*' "$WORK/$1/metrics.jsonl" | sed 's/.*: //'; }
run full 4 --set parallel.ep=2
fail=0
for layout in "same 4 --set parallel.ep=2" "one 1" "tp2 2 --set parallel.tp=2"; do
  set -- $layout
  name=$1; np=$2; shift 2
  mkdir -p "$WORK/$name/checkpoints"
  cp "$WORK/full/checkpoints/step_00000002.h5" "$WORK/$name/checkpoints/"
  run "$name" "$np" "$@"
  grep -q "resumed from .*step_00000002.h5 at step 2" "$WORK/$name.log" || { echo "FAIL: $name did not resume"; fail=1; }
  read -r -d '' a < <(losses full); read -r -d '' b < <(losses "$name")
  if [ "$name" = same ]; then tol="--atol 0"; else tol="--atol 2e-5 --rtol 1e-3"; fi
  if ! "$BUILD/moe-ckpt" diff "$WORK/full/checkpoints/step_00000004.h5" "$WORK/$name/checkpoints/step_00000004.h5" \
       $tol > "$WORK/$name.diff"; then
    echo "FAIL: $name: step-4 checkpoint differs from the uninterrupted run"; grep DIFFERS "$WORK/$name.diff" | head -5; fail=1
  fi
  python3 - "$a" "$b" "$name" <<'PY' || fail=1
import sys
a = [float(x) for x in sys.argv[1].split()]; b = [float(x) for x in sys.argv[2].split()]
same = sys.argv[3] == "same"
ok = len(a) == len(b) == 2 and all((x == y) if same else abs(x - y) <= 1e-5 * abs(x) for x, y in zip(a, b))
print(("ok" if ok else "FAIL") + f": {sys.argv[3]}: losses of steps 3-4 {b} vs uninterrupted {a}")
sys.exit(0 if ok else 1)
PY
done
exit $fail
