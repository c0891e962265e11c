#!/usr/bin/env bash
# LGRec training speed: hinrec vs a straightforward PyTorch CPU LGRec
# (scripts/lgrec_torch_reference.py) on lgrec-ml100k, one after the other in
# one run, so the ratio does not depend on how fast the machine is today.
# Not part of CI: it installs torch with pip into target/torch-venv.
#   bash scripts/compare_torch.sh [DATA_ROOT] [TORCH_BATCHES]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/datasets}
batches=${2:-60}
source scripts/torch_venv.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for cfg in "64 50" "128 100"; do
  set -- $cfg
  for t in 2 1; do
    line=$(OMP_NUM_THREADS=$t "$venv/bin/python" scripts/lgrec_torch_reference.py "$root" \
      --dim "$1" --k "$2" --threads "$t" --batches "$batches")
    echo "$line"
    torch_tps=$(echo "$line" | sed -E 's/.* ([0-9]+) triples\/s.*/\1/')
    # One epoch of training triples (one per training interaction) on
    # lgrec-ml100k, validation excluded from the rate.
    ours=$(./target/release/hinrec train --model lgrec --data lgrec-ml100k --data-root "$root" \
      --threads "$t" --seed 1 --set epochs=1 --set dim="$1" --set k_user="$2" --set k_item="$2" \
      --out "$out/lgrec" --force 2>&1 | grep '^epoch 1:')
    ours_tps=$(echo "$ours" | sed -E 's/.*\| ([0-9]+) samples\/s/\1/')
    echo "hinrec threads $t d $1 K $2: $ours_tps triples/s"
    awk -v a="$ours_tps" -v b="$torch_tps" -v t="$t" -v d="$1" -v k="$2" \
      'BEGIN { printf "== threads %s d %s K %s: hinrec / torch = %.1fx per epoch\n", t, d, k, a / b }'
  done
done
