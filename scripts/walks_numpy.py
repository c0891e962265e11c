"""HHFAN's neighbour sampling (RWSS, hhfan.md III.D) in numpy, the peer of
hinrec's walks in scripts/compare_walks.sh: from every node of a graph that
`cargo xtask hhfan-walks --export DIR` wrote, a random walk with restart
until `collect` nodes are gathered under per-type quotas, then each type's
`keep` most visited (ties to the smaller id). Vectorised over all start
nodes at once, one step of every walker per iteration.

    python scripts/walks_numpy.py DIR [--repeats 3]
"""

import argparse
import time
import tomllib
from pathlib import Path

import numpy as np


def rwss(offsets, indptr, indices, cfg, rng):
    n = len(indptr) - 1
    types = np.searchsorted(offsets, np.arange(n), side="right") - 1
    n_types = len(offsets) - 1
    deg = np.diff(indptr)
    quotas = np.array(cfg["quotas"])
    keep = np.array(cfg["keep"])
    starts = np.nonzero(deg > 0)[0]
    m = len(starts)
    pos = starts.copy()
    collected = np.zeros(m, dtype=np.int64)
    per_type = np.zeros((m, n_types), dtype=np.int64)
    walkers, nodes = [], []
    for _ in range(cfg["collect"] * cfg["max_steps_per_node"]):
        w = np.nonzero(collected < cfg["collect"])[0]
        if len(w) == 0:
            break
        cur = pos[w]
        back = (rng.random(len(w)) < cfg["restart"]) & (cur != starts[w])
        nxt = indices[indptr[cur] + (rng.random(len(w)) * deg[cur]).astype(np.int64)]
        new = np.where(back, starts[w], nxt)
        pos[w] = new
        t = types[new]
        ok = (new != starts[w]) & (per_type[w, t] < quotas[t])
        ww, tt = w[ok], t[ok]
        np.add.at(per_type, (ww, tt), 1)
        collected[ww] += 1
        walkers.append(starts[ww])
        nodes.append(new[ok])
    walkers = np.concatenate(walkers)
    nodes = np.concatenate(nodes)
    keys, counts = np.unique(walkers * n + nodes, return_counts=True)
    wk, node = keys // n, keys % n
    t = types[node]
    order = np.lexsort((node, -counts, t, wk))
    wk, node, t = wk[order], node[order], t[order]
    group = wk * n_types + t
    first = np.r_[0, np.nonzero(np.diff(group))[0] + 1]
    sizes = np.diff(np.r_[first, len(group)])
    rank = np.arange(len(group)) - np.repeat(first, sizes)
    kept = rank < keep[t]
    return wk[kept], t[kept], node[kept] - offsets[t[kept]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    d = Path(a.dir)
    offsets = np.load(d / "offsets.npy")
    indptr = np.load(d / "indptr.npy")
    indices = np.load(d / "indices.npy")
    cfg = tomllib.loads((d / "walk.toml").read_text())
    n = len(indptr) - 1
    best = float("inf")
    for r in range(a.repeats):
        start = time.perf_counter()
        out = rwss(offsets, indptr, indices, cfg, np.random.default_rng(r))
        best = min(best, time.perf_counter() - start)
    print(f"numpy walks: {n} start nodes in {best:.3f}s, {n / best:.0f} walks/s "
          f"({len(out[0])} group entries, best of {a.repeats})")


if __name__ == "__main__":
    main()
