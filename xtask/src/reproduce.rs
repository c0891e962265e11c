//! `cargo xtask reproduce`: every registered model (or the ones named) on
//! each experiment of its registry entry, 3 seeds, the epoch and the
//! entry's grid chosen on validation; merged into docs/results.json and
//! rendered to docs/results.md. No model is named here: the registry says
//! what to run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use hinrec::data::{registry as datasets, Dataset, Interactions};
use hinrec::eval::{full_ranking, sampled, Metrics};
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::graph::Hin;
use hinrec::models::{fit, FitRun};
use hinrec::registry::{parse_toml, Experiment, FullRanking, ModelEntry, MODELS};
use hinrec::train::{AnyParams, CheckpointPolicy, EpochReport, Progress};
use hinrec::tune::tune;
use indicatif::{ProgressBar, ProgressStyle};

use hinrec::results::{cell, cpu, git_commit, load_store, save_record, Record, SeedRun};

/// Arguments of `cargo xtask reproduce`.
#[derive(clap::Args)]
pub struct Args {
    /// Folder of the shared datasets.
    #[arg(long, default_value = "../shared/datasets")]
    data_root: PathBuf,
    /// Registered models to run (default: all, in registry order).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Only these datasets of the models' experiments, or experiment labels
    /// where a dataset has several protocols (`ml1m@0.6`; default: all).
    #[arg(long, value_delimiter = ',')]
    datasets: Vec<String>,
    /// Model seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Overrides a model parameter in every run, `KEY=VALUE` in TOML; the
    /// record's model name then carries it (`lgrec-beta0`), so a trial
    /// never replaces the default setting's row.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Skip the grid search and use the entry's settings as they are.
    #[arg(long)]
    no_grid: bool,
    /// Write checkpoints under DIR/<dataset>/<model>/seed-<n>.
    #[arg(long, value_name = "DIR")]
    checkpoints: Option<PathBuf>,
    /// Continue from the checkpoints in `--checkpoints` where they exist.
    #[arg(long, requires = "checkpoints")]
    resume: bool,
    /// Also score the test candidates after every epoch and print the
    /// maximum over epochs of each test metric beside the result (the
    /// LGRec authors' released code's rule). Printed only, never recorded
    /// or used to choose anything.
    #[arg(long, conflicts_with = "resume")]
    audit_test: bool,
    /// Where the results go.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
}

/// A dataset loaded once for every model that runs on it.
struct Loaded {
    dataset: Dataset,
    prepared: Prepared,
    hin: Option<Hin>,
}

pub fn run(args: &Args) -> Result<()> {
    // Fail before any training: unreadable results, unknown names or
    // settings, a checkpoint folder inside the data.
    load_store(&args.out)?;
    let entries: Vec<&ModelEntry> = if args.models.is_empty() {
        MODELS.iter().collect()
    } else {
        args.models
            .iter()
            .map(|m| hinrec::registry::model(m).map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?
    };
    for d in &args.datasets {
        anyhow::ensure!(
            entries
                .iter()
                .any(|e| e.experiments.iter().any(|x| x.name() == d)),
            "--datasets {d}: none of the models has an experiment there (known: {})",
            known_experiments(&entries).join(", ")
        );
    }
    let sets = hinrec::registry::parse_sets(&args.sets)?;
    for e in &entries {
        e.params(None, &sets)?;
    }
    if let Some(c) = &args.checkpoints {
        anyhow::ensure!(
            !hinrec::paths::is_inside(c, &args.data_root),
            "--checkpoints {} is inside the data folder {}: hinrec never writes under a data folder",
            c.display(),
            args.data_root.display()
        );
    }
    anyhow::ensure!(
        !hinrec::paths::is_inside(&args.out, &args.data_root),
        "--out {} is inside the data folder {}: hinrec never writes under a data folder",
        args.out.display(),
        args.data_root.display()
    );
    hinrec::paths::check_writable(&args.out).context("--out")?;
    let commit = git_commit();
    let cpu = cpu();
    let mut cache: HashMap<(String, usize, String), Loaded> = HashMap::new();
    for entry in entries {
        for exp in entry.experiments {
            if !args.datasets.is_empty() && !args.datasets.iter().any(|d| d == exp.name()) {
                continue;
            }
            let cfg = ExperimentConfig {
                valid_users: exp.valid_users,
                ..ExperimentConfig::parse(exp.protocol)
                    .with_context(|| format!("the protocol of {} on {}", entry.name, exp.name()))?
            };
            let key = (
                exp.dataset.to_string(),
                exp.valid_users,
                exp.protocol.to_string(),
            );
            if !cache.contains_key(&key) {
                let dataset = datasets::load(exp.dataset, Some(&args.data_root))?;
                let prepared = Prepared::new(&dataset, &cfg)?;
                println!(
                    "== {}: split {}, train {}, valid {} ({} validation pairs scored), test {}",
                    exp.name(),
                    prepared.split_label,
                    prepared.split.train.nnz(),
                    prepared.split.valid.nnz(),
                    prepared.valid_negatives.len(),
                    prepared.split.test.nnz()
                );
                cache.insert(
                    key.clone(),
                    Loaded {
                        dataset,
                        prepared,
                        hin: None,
                    },
                );
            }
            let data = cache.get_mut(&key).context("cached")?;
            let mut settings = parse_toml(exp.settings)?;
            settings.extend(sets.clone());
            let base = entry.params(None, &settings)?;
            if base.needs_hin() && data.hin.is_none() {
                data.hin = Some(data.prepared.hin(&data.dataset));
            }
            let at = (commit.as_str(), cpu.as_str());
            let rec = run_experiment(entry, exp, base.as_ref(), data, &cfg, args, at)?;
            save_record(&args.out, rec)?;
        }
    }
    println!("updated {}/results.json and results.md", args.out.display());
    Ok(())
}

fn run_experiment(
    entry: &ModelEntry,
    exp: &Experiment,
    base: &dyn AnyParams,
    data: &Loaded,
    cfg: &ExperimentConfig,
    args: &Args,
    (commit, cpu): (&str, &str),
) -> Result<Record> {
    let start = Instant::now();
    let (prepared, hin) = (&data.prepared, data.hin.as_ref());
    let grid = if args.no_grid {
        Vec::new()
    } else {
        (exp.grid)()
    };
    let seed0 = *args.seeds.first().unwrap_or(&1);
    let (chosen, trials) = tune(base, &grid, exp.grid_settings, prepared, hin, cfg, seed0)?;
    for t in &trials {
        println!(
            "   grid {} {}: valid {} {:.4}",
            entry.name, t.label, cfg.metric, t.valid
        );
    }
    let s = &prepared.split;
    let full_target = full_target(exp.full, &s.test, cfg.data_seed);
    let name = record_name(entry.name, &args.sets);
    let mut runs = Vec::new();
    let mut audits = Vec::new();
    for &seed in &args.seeds {
        let t = Instant::now();
        let bar = batch_bar(&format!("{name} seed {seed}"));
        let mut progress = Lines {
            bar: &bar,
            name: &name,
            seed,
            last_line: None,
        };
        let checkpoints = CheckpointPolicy {
            dir: args
                .checkpoints
                .as_ref()
                .map(|d| d.join(exp.name()).join(&name).join(format!("seed-{seed}"))),
            resume: args.resume,
            tag: format!(
                "{} {name} seed {seed}\n{}",
                exp.name(),
                toml::to_string(&chosen.to_toml()?)?
            ),
        };
        let run = FitRun {
            hin,
            seed,
            checkpoints,
            progress: &mut progress,
            audit: args.audit_test.then_some(&prepared.test_negatives),
        };
        let mut fitted = fit(chosen.as_ref(), prepared, cfg, run)?;
        bar.finish_and_clear();
        let model = fitted.model.as_ref();
        let sampled =
            sampled(model, &prepared.test_negatives, exp.ks).map_err(anyhow::Error::from_boxed)?;
        let full = match &full_target {
            Some(target) => full_ranking(model, target, &[&s.train, &s.valid], exp.full_ks)
                .map_err(anyhow::Error::from_boxed)?,
            None => Metrics::default(),
        };
        let pruned = match (&full_target, model.candidates(0)) {
            (Some(target), Some(_)) => {
                let (pruned, rule) = pruned_metrics(model, target, s, exp.full_ks)?;
                println!(
                    "   {name} seed {seed}: pruned {} | the paper's rule (users with no test item among the candidates dropped; printed only) {}",
                    at_15(&pruned, exp.full_ks),
                    at_15(&rule, exp.full_ks)
                );
                pruned
            }
            _ => Metrics::default(),
        };
        let pooled = match &prepared.pooled_negatives {
            Some(lists) => {
                let m = hinrec::eval::pooled(model, &s.test, lists, exp.ks)
                    .map_err(anyhow::Error::from_boxed)?;
                println!(
                    "   {name} seed {seed}: pooled P@10 {:.4} R@10 {:.4} NDCG@10 {:.4} AUC {:.4}",
                    m.get("Precision@10").unwrap_or(f64::NAN),
                    m.get("Recall@10").unwrap_or(f64::NAN),
                    m.get("NDCG@10").unwrap_or(f64::NAN),
                    m.get("AUC").unwrap_or(f64::NAN)
                );
                m
            }
            None => Metrics::default(),
        };
        let labelled = if prepared.is_labelled() {
            let m = hinrec::eval::labelled_auc(model, &prepared.test_rows, &prepared.item_kinds)
                .map_err(anyhow::Error::from_boxed)?;
            println!(
                "   {name} seed {seed}: labelled {}",
                m.values
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            m
        } else {
            Metrics::default()
        };
        let best = fitted.summary.as_ref().map_or(0, |f| f.best_epoch);
        println!(
            "   {name} seed {seed}: test {} | full HR@10 {} | best epoch {best} | {:.0}s",
            exp.ks
                .iter()
                .map(|k| format!(
                    "HR@{k} {:.4} NDCG@{k} {:.4}",
                    sampled.get(&format!("HR@{k}")).unwrap_or(f64::NAN),
                    sampled.get(&format!("NDCG@{k}")).unwrap_or(f64::NAN)
                ))
                .collect::<Vec<_>>()
                .join(" "),
            full.get("HR@10").map_or("-".into(), |v| format!("{v:.4}")),
            t.elapsed().as_secs_f64()
        );
        if let Some(f) = fitted.summary.as_mut() {
            // The audit is printed, never recorded.
            audits.push((
                sampled.clone(),
                Metrics::max_over(&std::mem::take(&mut f.audit)),
            ));
        }
        if !exp.full_ks.contains(&10) {
            println!("   {name} seed {seed}: full {}", at_15(&full, exp.full_ks));
        }
        runs.push(SeedRun {
            seed,
            sampled,
            full,
            pruned,
            pooled,
            labelled,
            fit: fitted.summary,
            wall_s: t.elapsed().as_secs_f64(),
        });
    }
    if args.audit_test {
        let chosen: Vec<&Metrics> = audits.iter().map(|a| &a.0).collect();
        let maxima: Vec<&Metrics> = audits.iter().map(|a| &a.1).collect();
        let line =
            |m: &[&Metrics]| format!("HR@10 {} NDCG@10 {}", cell(m, "HR@10"), cell(m, "NDCG@10"));
        println!(
            "   {name} audit: epoch on validation {} | max over epochs on test (authors' rule, not a result) {}",
            line(&chosen),
            line(&maxima)
        );
    }
    let chosen_label = trials
        .iter()
        .max_by(|a, b| a.valid.total_cmp(&b.valid))
        .map_or("-".into(), |t| t.label.clone());
    Ok(Record {
        dataset: exp.name().to_string(),
        model: name,
        split: prepared.split_label.clone(),
        test_pairs: prepared.test_negatives.len(),
        chosen: describe(&chosen_label, exp, &full_target, !trials.is_empty()),
        trials,
        runs,
        command: command(entry.name, exp.name(), args),
        commit: commit.into(),
        wall_s: start.elapsed().as_secs_f64(),
        cpu: cpu.into(),
    })
}

/// Full ranking within the model's retrieval candidates, with the share of
/// test items among them (`CandidateRecall`) and of items scored
/// (`Scanned`); and the same averaged only over users with a test item
/// among their candidates (GLRS's released evaluation drops the others).
fn pruned_metrics(
    model: &dyn hinrec::train::TrainedModel,
    target: &Interactions,
    s: &hinrec::data::Split,
    ks: &[usize],
) -> Result<(Metrics, Metrics)> {
    let cands = |u: u32| model.candidates(u);
    let exclude = [&s.train, &s.valid];
    let m = hinrec::eval::pruned_ranking(model, &cands, target, &exclude, ks)
        .map_err(anyhow::Error::from_boxed)?;
    let pruned = hinrec::eval::Pruned {
        scorer: model,
        candidates: &cands,
    };
    let kept = target.filter(|r| {
        cands(r.user).is_some_and(|c| {
            target
                .user_items(r.user)
                .iter()
                .any(|i| c.binary_search(i).is_ok())
        })
    });
    let rule = full_ranking(&pruned, &kept, &exclude, ks).map_err(anyhow::Error::from_boxed)?;
    Ok((m, rule))
}

/// Recall, Precision, HR and ARHR at the first full cut-off.
fn at_15(m: &Metrics, ks: &[usize]) -> String {
    let k = ks.first().copied().unwrap_or(15);
    ["Recall", "Precision", "HR", "ARHR"]
        .iter()
        .map(|x| {
            let name = format!("{x}@{k}");
            format!(
                "{name} {}",
                m.get(&name).map_or("-".into(), |v| format!("{v:.4}"))
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The test users full ranking covers, or none where it is too costly.
fn full_target(full: FullRanking, test: &Interactions, data_seed: u64) -> Option<Interactions> {
    match full {
        FullRanking::UpTo(max) => (test.n_users() * test.n_items() <= max).then(|| test.clone()),
        FullRanking::SampledUsers(n) => Some(test.sample_users(n, data_seed ^ 0xf011)),
    }
}

fn describe(label: &str, exp: &Experiment, full: &Option<Interactions>, searched: bool) -> String {
    let settings = hinrec::tune::label(exp.settings);
    let mut s = match (searched, settings.as_str()) {
        (true, "-") => format!("{label} chosen on validation"),
        (true, _) => format!("{settings} {label} chosen on validation"),
        (false, "-") => "defaults".to_string(),
        (false, _) => settings,
    };
    s += " (epoch on validation)";
    if let (FullRanking::SampledUsers(_), Some(t)) = (exp.full, full) {
        s += &format!("; full ranking on {} sampled test users", t.active_users());
    }
    s
}

/// The experiment names of these models, each once, in registry order.
fn known_experiments(entries: &[&ModelEntry]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for x in entries.iter().flat_map(|e| e.experiments) {
        if !out.contains(&x.name()) {
            out.push(x.name());
        }
    }
    out
}

/// The record's model name: the entry's, with each `--set` appended
/// (`lgrec-beta0`).
fn record_name(model: &str, sets: &[String]) -> String {
    let mut name = model.to_string();
    for s in sets {
        let s: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        name += &format!("-{s}");
    }
    name
}

fn command(model: &str, dataset: &str, args: &Args) -> String {
    let mut c = format!(
        "cargo xtask reproduce --models {model} --datasets {dataset} --seeds {}",
        args.seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    for s in &args.sets {
        c += &format!(" --set {s}");
    }
    if args.no_grid {
        c += " --no-grid";
    }
    c
}

/// Seconds between epoch lines when epochs are shorter than that.
const LINE_EVERY_S: f64 = 10.0;

/// Per-epoch lines and a bar over the epoch's batches.
struct Lines<'a> {
    bar: &'a ProgressBar,
    name: &'a str,
    seed: u64,
    /// When the last epoch line was printed.
    last_line: Option<Instant>,
}

/// Whether an epoch gets a line: the first always, then at most one every
/// [`LINE_EVERY_S`], so a baseline's hundreds of sub-second epochs do not
/// flood the log while a 15 s epoch still gets its own line.
fn line_due(since_last_line_s: Option<f64>) -> bool {
    since_last_line_s.is_none_or(|s| s >= LINE_EVERY_S)
}

impl Progress for Lines<'_> {
    fn batch(&mut self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
    }

    fn epoch(&mut self, r: &EpochReport) {
        if !line_due(self.last_line.map(|t| t.elapsed().as_secs_f64())) {
            return;
        }
        self.last_line = Some(Instant::now());
        self.bar.suspend(|| {
            println!(
                "   {} seed {} epoch {:>2}: loss {:.4} valid {:.4} ({:.0} samples/s, {:.0}s)",
                self.name,
                self.seed,
                r.epoch,
                r.loss,
                r.valid.unwrap_or(f64::NAN),
                r.samples_per_s,
                r.elapsed_s
            )
        });
    }
}

/// A bar over one epoch's batches (drawn only on a terminal).
fn batch_bar(prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "   {prefix} [{bar:30}] batch {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_lines_come_first_then_every_ten_seconds() {
        assert!(line_due(None));
        assert!(!line_due(Some(0.5)));
        assert!(!line_due(Some(9.99)));
        assert!(line_due(Some(10.0)));
        assert!(line_due(Some(15.4)));
    }

    #[test]
    fn settings_get_their_own_record_name() {
        assert_eq!(record_name("lgrec-noglo", &[]), "lgrec-noglo");
        let sets = ["beta=0".to_string(), "relation_relu=true".to_string()];
        assert_eq!(record_name("lgrec", &sets), "lgrec-beta0-relationrelutrue");
    }
}
