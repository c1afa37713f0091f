#!/usr/bin/env bash
# The README's second command: install what is missing, build, run the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "${JOBS:-$(nproc)}" "$@"
