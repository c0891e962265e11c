"""A straightforward PyTorch CPU HHFAN, timed per epoch on ml1m's shape.

The speed reference of docs/hhfan.md: hhfan.md's network as a PyTorch user
would first write it, at the same settings as hinrec's (d = 64, groups of
10 users, 10 items and 3 of each of the five attribute types, batch and
triples per user as given), on ml1m's node counts (6,040 users, 3,260
movies, 2 genders, 7 ages, 21 occupations, 18 genres, 81 years):

- ID embeddings per node type (eq. 1);
- per neighbour type an `nn.LSTM(d, d / 2, bidirectional=True)` over the
  group, the mean of its outputs (eq. 3);
- attribute self-attention with a residual, summed (eq. 4-5);
- neighbour-type attention with LeakyReLU (eq. 6-7);
- BPR on (user, positive, negative) triples with L2 on the batch's rows
  (eq. 10), Adam; a batch embeds its unique users and items once.

The groups are random ids of full length: which neighbours a node has does
not change the cost, and hinrec's groups on ml1m are nearly all full.
Prints training triples per second (sampling included, validation
excluded, as hinrec's epoch lines count). Not part of CI;
scripts/compare_hhfan_torch.sh installs torch and runs it beside hinrec.

    python scripts/hhfan_torch_reference.py --epochs 2 --threads 2
"""

import argparse
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

COUNTS = [6040, 3260, 2, 7, 21, 18, 81]
KEEP = [10, 10, 3, 3, 3, 3, 3]


class Hhfan(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(n, d) for n in COUNTS)
        self.lstm = nn.ModuleList(
            nn.LSTM(d, d // 2, batch_first=True, bidirectional=True) for _ in COUNTS
        )
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.att = nn.Linear(2 * d, 1, bias=False)
        for p in self.parameters():
            nn.init.normal_(p, 0.0, 0.1)
        self.d = d

    def forward(self, own_type, own_id, groups):
        # groups[t]: (n, KEEP[t]) ids of type t.
        aggs, used = [], []
        for t, g in enumerate(groups):
            x = self.emb[t](g)
            used.append(x)
            h, _ = self.lstm[t](x)
            aggs.append(h.mean(1))
        x = torch.stack(aggs[2:], 1)
        s = self.wq(x) @ self.wk(x).transpose(1, 2) / self.d**0.5
        attrs = (torch.softmax(s, -1) @ self.wv(x) + x).sum(1)
        own = torch.where(
            (own_type == 0).unsqueeze(1),
            self.emb[0](own_id.clamp(max=COUNTS[0] - 1)),
            self.emb[1](own_id.clamp(max=COUNTS[1] - 1)),
        )
        cands = torch.stack([aggs[0], aggs[1], attrs], 1)
        z = torch.cat([own.unsqueeze(1).expand_as(cands), cands], 2)
        alpha = torch.softmax(F.leaky_relu(self.att(z).squeeze(2), 0.2), 1)
        return (alpha.unsqueeze(2) * cands).sum(1), used


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--per-user", type=int, default=40)
    ap.add_argument("--reg", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    model = Hhfan(a.dim)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    # Fixed groups per node (drawn once, like the walks).
    groups = {
        kind: [torch.from_numpy(rng.integers(COUNTS[t], size=(COUNTS[kind], KEEP[t])))
               for t in range(len(COUNTS))]
        for kind in (0, 1)
    }
    n_triples = COUNTS[0] * a.per_user
    best = 0.0
    for epoch in range(a.epochs):
        start = time.perf_counter()
        users = rng.integers(COUNTS[0], size=n_triples)
        pos = rng.integers(COUNTS[1], size=n_triples)
        neg = rng.integers(COUNTS[1], size=n_triples)
        for s in range(0, n_triples, a.batch):
            u, p, n = users[s : s + a.batch], pos[s : s + a.batch], neg[s : s + a.batch]
            uu, ui = np.unique(u, return_inverse=True)
            it, ii = np.unique(np.concatenate([p, n]), return_inverse=True)
            tu, ti = torch.from_numpy(uu), torch.from_numpy(it)
            gs = [torch.cat([groups[0][t][tu], groups[1][t][ti]]) for t in range(len(COUNTS))]
            own_type = torch.cat([torch.zeros(len(uu), dtype=torch.long), torch.ones(len(it), dtype=torch.long)])
            e, used = model(own_type, torch.cat([tu, ti]), gs)
            eu = e[torch.from_numpy(ui)]
            ei = e[len(uu) + torch.from_numpy(ii)]
            ep, en = ei[: len(p)], ei[len(p) :]
            loss = F.softplus(((eu * en).sum(1) - (eu * ep).sum(1))).mean()
            reg = sum((x**2).sum() for x in used) + (eu**2).sum() + (ep**2).sum() + (en**2).sum()
            loss = loss + a.reg * reg / len(u)
            opt.zero_grad()
            loss.backward()
            opt.step()
        rate = n_triples / (time.perf_counter() - start)
        best = max(best, rate)
        print(f"torch epoch {epoch + 1}: {rate:.0f} triples/s")
    print(f"torch hhfan threads {a.threads}: best {best:.0f} triples/s")


if __name__ == "__main__":
    main()
