#!/usr/bin/env bash
# HHFAN training speed: hinrec on ml1m against a straightforward PyTorch CPU
# HHFAN (scripts/hhfan_torch_reference.py) at the same settings (d = 64,
# batch 4096, groups 10/10/3 per type), one after the other in one run, so
# the ratio does not depend on how fast the machine is today. Triples per
# second are compared; torch's epoch is 10 triples per user (hinrec's 40)
# so that it ends in under a minute.
# Not part of CI: it installs torch with pip into target/torch-venv.
#   bash scripts/compare_hhfan_torch.sh [DATA_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/datasets}
source scripts/torch_venv.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf 'split = { kind = "user-ratio", train = 0.8 }\nvalid_split = { kind = "user-ratio", train = 0.9 }\n' > "$out/ml1m.toml"
epochs=2
for t in 2 1; do
  # hinrec's epoch lines count training triples per second without
  # validation; the best of $epochs epochs.
  ours=$(./target/release/hinrec train --model hhfan --data ml1m --data-root "$root" \
    --config "$out/ml1m.toml" --out "$out/m" --force --threads "$t" \
    --set epochs=$epochs --set patience=100 2>&1 | grep '^epoch' \
    | sed -E 's/.*\| ([0-9]+) samples\/s/\1/' | sort -n | tail -1)
  echo "hinrec hhfan threads $t: best $ours triples/s"
  line=$(OMP_NUM_THREADS=$t "$venv/bin/python" scripts/hhfan_torch_reference.py \
    --epochs $epochs --threads "$t" --per-user 10 | tail -1)
  echo "$line"
  torch=$(echo "$line" | sed -E 's/.*best ([0-9]+) triples\/s.*/\1/')
  awk -v a="$ours" -v b="$torch" -v t="$t" \
    'BEGIN { printf "== threads %s: hinrec / torch = %.1fx per epoch\n", t, a / b }'
done
