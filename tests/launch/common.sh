# Shared set-up for the job tests (sourced): prepare_work BUILD_DIR WORK_DIR makes an empty WORK,
# exports what mpirun and the ranks need here, and writes a small byte-level corpus to
# WORK/data/{train,valid}.bin with moe-data. Sets BUILD and WORK (absolute BUILD).
prepare_work() {
  BUILD=$(cd "$1" && pwd)
  WORK=$2
  rm -rf "$WORK" && mkdir -p "$WORK"
  export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  for i in $(seq 1 3000); do echo "line $i: the quick brown fox jumps over the lazy dog"; done > "$WORK/text.txt"
  "$BUILD/moe-data" --out "$WORK/data" "$WORK/text.txt" > /dev/null 2>&1 || { echo "FAIL: moe-data"; exit 1; }
}
