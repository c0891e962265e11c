//! `cargo xtask reda`: REDA and its ablations with reda.txt's protocol
//! (leave-one-out, 100 stored negatives per test user, HR and nDCG at 5,
//! 10 and 15), memory slots and aspects chosen on validation, 3 seeds;
//! merged into docs/results.json / results.md.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use hinrec::data::registry;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::tune::Trial;
use hinrec_reda::{FitOptions, Reda, RedaConfig, Variant};

use crate::lgrec::{batch_bar, best_on_validation, join};
use crate::reproduce::{git_commit, load_store, save_record, Record, SeedRun};

/// Arguments of `cargo xtask reda`.
#[derive(clap::Args)]
pub struct Args {
    /// Folder of the shared datasets.
    #[arg(long, default_value = "../shared/datasets")]
    data_root: PathBuf,
    /// Datasets: reda-lastfm (reda.txt's LastFM), lgrec-ml100k,
    /// glrs-yelp-madison.
    #[arg(long, value_delimiter = ',', default_value = "reda-lastfm")]
    datasets: Vec<String>,
    /// Variants: full, npil, nmal.
    #[arg(long, value_delimiter = ',', default_value = "full,npil,nmal")]
    variants: Vec<String>,
    /// Model seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Embedding size.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Memory slots m; with several values (or aspects) each combination
    /// is trained once with the first seed for at most `--grid-epochs`
    /// epochs and the best on validation is used for all seeds (the
    /// paper's grid is 5,10,20,30,40,50).
    #[arg(long, value_delimiter = ',', default_value = "20")]
    memory: Vec<usize>,
    /// Embeddings per item k (a grid with `--memory`; the paper's is
    /// 2,3,4,5,10). The NPIL ablation always uses 1.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    aspects: Vec<usize>,
    /// Maximum epochs of each grid trial.
    #[arg(long, default_value_t = 8)]
    grid_epochs: usize,
    /// Maximum epochs.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Epochs without validation improvement before stopping.
    #[arg(long, default_value_t = 3)]
    patience: usize,
    /// Triples per training interaction in one epoch.
    #[arg(long, default_value_t = 4)]
    triples_per_interaction: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.001)]
    lr: f64,
    /// Standard deviation of the initial item embeddings.
    #[arg(long, default_value_t = 0.1)]
    init_std: f64,
    /// Item pairs sampled per user for z_u.
    #[arg(long, default_value_t = 500)]
    user_pairs: usize,
    /// Training items a score averages over (0: all).
    #[arg(long, default_value_t = 0)]
    score_items: usize,
    /// Write checkpoints under DIR/<dataset>/<variant>/seed-<n>.
    #[arg(long, value_name = "DIR")]
    checkpoints: Option<PathBuf>,
    /// Continue from the checkpoints in `--checkpoints` where they exist.
    #[arg(long, requires = "checkpoints")]
    resume: bool,
    /// Also rank all items, on datasets with at most this many user-item
    /// pairs (each costs one relation per training item of the user); 0
    /// never.
    #[arg(long, default_value_t = 0)]
    full_max_pairs: usize,
    /// Where the results go.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
}

impl Args {
    /// The defaults of `cargo xtask reda` on reda-lastfm for these variants,
    /// seeds and output folder.
    pub fn with_defaults(
        data_root: PathBuf,
        variants: Vec<String>,
        seeds: Vec<u64>,
        out: PathBuf,
    ) -> Self {
        let mut args: Self = crate::default_args("reda");
        args.data_root = data_root;
        args.variants = variants;
        args.seeds = seeds;
        args.out = out;
        args
    }
}

fn variant(name: &str) -> Result<Variant> {
    Ok(match name {
        "full" | "reda" => Variant::Full,
        "npil" => Variant::Npil,
        "nmal" => Variant::Nmal,
        _ => anyhow::bail!("unknown variant {name:?}: full, npil or nmal"),
    })
}

/// Cut-offs reda.txt reports.
const CUTOFFS: [usize; 3] = [5, 10, 15];

pub fn run(args: &Args) -> Result<()> {
    let mut store = load_store(&args.out)?;
    let commit = git_commit();
    for name in &args.datasets {
        let ds = registry::load(name, Some(&args.data_root))?;
        let prepared = Prepared::new(&ds, &ExperimentConfig::default())?;
        let s = &prepared.split;
        println!(
            "== {name}: split {}, {} users, {} items with training data, train {}, valid {}, test {}",
            prepared.split_label,
            s.train.active_users(),
            s.train.active_items(),
            s.train.nnz(),
            s.valid.nnz(),
            s.test.nnz()
        );
        let n_pairs = s.test.active_users() * s.train.n_items();
        let full_ranking = n_pairs <= args.full_max_pairs;
        for v in &args.variants {
            let variant = variant(v)?;
            let base = RedaConfig {
                dim: args.dim,
                memory_slots: args.memory[0],
                aspects: args.aspects[0],
                epochs: args.epochs,
                patience: args.patience,
                triples_per_interaction: args.triples_per_interaction,
                lr: args.lr,
                user_pairs: args.user_pairs,
                init_std: args.init_std,
                score_items: args.score_items,
                variant,
                ..RedaConfig::default()
            };
            let start = Instant::now();
            let (cfg, trials) = choose_on_validation(&prepared, &base, args)?;
            let mut runs = Vec::new();
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
                let (model, summary) = Reda::fit_with(
                    &prepared.split,
                    &prepared.valid_negatives,
                    &cfg,
                    seed,
                    &opts,
                    &mut |done, total| {
                        bar.set_length(total as u64);
                        bar.set_position(done as u64);
                    },
                    &mut |r| {
                        bar.suspend(|| {
                            println!(
                                "   {} seed {seed} epoch {:>2}: loss {:.4} valid {:.4} ({:.0} triples/s, {:.0}s in all)",
                                variant.name(),
                                r.epoch,
                                r.loss,
                                r.valid.unwrap_or(f64::NAN),
                                r.samples_per_s,
                                r.elapsed_s
                            )
                        });
                    },
                )?;
                bar.finish_and_clear();
                let te = Instant::now();
                let scorer = model.scorer_for(&prepared.test_negatives)?;
                let sampled = hinrec::eval::sampled(&scorer, &prepared.test_negatives, &CUTOFFS);
                let test_s = te.elapsed().as_secs_f64();
                let full = if full_ranking {
                    let all = model.scorer_for_users(&s.test)?;
                    hinrec::eval::full_ranking(&all, &s.test, &[&s.train, &s.valid], &[10])
                } else {
                    Default::default()
                };
                let m = |k: &str| sampled.get(k).unwrap_or(f64::NAN);
                println!(
                    "   {} seed {seed}: test HR@5/10/15 {:.4} {:.4} {:.4} NDCG@5/10/15 {:.4} {:.4} {:.4} | full HR@10 {} | best epoch {} | test scoring {test_s:.1}s | {:.0}s",
                    variant.name(),
                    m("HR@5"),
                    m("HR@10"),
                    m("HR@15"),
                    m("NDCG@5"),
                    m("NDCG@10"),
                    m("NDCG@15"),
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
            let rec = Record {
                dataset: prepared.dataset.clone(),
                model: variant.name().into(),
                split: prepared.split_label.clone(),
                test_pairs: prepared.test_negatives.len(),
                chosen: format!(
                    "d={} k={} m={} s={} lr={} z pairs {} score items {}{} (epoch on validation)",
                    cfg.dim,
                    cfg.effective_aspects(),
                    cfg.memory_slots,
                    cfg.hidden,
                    cfg.lr,
                    cfg.user_pairs,
                    if cfg.score_items == 0 { "all".into() } else { cfg.score_items.to_string() },
                    if trials.is_empty() { " given" } else { " chosen on validation" }
                ),
                trials,
                runs,
                command: format!(
                    "cargo xtask reda --datasets {name} --variants {v} --seeds {} --dim {} --memory {} --aspects {} --grid-epochs {} --epochs {} --patience {} --triples-per-interaction {} --lr {} --init-std {} --user-pairs {} --score-items {}{}",
                    join(&args.seeds),
                    args.dim,
                    join(&args.memory),
                    join(&args.aspects),
                    args.grid_epochs,
                    args.epochs,
                    args.patience,
                    args.triples_per_interaction,
                    args.lr,
                    args.init_std,
                    args.user_pairs,
                    args.score_items,
                    if args.full_max_pairs > 0 {
                        format!(" --full-max-pairs {}", args.full_max_pairs)
                    } else {
                        String::new()
                    }
                ),
                commit: commit.clone(),
                wall_s: start.elapsed().as_secs_f64(),
            };
            save_record(&args.out, &mut store, rec)?;
        }
    }
    Ok(())
}

/// The memory size and aspect count with the best validation metric, each
/// combination trained once with the first seed for at most
/// `--grid-epochs` epochs; no trials when the grid has one point. NPIL
/// has k = 1 whatever `--aspects` says, and NMAL no memory: their grids
/// collapse accordingly.
fn choose_on_validation(
    prepared: &Prepared,
    base: &RedaConfig,
    args: &Args,
) -> Result<(RedaConfig, Vec<Trial>)> {
    let memory: &[usize] = if base.variant == Variant::Nmal {
        &args.memory[..1]
    } else {
        &args.memory
    };
    let aspects: &[usize] = if base.variant == Variant::Npil {
        &args.aspects[..1]
    } else {
        &args.aspects
    };
    if memory.len() * aspects.len() == 1 {
        return Ok((base.clone(), Vec::new()));
    }
    let seed = *args.seeds.first().unwrap_or(&1);
    let mut points = Vec::new();
    for &m in memory {
        for &k in aspects {
            let cfg = RedaConfig {
                memory_slots: m,
                aspects: k,
                epochs: args.grid_epochs.min(base.epochs),
                ..base.clone()
            };
            points.push((format!("m={m} k={k}"), cfg));
        }
    }
    let (chosen, trials) = best_on_validation(points, base.variant.name(), &base.metric, |cfg| {
        Ok(Reda::fit(
            &prepared.split,
            &prepared.valid_negatives,
            cfg,
            seed,
            |_| {},
        )?
        .1)
    })?;
    Ok((
        RedaConfig {
            epochs: base.epochs,
            ..chosen
        },
        trials,
    ))
}
