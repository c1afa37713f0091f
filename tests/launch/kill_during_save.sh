#!/usr/bin/env bash
# Crash safety (issue 4): a job killed with SIGKILL at random moments while it saves a checkpoint
# every step must leave only complete checkpoints under their final names, and `resume: auto` must
# continue from the newest one. Runs on 1 rank and on 2 ranks (one rank killed), several seeds.
#   kill_during_save.sh BUILD_DIR WORK_DIR
set -u
source "$(dirname "$0")/common.sh"
prepare_work "$1" "$2"
cat > "$WORK/cfg.yaml" <<YAML
model: {vocab_size: 256, d_model: 128, n_layers: 2, n_heads: 4, ffn_hidden: 256, max_seq_len: 32,
        moe: {num_experts: 8, top_k: 2, expert_hidden: 256}}
train: {seq_len: 32, global_batch: 4, micro_batch: 2, steps: 100000, log_every: 1}
data: {train: $WORK/data/train.bin}
checkpoint: {every: 1, keep: 2}
YAML
fail=0
for ranks in 1 2; do
  for seed in 1 2 3; do
    dir="$WORK/r${ranks}_s${seed}"
    launch=("$BUILD/moe-train")
    [ "$ranks" -gt 1 ] && launch=(mpirun --oversubscribe -np "$ranks" "$BUILD/moe-train")
    "${launch[@]}" "$WORK/cfg.yaml" --set run.out_dir="$dir" --set parallel.ep="$ranks" > "$dir.log" 2>&1 &
    job=$!
    # wait for the first checkpoint, then kill at a pseudo-random moment of the following saves
    for _ in $(seq 1 300); do ls "$dir"/checkpoints/step_*.h5 > /dev/null 2>&1 && break; sleep 0.1; done
    sleep "0.$(( (seed * 37 + ranks * 11) % 9 + 1 ))"
    victim=$(pgrep -f "moe-train $WORK/cfg.yaml --set run.out_dir=$dir" | tail -n 1)
    kill -9 "$victim" 2> /dev/null
    wait $job 2> /dev/null
    for _ in $(seq 1 300); do kill -0 $job 2> /dev/null || break; sleep 0.1; done
    kill -9 $job 2> /dev/null; pkill -9 -f "run.out_dir=$dir " 2> /dev/null; wait $job 2> /dev/null
    newest=$(ls "$dir"/checkpoints/step_*.h5 2> /dev/null | sort | tail -n 1)
    partial=$(ls "$dir"/checkpoints/*.tmp 2> /dev/null | wc -l)
    if [ -z "$newest" ]; then echo "FAIL: ranks $ranks seed $seed: no checkpoint survived"; fail=1; continue; fi
    for f in "$dir"/checkpoints/step_*.h5; do
      "$BUILD/moe-ckpt" verify "$f" > /dev/null || { echo "FAIL: $f does not verify"; fail=1; }
    done
    step=$(basename "$newest" .h5 | sed 's/step_0*//')
    "${launch[@]}" "$WORK/cfg.yaml" --set run.out_dir="$dir" --set parallel.ep="$ranks" \
      --set train.steps=$(( step + 1 )) >> "$dir.log" 2>&1
    if grep -q "resumed from $newest at step $step" "$dir.log" && [ -f "$dir/checkpoints/step_$(printf %08d $(( step + 1 ))).h5" ]; then
      echo "ok: ranks $ranks seed $seed: killed $([ "$partial" -gt 0 ] && echo "mid-save" || echo "between saves"); $(ls "$dir"/checkpoints/step_*.h5 | wc -l) complete checkpoints verify; resumed from step $step"
    else
      echo "FAIL: ranks $ranks seed $seed: no clean resume from $newest"; tail -5 "$dir.log"; fail=1
    fi
  done
done
exit $fail
