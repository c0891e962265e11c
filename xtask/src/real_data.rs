//! Real-data acceptance checks, run by CI where ../shared/datasets exists.
//!
//! 1. `hinrec stats` counts equal the numbers of ../shared/datasets/README.md
//!    for every shipped folder (the expectations below are copied from it).
//! 2. reda-lastfm has REDA's counts.
//! 3. The training checks of [`TRAINING`]: each a registered model, short
//!    settings and a bound (the foundation issue's for the baselines on
//!    lgrec-ml100k; a wide margin over popularity for the paper models).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use hinrec::data::registry;
use hinrec::data::stats::DatasetStats;
use hinrec::eval::report::mean_std;
use hinrec::eval::Metrics;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::models::{fit_quiet, params};
use hinrec::registry::parse_toml;
use hinrec::tune::tune;

/// One training check: a registered model on a dataset with `settings`
/// (TOML), its registry grid searched on validation with seed 1 when
/// `tuned`, then the mean over `seeds` of each metric must reach its
/// bound, and beat MostPop's by `above_mostpop` where that is set.
struct TrainingCheck {
    model: &'static str,
    dataset: &'static str,
    settings: &'static str,
    tuned: bool,
    seeds: &'static [u64],
    bounds: &'static [(&'static str, f64)],
    above_mostpop: Option<(&'static str, f64)>,
    why: &'static str,
}

const TRAINING: &[TrainingCheck] = &[
    TrainingCheck {
        model: "itemknn",
        dataset: "lgrec-ml100k",
        settings: "",
        tuned: true,
        seeds: &[1, 2, 3],
        bounds: &[("HR@10", 0.58)],
        above_mostpop: None,
        why: "the foundation issue's bound",
    },
    TrainingCheck {
        model: "bpr",
        dataset: "lgrec-ml100k",
        settings: "",
        tuned: true,
        seeds: &[1, 2, 3],
        bounds: &[("HR@10", 0.66), ("NDCG@10", 0.37)],
        above_mostpop: None,
        why: "the foundation issue's bounds",
    },
    TrainingCheck {
        model: "lgrec",
        dataset: "lgrec-ml100k",
        settings: "dim = 64\nk_user = 50\nk_item = 50\nepochs = 2",
        tuned: false,
        seeds: &[1],
        bounds: &[("HR@10", 0.55)],
        above_mostpop: None,
        why: "MostPop scores 0.43 on these candidates; one-seed runs of this setting about 0.60",
    },
    TrainingCheck {
        model: "reda",
        dataset: "reda-lastfm",
        settings: "epochs = 2",
        tuned: false,
        seeds: &[1],
        bounds: &[],
        above_mostpop: Some(("NDCG@10", 0.08)),
        why: "validation NDCG@10 is 0.586 after two epochs (docs/reda.md); MostPop 0.467 on test",
    },
];

/// What the dataset README states: users, items per type, interactions,
/// given split (train, valid, test), relation rows, other entity counts.
struct Expected {
    name: &'static str,
    users: usize,
    items: &'static [usize],
    interactions: usize,
    split: Option<(usize, usize, usize)>,
    relation_rows: &'static [(&'static str, usize)],
    entities: &'static [(&'static str, usize)],
}

const EXPECTED: &[Expected] = &[
    Expected {
        name: "movielens",
        users: 943,
        items: &[1682],
        interactions: 100_000,
        split: None,
        relation_rows: &[
            ("user_age", 943),
            ("user_occupation", 943),
            ("movie_genre", 2891),
            ("user_user_knn", 47_150),
            ("movie_movie_knn", 82_798),
        ],
        entities: &[("age", 8), ("occupation", 21), ("genre", 18)],
    },
    Expected {
        name: "lastfm",
        users: 1892,
        items: &[17_632],
        interactions: 92_834,
        split: None,
        relation_rows: &[
            ("user_user", 18_802),
            ("user_user_original", 25_434),
            ("artist_artist", 153_399),
            ("artist_tag", 184_941),
        ],
        entities: &[("tag", 9718)],
    },
    Expected {
        name: "yelp",
        users: 16_239,
        items: &[14_284],
        interactions: 198_397,
        split: None,
        relation_rows: &[
            ("user_user", 158_590),
            ("business_city", 14_267),
            ("business_category", 40_009),
            ("user_compliment", 76_875),
        ],
        entities: &[("category", 511), ("city", 47), ("compliment", 11)],
    },
    Expected {
        name: "lgrec-ml100k",
        users: 943,
        items: &[1682],
        interactions: 100_000,
        split: Some((99_057, 0, 943)),
        relation_rows: &[],
        entities: &[],
    },
    Expected {
        name: "glrs-yelp-madison",
        users: 2773,
        items: &[3186],
        interactions: 50_961,
        split: Some((42_642, 0, 8319)),
        relation_rows: &[],
        entities: &[],
    },
    Expected {
        name: "ml1m",
        users: 6040,
        items: &[3260],
        interactions: 998_539,
        split: Some((801_218, 0, 197_321)),
        relation_rows: &[
            ("user_gender", 6040),
            ("user_age", 6040),
            ("user_occupation", 6040),
        ],
        entities: &[("gender", 2), ("age", 7), ("occupation", 21), ("genre", 18)],
    },
    Expected {
        name: "tiktok-mmssl",
        users: 9308,
        items: &[6710],
        interactions: 68_722,
        split: Some((59_541, 3051, 6130)),
        relation_rows: &[],
        entities: &[],
    },
    Expected {
        name: "douban-dtcdr",
        users: 2216,
        items: &[6777, 5567],
        interactions: 165_750,
        split: None,
        relation_rows: &[],
        entities: &[],
    },
    Expected {
        name: "douban-hin-book",
        users: 10_860,
        items: &[22_292],
        interactions: 594_472,
        split: Some((475_577, 0, 118_895)),
        relation_rows: &[
            ("book_author", 21_907),
            ("book_publisher", 21_773),
            ("book_year", 21_192),
            ("user_location", 10_592),
        ],
        entities: &[
            ("author", 10_805),
            ("publisher", 1815),
            ("year", 64),
            ("location", 453),
        ],
    },
    Expected {
        name: "douban-hin-movie",
        users: 8938,
        items: &[7662],
        interactions: 687_894,
        split: Some((550_315, 0, 137_579)),
        relation_rows: &[
            ("movie_actor", 33_572),
            ("movie_director", 11_276),
            ("movie_type", 27_668),
        ],
        entities: &[("actor", 6311), ("director", 2449), ("type", 38)],
    },
];

pub fn run(root: &Path) -> Result<()> {
    check_stats(root)?;
    check_reda_lastfm(root)?;
    for c in TRAINING {
        check_training(root, c)?;
    }
    println!("real-data checks ok");
    Ok(())
}

fn check_training(root: &Path, c: &TrainingCheck) -> Result<()> {
    let t = Instant::now();
    let entry = hinrec::registry::model(c.model).map_err(anyhow::Error::msg)?;
    let ds = registry::load(c.dataset, Some(root))?;
    let cfg = ExperimentConfig::default();
    let prepared = Prepared::new(&ds, &cfg)?;
    let base = params(entry, &cfg, &parse_toml(c.settings)?)?;
    let hin = base.needs_hin().then(|| prepared.hin(&ds));
    let grid = match entry.experiments.iter().find(|e| e.dataset == c.dataset) {
        Some(e) if c.tuned => (e.grid)(),
        _ => Vec::new(),
    };
    let (chosen, trials) = tune(base.as_ref(), &grid, "", &prepared, hin.as_ref(), &cfg, 1)?;
    let label = trials
        .iter()
        .max_by(|a, b| a.valid.total_cmp(&b.valid))
        .map_or("-".into(), |t| t.label.clone());
    let mut runs: Vec<Metrics> = Vec::new();
    for &seed in c.seeds {
        let f = fit_quiet(chosen.as_ref(), &prepared, hin.as_ref(), &cfg, seed)?;
        runs.push(
            prepared
                .evaluate_sampled(f.model.as_ref(), c.model, seed, &[10])?
                .metrics,
        );
    }
    let ms = mean_std(&runs.iter().collect::<Vec<_>>());
    let get = |m: &str| ms.get(m).map_or(f64::NAN, |v| v.0);
    println!(
        "{} {:<8} ({}; chosen {label}) seeds {:?}: HR@10 {:.4} NDCG@10 {:.4} ({:.1}s)",
        c.dataset,
        c.model,
        hinrec::tune::label(c.settings),
        c.seeds,
        get("HR@10"),
        get("NDCG@10"),
        t.elapsed().as_secs_f64()
    );
    for &(m, bound) in c.bounds {
        let v = get(m);
        ensure!(
            v >= bound,
            "{} {} {m} {v:.4} < {bound} ({})",
            c.dataset,
            c.model,
            c.why
        );
    }
    if let Some((m, margin)) = c.above_mostpop {
        let pop = hinrec::baselines::MostPop::fit(&prepared.split.train);
        let p = prepared
            .evaluate_sampled(&pop, "mostpop", 0, &[10])?
            .metrics
            .get(m)
            .unwrap_or(f64::NAN);
        let v = get(m);
        println!("   MostPop {m} {p:.4}");
        ensure!(
            v >= p + margin,
            "{} {} {m} {v:.4} is not {margin} above MostPop's {p:.4} ({})",
            c.dataset,
            c.model,
            c.why
        );
    }
    Ok(())
}

/// REDA's LastFM filter (users with at least 5 artists) against the counts
/// the dataset README measured: 1,877 users, 17,617 artists, 92,801 actions.
fn check_reda_lastfm(root: &Path) -> Result<()> {
    let x = registry::load("reda-lastfm", Some(root))?.implicit();
    let got = (x.active_users(), x.active_items(), x.nnz());
    ensure!(
        got == (1877, 17_617, 92_801),
        "reda-lastfm has (users, items, actions) {got:?}, the README says (1877, 17617, 92801)"
    );
    println!("stats reda-lastfm (users >= 5 artists) ok: {got:?}");
    Ok(())
}

fn check_stats(root: &Path) -> Result<()> {
    let mut failures = Vec::new();
    for e in EXPECTED {
        let s = DatasetStats::of(&registry::load(e.name, Some(root))?);
        let mut check = |what: &str, got: usize, want: usize| {
            if got != want {
                failures.push(format!(
                    "{}: {what} is {got}, the README says {want}",
                    e.name
                ));
            }
        };
        check("users", s.users, e.users);
        check("interactions", s.interactions, e.interactions);
        for (k, &want) in e.items.iter().enumerate() {
            check("items", s.items.get(k).map_or(0, |x| x.1), want);
        }
        if let Some((tr, va, te)) = e.split {
            let (a, b, c) = s.given_split.unwrap_or_default();
            check("train", a, tr);
            check("valid", b, va);
            check("test", c, te);
        }
        for &(rel, rows) in e.relation_rows {
            check(
                rel,
                s.relations
                    .iter()
                    .find(|r| r.name == rel)
                    .map_or(0, |r| r.rows),
                rows,
            );
        }
        for &(ent, n) in e.entities {
            check(
                ent,
                s.other_entities
                    .iter()
                    .find(|x| x.0 == ent)
                    .map_or(0, |x| x.1),
                n,
            );
        }
        println!("stats {:<18} ok", e.name);
    }
    if !failures.is_empty() {
        bail!(
            "dataset counts differ from the README:\n{}",
            failures.join("\n")
        );
    }
    Ok(())
}
