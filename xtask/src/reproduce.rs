//! `cargo xtask reproduce`: each model on each dataset with its paper's
//! protocol, 3 seeds, hyper-parameters chosen on validation; results merged
//! into docs/results.json and rendered to docs/results.md beside the papers'
//! numbers (docs/paper-numbers.toml).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use hinrec::baselines::training::FitSummary;
use hinrec::data::registry;
use hinrec::eval::report::mean_std;
use hinrec::eval::Metrics;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::models::{fit, ModelKind};
use hinrec::tune::{tune, Trial};
use serde::{Deserialize, Serialize};

/// Arguments of `cargo xtask reproduce`.
#[derive(clap::Args)]
pub struct Args {
    /// Folder of the shared datasets.
    #[arg(long, default_value = "../shared/datasets")]
    data_root: PathBuf,
    /// Models to run.
    #[arg(long, value_delimiter = ',', default_value = "mostpop,itemknn,bpr")]
    models: Vec<ModelKind>,
    /// Datasets to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lgrec-ml100k,lastfm,yelp,reda-lastfm"
    )]
    datasets: Vec<String>,
    /// Model seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Where the results go.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    /// LGRec variants run after the baselines (`cargo xtask lgrec` with its
    /// defaults) on the datasets above; `none` skips LGRec.
    #[arg(long, value_delimiter = ',', default_value = "full,noglo,noatt")]
    lgrec: Vec<String>,
    /// REDA variants run last (`cargo xtask reda` with its defaults) on
    /// reda-lastfm; `none` skips REDA.
    #[arg(long, value_delimiter = ',', default_value = "full,npil,nmal")]
    reda: Vec<String>,
}

/// One seed's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRun {
    /// Model seed.
    pub seed: u64,
    /// Sampled protocol on the test pairs.
    pub sampled: Metrics,
    /// Full ranking of the test items.
    pub full: Metrics,
    /// Training summary.
    pub fit: Option<FitSummary>,
    /// Seconds to fit and evaluate.
    pub wall_s: f64,
}

/// A model on a dataset.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Dataset name.
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
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Store {
    /// Every model-dataset record.
    pub records: Vec<Record>,
}

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

/// Reads docs/results.json (empty when absent).
pub fn load_store(out: &std::path::Path) -> Result<Store> {
    let json_path = out.join("results.json");
    Ok(match std::fs::read_to_string(&json_path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("{}", json_path.display()))?,
        Err(_) => Store::default(),
    })
}

/// Replaces the record of the same dataset and model in results.json and
/// re-renders results.md. The file is read at each save, so records
/// another command saved meanwhile are kept.
pub fn save_record(out: &std::path::Path, rec: Record) -> Result<()> {
    let mut store = load_store(out)?;
    store
        .records
        .retain(|r| !(r.dataset == rec.dataset && r.model == rec.model));
    store.records.push(rec);
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&store)?,
    )?;
    write_markdown(out, &store)
}

/// Re-renders results.md from results.json.
pub fn render_file(out: &std::path::Path) -> Result<()> {
    write_markdown(out, &load_store(out)?)
}

fn write_markdown(out: &std::path::Path, store: &Store) -> Result<()> {
    // An output folder other than docs/ may lack the papers' numbers.
    let path = out.join("paper-numbers.toml");
    let papers: PaperFile = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display()))?,
        Err(_) => PaperFile { entry: Vec::new() },
    };
    std::fs::write(out.join("results.md"), render(store, &papers))?;
    Ok(())
}

pub fn run(args: &Args) -> Result<()> {
    // Fail before any training when results.json is unreadable.
    load_store(&args.out)?;
    let command = format!(
        "cargo xtask reproduce --datasets {} --models {} --seeds {}",
        args.datasets.join(","),
        args.models
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(","),
        args.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let commit = git_commit();
    for name in &args.datasets {
        let ds = registry::load(name, Some(&args.data_root))?;
        let base = ExperimentConfig::default();
        let prepared = Prepared::new(&ds, &base)?;
        println!(
            "== {name}: split {}, train {}, valid {}, test {}",
            prepared.split_label,
            prepared.split.train.nnz(),
            prepared.split.valid.nnz(),
            prepared.split.test.nnz()
        );
        for &kind in &args.models {
            let rec = run_model(kind, &prepared, &base, &args.seeds, &command, &commit)?;
            save_record(&args.out, rec)?;
        }
    }
    let lgrec_datasets: Vec<String> = args
        .datasets
        .iter()
        .filter(|d| ["lgrec-ml100k", "lastfm", "yelp"].contains(&d.as_str()))
        .map(|d| {
            if d == "lgrec-ml100k" {
                "movielens".to_string()
            } else {
                d.clone()
            }
        })
        .collect();
    if !args.lgrec.iter().any(|v| v == "none") && !args.lgrec.is_empty() {
        crate::lgrec::run(&crate::lgrec::Args::with_defaults(
            args.data_root.clone(),
            lgrec_datasets,
            args.lgrec.clone(),
            args.seeds.clone(),
            args.out.clone(),
        ))?;
    }
    if !args.reda.iter().any(|v| v == "none") && !args.reda.is_empty() {
        crate::reda::run(&crate::reda::Args::with_defaults(
            args.data_root.clone(),
            args.reda.clone(),
            args.seeds.clone(),
            args.out.clone(),
        ))?;
    }
    println!("updated {}/results.json and results.md", args.out.display());
    Ok(())
}

/// The label of the trial with the best validation metric ("-" if none).
pub(crate) fn chosen_label(trials: &[Trial]) -> String {
    trials
        .iter()
        .max_by(|a, b| a.valid.total_cmp(&b.valid))
        .map_or("-".into(), |t| t.label.clone())
}

fn run_model(
    kind: ModelKind,
    prepared: &Prepared,
    base: &ExperimentConfig,
    seeds: &[u64],
    command: &str,
    commit: &str,
) -> Result<Record> {
    let start = Instant::now();
    let (cfg, _, trials) = tune(kind, prepared, base, seeds[0])?;
    let chosen = chosen_label(&trials);
    let mut runs = Vec::new();
    for &seed in seeds {
        let t = Instant::now();
        let fitted = fit(kind, prepared, &cfg, seed, &mut |_| {})?;
        let sampled = prepared
            .evaluate_sampled(fitted.scorer(), kind.name(), seed, &[5, 10, 15])
            .metrics;
        let full = prepared
            .evaluate_full(fitted.scorer(), kind.name(), seed, &[10])
            .metrics;
        println!(
            "   {:<8} seed {seed}: sampled HR@10 {:.4} NDCG@10 {:.4} | full HR@10 {:.4} NDCG@10 {:.4} | {:.1}s",
            kind.name(),
            sampled.get("HR@10").unwrap_or(f64::NAN),
            sampled.get("NDCG@10").unwrap_or(f64::NAN),
            full.get("HR@10").unwrap_or(f64::NAN),
            full.get("NDCG@10").unwrap_or(f64::NAN),
            t.elapsed().as_secs_f64()
        );
        runs.push(SeedRun {
            seed,
            sampled,
            full,
            fit: fitted.summary,
            wall_s: t.elapsed().as_secs_f64(),
        });
    }
    Ok(Record {
        dataset: prepared.dataset.clone(),
        model: kind.name().into(),
        split: prepared.split_label.clone(),
        test_pairs: prepared.test_negatives.len(),
        chosen,
        trials,
        runs,
        command: command.into(),
        commit: commit.into(),
        wall_s: start.elapsed().as_secs_f64(),
    })
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
    // record of the code that ran.
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.trim().is_empty());
    format!("{}{}", head.trim(), if dirty { "+dirty" } else { "" })
}

/// A table cell: the mean ± sample std of `metric` over `runs`.
pub(crate) fn cell(runs: &[&Metrics], metric: &str) -> String {
    match mean_std(runs).get(metric) {
        Some((m, _)) if runs.len() == 1 => format!("{m:.4} (1 seed)"),
        Some((m, s)) => format!("{m:.4} ± {s:.4}"),
        None => "-".into(),
    }
}

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
        let paper_name = paper
            .values()
            .next()
            .map_or(String::new(), |p| format!(" ({} beside ours)", p.1));
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
