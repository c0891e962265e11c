"""A straightforward PyTorch CPU GLRS, timed per epoch on Yelp Madison.

The speed reference of docs/glrs.md: glrs.txt's networks as a PyTorch user
would first write them, with the same settings as ours (batch 512, Adam lr
0.00017, d = 64, two hidden layers of 64):

- `--stage space`: one representation network (Fig. 2: an ID embedding,
  two hidden ReLU layers, a linear output, L2 normalisation; separate user
  and item towers) trained on eq. 2's triplets with the distance loss of
  eq. 4 (margin 0.5), every training pair once per epoch with a uniform
  negative the user never had;
- `--stage attention`: eq. 7-9 over four frozen spaces (random unit rows
  here: they do not change the cost) with the product loss of eq. 3.

Prints training triplets per second (data preparation included, validation
excluded, as hinrec's epoch lines count). Not part of CI;
scripts/compare_glrs_torch.sh installs torch and runs it beside hinrec.

    python scripts/glrs_torch_reference.py DATA_ROOT --stage space --epochs 3 --threads 2
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def load_madison(root):
    folder = Path(root) / "glrs-yelp-madison"
    pairs = np.loadtxt(folder / "interactions.txt", dtype=np.float64)[:, :2].astype(np.int64)
    held = set()
    with open(folder / "gt.txt") as f:
        for u, line in enumerate(f):
            for i in line.replace(",", " ").split():
                held.add((u, int(i)))
    train = np.array([p for p in map(tuple, pairs) if p not in held], dtype=np.int64)
    return train, 2773, 3186


def tower(n, hidden, d):
    return nn.Sequential(
        nn.Embedding(n, hidden),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, d),
    )


def negatives(train, n_items, rng):
    seen = {}
    for u, i in train:
        seen.setdefault(u, set()).add(i)
    out = np.empty(len(train), dtype=np.int64)
    for k, (u, _) in enumerate(train):
        while True:
            j = rng.integers(n_items)
            if j not in seen[u]:
                out[k] = j
                break
    return out


def space_epoch(users, items, opt, train, n_items, batch, rng):
    order = rng.permutation(len(train))
    t = train[order]
    neg = negatives(t, n_items, rng)
    for s in range(0, len(t), batch):
        u = torch.from_numpy(t[s : s + batch, 0])
        p = torch.from_numpy(t[s : s + batch, 1])
        n = torch.from_numpy(neg[s : s + batch])
        ru = F.normalize(users(u), dim=1)
        rp = F.normalize(items(p), dim=1)
        rn = F.normalize(items(n), dim=1)
        dp = ((ru - rp) ** 2).sum(1)
        dn = ((ru - rn) ** 2).sum(1)
        loss = torch.clamp(dp - dn + 0.5, min=0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def attention_epoch(f, opt, spaces, train, n_items, batch, rng):
    order = rng.permutation(len(train))
    t = train[order]
    neg = negatives(t, n_items, rng)
    for s in range(0, len(t), batch):
        u = torch.from_numpy(t[s : s + batch, 0])
        p = torch.from_numpy(t[s : s + batch, 1])
        n = torch.from_numpy(neg[s : s + batch])
        gu = [su[u] for su, _ in spaces]
        gp = [si[p] for _, si in spaces]
        gn = [si[n] for _, si in spaces]
        compat = torch.stack([(fr(a) * fr(b)).sum(1) for fr, a, b in zip(f, gu, gp)], 1)
        alpha = torch.softmax(compat, 1)
        mix = lambda xs: sum(alpha[:, r : r + 1] * x for r, x in enumerate(xs))
        bu, bp, bn = mix(gu), mix(gp), mix(gn)
        loss = F.softplus((bu * bn).sum(1) - (bu * bp).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--stage", choices=["space", "attention"], default="space")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    train, n_users, n_items = load_madison(a.root)
    if a.stage == "space":
        users, items = tower(n_users, 64, a.dim), tower(n_items, 64, a.dim)
        opt = torch.optim.Adam(list(users.parameters()) + list(items.parameters()), lr=0.00017)
        step = lambda: space_epoch(users, items, opt, train, n_items, a.batch, rng)
    else:
        unit = lambda n: F.normalize(torch.randn(n, a.dim), dim=1)
        spaces = [(unit(n_users), unit(n_items)) for _ in range(4)]
        f = nn.ModuleList([nn.Linear(a.dim, a.dim) for _ in range(4)])
        opt = torch.optim.Adam(f.parameters(), lr=0.00017)
        step = lambda: attention_epoch(f, opt, spaces, train, n_items, a.batch, rng)
    rates = []
    for e in range(a.epochs):
        t = time.perf_counter()
        step()
        rates.append(len(train) / (time.perf_counter() - t))
    best = max(rates)
    print(f"torch {a.stage} threads {a.threads} d {a.dim}: {best:.0f} triplets/s (best of {a.epochs} epochs)")


if __name__ == "__main__":
    main()
