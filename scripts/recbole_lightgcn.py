"""RecBole 1.2.1's LightGCN timed per training epoch on a split that
`hinrec train` wrote (its split/train.tsv, valid.tsv, test.tsv), on the CPU.

Prints one line per epoch and a summary line:
    recbole LightGCN: N pairs, E epochs, S s per epoch (median), X samples/s
Used by scripts/compare_lightgcn_recbole.sh; not part of CI.
    python scripts/recbole_lightgcn.py SPLIT_DIR --layers 2 --epochs 3 --threads 2
"""
import argparse
import os
import statistics
import tempfile
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.005)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import numpy as np
    import torch

    # RecBole 1.2.1 predates NumPy 2: restore the aliases it assigns from.
    for old, new in [("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)]:
        if not hasattr(np, old):
            setattr(np, old, new)
    # ... and SciPy 1.12, which dropped the dok_matrix._update its graph
    # building calls once before training (so outside the timed epochs).
    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):
        def _update(self, data):
            for (i, j), v in data.items():
                self[i, j] = v

        sp.dok_matrix._update = _update
    torch.set_num_threads(args.threads)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    work = tempfile.mkdtemp()
    name = "hinrec"
    os.makedirs(os.path.join(work, name))
    for part in ["train", "valid", "test"]:
        with open(os.path.join(args.split, f"{part}.tsv")) as f, open(
            os.path.join(work, name, f"{name}.{part}.inter"), "w"
        ) as out:
            out.write("user_id:token\titem_id:token\n")
            for line in f:
                u, i = line.split()[:2]
                out.write(f"{u}\t{i}\n")
    config = Config(
        model="LightGCN",
        dataset=name,
        config_dict={
            "data_path": work,
            "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id"]},
            "use_gpu": False,
            "device": "cpu",
            "embedding_size": args.dim,
            "n_layers": args.layers,
            "learning_rate": args.lr,
            "train_batch_size": args.batch,
            "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
            "epochs": args.epochs,
            "show_progress": False,
            "worker": 0,
            "seed": 1,
            "log_wandb": False,
            "checkpoint_dir": os.path.join(work, "saved"),
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = LightGCN(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    pairs = len(train_data.dataset)
    times = []
    for epoch in range(args.epochs):
        t = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        times.append(time.perf_counter() - t)
        print(f"recbole epoch {epoch + 1}: {times[-1]:.3f} s, loss {float(loss):.4f}", flush=True)
    med = statistics.median(times)
    print(
        f"recbole {__import__('recbole').__version__} LightGCN: {pairs} pairs, {args.epochs} epochs, "
        f"{med:.3f} s per epoch (median), {pairs / med:.0f} samples/s"
    )


if __name__ == "__main__":
    main()
