"""A straightforward PyTorch CPU LGRec, timed per epoch on lgrec-ml100k.

The speed reference of docs/lgrec.md: the model of lgrec.txt section 2 as
a PyTorch user would first write it (the neighbour MLPs F and G applied to
every neighbour slot, M materialised per pair, autograd for everything),
trained with the same triples per epoch, batch 256 and Adam as ours.
Neighbours are a user's (item's) first K training items (users) in a seeded
random order, and the meta-path labels are random bits: neither changes the
cost of a step. Not part of CI; scripts/compare_torch.sh installs torch and
runs it beside `cargo xtask lgrec`.

    python scripts/lgrec_torch_reference.py DATA_ROOT --dim 64 --k 50 --threads 2
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def neighbour_lists(owner, other, n_owner, k, rng):
    """First k partners of every node in a random order, padded, with a mask."""
    ids = np.zeros((n_owner, k), dtype=np.int64)
    mask = np.zeros((n_owner, k), dtype=np.float32)
    order = rng.permutation(len(owner))
    fill = np.zeros(n_owner, dtype=np.int64)
    for o, t in zip(owner[order], other[order]):
        if fill[o] < k:
            ids[o, fill[o]] = t
            mask[o, fill[o]] = 1.0
            fill[o] += 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def mlp(widths):
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i + 2 < len(widths):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Lgrec(nn.Module):
    def __init__(self, n_users, n_items, d, n_paths):
        super().__init__()
        self.users = nn.Embedding(n_users, d)
        self.items = nn.Embedding(n_items, d)
        nn.init.xavier_normal_(self.users.weight)
        nn.init.xavier_normal_(self.items.weight)
        self.f = mlp([d, d, d])
        self.g = mlp([d, d, d])
        self.a = nn.Parameter(nn.init.xavier_normal_(torch.empty(d, d)))
        self.rel = mlp([2 * d, d, d, d])
        self.out = nn.Linear(d, n_paths)

    def forward(self, x_ids, x_mask, y_ids, y_mask):
        x = self.items(x_ids)  # (B, K1, d): the user's neighbour items
        y = self.users(y_ids)  # (B, K2, d): the item's neighbour users
        m = self.f(x) @ self.a @ self.g(y).transpose(1, 2)  # (B, K1, K2)
        big = 1e9
        row = (m + (y_mask[:, None, :] - 1) * big).max(2).values
        col = (m + (x_mask[:, :, None] - 1) * big).max(1).values
        wx = torch.softmax(row + (x_mask - 1) * big, 1)
        wy = torch.softmax(col + (y_mask - 1) * big, 1)
        xu = (wx[..., None] * x).sum(1)
        yv = (wy[..., None] * y).sum(1)
        z = self.rel(torch.cat([xu, yv], 1))
        dist = ((xu + z - yv) ** 2).sum(1)
        reg = (x**2).sum() + (y**2).sum()
        return dist, self.out(z), reg


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data_root")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, default=0, help="time this many batches after 3 warm-up ones and scale to an epoch (0: the whole epoch)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    raw = np.loadtxt(Path(a.data_root) / "lgrec-ml100k" / "train.rating", dtype=np.int64, usecols=(0, 1))
    _, u = np.unique(raw[:, 0], return_inverse=True)
    _, i = np.unique(raw[:, 1], return_inverse=True)
    n_users, n_items, n_paths = u.max() + 1, i.max() + 1, 4
    user_nb, user_mask = neighbour_lists(u, i, n_users, a.k, rng)
    item_nb, item_mask = neighbour_lists(i, u, n_items, a.k, rng)
    seen = [set() for _ in range(n_users)]
    for uu, ii in zip(u, i):
        seen[uu].add(ii)
    model = Lgrec(n_users, n_items, a.dim, n_paths)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    bce = nn.BCEWithLogitsLoss()
    batch, alpha, beta, margin = 256, 0.1, 0.001, 1.0
    n = len(u)
    order = rng.permutation(n)
    n_batches = (n + batch - 1) // batch
    timed = n_batches if a.batches == 0 else min(a.batches, n_batches - 3)
    warm = 0 if a.batches == 0 else 3
    start = None
    for b in range(warm + timed):
        if b == warm:
            start = time.perf_counter()
        idx = order[b * batch : (b + 1) * batch]
        users = torch.from_numpy(u[idx])
        pos = torch.from_numpy(i[idx])
        neg_l = []
        for uu in u[idx]:
            j = rng.integers(n_items)
            while j in seen[uu]:
                j = rng.integers(n_items)
            neg_l.append(j)
        neg = torch.tensor(neg_l)
        both_u = torch.cat([users, users])
        both_i = torch.cat([pos, neg])
        dist, logits, reg = model(user_nb[both_u], user_mask[both_u], item_nb[both_i], item_mask[both_i])
        labels = torch.randint(0, 2, logits.shape).float()
        k = len(idx)
        loss = torch.relu(margin + dist[:k] - dist[k:]).mean()
        loss = loss + alpha * 2 * n_paths * bce(logits, labels) + beta * reg / k
        opt.zero_grad()
        loss.backward()
        opt.step()
    per_batch = (time.perf_counter() - start) / timed
    print(
        f"torch {torch.__version__} threads {a.threads} d {a.dim} K {a.k}: "
        f"{timed} batches timed, {per_batch * 1000:.1f} ms per batch, "
        f"{batch / per_batch:.0f} triples/s, {per_batch * n / batch:.1f} s per epoch of {n} triples"
    )


if __name__ == "__main__":
    main()
