#!/usr/bin/env bash
# BPR-MF training speed: hinrec vs `implicit` 0.7.3's BPR (C++), one thread
# each, d = 64, on lgrec-ml100k, one after the other in one run (issue 19).
# Not part of CI: it installs implicit with pip into target/torch-venv.
#   bash scripts/compare_implicit.sh [DATA_ROOT] [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/datasets}
iters=${2:-50}
source scripts/torch_venv.sh
"$venv/bin/python" -c 'import implicit' 2>/dev/null || "$venv/bin/pip" install -q implicit==0.7.3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in 1 2 3; do
  line=$("$venv/bin/python" scripts/implicit_bpr.py "$root" --factors 64 --iterations "$iters")
  echo "$line"
  theirs=$(echo "$line" | sed -E 's/.* ([0-9]+) samples\/s$/\1/')
  # Training samples per second of training (validation excluded), every
  # epoch run: patience beyond the epoch count.
  ours=$(./target/release/hinrec train --model bpr --data lgrec-ml100k --data-root "$root" \
    --threads 1 --seed "$round" --set epochs="$iters" --set patience=100000 --set dim=64 \
    --out "$out/bpr" --force 2>&1 | grep '^trained')
  echo "hinrec: $ours"
  ours_sps=$(echo "$ours" | sed -E 's/.* ([0-9]+) samples\/s\)$/\1/')
  awk -v a="$ours_sps" -v b="$theirs" -v r="$round" \
    'BEGIN { printf "== round %s: hinrec / implicit = %.2fx samples per second\n", r, a / b }'
done
