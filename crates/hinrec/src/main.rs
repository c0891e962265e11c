//! The `hinrec` command line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use hinrec::data::{registry as datasets, stats::DatasetStats, synthetic, Dataset};
use hinrec::eval::EvalReport;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::model_dir::{self, RunInfo};
use hinrec::models::{self, FitRun};
use hinrec::registry::{self, parse_toml, MODELS};
use hinrec::train::{CheckpointPolicy, EpochReport, Progress, Reason};
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
        let ds = datasets::load(&self.data, self.data_root.as_deref())?;
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
    /// Full ranking within the model's retrieval candidates (GLRS's
    /// probed clusters).
    Pruned,
    /// Per-user AUC over unseen items and global AUC over test pairs
    /// against their stored negatives.
    Auc,
    /// HHFAN's pooled lists: each test user's items against one stored list
    /// of `pooled_negatives` unobserved items (config key).
    Pooled,
    /// DURation's labelled rows: the ROC AUC of the test ratings' labels,
    /// pooled and per item kind (a model trained with `positive_above`).
    Labelled,
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
    /// Train a model and save it with its parameters and split.
    Train {
        /// A registered model (`hinrec models` lists them).
        #[arg(long)]
        model: String,
        #[command(flatten)]
        data: DataArgs,
        /// A TOML experiment config: the protocol's keys (split, negatives,
        /// metric) and a table per model (`[lgrec]`, ...).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Overrides a model parameter, `KEY=VALUE` in TOML (`lr=0.01`,
        /// `meta_paths=["UIUI"]`); after the config file; repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Seed of the model's random choices (0 to 2^63 - 1, what a TOML
        /// integer holds).
        #[arg(long, default_value_t = 1, value_parser = seed_parser())]
        seed: u64,
        /// Output directory (written beside and renamed into place).
        #[arg(long)]
        out: PathBuf,
        /// Replace a non-empty `--out`.
        #[arg(long)]
        force: bool,
        /// Continue from the last checkpoint of an interrupted run into the
        /// same `--out` (same model, data, seed and parameters).
        #[arg(long)]
        resume: bool,
        /// Worker threads (default: every core).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Evaluate a saved model on its test split.
    Evaluate {
        /// Directory written by `hinrec train`.
        #[arg(long)]
        model_dir: PathBuf,
        #[arg(long, value_enum, default_value = "sampled")]
        protocol: Protocol,
        /// Negatives file in the test.negative format (default: the stored
        /// one); checked against the test split.
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
        /// Also print why, where the model can say (LGRec's attention and
        /// meta-path labels, REDA's attention over the user's items, GLRS's
        /// attention over its spaces).
        #[arg(long)]
        explain: bool,
        /// Score every item, even for a model with a retrieval index (GLRS
        /// ranks only the items of the clusters it probes by default).
        #[arg(long)]
        exhaustive: bool,
    },
    /// The registered models: name, paper, parameters' defaults.
    Models {
        /// Also print every default parameter.
        #[arg(long)]
        defaults: bool,
    },
    /// Train every registered model on the synthetic dataset (small
    /// settings) and print the table.
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

// glibc's malloc returns every large tensor buffer to the kernel on free,
// so each candle op on a big batch page-faults its output in afresh: REDA
// trains 1.6x faster with mimalloc (docs/performance.md, "The allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seeds a TOML file can hold (its integers are signed 64-bit).
fn seed_parser() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(..=i64::MAX as u64)
}

fn main() {
    hinrec::keep_freed_memory();
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Train { threads, .. } => *threads,
        _ => None,
    };
    hinrec::configure_threads(threads);
    if let Err(e) = run(cli) {
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
            sets,
            seed,
            out,
            force,
            resume,
            threads,
        } => {
            let _ = threads; // set in main, before any thread started
            let req = TrainRequest {
                model: &model,
                data: &data,
                config: config.as_deref(),
                sets: &sets,
                seed,
                out: &out,
                force: force || resume,
                resume,
            };
            train(&req)?
        }
        Command::Evaluate {
            model_dir,
            protocol,
            negatives,
            k,
            json,
        } => {
            let mut loaded = model_dir::load(&model_dir)?;
            if let Some(path) = negatives {
                loaded.prepared.test_negatives = model_dir::read_negatives(
                    &path,
                    &loaded.dataset,
                    &loaded.prepared.split,
                    true,
                )?;
            }
            let p = &loaded.prepared;
            let (scorer, name, seed) = (loaded.model.as_ref(), loaded.entry.name, loaded.info.seed);
            let report = match protocol {
                Protocol::Sampled => p.evaluate_sampled(scorer, name, seed, &k)?,
                Protocol::Full => p.evaluate_full(scorer, name, seed, &k)?,
                Protocol::Pruned => p.evaluate_pruned(scorer, name, seed, &k)?,
                Protocol::Auc => p.evaluate_auc(scorer, name, seed)?,
                Protocol::Pooled => p.evaluate_pooled(scorer, name, seed, &k)?,
                Protocol::Labelled => p.evaluate_labelled(scorer, name, seed)?,
            };
            print_report(&report, json)?;
        }
        Command::Recommend {
            model_dir,
            user,
            k,
            explain,
            exhaustive,
        } => {
            let loaded = model_dir::load(&model_dir)?;
            let ds = &loaded.dataset;
            let u = ds
                .users()
                .get(&user)
                .with_context(|| format!("user {user:?} is not in dataset {}", ds.name))?;
            let model = loaded.model.as_ref();
            let split = &loaded.prepared.split;
            let top = match model.candidates(u).filter(|_| !exhaustive) {
                Some(c) => {
                    eprintln!(
                        "{} of {} items scored (the model's retrieval index; --exhaustive scores all)",
                        c.len(),
                        model.n_items()
                    );
                    hinrec::recommend::top_k_within(model, split, u, &c, k)
                }
                None => hinrec::recommend::top_k(model, split, u, k),
            }
            .map_err(anyhow::Error::from_boxed)?;
            println!("rank\titem\tscore");
            for (r, (i, score)) in top.iter().enumerate() {
                println!("{}\t{}\t{score:.4}", r + 1, ds.item_original(*i));
                if explain {
                    let why = model.explain(u, *i)?;
                    if why.is_empty() && r == 0 {
                        println!("\t({} gives no explanation)", loaded.entry.name);
                    }
                    print_reasons(ds, &why);
                }
            }
        }
        Command::Models { defaults } => list_models(defaults)?,
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

/// A model's reasons with the data's own ids.
fn print_reasons(ds: &Dataset, why: &[Reason]) {
    for reason in why {
        let (what, cells): (&str, Vec<String>) = match reason {
            Reason::Items { what, weights } | Reason::RelatedItems { what, weights } => (
                what,
                weights
                    .iter()
                    .map(|(i, w)| format!("{} {w:.3}", ds.item_original(*i)))
                    .collect(),
            ),
            Reason::Users { what, weights } => (
                what,
                weights
                    .iter()
                    .map(|(u, w)| format!("{} {w:.3}", ds.users().original(*u)))
                    .collect(),
            ),
            Reason::Values { what, values } => (
                what,
                values.iter().map(|(n, v)| format!("{n} {v:.3}")).collect(),
            ),
        };
        println!("\t  {what}: {}", cells.join(", "));
    }
}

fn list_models(defaults: bool) -> Result<()> {
    println!("{:<12} {:<10} {:<8} about", "model", "paper", "table");
    for m in MODELS {
        println!("{:<12} {:<10} {:<8} {}", m.name, m.paper, m.table, m.about);
        if defaults {
            let p = m.params(None, &toml::Table::new())?;
            for (k, v) in p.to_toml()? {
                println!("{:>14}{k} = {v}", "");
            }
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
    let bar = ProgressBar::new(max_epochs.max(1) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] epoch {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// An epoch bar: batches of the running epoch, then the epoch's loss,
/// validation metric and throughput.
struct BarProgress<'a> {
    bar: &'a ProgressBar,
    metric: &'a str,
    last: String,
    /// Print a line per epoch where the bar is hidden.
    log: bool,
}

impl Progress for BarProgress<'_> {
    fn batch(&mut self, done: usize, total: usize) {
        self.bar
            .set_message(format!("{} | batch {done}/{total}", self.last));
    }

    fn epoch(&mut self, r: &EpochReport) {
        self.bar.set_position(r.epoch as u64);
        let terms: String = r
            .terms
            .iter()
            .map(|(k, v)| format!(" {k} {v:.4}"))
            .collect();
        self.last = format!(
            "loss {:.4}{} | valid {} {} | best {} | {:.0} samples/s",
            r.loss,
            if terms.is_empty() {
                String::new()
            } else {
                format!(" ({})", terms.trim_start())
            },
            self.metric,
            r.valid.map_or("-".into(), |v| format!("{v:.4}")),
            r.best.map_or("-".into(), |v| format!("{v:.4}")),
            r.samples_per_s
        );
        self.bar.set_message(self.last.clone());
        if self.log && self.bar.is_hidden() {
            // No terminal to draw on (a log file): one line per epoch.
            eprintln!("epoch {}: {}", r.epoch, self.last);
        }
    }
}

/// [`models::fit`] under an epoch bar; `run` is the HIN, the seed and the
/// checkpoints.
fn fit_with_bar(
    name: &str,
    params: &dyn hinrec::train::AnyParams,
    prepared: &Prepared,
    cfg: &ExperimentConfig,
    run: (Option<&hinrec::graph::Hin>, u64, CheckpointPolicy),
    log: bool,
) -> Result<hinrec::train::Fitted<Box<dyn hinrec::train::TrainedModel>>> {
    let bar = epoch_bar(params.max_epochs());
    bar.set_prefix(name.to_string());
    let mut progress = BarProgress {
        bar: &bar,
        metric: &cfg.metric,
        last: String::new(),
        log,
    };
    let (hin, seed, checkpoints) = run;
    let fitted = models::fit(
        params,
        prepared,
        cfg,
        FitRun {
            hin,
            seed,
            checkpoints,
            progress: &mut progress,
            audit: None,
        },
    );
    bar.finish_and_clear();
    fitted
}

/// What `hinrec train` was asked.
struct TrainRequest<'a> {
    model: &'a str,
    data: &'a DataArgs,
    config: Option<&'a Path>,
    sets: &'a [String],
    seed: u64,
    out: &'a Path,
    force: bool,
    resume: bool,
}

/// Where `train` keeps checkpoints for `out`: beside it, so they outlive
/// a crash and `--resume` finds them.
fn checkpoint_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map_or("model".into(), |n| n.to_string_lossy().to_string());
    out.with_file_name(format!(".{name}.checkpoints"))
}

fn train(req: &TrainRequest<'_>) -> Result<()> {
    // Everything is checked before the data is read and before training.
    let entry = registry::model(req.model).map_err(anyhow::Error::msg)?;
    let cfg = match req.config {
        Some(p) => ExperimentConfig::read(p)?,
        None => ExperimentConfig::default(),
    };
    let params = models::params(entry, &cfg, &registry::parse_sets(req.sets)?)?;
    model_dir::check_target(req.out, req.force)?;
    // Held until the new directory is in place: a second run into the same
    // --out fails here instead of mixing its files with ours.
    let _lock = model_dir::lock(req.out)?;
    let ds = req.data.load()?;
    for data in std::iter::once(&ds.root).chain(req.data.data_root.as_ref()) {
        if hinrec::paths::is_inside(req.out, data) {
            bail!(
                "--out {} is inside the data folder {}: hinrec never writes under a data folder",
                req.out.display(),
                data.display()
            );
        }
    }
    let prepared = Prepared::new(&ds, &cfg)?;
    eprintln!(
        "split {}: train {}, valid {}, test {}",
        prepared.split_label,
        prepared.split.train.nnz(),
        prepared.split.valid.nnz(),
        prepared.split.test.nnz()
    );
    let info = RunInfo {
        model: entry.name.into(),
        seed: req.seed,
        data: absolute_if_path(&req.data.data),
        data_root: req
            .data
            .data_root
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or(p.clone())),
        dataset: ds.name.clone(),
        split: prepared.split_label.clone(),
        config: cfg.clone(),
        params: models::resolved(params.as_ref(), &prepared).to_toml()?,
    };
    // The run's tag: every checkpoint carries it, and a resume from one
    // with another tag is refused. Serialising it here also proves the
    // config can be written before any training.
    let tag = toml::to_string_pretty(&info).context("the run's settings cannot be written")?;
    let ckpt = checkpoint_dir(req.out);
    if req.resume {
        if ckpt.exists() {
            eprintln!("resuming from {}", ckpt.display());
        } else {
            eprintln!(
                "no checkpoint at {}: starting from the first epoch",
                ckpt.display()
            );
        }
    } else if ckpt.exists() {
        std::fs::remove_dir_all(&ckpt).with_context(|| format!("removing {}", ckpt.display()))?;
    }
    let hin = params.needs_hin().then(|| prepared.hin(&ds));
    let checkpoints = CheckpointPolicy {
        dir: Some(ckpt.clone()),
        resume: req.resume,
        tag,
    };
    let run = (hin.as_ref(), req.seed, checkpoints);
    let fitted = fit_with_bar(entry.name, params.as_ref(), &prepared, &cfg, run, true)?;
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
    let model = fitted.model.as_ref();
    model_dir::save(
        req.out,
        &info,
        model,
        &ds,
        &prepared,
        fitted.summary.as_ref(),
    )?;
    let _ = std::fs::remove_dir_all(&ckpt);
    let report = prepared.evaluate_sampled(model, entry.name, req.seed, &[10])?;
    eprintln!(
        "saved to {} | test sampled HR@10 {:.4} NDCG@10 {:.4}",
        req.out.display(),
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
    let hin = prepared.hin(&ds);
    println!(
        "synthetic HIN: {} users, {} items, {} interactions, meta-paths {}; split {}, {} test users, {} stored negatives each",
        ds.n_users(),
        ds.n_items(),
        ds.interactions.nnz(),
        prepared.meta_paths.join(","),
        prepared.split_label,
        prepared.split.test.nnz(),
        cfg.negatives
    );
    println!();
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "model", "HR@10", "NDCG@10", "full HR@10", "full NDCG", "train s"
    );
    for entry in MODELS {
        let params = entry.params(None, &parse_toml(entry.demo)?)?;
        let start = Instant::now();
        let run = (Some(&hin), seed, CheckpointPolicy::default());
        let fitted = fit_with_bar(entry.name, params.as_ref(), &prepared, &cfg, run, false)?;
        let train_s = start.elapsed().as_secs_f64();
        let model = fitted.model.as_ref();
        let s = prepared.evaluate_sampled(model, entry.name, seed, &[10])?;
        let f = prepared.evaluate_full(model, entry.name, seed, &[10])?;
        let g = |r: &EvalReport, m: &str| r.metrics.get(m).unwrap_or(f64::NAN);
        println!(
            "{:<12} {:>10.4} {:>10.4} {:>10.4} {:>10.4} {:>9.2}",
            entry.name,
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
