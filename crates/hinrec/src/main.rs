//! The `hinrec` command line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use hinrec::data::{registry, stats::DatasetStats, synthetic, Dataset};
use hinrec::eval::EvalReport;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::model_dir::{self, RunInfo};
use hinrec::models::{fit, ModelKind};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "hinrec",
    version,
    about = "Recommenders over heterogeneous information networks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct DataArgs {
    /// A shipped dataset name (lgrec-ml100k, movielens, ...), a manifest
    /// file, a data folder, or `synthetic`.
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Where shipped dataset names are looked up (default: ../shared/datasets
    /// when it exists).
    #[arg(long)]
    data_root: Option<PathBuf>,
}

impl DataArgs {
    fn load(&self) -> Result<Dataset> {
        let t = Instant::now();
        let ds = registry::load(&self.data, self.data_root.as_deref())?;
        eprintln!("loaded {} in {:.2}s", ds.name, t.elapsed().as_secs_f64());
        Ok(ds)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Protocol {
    /// Positive against stored negatives.
    Sampled,
    /// All items except the user's training and validation items.
    Full,
    /// Per-user AUC over unseen items and global AUC over labeled pairs.
    Auc,
}

#[derive(Subcommand)]
enum Command {
    /// Entity and relation counts of a dataset.
    Stats {
        #[command(flatten)]
        data: DataArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Train a model and save it with its config and split.
    Train {
        /// mostpop, itemknn or bpr.
        #[arg(long)]
        model: ModelKind,
        #[command(flatten)]
        data: DataArgs,
        /// A TOML experiment config (split, negatives, hyper-parameters).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seed of the model's random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate a saved model on its test split.
    Evaluate {
        /// Directory written by `hinrec train`.
        #[arg(long)]
        model_dir: PathBuf,
        #[arg(long, value_enum, default_value = "sampled")]
        protocol: Protocol,
        /// Negatives file in the test.negative format (default: the stored one).
        #[arg(long)]
        negatives: Option<PathBuf>,
        /// Cutoffs.
        #[arg(long, value_delimiter = ',', default_value = "5,10,20")]
        k: Vec<usize>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Top items for a user, excluding what the user already has.
    Recommend {
        /// Directory written by `hinrec train`.
        #[arg(long)]
        model_dir: PathBuf,
        /// The user's id as in the data files.
        #[arg(long)]
        user: String,
        /// How many items.
        #[arg(short = 'k', long = "k", default_value_t = 10)]
        k: usize,
    },
    /// Train the baselines on the synthetic dataset and print the table.
    Demo {
        /// Seed of the models.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Meta-path commuting matrices and per-pair labels, timed.
    Metapaths {
        #[command(flatten)]
        data: DataArgs,
        /// Meta-paths by entity codes, e.g. UMUM,UAUM.
        #[arg(long, value_delimiter = ',')]
        paths: Vec<String>,
        /// Row rule: count, positive, above-mean or top-K (e.g. top-10).
        #[arg(long, default_value = "above-mean")]
        rule: String,
        /// Skip the full products (only per-pair labels).
        #[arg(long)]
        labels_only: bool,
        /// Seed of the sampled negative pairs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write the synthetic dataset as files with a manifest.
    Synth {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// A TOML file of generator settings (see SyntheticConfig).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() {
    hinrec::configure_threads();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Stats { data, json } => {
            let ds = data.load()?;
            let stats = DatasetStats::of(&ds);
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{stats}");
            }
        }
        Command::Train {
            model,
            data,
            config,
            seed,
            out,
        } => train(model, &data, config.as_deref(), seed, &out)?,
        Command::Evaluate {
            model_dir,
            protocol,
            negatives,
            k,
            json,
        } => {
            let mut loaded = model_dir::load(&model_dir)?;
            if let Some(path) = negatives {
                let ds = &loaded.dataset;
                loaded.prepared.test_negatives =
                    hinrec::data::EvalNegatives::read(&path, ds.users(), &|s| ds.item_id(s))?;
            }
            let p = &loaded.prepared;
            let (scorer, name, seed) = (
                loaded.model.scorer(),
                loaded.info.model.name(),
                loaded.info.seed,
            );
            let report = match protocol {
                Protocol::Sampled => p.evaluate_sampled(scorer, name, seed, &k),
                Protocol::Full => p.evaluate_full(scorer, name, seed, &k),
                Protocol::Auc => p.evaluate_auc(scorer, name, seed),
            };
            print_report(&report, json)?;
        }
        Command::Recommend { model_dir, user, k } => {
            let loaded = model_dir::load(&model_dir)?;
            let ds = &loaded.dataset;
            let u = ds
                .users()
                .get(&user)
                .with_context(|| format!("user {user:?} is not in dataset {}", ds.name))?;
            let top = hinrec::recommend::top_k(loaded.model.scorer(), &loaded.prepared.split, u, k);
            println!("rank\titem\tscore");
            for (r, (i, score)) in top.iter().enumerate() {
                println!("{}\t{}\t{score:.4}", r + 1, ds.item_original(*i));
            }
        }
        Command::Demo { seed } => demo(seed)?,
        Command::Metapaths {
            data,
            paths,
            rule,
            labels_only,
            seed,
        } => metapaths(&data.load()?, &paths, &rule, labels_only, seed)?,
        Command::Synth { out, config } => {
            let cfg = match config {
                Some(p) => toml::from_str(&std::fs::read_to_string(&p)?)
                    .with_context(|| format!("{}", p.display()))?,
                None => synthetic::SyntheticConfig::default(),
            };
            let ds = synthetic::generate(&cfg)?;
            synthetic::write_folder(&ds, &out)?;
            println!(
                "wrote {} ({} users, {} items, {} interactions)",
                out.display(),
                ds.n_users(),
                ds.n_items(),
                ds.interactions.nnz()
            );
        }
    }
    Ok(())
}

fn print_report(report: &EvalReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn epoch_bar(max_epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(max_epochs as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] epoch {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

fn train(
    kind: ModelKind,
    data: &DataArgs,
    config: Option<&Path>,
    seed: u64,
    out: &Path,
) -> Result<()> {
    let cfg = match config {
        Some(p) => ExperimentConfig::read(p)?,
        None => ExperimentConfig::default(),
    };
    let ds = data.load()?;
    let prepared = Prepared::new(&ds, &cfg)?;
    eprintln!(
        "split {}: train {}, valid {}, test {}",
        prepared.split_label,
        prepared.split.train.nnz(),
        prepared.split.valid.nnz(),
        prepared.split.test.nnz()
    );
    let bar = epoch_bar(cfg.bpr.epochs);
    bar.set_prefix(kind.name());
    let fitted = fit(kind, &prepared, &cfg, seed, &mut |r| {
        bar.set_position(r.epoch as u64);
        bar.set_message(format!(
            "loss {:.4} | valid {} {} | best {} | {:.0} samples/s",
            r.loss,
            cfg.metric,
            r.valid.map_or("-".into(), |v| format!("{v:.4}")),
            r.best.map_or("-".into(), |v| format!("{v:.4}")),
            r.samples_per_s
        ));
    })?;
    bar.finish_and_clear();
    if let Some(s) = &fitted.summary {
        eprintln!(
            "trained {} epochs in {:.2}s (best epoch {} after {:.2}s, valid {} {:.4}, {:.0} samples/s)",
            s.epochs,
            s.total_s,
            s.best_epoch,
            s.time_to_best_s,
            cfg.metric,
            s.best_valid.unwrap_or(f64::NAN),
            s.samples_per_s
        );
    }
    let info = RunInfo {
        model: kind,
        seed,
        data: absolute_if_path(&data.data),
        data_root: data
            .data_root
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or(p.clone())),
        dataset: ds.name.clone(),
        split: prepared.split_label.clone(),
        config: cfg,
    };
    model_dir::save(out, &info, &fitted.model, &ds, &prepared)?;
    if let Some(s) = &fitted.summary {
        std::fs::write(out.join("train.json"), serde_json::to_string_pretty(s)?)?;
    }
    let report = prepared.evaluate_sampled(fitted.scorer(), kind.name(), seed, &[10]);
    eprintln!(
        "saved to {} | test sampled HR@10 {:.4} NDCG@10 {:.4}",
        out.display(),
        report.metrics.get("HR@10").unwrap_or(f64::NAN),
        report.metrics.get("NDCG@10").unwrap_or(f64::NAN)
    );
    Ok(())
}

fn absolute_if_path(spec: &str) -> String {
    let p = Path::new(spec);
    if p.exists() {
        std::fs::canonicalize(p).map_or(spec.to_string(), |a| a.display().to_string())
    } else {
        spec.to_string()
    }
}

fn demo(seed: u64) -> Result<()> {
    let t = Instant::now();
    let ds = synthetic::generate(&synthetic::SyntheticConfig::default())?;
    let cfg = ExperimentConfig::default();
    let prepared = Prepared::new(&ds, &cfg)?;
    println!(
        "synthetic HIN: {} users, {} items, {} interactions; split {}, {} test users, {} stored negatives each",
        ds.n_users(),
        ds.n_items(),
        ds.interactions.nnz(),
        prepared.split_label,
        prepared.split.test.nnz(),
        cfg.negatives
    );
    println!();
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "model", "HR@10", "NDCG@10", "full HR@10", "full NDCG", "train s"
    );
    for kind in ModelKind::ALL {
        let bar = epoch_bar(cfg.bpr.epochs);
        bar.set_prefix(kind.name());
        let start = Instant::now();
        let fitted = fit(kind, &prepared, &cfg, seed, &mut |r| {
            bar.set_position(r.epoch as u64);
            bar.set_message(format!("valid {:.4}", r.valid.unwrap_or(f64::NAN)));
        })?;
        bar.finish_and_clear();
        let train_s = start.elapsed().as_secs_f64();
        let s = prepared.evaluate_sampled(fitted.scorer(), kind.name(), seed, &[10]);
        let f = prepared.evaluate_full(fitted.scorer(), kind.name(), seed, &[10]);
        let g = |r: &EvalReport, m: &str| r.metrics.get(m).unwrap_or(f64::NAN);
        println!(
            "{:<10} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>9.2}",
            kind.name(),
            g(&s, "HR@10"),
            g(&s, "NDCG@10"),
            g(&f, "HR@10"),
            g(&f, "NDCG@10"),
            train_s
        );
    }
    println!();
    println!(
        "seed {seed}, data seed {}; total {:.1}s",
        cfg.data_seed,
        t.elapsed().as_secs_f64()
    );
    if t.elapsed().as_secs() > 120 {
        bail!("the demo took over two minutes");
    }
    Ok(())
}

fn parse_rule(s: &str) -> Result<hinrec::graph::RowRule> {
    use hinrec::graph::RowRule;
    Ok(match s {
        "count" => RowRule::Count,
        "positive" => RowRule::Positive,
        "above-mean" => RowRule::AboveRowMean,
        _ => match s.strip_prefix("top-").and_then(|k| k.parse().ok()) {
            Some(k) => RowRule::TopK(k),
            None => bail!("unknown rule {s:?}: count, positive, above-mean or top-K"),
        },
    })
}

/// Times the full commuting matrices and the labels LGRec needs (every
/// interaction plus one sampled negative each).
fn metapaths(
    ds: &Dataset,
    paths: &[String],
    rule: &str,
    labels_only: bool,
    seed: u64,
) -> Result<()> {
    use hinrec::graph::{product::commuting_matrix, Hin, MetaPath, PairLabeler};
    let rule = parse_rule(rule)?;
    let t = Instant::now();
    let hin = Hin::from_dataset(ds, &ds.interactions);
    println!(
        "graph: {} relations, {} edges, built in {:.3}s",
        hin.relations.len(),
        hin.nnz(),
        t.elapsed().as_secs_f64()
    );
    if !labels_only {
        for p in paths {
            let mp = MetaPath::parse(&hin, p)?;
            let t = Instant::now();
            let m = commuting_matrix(&mp.factors, rule);
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{p:<8} full product {} x {}: {} nonzeros ({:.1}%) in {secs:.3}s",
                m.rows(),
                m.cols(),
                m.nnz(),
                100.0 * m.nnz() as f64 / (m.rows() * m.cols()).max(1) as f64
            );
        }
    }
    let x = &ds.interactions;
    let mut pairs: Vec<(u32, u32)> = x.pairs().collect();
    let negatives = hinrec::data::EvalNegatives::sample(x, &[x], 1, seed)?;
    pairs.extend(
        negatives
            .pairs
            .iter()
            .zip(&negatives.negatives)
            .map(|(&(u, _), n)| (u, n[0])),
    );
    let names: Vec<&str> = paths.iter().map(String::as_str).collect();
    let t = Instant::now();
    let labeler = PairLabeler::new(&hin, &names, rule)?;
    let labels = labeler.labels(&pairs)?;
    let secs = t.elapsed().as_secs_f64();
    let np = names.len();
    let share: Vec<String> = (0..np)
        .map(|p| {
            let ones = (0..pairs.len())
                .filter(|k| labels[k * np + p] > 0.0)
                .count();
            format!(
                "{} {:.1}%",
                names[p],
                100.0 * ones as f64 / pairs.len() as f64
            )
        })
        .collect();
    println!(
        "labels of {} pairs (interactions + 1 negative each) on {np} paths in {secs:.3}s; positive: {}",
        pairs.len(),
        share.join(", ")
    );
    Ok(())
}
