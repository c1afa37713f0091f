#!/usr/bin/env bash
# DESIGN invariant 4: a failure on one rank ends every rank with a message, never a hang.
#   rank_failure.sh BUILD_DIR WORK_DIR
# 1. a rank killed with SIGKILL mid-training ends the job with a non-zero status;
# 2. a rank that stops responding (SIGSTOP) is caught by the watchdog of the others, whose message
#    names the phase they were waiting in, and the job ends;
# 3. an error raised on the ranks (a missing data file) ends every rank with the message.
set -u
source "$(dirname "$0")/../launch/common.sh"
prepare_work "$1" "$2"
cat > "$WORK/cfg.yaml" <<YAML
model: {vocab_size: 256, d_model: 32, n_layers: 2, n_heads: 4, ffn_hidden: 64, max_seq_len: 32,
        moe: {num_experts: 4, top_k: 2, expert_hidden: 32}}
parallel: {ep: 2}
train: {seq_len: 32, global_batch: 4, micro_batch: 2, steps: 1000000, log_every: 1}
data: {train: $WORK/data/train.bin, shuffle: false}
YAML

start_job() {  # $1: tag; rest: extra args
  local tag=$1; shift
  mpirun --oversubscribe -np 2 "$BUILD/moe-train" "$WORK/cfg.yaml" --set run.out_dir="$WORK/$tag" "$@" \
    > "$WORK/$tag.log" 2>&1 &
  JOB=$!
  for _ in $(seq 1 600); do
    [ -s "$WORK/$tag/metrics.jsonl" ] && [ "$(wc -l < "$WORK/$tag/metrics.jsonl")" -ge 3 ] && return 0
    kill -0 $JOB 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

wait_end() {  # waits up to $1 seconds for $JOB; sets RC; 124 when it had to be killed
  for _ in $(seq 1 $(( $1 * 10 ))); do
    if ! kill -0 $JOB 2>/dev/null; then wait $JOB; RC=$?; return 0; fi
    sleep 0.1
  done
  pkill -9 -f "$WORK/cfg.yaml"; kill -9 $JOB 2>/dev/null; wait $JOB 2>/dev/null; RC=124
}

fail=0
# 1. SIGKILL one rank
start_job killed || { echo "FAIL: killed: job did not start"; cat "$WORK/killed.log"; exit 1; }
victim=$(pgrep -f "moe-train $WORK/cfg.yaml --set run.out_dir=$WORK/killed" | tail -n 1)
kill -9 "$victim"
wait_end 60
if [ $RC -eq 124 ] || [ $RC -eq 0 ]; then echo "FAIL: killed rank: job status $RC (124: hung)"; fail=1;
else echo "ok: SIGKILL of rank pid $victim ended the job (status $RC)"; fi

# 2. SIGSTOP one rank: the other waits in a collective until its watchdog fires
MOE_WATCHDOG_SECONDS=3 start_job stopped || true
victim=$(pgrep -f "moe-train $WORK/cfg.yaml --set run.out_dir=$WORK/stopped" | tail -n 1)
kill -STOP "$victim"
wait_end 90
if [ $RC -eq 124 ] || [ $RC -eq 0 ]; then echo "FAIL: stopped rank: job status $RC (124: hung)"; fail=1;
elif ! grep -q "\[watchdog\] rank .* in phase '[a-z_]*'" "$WORK/stopped.log"; then
  echo "FAIL: stopped rank: no watchdog message naming the phase"; cat "$WORK/stopped.log"; fail=1;
else echo "ok: $(grep -o "\[watchdog\].*" "$WORK/stopped.log" | head -n 1)"; fi

# 3. an error on the ranks
mpirun --oversubscribe -np 2 "$BUILD/moe-train" "$WORK/cfg.yaml" --set run.out_dir="$WORK/err" \
  --set data.train="$WORK/missing.bin" > "$WORK/err.log" 2>&1 &
JOB=$!
wait_end 60
if [ $RC -eq 124 ] || [ $RC -eq 0 ] || ! grep -q "missing.bin" "$WORK/err.log"; then
  echo "FAIL: error on ranks: status $RC"; cat "$WORK/err.log"; fail=1;
else echo "ok: an error on the ranks ended the job (status $RC) with: $(grep -o "token file.*missing.bin[^(]*" "$WORK/err.log" | head -n 1)"; fi
exit $fail
