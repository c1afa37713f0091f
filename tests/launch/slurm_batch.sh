#!/usr/bin/env bash
# Submits launch/slurm.sbatch to the Slurm cluster that answers here (2 ranks, ep 2, a few steps)
# and checks the job trained and checkpointed. Exit 77 (skipped) when no cluster answers; start one
# with launch/slurm_local_cluster.sh.   slurm_batch.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -u
SRC=$(cd "$1" && pwd)
sinfo -h > /dev/null 2>&1 || { echo "no Slurm cluster answers: skipped"; exit 77; }
source "$(dirname "$0")/common.sh"
prepare_work "$2" "$3"
cat > "$WORK/cfg.yaml" <<YAML
model: {vocab_size: 256, d_model: 32, n_layers: 2, n_heads: 4, ffn_hidden: 64, max_seq_len: 32,
        moe: {num_experts: 4, top_k: 2, expert_hidden: 32}}
parallel: {ep: 2}
train: {seq_len: 32, global_batch: 4, micro_batch: 2, steps: 3}
data: {train: $WORK/data/train.bin}
checkpoint: {every: 3}
run: {out_dir: $WORK/out}
YAML
cd "$SRC"
job=$(MOE_TRAIN="$BUILD/moe-train" sbatch --parsable --export=ALL --ntasks-per-node=2 --cpus-per-task=1 \
      --time=5 --output="$WORK/job.out" launch/slurm.sbatch "$WORK/cfg.yaml") || { echo "FAIL: sbatch"; exit 1; }
for _ in $(seq 1 150); do
  [ -z "$(squeue -h -j "$job" -o %T 2> /dev/null)" ] && break
  sleep 2
done
scancel "$job" 2> /dev/null
if grep -q "\[parallel\] 2 ranks" "$WORK/job.out" && grep -q "step 3/3" "$WORK/job.out" \
   && [ -f "$WORK/out/checkpoints/step_00000003.h5" ]; then
  echo "ok: Slurm job $job trained 3 steps on 2 ranks and wrote its checkpoint"
  exit 0
fi
echo "FAIL: Slurm job $job"; cat "$WORK/job.out"; exit 1
