//! `cargo xtask lgrec`: LGRec and its ablations on lgrec.txt's datasets,
//! with the paper's protocol (100 stored negatives per test user), 3 seeds,
//! epochs chosen on validation; merged into docs/results.json / results.md.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use hinrec::data::registry;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::graph::Hin;
use hinrec_lgrec::{FitOptions, Lgrec, LgrecConfig, Variant};
use indicatif::{ProgressBar, ProgressStyle};

use hinrec::baselines::training::{EpochReport, FitSummary};
use hinrec::eval::Metrics;
use hinrec::tune::Trial;

use crate::reproduce::{cell, git_commit, load_store, save_record, Record, SeedRun};

/// Arguments of `cargo xtask lgrec`.
#[derive(clap::Args)]
pub struct Args {
    /// Folder of the shared datasets.
    #[arg(long, default_value = "../shared/datasets")]
    data_root: PathBuf,
    /// Datasets: movielens (on the lgrec-ml100k split), lastfm, yelp.
    #[arg(long, value_delimiter = ',', default_value = "movielens")]
    datasets: Vec<String>,
    /// Variants: full, noglo, noatt.
    #[arg(long, value_delimiter = ',', default_value = "full,noglo,noatt")]
    variants: Vec<String>,
    /// Model seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Embedding size.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Neighbours per user and per item.
    #[arg(long, default_value_t = 100)]
    k: usize,
    /// Maximum epochs.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Adam learning rates; with several values (or margins) each
    /// combination is trained once with the first seed and the one with
    /// the best validation metric is used for all seeds.
    #[arg(long, value_delimiter = ',', default_value = "0.001")]
    lr: Vec<f64>,
    /// Hinge margins (a grid with `--lr`; the paper's is 0.1,0.5,1,2).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    margin: Vec<f64>,
    /// Weight α of the multi-label loss (eq. 11; the paper's 0.1).
    #[arg(long, default_value_t = 0.1)]
    alpha: f64,
    /// Weight β of the L2 on the embedding rows a batch uses (eq. 11; the
    /// paper's 0.001).
    #[arg(long, default_value_t = 0.001)]
    beta: f64,
    /// Maximum epochs of each grid trial.
    #[arg(long, default_value_t = 10)]
    grid_epochs: usize,
    /// Keep a training pair's own edge in its neighbour lists (the
    /// paper's setting as far as it says; see docs/lgrec.md).
    #[arg(long)]
    keep_own_edge: bool,
    /// Write checkpoints under DIR/<dataset>/<variant>/seed-<n>.
    #[arg(long, value_name = "DIR")]
    checkpoints: Option<PathBuf>,
    /// Continue from the checkpoints in `--checkpoints` where they exist.
    #[arg(long, requires = "checkpoints")]
    resume: bool,
    /// A ReLU after the relation MLP's output, as the authors' released
    /// code has (not in the paper's text).
    #[arg(long)]
    relation_relu: bool,
    /// Validation users whose metric picks the epoch (a sample drawn with
    /// data seed 0; 0 = all). Scoring every validation user's 101
    /// candidates through co-attention is most of a Yelp epoch.
    #[arg(long, default_value_t = 0)]
    valid_users: usize,
    /// Also rank all items, on datasets with at most 5 M user-item pairs
    /// (every pair goes through co-attention).
    #[arg(long)]
    full: bool,
    /// Also score the test candidates after every epoch and print, beside
    /// the result (epoch chosen on validation), the maximum over epochs of
    /// each test metric: the authors' released code's rule. Printed only,
    /// never recorded or used to choose anything.
    #[arg(long, conflicts_with = "resume")]
    audit_test: bool,
    /// Where the results go.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
}

/// Largest users x items for which `--full` ranks all items.
const MAX_FULL_RANKING_PAIRS: usize = 5_000_000;

impl Args {
    /// The defaults of `cargo xtask lgrec` for these datasets, variants,
    /// seeds and output folder.
    pub fn with_defaults(
        data_root: PathBuf,
        datasets: Vec<String>,
        variants: Vec<String>,
        seeds: Vec<u64>,
        out: PathBuf,
    ) -> Self {
        let mut args: Self = crate::default_args("lgrec");
        args.data_root = data_root;
        args.datasets = datasets;
        args.variants = variants;
        args.seeds = seeds;
        args.out = out;
        args.full = true;
        args
    }
}

/// The HIN (from training interactions only) and the prepared split of one
/// of lgrec.txt's datasets, and the name of the dataset giving the split.
/// Movielens takes its side relations from hin/movielens and its split and
/// negatives from lgrec-ml100k (same MovieLens ids, both 943 x 1682).
pub fn load(data_root: &std::path::Path, name: &str) -> Result<(Hin, Prepared, String)> {
    let hin_ds = registry::load(name, Some(data_root))?;
    let split_ds = if name == "movielens" {
        registry::load("lgrec-ml100k", Some(data_root))?
    } else {
        hin_ds.clone()
    };
    anyhow::ensure!(
        hin_ds.users().originals() == split_ds.users().originals()
            && (0..hin_ds.n_items() as u32)
                .all(|i| hin_ds.item_original(i) == split_ds.item_original(i)),
        "{name}: the HIN and the split use different ids"
    );
    let prepared = Prepared::new(&split_ds, &ExperimentConfig::default())?;
    let hin = Hin::from_dataset(&hin_ds, &prepared.split.train);
    Ok((hin, prepared, split_ds.name.clone()))
}

/// lgrec.txt Table 1's meta-paths of `dataset`.
pub fn meta_paths(dataset: &str) -> Vec<String> {
    let p: &[&str] = match dataset {
        "movielens" => &["UMUM", "UAUM", "UOUM", "UMTM"],
        "lastfm" => &["UATA", "UAUA", "UUUA", "UUA"],
        "yelp" => &["UBUB", "UBCaB", "UUB", "UBCiB"],
        _ => &[],
    };
    p.iter().map(|s| s.to_string()).collect()
}

fn variant(name: &str) -> Result<Variant> {
    Ok(match name {
        "full" | "lgrec" => Variant::Full,
        "noglo" => Variant::NoGlo,
        "noatt" => Variant::NoAtt,
        _ => anyhow::bail!("unknown variant {name:?}: full, noglo or noatt"),
    })
}

pub fn run(args: &Args) -> Result<()> {
    // Fail before any training when results.json is unreadable.
    load_store(&args.out)?;
    let commit = git_commit();
    for name in &args.datasets {
        let (hin, mut prepared, split_name) = load(&args.data_root, name)?;
        if args.valid_users > 0 {
            prepared.valid_negatives = prepared.valid_negatives.subsample(args.valid_users, 0);
        }
        println!(
            "== {name}: split {} ({}), train {}, valid {}, test {}",
            prepared.split_label,
            split_name,
            prepared.split.train.nnz(),
            prepared.split.valid.nnz(),
            prepared.split.test.nnz()
        );
        if args.valid_users > 0 {
            println!(
                "   validation metric on {} sampled validation users",
                prepared.valid_negatives.len()
            );
        }
        // Full ranking scores every (user, item) pair through co-attention:
        // seconds on Movielens, hours on LastFM and Yelp.
        let n_pairs = prepared.split.train.n_users() * prepared.split.train.n_items();
        let full_ranking = args.full && n_pairs <= MAX_FULL_RANKING_PAIRS;
        if args.full && !full_ranking {
            println!(
                "   (no full ranking: {n_pairs} user-item pairs is over {MAX_FULL_RANKING_PAIRS})"
            );
        }
        for v in &args.variants {
            let variant = variant(v)?;
            let base = LgrecConfig {
                dim: args.dim,
                k_user: args.k,
                k_item: args.k,
                epochs: args.epochs,
                lr: args.lr[0],
                margin: args.margin[0],
                meta_paths: meta_paths(name),
                variant,
                hide_own_edge: !args.keep_own_edge,
                relation_relu: args.relation_relu,
                alpha: args.alpha,
                beta: args.beta,
                ..LgrecConfig::default()
            };
            let start = Instant::now();
            let (cfg, trials) = choose_on_validation(&hin, &prepared, &base, args)?;
            let mut runs = Vec::new();
            let mut audit_maxima = Vec::new();
            for &seed in &args.seeds {
                let t = Instant::now();
                let opts = FitOptions {
                    checkpoint_dir: args.checkpoints.as_ref().map(|d| {
                        d.join(name)
                            .join(variant.name())
                            .join(format!("seed-{seed}"))
                    }),
                    resume: args.resume,
                };
                let bar = batch_bar(&format!("{} seed {seed}", variant.name()));
                let mut on_batch = |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                };
                let mut on_epoch = |r: &EpochReport| {
                    bar.suspend(|| println!(
                        "   {} seed {seed} epoch {:>2}: loss {:.4} valid {:.4} ({:.0} triples/s, {:.0}s)",
                        variant.name(),
                        r.epoch,
                        r.loss,
                        r.valid.unwrap_or(f64::NAN),
                        r.samples_per_s,
                        r.elapsed_s
                    ));
                };
                let (model, summary, per_epoch) = Lgrec::fit_audited(
                    &hin,
                    &prepared.split,
                    &prepared.valid_negatives,
                    args.audit_test.then_some(&prepared.test_negatives),
                    &cfg,
                    seed,
                    &opts,
                    &mut on_batch,
                    &mut on_epoch,
                )?;
                if args.audit_test {
                    let max = max_over_epochs(&per_epoch);
                    bar.suspend(|| {
                        println!("   {} seed {seed} audit, test per epoch:", variant.name());
                        for (e, m) in per_epoch.iter().enumerate() {
                            println!("      epoch {:>2}: {}", e + 1, hr_ndcg(m));
                        }
                        println!("      max over epochs (authors' rule): {}", hr_ndcg(&max));
                    });
                    audit_maxima.push(max);
                }
                bar.finish_and_clear();
                let scorer = model.scorer_for(&prepared.test_negatives)?;
                let sampled = hinrec::eval::sampled(&scorer, &prepared.test_negatives, &[10]);
                let full = if full_ranking {
                    let s = &prepared.split;
                    let all = model.scorer_for_users(&s.test)?;
                    hinrec::eval::full_ranking(&all, &s.test, &[&s.train, &s.valid], &[10])
                } else {
                    Default::default()
                };
                println!(
                    "   {} seed {seed}: test HR@10 {:.4} NDCG@10 {:.4} | full HR@10 {} | best epoch {} | {:.0}s",
                    variant.name(),
                    sampled.get("HR@10").unwrap_or(f64::NAN),
                    sampled.get("NDCG@10").unwrap_or(f64::NAN),
                    full.get("HR@10").map_or("-".into(), |v| format!("{v:.4}")),
                    summary.best_epoch,
                    t.elapsed().as_secs_f64()
                );
                runs.push(SeedRun {
                    seed,
                    sampled,
                    full,
                    fit: Some(summary),
                    wall_s: t.elapsed().as_secs_f64(),
                });
            }
            if args.audit_test {
                let chosen: Vec<_> = runs.iter().map(|r| &r.sampled).collect();
                let maxima: Vec<_> = audit_maxima.iter().collect();
                println!(
                    "   {} audit over seeds {}: epoch on validation {} | max over epochs on test (authors' rule, not a result) {}",
                    variant.name(),
                    join(&args.seeds),
                    mean_std_line(&chosen),
                    mean_std_line(&maxima)
                );
            }
            let rec = Record {
                dataset: prepared.dataset.clone(),
                model: record_model(variant.name(), args),
                split: prepared.split_label.clone(),
                test_pairs: prepared.test_negatives.len(),
                chosen: format!(
                    "d={} K={} lr={} margin={}{} (epoch on validation)",
                    args.dim,
                    args.k,
                    cfg.lr,
                    cfg.margin,
                    if trials.is_empty() { " given" } else { " chosen on validation" }
                ),
                trials,
                runs,
                command: format!(
                    "cargo xtask lgrec --datasets {name} --variants {v} --seeds {} --dim {} --k {} --epochs {} --lr {} --margin {}{}{}{}{}{}{}",
                    join(&args.seeds),
                    args.dim,
                    args.k,
                    args.epochs,
                    join(&args.lr),
                    join(&args.margin),
                    if args.lr.len() * args.margin.len() > 1 {
                        format!(" --grid-epochs {}", args.grid_epochs)
                    } else {
                        String::new()
                    },
                    loss_weights(args),
                    if args.keep_own_edge { " --keep-own-edge" } else { "" },
                    if args.relation_relu { " --relation-relu" } else { "" },
                    if args.valid_users > 0 {
                        format!(" --valid-users {}", args.valid_users)
                    } else {
                        String::new()
                    },
                    if args.full { " --full" } else { "" }
                ),
                commit: commit.clone(),
                wall_s: start.elapsed().as_secs_f64(),
            };
            save_record(&args.out, rec)?;
        }
    }
    Ok(())
}

/// The loss weights (`alpha`, `beta`) that are not the paper's, as
/// (name, value): a record's command and model name both come from it.
fn changed_loss_weights(args: &Args) -> Vec<(&'static str, f64)> {
    let paper = LgrecConfig::default();
    [
        ("alpha", args.alpha, paper.alpha),
        ("beta", args.beta, paper.beta),
    ]
    .into_iter()
    .filter(|&(_, v, p)| v != p)
    .map(|(n, v, _)| (n, v))
    .collect()
}

/// `--alpha` and `--beta` for a record's command, where they are not the
/// paper's.
fn loss_weights(args: &Args) -> String {
    changed_loss_weights(args)
        .iter()
        .map(|(n, v)| format!(" --{n} {v}"))
        .collect()
}

/// A record's model name: the variant's, with a suffix for each setting
/// that is not the default (`lgrec-beta0`), so a trial never replaces the
/// default setting's row in results.json.
fn record_model(variant: &str, args: &Args) -> String {
    let mut name = variant.to_string();
    for (n, v) in changed_loss_weights(args) {
        name += &format!("-{n}{v}");
    }
    if args.relation_relu {
        name += "-relu";
    }
    if args.keep_own_edge {
        name += "-own-edge";
    }
    name
}

/// Each metric's maximum over epochs, taken separately (the authors'
/// released code reports the best test HR@10 and, from a possibly
/// different epoch, the best test NDCG@10).
fn max_over_epochs(per_epoch: &[Metrics]) -> Metrics {
    let mut max = Metrics {
        count: per_epoch.first().map_or(0, |m| m.count),
        ..Metrics::default()
    };
    for m in per_epoch {
        for (name, &v) in &m.values {
            let e = max.values.entry(name.clone()).or_insert(v);
            *e = e.max(v);
        }
    }
    max
}

fn hr_ndcg(m: &Metrics) -> String {
    format!(
        "HR@10 {:.4} NDCG@10 {:.4}",
        m.get("HR@10").unwrap_or(f64::NAN),
        m.get("NDCG@10").unwrap_or(f64::NAN)
    )
}

fn mean_std_line(runs: &[&Metrics]) -> String {
    format!(
        "HR@10 {} NDCG@10 {}",
        cell(runs, "HR@10"),
        cell(runs, "NDCG@10")
    )
}

pub(crate) fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// The learning rate and margin with the best validation metric, each
/// combination trained once with the first seed for at most
/// `--grid-epochs` epochs; no trials when the grid has one point.
fn choose_on_validation(
    hin: &Hin,
    prepared: &Prepared,
    base: &LgrecConfig,
    args: &Args,
) -> Result<(LgrecConfig, Vec<Trial>)> {
    if args.lr.len() * args.margin.len() == 1 {
        return Ok((base.clone(), Vec::new()));
    }
    let seed = *args.seeds.first().unwrap_or(&1);
    let mut points = Vec::new();
    for &lr in &args.lr {
        for &margin in &args.margin {
            let cfg = LgrecConfig {
                lr,
                margin,
                epochs: args.grid_epochs.min(base.epochs),
                ..base.clone()
            };
            points.push((format!("lr={lr} margin={margin}"), cfg));
        }
    }
    let mut trials = Vec::new();
    let chosen = best_on_validation(
        points,
        base.variant.name(),
        &base.metric,
        &mut trials,
        |cfg| {
            let split = &prepared.split;
            Ok(Lgrec::fit(hin, split, &prepared.valid_negatives, cfg, seed, |_| {})?.1)
        },
    )?;
    Ok((
        LgrecConfig {
            epochs: base.epochs,
            ..chosen
        },
        trials,
    ))
}

/// Trains each labelled configuration once (`fit`) and returns the one with
/// the best validation metric; a label already in `trials` is not trained
/// again (a coordinate search revisits its current point). Appends one
/// trial and prints one line per configuration trained.
pub(crate) fn best_on_validation<C>(
    points: Vec<(String, C)>,
    model: &str,
    metric: &str,
    trials: &mut Vec<Trial>,
    fit: impl Fn(&C) -> Result<FitSummary>,
) -> Result<C> {
    let mut best: Option<(f64, C)> = None;
    for (label, cfg) in points {
        let valid = match trials.iter().find(|t| t.label == label) {
            Some(t) => t.valid,
            None => {
                let t = Instant::now();
                let summary = fit(&cfg)?;
                let valid = summary.best_valid.unwrap_or(f64::NAN);
                println!(
                    "   grid {model} {label}: valid {metric} {valid:.4} at epoch {} ({:.0}s)",
                    summary.best_epoch,
                    t.elapsed().as_secs_f64()
                );
                trials.push(Trial { label, valid });
                valid
            }
        };
        if best.as_ref().is_none_or(|(v, _)| valid > *v) {
            best = Some((valid, cfg));
        }
    }
    let (_, chosen) = best.ok_or_else(|| anyhow::anyhow!("the grid is empty"))?;
    Ok(chosen)
}

/// A bar over one epoch's batches (drawn only on a terminal).
pub(crate) fn batch_bar(prefix: &str) -> ProgressBar {
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
    use std::cell::Cell;

    use super::*;

    fn summary(valid: f64) -> FitSummary {
        FitSummary {
            epochs: 1,
            best_epoch: 1,
            best_valid: Some(valid),
            train_s: 0.0,
            time_to_best_s: 0.0,
            total_s: 0.0,
            samples_per_s: 0.0,
        }
    }

    #[test]
    fn best_on_validation_keeps_the_best_and_reuses_known_labels() {
        let calls = Cell::new(0);
        let fit = |x: &f64| {
            calls.set(calls.get() + 1);
            Ok(summary(-(x - 2.0).abs()))
        };
        let mut trials = Vec::new();
        let points = |xs: &[f64]| xs.iter().map(|&x| (format!("x={x}"), x)).collect();
        let best =
            best_on_validation(points(&[0.0, 2.0, 3.0]), "m", "v", &mut trials, fit).unwrap();
        assert_eq!((best, calls.get(), trials.len()), (2.0, 3, 3));
        // A second axis through the current point trains only the new one.
        let best = best_on_validation(points(&[2.0, 1.5]), "m", "v", &mut trials, fit).unwrap();
        assert_eq!((best, calls.get(), trials.len()), (2.0, 4, 4));
        assert_eq!(trials[3].label, "x=1.5");
    }

    #[test]
    fn max_over_epochs_takes_each_metric_separately() {
        let m = |hr: f64, ndcg: f64| Metrics {
            values: [("HR@10".to_string(), hr), ("NDCG@10".to_string(), ndcg)].into(),
            count: 7,
        };
        let max = max_over_epochs(&[m(0.5, 0.30), m(0.7, 0.20), m(0.6, 0.35)]);
        assert_eq!(max, m(0.7, 0.35));
        assert_eq!(max_over_epochs(&[]), Metrics::default());
    }

    #[test]
    fn loss_weights_default_to_the_paper_and_are_recorded_when_changed() {
        let mut args: Args = crate::default_args("lgrec");
        let paper = LgrecConfig::default();
        assert_eq!((args.alpha, args.beta), (paper.alpha, paper.beta));
        assert_eq!(loss_weights(&args), "");
        args.beta = 0.0;
        assert_eq!(loss_weights(&args), " --beta 0");
        args.alpha = 1.0;
        assert_eq!(loss_weights(&args), " --alpha 1 --beta 0");
    }

    #[test]
    fn non_default_settings_get_their_own_record_name() {
        let mut args: Args = crate::default_args("lgrec");
        assert_eq!(record_model("lgrec-noglo", &args), "lgrec-noglo");
        args.beta = 0.0;
        args.relation_relu = true;
        assert_eq!(record_model("lgrec", &args), "lgrec-beta0-relu");
    }
}
