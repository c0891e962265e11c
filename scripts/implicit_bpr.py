"""implicit's BPR (C++, one thread) timed on lgrec-ml100k's training pairs.

Prints one line: pairs, iterations, seconds per iteration, samples/s.
Used by scripts/compare_implicit.sh; not part of CI.
    python scripts/implicit_bpr.py DATA_ROOT [--factors 64] [--iterations 50]
"""
import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=50)
    args = ap.parse_args()
    rows = np.loadtxt(os.path.join(args.root, "lgrec-ml100k", "train.rating"), dtype=np.int64)
    users, items = rows[:, 0], rows[:, 1]
    m = sp.csr_matrix(
        (np.ones(len(users), dtype=np.float32), (users, items)),
        shape=(users.max() + 1, items.max() + 1),
    )
    m.sum_duplicates()
    model = BayesianPersonalizedRanking(
        factors=args.factors,
        iterations=args.iterations,
        num_threads=1,
        random_state=1,
        verify_negative_samples=True,
    )
    t = time.perf_counter()
    model.fit(m, show_progress=False)
    dt = time.perf_counter() - t
    n = m.nnz
    print(
        f"implicit {getattr(__import__('implicit'), '__version__', '?')} BPR factors {args.factors}: "
        f"{n} pairs x {args.iterations} iterations in {dt:.3f} s, "
        f"{dt / args.iterations:.4f} s per iteration, {n * args.iterations / dt:.0f} samples/s"
    )


if __name__ == "__main__":
    main()
