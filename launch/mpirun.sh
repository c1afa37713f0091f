#!/usr/bin/env bash
# Runs moe-train on NP ranks with Open MPI, each rank bound to its own cores.
#   bash launch/mpirun.sh NP CONFIG.yaml [--set key=value]...
# Environment: THREADS (OpenMP threads per rank; default: cores / NP, at least 1),
#              HOSTFILE (an Open MPI hostfile for several nodes), MOE_TRAIN (the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bash launch/mpirun.sh NP CONFIG.yaml [--set key=value]..." >&2; exit 2; }
NP=$1
shift
CORES=$(nproc)
THREADS=${THREADS:-$(( CORES / NP ))}
[ "$THREADS" -ge 1 ] || THREADS=1
args=(-np "$NP" -x OMP_NUM_THREADS="$THREADS" -x OMP_PROC_BIND=close -x OMP_PLACES=cores)
if [ -n "${HOSTFILE:-}" ]; then
  args+=(--hostfile "$HOSTFILE" --map-by "ppr:$(( CORES / THREADS )):node:PE=$THREADS" --bind-to core)
elif [ $(( NP * THREADS )) -le "$CORES" ]; then
  args+=(--map-by "slot:PE=$THREADS" --bind-to core)       # one core set per rank
else
  args+=(--oversubscribe --bind-to none)                   # more ranks than cores (testing)
fi
[ "$(id -u)" -eq 0 ] && args+=(--allow-run-as-root)
exec mpirun "${args[@]}" "${MOE_TRAIN:-build/moe-train}" "$@"
