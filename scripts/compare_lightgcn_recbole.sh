#!/usr/bin/env bash
# LightGCN training speed per epoch: hinrec vs RecBole 1.2.1's LightGCN
# (PyTorch, CPU) on the same yelp training pairs, d = 64, the same layers,
# batch 2048, one uniform negative per pair, the same thread count, one
# after the other in one run (issue 19). Not part of CI: it installs
# RecBole with pip into target/torch-venv.
#   bash scripts/compare_lightgcn_recbole.sh [DATA_ROOT] [DATASET] [LAYERS] [THREADS] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/datasets}
data=${2:-yelp}
layers=${3:-2}
threads=${4:-2}
epochs=${5:-3}
source scripts/torch_venv.sh
"$venv/bin/python" -c 'import recbole' 2>/dev/null || "$venv/bin/pip" install -q recbole==1.2.1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Ours first: its model directory holds the split RecBole then reads.
ours=$(./target/release/hinrec train --model lightgcn --data "$data" --data-root "$root" \
  --threads "$threads" --seed 1 --set epochs="$epochs" --set patience=100000 \
  --set layers="$layers" --set dim=64 --set batch=2048 --out "$out/lightgcn" 2>&1 | grep '^trained')
echo "hinrec: $ours"
ours_sps=$(echo "$ours" | sed -E 's/.* ([0-9]+) samples\/s\)$/\1/')
line=$(OMP_NUM_THREADS="$threads" "$venv/bin/python" scripts/recbole_lightgcn.py "$out/lightgcn/split" \
  --layers "$layers" --epochs "$epochs" --threads "$threads" 2>&1 | tee /dev/stderr | tail -1)
theirs=$(echo "$line" | sed -E 's/.* ([0-9]+) samples\/s$/\1/')
awk -v a="$ours_sps" -v b="$theirs" \
  'BEGIN { printf "== hinrec / RecBole = %.2fx training samples per second (per epoch)\n", a / b }'
