#!/usr/bin/env bash
# Meta-path products: hinrec vs scipy.sparse on the same matrices, one run.
# Not part of CI: it installs numpy and scipy with pip into target/scipy-venv.
#   bash scripts/compare_scipy.sh [DATA_ROOT]
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-../shared/datasets}
venv=target/scipy-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q numpy scipy
cargo build --release -q -p hinrec
"$venv/bin/python" -c 'import scipy, numpy; print("scipy", scipy.__version__, "numpy", numpy.__version__)'
for spec in "movielens UMUM,UAUM,UOUM,UMTM" "lastfm UATA,UAUA,UUUA,UUA" "yelp UBUB,UBCaB,UUB,UBCiB"; do
  set -- $spec
  echo "== $1"
  OPENBLAS_NUM_THREADS=1 "$venv/bin/python" scripts/scipy_metapaths.py "$root" "$1"
  ./target/release/hinrec metapaths --data "$1" --data-root "$root" --paths "$2" --rule count 2>/dev/null
  ./target/release/hinrec metapaths --data "$1" --data-root "$root" --paths "$2" --rule above-mean 2>/dev/null
  /usr/bin/time -f "hinrec labels only: max RSS %M KB, wall %e s" \
    ./target/release/hinrec metapaths --data "$1" --data-root "$root" --paths "$2" --rule above-mean --labels-only 2>&1 | grep -v loaded
done
