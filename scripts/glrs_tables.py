"""Prints docs/glrs.md's result tables from docs/results.json and
docs/paper-numbers.toml (mean +- sample std over the recorded seeds).

    python3 scripts/glrs_tables.py [docs]
"""
import json
import statistics
import sys
import tomllib

docs = sys.argv[1] if len(sys.argv) > 1 else "docs"
records = json.load(open(f"{docs}/results.json"))["records"]
paper = tomllib.load(open(f"{docs}/paper-numbers.toml", "rb"))["entry"]
ORDER = ["mostpop", "itemknn", "bpr", "glrs-gd", "glrs-gp", "glrs-gad", "glrs-gap",
         "glrs-ld", "glrs-lp", "glrs-lad", "glrs-lap", "glrs-ad", "glrs-ap"]


def cell(rec, block, metric):
    vals = [r[block]["values"][metric] for r in rec["runs"] if r.get(block)]
    if not vals:
        return "-"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.4f} ± {sd:.4f}"


def paper_value(dataset, model, metric):
    for e in paper:
        if e["dataset"] == dataset:
            for v in e["values"]:
                if v["model"] == model and v["metric"] == metric:
                    return f"{v['value']:.4f}"
    return "-"


def find(dataset, model):
    return next((r for r in records if r["dataset"] == dataset and r["model"] == model), None)


for dataset in ["glrs-yelp-madison", "movielens"]:
    print(f"\n{dataset}\n")
    print("| model | pruned Recall@15 | pruned Precision@15 | pruned HR@15 | pruned ARHR@15 "
          "| full Recall@15 | full HR@15 | paper Recall@15 | paper HR@15 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in ORDER:
        r = find(dataset, m)
        if r is None:
            continue
        cols = [cell(r, "pruned", k) for k in ["Recall@15", "Precision@15", "HR@15", "ARHR@15"]]
        cols += [cell(r, "full", k) for k in ["Recall@15", "HR@15"]]
        cols += [paper_value(dataset, m, k) for k in ["Recall@15", "HR@15"]]
        print(f"| {m} | " + " | ".join(cols) + " |")

print("\nlgrec-ml100k (Table 6)\n")
print("| model | HR@10 | NDCG@10 | paper HR@10 | paper NDCG@10 |")
print("|---|---|---|---|---|")
for m in ["mostpop", "itemknn", "bpr", "glrs-ad-dim32", "glrs-ap-dim32", "glrs-ad", "glrs-ap",
          "glrs-ad-dim128", "glrs-ap-dim128"]:
    r = find("lgrec-ml100k", m)
    if r is None:
        continue
    cols = [cell(r, "sampled", k) for k in ["HR@10", "NDCG@10"]]
    cols += [paper_value("lgrec-ml100k", m, k) for k in ["HR@10", "NDCG@10"]]
    print(f"| {m} | " + " | ".join(cols) + " |")
