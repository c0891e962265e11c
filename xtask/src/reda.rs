//! `cargo xtask reda`: REDA and its ablations with reda.txt's protocol
//! (leave-one-out, 100 stored negatives per test user, HR and nDCG at 5,
//! 10 and 15), memory slots and aspects chosen on validation, 3 seeds;
//! merged into docs/results.json / results.md.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use hinrec::data::registry;
use hinrec::data::Interactions;
use hinrec::eval::full_ranking;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::models::ModelKind;
use hinrec::tune::Trial;
use hinrec_reda::{FitOptions, Reda, RedaConfig, Variant};
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::lgrec::{batch_bar, best_on_validation, join};
use crate::reproduce::{chosen_label, git_commit, load_store, save_record, Record, SeedRun};

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
    /// Memory slots m (the paper's grid is 5,10,20,30,40,50). Where
    /// `--lr`, `--memory` or `--aspects` list several values, they are
    /// searched one axis at a time (learning rate, then m, then k), from
    /// the first value of each, keeping the best on validation; each
    /// trial is trained once with the first seed for at most
    /// `--grid-epochs` epochs, and the result is used for all seeds. The
    /// defaults of these three are that search's choice (docs/reda.md).
    #[arg(long, value_delimiter = ',', default_value = "20")]
    memory: Vec<usize>,
    /// Embeddings per item k (the paper's grid is 2,3,4,5,10). The NPIL
    /// ablation always uses 1.
    #[arg(long, value_delimiter = ',', default_value = "3")]
    aspects: Vec<usize>,
    /// Maximum epochs of each grid trial.
    #[arg(long, default_value_t = 3)]
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
    /// Adam learning rates (a list is searched on validation). The default
    /// is the choice of docs/reda.md's search over 0.001 (reda.txt's),
    /// 0.003 and 0.01.
    #[arg(long, value_delimiter = ',', default_value = "0.01")]
    lr: Vec<f64>,
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
    /// Also rank all items for this many test users, sampled with the
    /// data seed (all of them when there are fewer); 0: no full ranking.
    /// Each user costs one relation per (item, training item), so the
    /// users are sampled; MostPop and ItemKNN are ranked on the same users
    /// beside it.
    #[arg(long, default_value_t = 200)]
    full_users: usize,
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
    // Fail before any training when results.json is unreadable.
    load_store(&args.out)?;
    let commit = git_commit();
    for name in &args.datasets {
        let ds = registry::load(name, Some(&args.data_root))?;
        let data_cfg = ExperimentConfig::default();
        let prepared = Prepared::new(&ds, &data_cfg)?;
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
        let full_users = if args.full_users > 0 {
            let sub = sample_test_users(&s.test, args.full_users, data_cfg.data_seed);
            println!(
                "   full ranking on {} sampled test users",
                sub.active_users()
            );
            // Reference rows on the same users (ItemKNN's k on validation).
            for kind in [ModelKind::MostPop, ModelKind::ItemKnn] {
                let (_, fitted, trials) = hinrec::tune::tune(kind, &prepared, &data_cfg, 1)?;
                let m = full_ranking(fitted.scorer(), &sub, &[&s.train, &s.valid], &[10]);
                println!(
                    "   {} ({}) there: full HR@10 {:.4} NDCG@10 {:.4}",
                    kind.name(),
                    chosen_label(&trials),
                    m.get("HR@10").unwrap_or(f64::NAN),
                    m.get("NDCG@10").unwrap_or(f64::NAN)
                );
            }
            Some(sub)
        } else {
            None
        };
        for v in &args.variants {
            let variant = variant(v)?;
            let base = RedaConfig {
                dim: args.dim,
                memory_slots: args.memory[0],
                aspects: args.aspects[0],
                epochs: args.epochs,
                patience: args.patience,
                triples_per_interaction: args.triples_per_interaction,
                lr: args.lr[0],
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
                let full = match &full_users {
                    Some(sub) => {
                        let all = model.scorer_for_users(sub)?;
                        full_ranking(&all, sub, &[&s.train, &s.valid], &[10])
                    }
                    None => Default::default(),
                };
                let m = |k: &str| sampled.get(k).unwrap_or(f64::NAN);
                println!(
                    "   {} seed {seed}: test HR@5/10/15 {:.4} {:.4} {:.4} NDCG@5/10/15 {:.4} {:.4} {:.4} | full HR@10 {} NDCG@10 {} | best epoch {} | test scoring {test_s:.1}s | {:.0}s",
                    variant.name(),
                    m("HR@5"),
                    m("HR@10"),
                    m("HR@15"),
                    m("NDCG@5"),
                    m("NDCG@10"),
                    m("NDCG@15"),
                    full.get("HR@10").map_or("-".into(), |v| format!("{v:.4}")),
                    full.get("NDCG@10").map_or("-".into(), |v| format!("{v:.4}")),
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
                    "d={} k={} {} s={} lr={} z pairs {} score items {}{}{} (epoch on validation)",
                    cfg.dim,
                    cfg.effective_aspects(),
                    if variant == Variant::Nmal { "no memory".into() } else { format!("m={}", cfg.memory_slots) },
                    cfg.hidden,
                    cfg.lr,
                    cfg.user_pairs,
                    if cfg.score_items == 0 { "all".into() } else { cfg.score_items.to_string() },
                    if trials.is_empty() { " given" } else { " chosen on validation" },
                    match &full_users {
                        Some(sub) => format!("; full ranking on {} sampled test users", sub.active_users()),
                        None => String::new(),
                    }
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
                    join(&args.lr),
                    args.init_std,
                    args.user_pairs,
                    args.score_items,
                    if args.full_users > 0 {
                        format!(" --full-users {}", args.full_users)
                    } else {
                        String::new()
                    }
                ),
                commit: commit.clone(),
                wall_s: start.elapsed().as_secs_f64(),
            };
            save_record(&args.out, rec)?;
        }
    }
    Ok(())
}

/// `n` of `test`'s users with items, sampled with `seed`, and their test
/// items (all users when fewer).
fn sample_test_users(test: &Interactions, n: usize, seed: u64) -> Interactions {
    let users: Vec<u32> = (0..test.n_users() as u32)
        .filter(|&u| test.user_degree(u) > 0)
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf011);
    let keep: HashSet<u32> = users.choose_multiple(&mut rng, n).copied().collect();
    let pairs: Vec<(u32, u32)> = test.pairs().filter(|(u, _)| keep.contains(u)).collect();
    Interactions::from_pairs(test.n_users(), test.n_items(), &pairs)
}

/// The learning rate, memory size and aspect count with the best
/// validation metric, searched one axis at a time in that order from the
/// first value of each list; no trials when every list has one value.
/// NPIL has k = 1 whatever `--aspects` says, and NMAL no memory: their
/// grids collapse accordingly.
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
    let mut trials = Vec::new();
    if args.lr.len() * memory.len() * aspects.len() == 1 {
        return Ok((base.clone(), trials));
    }
    let seed = *args.seeds.first().unwrap_or(&1);
    let label = |c: &RedaConfig| format!("lr={} m={} k={}", c.lr, c.memory_slots, c.aspects);
    let mut best = RedaConfig {
        epochs: args.grid_epochs.min(base.epochs),
        ..base.clone()
    };
    let fit = |cfg: &RedaConfig| {
        Ok(Reda::fit(
            &prepared.split,
            &prepared.valid_negatives,
            cfg,
            seed,
            |_| {},
        )?
        .1)
    };
    for axis in 0..3 {
        let points: Vec<RedaConfig> = match axis {
            0 => args
                .lr
                .iter()
                .map(|&lr| RedaConfig { lr, ..best.clone() })
                .collect(),
            1 => memory
                .iter()
                .map(|&memory_slots| RedaConfig {
                    memory_slots,
                    ..best.clone()
                })
                .collect(),
            _ => aspects
                .iter()
                .map(|&aspects| RedaConfig {
                    aspects,
                    ..best.clone()
                })
                .collect(),
        };
        if points.len() > 1 {
            let points = points.into_iter().map(|c| (label(&c), c)).collect();
            best = best_on_validation(points, base.variant.name(), &base.metric, &mut trials, fit)?;
        }
    }
    Ok((
        RedaConfig {
            epochs: base.epochs,
            ..best
        },
        trials,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_test_users_keep_all_their_items_and_are_seeded() {
        let pairs: Vec<(u32, u32)> = (0..10u32)
            .filter(|u| u % 3 != 0)
            .flat_map(|u| [(u, u), (u, u + 1)])
            .collect();
        let test = Interactions::from_pairs(10, 12, &pairs);
        let sub = sample_test_users(&test, 4, 7);
        assert_eq!((sub.active_users(), sub.nnz()), (4, 8));
        assert!(sub.pairs().all(|(u, i)| test.contains(u, i)));
        assert_eq!(
            sample_test_users(&test, 4, 7).pairs().collect::<Vec<_>>(),
            sub.pairs().collect::<Vec<_>>()
        );
        assert_eq!(
            sample_test_users(&test, 100, 7).nnz(),
            test.nnz(),
            "all when fewer"
        );
    }
}
