"""ItemKNN's defaults from a `cargo xtask reproduce --models itemknn` log:
for every grid point, its validation score as a share of the best score of
the same experiment, averaged over the experiments (docs/baselines.md).
    cargo xtask reproduce --models itemknn | tee itemknn.log
    python3 scripts/itemknn_defaults.py itemknn.log
"""
import collections
import re
import sys

scores = collections.defaultdict(dict)  # experiment -> point -> score
experiment = None
for path in sys.argv[1:]:
    for line in open(path):
        m = re.match(r"== (\S+):", line)
        if m:
            experiment = m.group(1)
            continue
        m = re.match(r"\s+grid itemknn (.*): valid \S+ ([0-9.]+)$", line.rstrip())
        if m and experiment:
            scores[experiment][m.group(1)] = float(m.group(2))
shares = collections.defaultdict(list)
for experiment, points in scores.items():
    best = max(points.values())
    for point, v in points.items():
        shares[point].append(v / best if best > 0 else 0.0)
print(f"{len(scores)} experiments: {', '.join(sorted(scores))}")
print("| grid point | mean share of the best | worst | chosen on |")
print("|---|---|---|---|")
chosen = collections.Counter(max(p, key=p.get) for p in scores.values())
for point, v in sorted(shares.items(), key=lambda x: -sum(x[1]) / len(x[1]))[:8]:
    print(f"| {point} | {sum(v) / len(v):.4f} | {min(v):.4f} | {chosen.get(point, 0)} |")
