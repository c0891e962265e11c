#!/usr/bin/env bash
# GLRS training speed: hinrec vs a straightforward PyTorch CPU GLRS
# (scripts/glrs_torch_reference.py) on Yelp Madison, one after the other in
# one run, so the ratio does not depend on how fast the machine is today.
# Stages: one representation network (GD: towers + distance loss) and the
# attention network over four spaces (AP: product loss). Not part of CI: it
# installs torch with pip into target/torch-venv.
#   bash scripts/compare_glrs_torch.sh [DATA_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/datasets}
source scripts/torch_venv.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
epochs=5
for t in 2 1; do
  # hinrec: every stage runs $epochs epochs (patience above it); its epoch
  # lines count training triplets per second without validation.
  lines=$(./target/release/hinrec train --model glrs-ap --data glrs-yelp-madison --data-root "$root" \
    --out "$out/ap" --force --threads "$t" --set epochs=$epochs --set patience=100 2>&1 | grep '^epoch')
  best() { sed -E 's/.*\| ([0-9]+) samples\/s/\1/' | sort -n | tail -1; }
  gd=$(echo "$lines" | head -n $epochs | best)
  att=$(echo "$lines" | tail -n $epochs | best)
  for stage in space attention; do
    line=$(OMP_NUM_THREADS=$t "$venv/bin/python" scripts/glrs_torch_reference.py "$root" \
      --stage $stage --epochs $epochs --threads "$t")
    echo "$line"
    torch=$(echo "$line" | sed -E 's/.* ([0-9]+) triplets\/s.*/\1/')
    ours=$([ $stage = space ] && echo "$gd" || echo "$att")
    echo "hinrec $stage threads $t: $ours triplets/s"
    awk -v a="$ours" -v b="$torch" -v t="$t" -v s="$stage" \
      'BEGIN { printf "== %s, threads %s: hinrec / torch = %.1fx per epoch\n", s, t, a / b }'
  done
done
