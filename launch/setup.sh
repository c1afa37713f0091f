#!/usr/bin/env bash
# Installs the Debian packages moe-train needs (only the missing ones, with apt-get) and builds
# it in build/ (Release). Safe to run again: it installs nothing twice and rebuilds incrementally.
#   bash launch/setup.sh            # BUILD_DIR=build, BUILD_TYPE=Release by default
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake pkg-config
          libopenblas-openmp-dev libyaml-cpp-dev libspdlog-dev libgtest-dev nlohmann-json3-dev
          libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools
          fortunes fortunes-min python3)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing from Debian: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" > "$BUILD_DIR.cmake.log" 2>&1 || { cat "$BUILD_DIR.cmake.log"; exit 1; }
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "[setup] built $BUILD_DIR/moe-train, $BUILD_DIR/moe-data, $BUILD_DIR/moe-bench"
