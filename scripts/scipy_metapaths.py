"""scipy.sparse timings of the same meta-path products as `hinrec metapaths`.

Reads the hin/ folders of the shared datasets, builds the same binary CSR
matrices (all interactions, duplicate edges merged), multiplies each
meta-path left to right with scipy (one thread) and applies the row-mean
rule LGRec's labels use. Run through scripts/compare_scipy.sh.
"""
import sys
import time

import numpy as np
import scipy.sparse as sp

ROOT = sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets"


def read(path, a=0, b=1):
    rows = np.loadtxt(path, dtype=np.int64, usecols=(a, b), ndmin=2)
    return rows[:, 0], rows[:, 1]


def adjacency(src, dst, n_src, n_dst):
    m = sp.csr_matrix((np.ones(len(src), dtype=np.float32), (src, dst)), shape=(n_src, n_dst))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def densify_ids(*cols):
    """1-based ids -> dense 0-based ids in sorted order (as hinrec does)."""
    allv = np.unique(np.concatenate(cols))
    return [np.searchsorted(allv, c) for c in cols], len(allv)


def dataset(name):
    d = f"{ROOT}/hin/{name}"
    if name == "movielens":
        u, m = read(f"{d}/user_movie.dat")
        (u,), nu = densify_ids(u)
        (m,), nm = densify_ids(m)
        mats = {"UM": adjacency(u, m, nu, nm)}
        a_u, a = read(f"{d}/user_age.dat")
        o_u, o = read(f"{d}/user_occupation.dat")
        g_m, g = read(f"{d}/movie_genre.dat")
        (a,), na = densify_ids(a)
        (o,), no = densify_ids(o)
        (g,), ng = densify_ids(g)
        mats["UA"] = adjacency(a_u - 1, a, nu, na)
        mats["UO"] = adjacency(o_u - 1, o, nu, no)
        mats["MT"] = adjacency(g_m - 1, g, nm, ng)
        paths = {
            "UMUM": ["UM", "UM'", "UM"],
            "UAUM": ["UA", "UA'", "UM"],
            "UOUM": ["UO", "UO'", "UM"],
            "UMTM": ["UM", "MT", "MT'"],
        }
    elif name == "lastfm":
        u, a = read(f"{d}/user_artist.dat")
        (u,), nu = densify_ids(u)
        uniq_a = np.unique(a)
        ai = np.searchsorted(uniq_a, a)
        na = len(uniq_a)
        mats = {"UA": adjacency(u, ai, nu, na)}
        uu1, uu2 = read(f"{d}/user_user_knn.dat")
        uniq_u = np.unique(read(f"{d}/user_artist.dat")[0])
        mats["UU"] = adjacency(np.searchsorted(uniq_u, uu1), np.searchsorted(uniq_u, uu2), nu, nu)
        at_a, at_t = read(f"{d}/artist_tag.dat")
        keep = np.isin(at_a, uniq_a)
        (t,), nt = densify_ids(at_t)
        mats["AT"] = adjacency(np.searchsorted(uniq_a, at_a[keep]), t[keep], na, nt)
        paths = {
            "UATA": ["UA", "AT", "AT'"],
            "UAUA": ["UA", "UA'", "UA"],
            "UUUA": ["UU", "UU", "UA"],
            "UUA": ["UU", "UA"],
        }
    else:  # yelp
        u, b = read(f"{d}/user_business.dat")
        uniq_u, uniq_b = np.unique(u), np.unique(b)
        nu, nb = len(uniq_u), len(uniq_b)
        mats = {"UB": adjacency(np.searchsorted(uniq_u, u), np.searchsorted(uniq_b, b), nu, nb)}
        x, y = read(f"{d}/user_user.dat")
        mats["UU"] = adjacency(np.searchsorted(uniq_u, x), np.searchsorted(uniq_u, y), nu, nu)
        for key, f in (("BCa", "business_category.dat"), ("BCi", "business_city.dat")):
            bb, c = read(f"{d}/{f}")
            keep = np.isin(bb, uniq_b)
            (c,), nc = densify_ids(c)
            mats[key] = adjacency(np.searchsorted(uniq_b, bb[keep]), c[keep], nb, nc)
        paths = {
            "UBUB": ["UB", "UB'", "UB"],
            "UBCaB": ["UB", "BCa", "BCa'"],
            "UUB": ["UU", "UB"],
            "UBCiB": ["UB", "BCi", "BCi'"],
        }
    return mats, paths


def factor(mats, key):
    """A matrix by name; a trailing ' means its transpose."""
    if key.endswith("'"):
        return mats[key[:-1]].T.tocsr()
    return mats[key]


for name in sys.argv[2:] or ["movielens", "lastfm", "yelp"]:
    mats, paths = dataset(name)
    for path, steps in paths.items():
        fs = [factor(mats, s) for s in steps]
        t = time.perf_counter()
        prod = fs[0]
        for f in fs[1:]:
            prod = prod @ f
        t_prod = time.perf_counter() - t
        t = time.perf_counter()
        means = np.asarray(prod.sum(axis=1)).ravel() / prod.shape[1]
        rows = np.repeat(np.arange(prod.shape[0]), np.diff(prod.indptr))
        labels = prod.data > means[rows]
        t_rule = time.perf_counter() - t
        print(
            f"scipy {name:<9} {path:<6} {prod.shape[0]} x {prod.shape[1]}: {prod.nnz} nonzeros "
            f"({100 * prod.nnz / (prod.shape[0] * prod.shape[1]):.1f}%) product {t_prod:.3f}s, "
            f"row-mean rule {t_rule:.3f}s ({int(labels.sum())} above)"
        )
        del prod, labels, rows
