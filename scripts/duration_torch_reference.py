"""A straightforward PyTorch CPU DURation, timed per epoch on douban-dtcdr.

The speed reference of docs/duration.md: duration.txt's model as a PyTorch
user would first write it, at hinrec's settings (d = 64, batch 1024 rows
per item kind, Adam at 0.001, alpha 10, beta 0.001, RBF bandwidth by the
median heuristic on 256 rows), on the real douban-dtcdr ratings with a
seeded 70 % of them for training:

- user tower: `nn.EmbeddingBag(n_items, d, mode="sum")` over the user's
  training items weighted by rating / 5 / sqrt(count), the row's own item
  taken out, ReLU, `nn.Linear(d, d)`, ReLU (section 3.2);
- item tower: the same over the item's training users, ReLU, concatenated
  with `f_p(r)` (a two-layer MLP per kind over the item's four training
  statistics), `nn.Linear(2d, d)`, ReLU;
- readout `<u, x>` plus an offset, BCE on rating > 3 (eq. 7);
- alignment (eq. 4): per pair of kinds the mean RBF kernel over their
  mapped rows; topology (eq. 5-6): the two `N x N` covariance matrices
  as eq. 5 prints them, squared Frobenius distance over 4N.

Prints training rows per second (batch assembly included, validation
excluded, as hinrec's epoch lines count). Not part of CI;
scripts/compare_duration_torch.sh installs torch and runs it beside hinrec.

    python scripts/duration_torch_reference.py --root ../shared/datasets --epochs 2 --threads 2
"""

import argparse
import os
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def load(root):
    rows = []
    offset = 0
    for kind, name in enumerate(["book_ratings.dat", "music_ratings.dat"]):
        a = np.loadtxt(os.path.join(root, "douban-dtcdr", name), dtype=np.int64)
        a[:, 1] += offset - 1
        a[:, 0] -= 1
        offset = a[:, 1].max() + 1
        rows.append(np.column_stack([a, np.full(len(a), kind)]))
    return np.concatenate(rows), offset


class Duration(nn.Module):
    def __init__(self, n_users, n_items, d, kinds, raw_dim):
        super().__init__()
        self.user_bag = nn.EmbeddingBag(n_items, d, mode="sum")
        self.item_bag = nn.EmbeddingBag(n_users, d, mode="sum")
        nn.init.normal_(self.user_bag.weight, 0.0, 0.1)
        nn.init.normal_(self.item_bag.weight, 0.0, 0.1)
        self.user_bias = nn.Parameter(torch.zeros(d))
        self.item_bias = nn.Parameter(torch.zeros(d))
        self.user_out = nn.Linear(d, d)
        self.item_out = nn.Linear(2 * d, d)
        self.maps = nn.ModuleList(
            nn.Sequential(nn.Linear(raw_dim, d), nn.ReLU(), nn.Linear(d, d)) for _ in range(kinds)
        )
        self.offset = nn.Parameter(torch.zeros(1))


def rbf_mean(a, b, gamma):
    return torch.exp(-gamma * torch.cdist(a, b) ** 2).mean()


def covariance(x):
    d = x.shape[1]
    s = x.sum(1, keepdim=True)
    return (x @ x.T - s @ s.T / d) / (d - 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="../shared/datasets")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=1024)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    data, n_items = load(args.root)
    n_users = data[:, 0].max() + 1
    train = data[rng.permutation(len(data))[: int(0.7 * len(data))]]
    users, items = train[:, 0], train[:, 1]
    weight = train[:, 2] / 5.0
    label = (train[:, 2] > 3).astype(np.float32)
    kind_of_item = np.zeros(n_items, dtype=np.int64)
    kind_of_item[train[:, 1]] = train[:, 3]

    def history(owner, other, n):
        order = np.argsort(owner, kind="stable")
        counts = np.bincount(owner, minlength=n)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        scale = 1.0 / np.sqrt(np.maximum(counts, 1))
        return offsets, other[order], (weight[order] * scale[owner[order]]).astype(np.float32), scale

    u_off, u_ids, u_w, u_scale = history(users, items, n_users)
    i_off, i_ids, i_w, i_scale = history(items, users, n_items)
    # Four training statistics per item, standardised per kind.
    n = np.bincount(items, minlength=n_items).astype(np.float64)
    mean = np.bincount(items, weights=weight, minlength=n_items) / np.maximum(n, 1)
    sq = np.bincount(items, weights=weight**2, minlength=n_items) / np.maximum(n, 1)
    pos = np.bincount(items, weights=label, minlength=n_items) / np.maximum(n, 1)
    raw = np.column_stack([np.log1p(n), mean, pos, np.sqrt(np.maximum(sq - mean**2, 0))])
    for k in range(2):
        m = kind_of_item == k
        raw[m] = (raw[m] - raw[m].mean(0)) / np.where(raw[m].std(0) > 1e-6, raw[m].std(0), 1.0)
    raw = torch.tensor(raw, dtype=torch.float32)
    model = Duration(n_users, n_items, args.dim, 2, 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    by_kind = [np.flatnonzero(train[:, 3] == k) for k in range(2)]
    steps = max(len(r) for r in by_kind) // args.batch + 1

    def bag(table, offsets, ids, w, owners):
        starts = offsets[owners]
        ends = offsets[owners + 1]
        flat = np.concatenate([ids[s:e] for s, e in zip(starts, ends)])
        fw = np.concatenate([w[s:e] for s, e in zip(starts, ends)])
        lens = ends - starts
        bag_offsets = np.concatenate([[0], np.cumsum(lens)[:-1]])
        return table(
            torch.from_numpy(flat),
            torch.from_numpy(bag_offsets),
            per_sample_weights=torch.from_numpy(fw),
        )

    best = 0.0
    for epoch in range(args.epochs):
        orders = [np.resize(rng.permutation(r), steps * args.batch) for r in by_kind]
        t = time.time()
        for s in range(steps):
            idx = np.concatenate([o[s * args.batch : (s + 1) * args.batch] for o in orders])
            bu, bi = users[idx], items[idx]
            own = torch.from_numpy(weight[idx].astype(np.float32)).unsqueeze(1)
            hu = bag(model.user_bag, u_off, u_ids, u_w, bu) - model.user_bag.weight[bi] * (
                own * torch.from_numpy(u_scale[bu].astype(np.float32)).unsqueeze(1)
            )
            hi = bag(model.item_bag, i_off, i_ids, i_w, bi) - model.item_bag.weight[bu] * (
                own * torch.from_numpy(i_scale[bi].astype(np.float32)).unsqueeze(1)
            )
            maps = [
                model.maps[k](raw[bi[k * args.batch : (k + 1) * args.batch]]) for k in range(2)
            ]
            mapped = torch.cat(maps)
            u = F.relu(model.user_out(F.relu(hu + model.user_bias)))
            x = F.relu(model.item_out(torch.cat([F.relu(hi + model.item_bias), mapped], 1)))
            logits = (u * x).sum(1) + model.offset
            c = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(label[idx]))
            with torch.no_grad():
                sub = mapped[:256]
                gamma = 1.0 / torch.median(torch.pdist(sub) ** 2).clamp(min=1e-12)
            p = len(maps)
            a = sum(
                (p - 1) / p**2 * rbf_mean(maps[i], maps[i], gamma) if i == j
                else -1 / p**2 * rbf_mean(maps[i], maps[j], gamma)
                for i in range(p)
                for j in range(p)
            )
            rows = [raw[bi[k * args.batch : (k + 1) * args.batch]] for k in range(2)]
            topo = sum(
                ((covariance(r) - covariance(m)) ** 2).sum() / (4 * len(m))
                for r, m in zip(rows, maps)
            )
            loss = c + 10.0 * a + 1e-3 * topo
            opt.zero_grad()
            loss.backward()
            opt.step()
        secs = time.time() - t
        rate = steps * 2 * args.batch / secs
        best = max(best, rate)
        print(f"torch duration epoch {epoch + 1}: loss {loss.item():.4f} {rate:.0f} rows/s")
    print(f"torch duration threads {args.threads}: best {best:.0f} rows/s")


if __name__ == "__main__":
    main()
