#!/usr/bin/env bash
# DURation training speed: hinrec on douban-dtcdr against a straightforward
# PyTorch CPU DURation (scripts/duration_torch_reference.py) at the same
# settings (d = 64, 1024 rows per kind per step, alpha 10, beta 0.001),
# one after the other in one run, so the ratio does not depend on how fast
# the machine is today. Training rows per second are compared, the best of
# two epochs each.
# Not part of CI: it installs torch with pip into target/torch-venv.
#   bash scripts/compare_duration_torch.sh [DATA_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/datasets}
source scripts/torch_venv.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf 'split = { kind = "global-ratio", train = 0.7, valid = 0.2 }\npositive_above = 3.0\nmetric = "AUC"\n' > "$out/douban.toml"
epochs=2
for t in 2 1; do
  ours=$(./target/release/hinrec train --model duration --data douban-dtcdr --data-root "$root" \
    --config "$out/douban.toml" --out "$out/m" --force --threads "$t" \
    --set epochs=$epochs --set patience=100 2>&1 | grep '^epoch' \
    | sed -E 's/.*\| ([0-9]+) samples\/s/\1/' | sort -n | tail -1)
  echo "hinrec duration threads $t: best $ours rows/s"
  line=$(OMP_NUM_THREADS=$t "$venv/bin/python" scripts/duration_torch_reference.py \
    --root "$root" --epochs $epochs --threads "$t" | tail -1)
  echo "$line"
  torch=$(echo "$line" | sed -E 's/.*best ([0-9]+) rows\/s.*/\1/')
  awk -v a="$ours" -v b="$torch" -v t="$t" \
    'BEGIN { printf "== threads %s: hinrec / torch = %.1fx per epoch\n", t, a / b }'
done
