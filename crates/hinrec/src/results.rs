//! The results store of `cargo xtask reproduce`: docs/results.json (every
//! record) and docs/results.md rendered from it beside the papers' numbers
//! (docs/paper-numbers.toml, printed beside ours only).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use hinrec_eval::report::mean_std;
use hinrec_eval::Metrics;
use hinrec_train::FitSummary;

use crate::tune::Trial;
use serde::{Deserialize, Serialize};

/// One seed's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRun {
    /// Model seed.
    pub seed: u64,
    /// Sampled protocol on the test pairs.
    pub sampled: Metrics,
    /// Full ranking of the test items.
    pub full: Metrics,
    /// Full ranking within the model's retrieval candidates (GLRS's
    /// probed clusters), with `CandidateRecall` and `Scanned`; empty for
    /// models without an index.
    #[serde(default, skip_serializing_if = "Metrics::is_empty")]
    pub pruned: Metrics,
    /// HHFAN's pooled protocol (each test user's items against one stored
    /// list of unobserved items); empty where the protocol has none.
    #[serde(default, skip_serializing_if = "Metrics::is_empty")]
    pub pooled: Metrics,
    /// DURation's labelled protocol: the ROC AUC of the test rows' labels
    /// (`AUC`) and per item kind (`AUC:book`); empty elsewhere.
    #[serde(default, skip_serializing_if = "Metrics::is_empty")]
    pub labelled: Metrics,
    /// Training summary.
    pub fit: Option<FitSummary>,
    /// Seconds to fit and evaluate.
    pub wall_s: f64,
}

/// A model on a dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Dataset name, or the experiment's label where a dataset has
    /// several protocols (`ml1m@0.6`).
    pub dataset: String,
    /// Model name.
    pub model: String,
    /// Split label.
    pub split: String,
    /// Test pairs in the sampled protocol.
    pub test_pairs: usize,
    /// Configuration chosen on validation.
    pub chosen: String,
    /// Every configuration tried (on the first seed).
    pub trials: Vec<Trial>,
    /// Per-seed results.
    pub runs: Vec<SeedRun>,
    /// The command that produced it.
    pub command: String,
    /// Commit it ran on.
    pub commit: String,
    /// Seconds for tuning plus all seeds.
    pub wall_s: f64,
    /// The CPU it ran on and its widest SIMD level (per-seed figures
    /// follow the CPU's float path).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu: String,
}

/// What results.json holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Store {
    /// Every model-dataset record.
    pub records: Vec<Record>,
}

/// docs/paper-numbers.toml.
#[derive(Debug, Deserialize)]
pub struct PaperFile {
    entry: Vec<PaperEntry>,
}

#[derive(Debug, Deserialize)]
struct PaperEntry {
    paper: String,
    dataset: String,
    values: Vec<PaperValue>,
}

#[derive(Debug, Deserialize)]
struct PaperValue {
    model: String,
    metric: String,
    value: f64,
}

/// Reads docs/results.json (empty when absent; an unreadable or malformed
/// one is an error, never overwritten).
pub fn load_store(out: &Path) -> Result<Store> {
    anyhow::ensure!(out.is_dir(), "--out {}: no such folder", out.display());
    let json_path = out.join("results.json");
    Ok(match std::fs::read_to_string(&json_path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("{}", json_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Store::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", json_path.display())),
    })
}

/// Replaces the record of the same dataset and model in results.json and
/// re-renders results.md. The file is read at each save, so records
/// another command saved meanwhile are kept.
pub fn save_record(out: &Path, rec: Record) -> Result<()> {
    // Two commands saving at once would each drop the other's record.
    let lock_path = out.join(".results.lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let mut store = load_store(out)?;
    store
        .records
        .retain(|r| !(r.dataset == rec.dataset && r.model == rec.model));
    store.records.push(rec);
    crate::paths::write_atomic(
        &out.join("results.json"),
        serde_json::to_string_pretty(&store)?.as_bytes(),
    )?;
    write_markdown(out, &store)
}

/// Re-renders results.md from results.json.
pub fn render_file(out: &Path) -> Result<()> {
    write_markdown(out, &load_store(out)?)
}

fn write_markdown(out: &Path, store: &Store) -> Result<()> {
    // An output folder other than docs/ may lack the papers' numbers.
    let path = out.join("paper-numbers.toml");
    let papers: PaperFile = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PaperFile { entry: Vec::new() },
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    crate::paths::write_atomic(&out.join("results.md"), render(store, &papers).as_bytes())
}

/// The short commit of HEAD, with `+dirty` when tracked files have
/// uncommitted changes.
pub fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".into();
    };
    // Uncommitted changes to tracked files make the commit alone a poor
    // record of the code that ran; docs/ is not code (a reproduction
    // writes its results there between runs).
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":(exclude)docs",
    ])
    .is_some_and(|s| !s.trim().is_empty());
    format!("{}{}", head.trim(), if dirty { "+dirty" } else { "" })
}

/// This machine's CPU model and widest SIMD level, for a record.
pub fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let simd = ["avx512f", "avx2", "avx", "sse4_2", "neon"]
        .into_iter()
        .find(|f| has(f))
        .unwrap_or(if cfg!(target_arch = "aarch64") {
            "neon"
        } else {
            "baseline"
        });
    format!("{model} ({simd})")
}

/// A table cell: the mean ± sample std of `metric` over `runs`.
pub fn cell(runs: &[&Metrics], metric: &str) -> String {
    match mean_std(runs).get(metric) {
        Some((m, _)) if runs.len() == 1 => format!("{m:.4} (1 seed)"),
        Some((m, s)) => format!("{m:.4} ± {s:.4}"),
        None => "-".into(),
    }
}

/// results.md from the records and the papers' numbers.
pub fn render(store: &Store, papers: &PaperFile) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Results\n\nWritten by `cargo xtask reproduce` from docs/results.json; do not edit by hand.\n\
         Every figure is the mean ± sample standard deviation over the seeds listed, each run's\n\
         epoch and each model's hyper-parameters chosen on a validation split carved from the\n\
         training data (never on the test split). All models of a dataset rank the same stored\n\
         candidates. The paper's numbers (docs/paper-numbers.toml) are printed beside ours only.\n"
    );
    let mut datasets: Vec<&str> = Vec::new();
    for r in &store.records {
        if !datasets.contains(&r.dataset.as_str()) {
            datasets.push(&r.dataset);
        }
    }
    for ds in datasets {
        let recs: Vec<&Record> = store.records.iter().filter(|r| r.dataset == ds).collect();
        let paper: BTreeMap<(String, String), (f64, String)> = papers
            .entry
            .iter()
            .filter(|e| e.dataset == ds)
            .flat_map(|e| {
                e.values.iter().map(move |v| {
                    (
                        (v.model.clone(), v.metric.clone()),
                        (v.value, e.paper.clone()),
                    )
                })
            })
            .collect();
        let mut names: Vec<&str> = papers
            .entry
            .iter()
            .filter(|e| e.dataset == ds)
            .map(|e| e.paper.as_str())
            .collect();
        names.dedup();
        let paper_name = if names.is_empty() {
            String::new()
        } else {
            format!(" ({} beside ours)", names.join("; "))
        };
        let _ = writeln!(md, "## {ds}{paper_name}\n");
        let first = recs[0];
        let _ = writeln!(
            md,
            "Split `{}`, {} test pairs, sampled protocol = each test item against its 100 stored negatives; \
             full = all items except the user's training and validation items.\n",
            first.split, first.test_pairs
        );
        let _ = writeln!(
            md,
            "| model | HR@10 | NDCG@10 | paper HR@10 | paper NDCG@10 | full HR@10 | full NDCG@10 | chosen on validation | seeds | wall s |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &recs {
            let s: Vec<&Metrics> = r.runs.iter().map(|x| &x.sampled).collect();
            let f: Vec<&Metrics> = r.runs.iter().map(|x| &x.full).collect();
            let p = |m: &str| {
                paper
                    .get(&(r.model.clone(), m.to_string()))
                    .map_or("-".into(), |v| format!("{:.4}", v.0))
            };
            let seeds: Vec<String> = r.runs.iter().map(|x| x.seed.to_string()).collect();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                r.model,
                cell(&s, "HR@10"),
                cell(&s, "NDCG@10"),
                p("HR@10"),
                p("NDCG@10"),
                cell(&f, "HR@10"),
                cell(&f, "NDCG@10"),
                r.chosen,
                seeds.join(","),
                r.wall_s
            );
        }
        // GLRS ranks every item at 15, and within its probed clusters.
        let at15: Vec<&&Record> = recs
            .iter()
            .filter(|r| r.runs.iter().all(|x| x.full.get("Recall@15").is_some()))
            .collect();
        if !at15.is_empty() {
            let _ = writeln!(
                md,
                "\nFull ranking at 15 (all items but the user's training and validation ones), and within the model's retrieval candidates where it has an index (pruned; GLRS: the K = 2 probed clusters of M = 20, Algorithm 1; a test item outside them is a miss). The paper's numbers are pruned.\n\n\
                 | model | Recall@15 | Precision@15 | HR@15 | ARHR@15 | pruned Recall@15 | pruned Precision@15 | pruned HR@15 | pruned ARHR@15 | candidate recall | items scanned | paper Recall@15 | paper Precision@15 | paper HR@15 | paper ARHR@15 |\n\
                 |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for r in at15 {
                let f: Vec<&Metrics> = r.runs.iter().map(|x| &x.full).collect();
                let pr: Vec<&Metrics> = r.runs.iter().map(|x| &x.pruned).collect();
                let p = |m: &str| {
                    paper
                        .get(&(r.model.clone(), m.to_string()))
                        .map_or("-".into(), |v| format!("{:.4}", v.0))
                };
                let mut cells: Vec<String> = ["Recall@15", "Precision@15", "HR@15", "ARHR@15"]
                    .iter()
                    .map(|m| cell(&f, m))
                    .collect();
                cells.extend(
                    [
                        "Recall@15",
                        "Precision@15",
                        "HR@15",
                        "ARHR@15",
                        "CandidateRecall",
                        "Scanned",
                    ]
                    .iter()
                    .map(|m| cell(&pr, m)),
                );
                cells.extend(
                    ["Recall@15", "Precision@15", "HR@15", "ARHR@15"]
                        .iter()
                        .map(|m| p(m)),
                );
                let _ = writeln!(md, "| {} | {} |", r.model, cells.join(" | "));
            }
        }
        // HHFAN's pooled protocol, and full ranking at 10 and 20.
        let pooled: Vec<&&Record> = recs
            .iter()
            .filter(|r| r.runs.iter().all(|x| !x.pooled.is_empty()))
            .collect();
        if !pooled.is_empty() {
            let _ = writeln!(
                md,
                "\nPooled protocol (HHFAN IV.C): each test user's held-out items all ranked against one stored list of unobserved items; AUC is eq. 12's per-user AUC. Full = all items but the user's training and validation ones.\n\n\
                 | model | P@10 | R@10 | NDCG@10 | AUC | paper P@10 | paper R@10 | paper NDCG@10 | paper AUC | full P@10 | full R@10 | full NDCG@10 | full R@20 | full NDCG@20 |\n\
                 |---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for r in pooled {
                let po: Vec<&Metrics> = r.runs.iter().map(|x| &x.pooled).collect();
                let f: Vec<&Metrics> = r.runs.iter().map(|x| &x.full).collect();
                let p = |m: &str| {
                    paper
                        .get(&(r.model.clone(), m.to_string()))
                        .map_or("-".into(), |v| format!("{:.4}", v.0))
                };
                let mut cells: Vec<String> = ["Precision@10", "Recall@10", "NDCG@10", "AUC"]
                    .iter()
                    .map(|m| cell(&po, m))
                    .collect();
                cells.extend(
                    ["pooled P@10", "pooled R@10", "pooled NDCG@10", "pooled AUC"]
                        .iter()
                        .map(|m| p(m)),
                );
                cells.extend(
                    [
                        "Precision@10",
                        "Recall@10",
                        "NDCG@10",
                        "Recall@20",
                        "NDCG@20",
                    ]
                    .iter()
                    .map(|m| cell(&f, m)),
                );
                let _ = writeln!(md, "| {} | {} |", r.model, cells.join(" | "));
            }
        }
        // DURation's labelled protocol: AUC per item kind and over all.
        let labelled: Vec<&&Record> = recs
            .iter()
            .filter(|r| r.runs.iter().all(|x| !x.labelled.is_empty()))
            .collect();
        if !labelled.is_empty() {
            let mut columns: Vec<String> = Vec::new();
            for r in &labelled {
                for x in &r.runs {
                    for k in x.labelled.values.keys() {
                        if k.starts_with("AUC:") && !columns.contains(k) {
                            columns.push(k.clone());
                        }
                    }
                }
            }
            columns.push("AUC".into());
            let head: Vec<String> = columns
                .iter()
                .map(|c| c.strip_prefix("AUC:").unwrap_or("all").to_string())
                .collect();
            let paper_head: Vec<String> = head.iter().map(|h| format!("paper {h}")).collect();
            let _ = writeln!(
                md,
                "\nLabelled protocol (DURation): ROC AUC of the labelled test rows (with ratings: above 3 positive, any other observed rating negative; binary data: each positive beside one stored unobserved item of its kind), per item kind and over all; ties count one half.\n\n\
                 | model | {} | {} |\n|---|{}",
                head.join(" | "),
                paper_head.join(" | "),
                "---|".repeat(2 * columns.len())
            );
            for r in labelled {
                let l: Vec<&Metrics> = r.runs.iter().map(|x| &x.labelled).collect();
                let mut cells: Vec<String> = columns.iter().map(|c| cell(&l, c)).collect();
                cells.extend(columns.iter().map(|c| {
                    paper
                        .get(&(r.model.clone(), c.clone()))
                        .map_or("-".into(), |v| format!("{:.4}", v.0))
                }));
                let _ = writeln!(md, "| {} | {} |", r.model, cells.join(" | "));
            }
        }
        // reda.txt reports cut-offs 5, 10 and 15: a second table where runs
        // measured them.
        let deep: Vec<&&Record> = recs
            .iter()
            .filter(|r| r.runs.iter().all(|x| x.sampled.get("HR@5").is_some()))
            .collect();
        if !deep.is_empty() {
            let _ = writeln!(
                md,
                "\n| model (sampled) | HR@5 | HR@10 | HR@15 | NDCG@5 | NDCG@10 | NDCG@15 |\n|---|---|---|---|---|---|---|"
            );
            for r in deep {
                let s: Vec<&Metrics> = r.runs.iter().map(|x| &x.sampled).collect();
                let cells: Vec<String> = ["HR@5", "HR@10", "HR@15", "NDCG@5", "NDCG@10", "NDCG@15"]
                    .iter()
                    .map(|m| cell(&s, m))
                    .collect();
                let _ = writeln!(md, "| {} | {} |", r.model, cells.join(" | "));
            }
        }
        let ours: Vec<&str> = recs.iter().map(|r| r.model.as_str()).collect();
        let mut only: Vec<String> = paper
            .iter()
            .filter(|((m, _), _)| !ours.contains(&m.as_str()))
            .map(|((m, metric), (v, _))| format!("{m} {metric} {v:.4}"))
            .collect();
        only.sort();
        if !only.is_empty() {
            let _ = writeln!(
                md,
                "\nPaper rows without a hinrec run yet: {}.",
                only.join("; ")
            );
        }
        let mut produced: Vec<String> = Vec::new();
        for r in &recs {
            let line = format!("`{}` at commit `{}`", r.command, r.commit);
            if !produced.contains(&line) {
                produced.push(line);
            }
        }
        let _ = writeln!(md, "\nProduced by {}.\n", produced.join("; "));
        for r in &recs {
            if let Some(fits) = r
                .runs
                .iter()
                .map(|x| x.fit.as_ref())
                .collect::<Option<Vec<_>>>()
            {
                let epochs: Vec<String> = fits.iter().map(|f| f.best_epoch.to_string()).collect();
                let _ = writeln!(
                    md,
                    "- {}: best epochs {} ; training throughput {:.0} positive samples/s (mean).",
                    r.model,
                    epochs.join(", "),
                    fits.iter().map(|f| f.samples_per_s).sum::<f64>() / fits.len() as f64
                );
            }
        }
        md.push('\n');
    }
    md
}
