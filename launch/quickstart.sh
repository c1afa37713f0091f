#!/usr/bin/env bash
# The README's first command: install what is missing, build, prepare the default byte-level corpus
# (English prose from the `fortunes` package + C headers from /usr/include, two very different
# domains), then train configs/quickstart.yaml. Extra arguments go to moe-train (e.g. --set ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
if [ ! -f data/corpus/train.bin ] || [ ! -f data/corpus/valid.bin ]; then
  build/moe-data --out data/corpus --valid-fraction 0.05 /usr/share/games/fortunes /usr/include/*.h
fi
exec build/moe-train configs/quickstart.yaml "$@"
