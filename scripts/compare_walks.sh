#!/usr/bin/env bash
# HHFAN's neighbour walks on the real ml1m M-HIG: hinrec (cargo xtask
# hhfan-walks) against a numpy version (scripts/walks_numpy.py) on the same
# exported graph and settings, one after the other in one run, on 1 and 2
# threads for hinrec (numpy is single-threaded). Not part of CI: it uses the
# torch venv's numpy (scripts/torch_venv.sh).
#   bash scripts/compare_walks.sh [DATA_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/datasets}
source scripts/torch_venv.sh
cargo build --release -q -p xtask
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for t in 2 1; do
  RAYON_NUM_THREADS=$t ./target/release/xtask hhfan-walks --data-root "$root" --export "$out"
done
"$venv/bin/python" scripts/walks_numpy.py "$out"
