//! Real-data acceptance checks, run by CI where ../shared/datasets exists.
//!
//! 1. `hinrec stats` counts equal the numbers of ../shared/datasets/README.md
//!    for every shipped folder (the expectations below are copied from it).
//! 2. reda-lastfm has REDA's counts.
//! 3. A model directory on real data: ItemKNN on lgrec-ml100k saved, read
//!    back (checksums, the data's fingerprint) to the same figures, and
//!    refused once a copy of its data gains a line.
//! 4. The training checks of [`TRAINING`]: each a registered model, short
//!    settings and a bound (the foundation issue's for the baselines on
//!    lgrec-ml100k; a wide margin over popularity for the paper models).

use std::path::Path;
use std::time::Instant;

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use hinrec::data::registry;
use hinrec::data::stats::DatasetStats;
use hinrec::eval::report::mean_std;
use hinrec::eval::Metrics;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::models::{fit_quiet, params};
use hinrec::registry::parse_toml;
use hinrec::tune::tune;
use serde::Deserialize;

/// xtask/real-data.toml: the dataset counts and the training checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Checks {
    counts: Vec<Expected>,
    training: Vec<TrainingCheck>,
}

/// One training check: a registered model on a dataset with `settings`
/// (TOML), its registry grid searched on validation with seed 1 when
/// `tuned`, then the mean over `seeds` of each metric must reach its
/// bound, and beat MostPop's by `above_mostpop` where that is set.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainingCheck {
    model: String,
    dataset: String,
    #[serde(default)]
    settings: String,
    /// The protocol's keys (TOML, as a config file's top level; empty:
    /// the defaults). A labelled one (`positive_above`) is measured on its
    /// labelled AUC.
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    tuned: bool,
    seeds: Vec<u64>,
    #[serde(default)]
    bounds: BTreeMap<String, f64>,
    above_mostpop: Option<(String, f64)>,
    why: String,
}

/// What the dataset README states: users, items per type, interactions,
/// given split (train, valid, test), relation rows, other entity counts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    name: String,
    users: usize,
    items: Vec<usize>,
    interactions: usize,
    split: Option<(usize, usize, usize)>,
    #[serde(default)]
    relation_rows: BTreeMap<String, usize>,
    #[serde(default)]
    entities: BTreeMap<String, usize>,
}

fn checks() -> Result<Checks> {
    toml::from_str(include_str!("../real-data.toml")).context("xtask/real-data.toml")
}

pub fn run(root: &Path) -> Result<()> {
    let checks = checks()?;
    check_stats(root, &checks.counts)?;
    check_reda_lastfm(root)?;
    check_model_dir(root)?;
    for c in &checks.training {
        check_training(root, c)?;
    }
    println!("real-data checks ok");
    Ok(())
}

fn check_training(root: &Path, c: &TrainingCheck) -> Result<()> {
    let t = Instant::now();
    let entry = hinrec::registry::model(&c.model).map_err(anyhow::Error::msg)?;
    let ds = registry::load(&c.dataset, Some(root))?;
    let cfg = ExperimentConfig::parse(&c.protocol)
        .with_context(|| format!("the protocol of the {} check", c.model))?;
    let prepared = Prepared::new(&ds, &cfg)?;
    let base = params(entry, &cfg, &parse_toml(&c.settings)?)?;
    let measure = |m: &dyn hinrec::train::TrainedModel, name: &str, seed: u64| {
        if prepared.is_labelled() {
            prepared.evaluate_labelled(m, name, seed)
        } else {
            prepared.evaluate_sampled(m, name, seed, &[10])
        }
    };
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
    for &seed in &c.seeds {
        let f = fit_quiet(chosen.as_ref(), &prepared, hin.as_ref(), &cfg, seed)?;
        runs.push(measure(f.model.as_ref(), &c.model, seed)?.metrics);
    }
    let ms = mean_std(&runs.iter().collect::<Vec<_>>());
    let get = |m: &str| ms.get(m).map_or(f64::NAN, |v| v.0);
    let shown = if prepared.is_labelled() {
        format!("labelled AUC {:.4}", get("AUC"))
    } else {
        format!("HR@10 {:.4} NDCG@10 {:.4}", get("HR@10"), get("NDCG@10"))
    };
    println!(
        "{} {:<8} ({}; chosen {label}) seeds {:?}: {shown} ({:.1}s)",
        c.dataset,
        c.model,
        hinrec::tune::label(&c.settings),
        c.seeds,
        t.elapsed().as_secs_f64()
    );
    for (m, &bound) in &c.bounds {
        let v = get(m);
        ensure!(
            v >= bound,
            "{} {} {m} {v:.4} < {bound} ({})",
            c.dataset,
            c.model,
            c.why
        );
    }
    if let Some((m, margin)) = &c.above_mostpop {
        let pop = hinrec::baselines::MostPop::fit(&prepared.split.train);
        let p = measure(&pop, "mostpop", 0)?
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

/// ItemKNN on lgrec-ml100k through a model directory: the read-back model
/// scores the stored negatives as the trained one did; a copy of the data
/// with one more line is refused with the file named.
fn check_model_dir(root: &Path) -> Result<()> {
    use hinrec::model_dir::{self, RunInfo};
    let t = Instant::now();
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    for (from, to) in [
        ("lgrec-ml100k", "lgrec-ml100k"),
        ("hin/movielens", "hin/movielens"),
    ] {
        hinrec::paths::copy_dir(&root.join(from), &data.join(to))?;
    }
    let spec = data.join("lgrec-ml100k");
    let ds = registry::load(spec.to_str().context("a UTF-8 path")?, None)?;
    let cfg = ExperimentConfig::default();
    let prepared = Prepared::new(&ds, &cfg)?;
    let entry = hinrec::registry::model("itemknn").map_err(anyhow::Error::msg)?;
    let p = params(entry, &cfg, &toml::Table::new())?;
    let fitted = fit_quiet(p.as_ref(), &prepared, None, &cfg, 1)?;
    let before = prepared.evaluate_sampled(fitted.model.as_ref(), "itemknn", 1, &[10])?;
    let info = RunInfo {
        model: entry.name.into(),
        seed: 1,
        data: spec.display().to_string(),
        data_root: None,
        dataset: ds.name.clone(),
        split: prepared.split_label.clone(),
        config: cfg.clone(),
        params: hinrec::models::resolved(p.as_ref(), &prepared).to_toml()?,
    };
    let out = work.path().join("knn");
    model_dir::save(&out, &info, fitted.model.as_ref(), &ds, &prepared, None)?;
    let loaded = model_dir::load(&out)?;
    let after = loaded
        .prepared
        .evaluate_sampled(loaded.model.as_ref(), "itemknn", 1, &[10])?;
    ensure!(
        before.metrics == after.metrics,
        "a saved ItemKNN scores {:?}, the trained one {:?}",
        after.metrics,
        before.metrics
    );
    let train = spec.join("train.rating");
    let mut text = std::fs::read_to_string(&train)?;
    text.push_str(
        "1	2	5	874965758
",
    );
    std::fs::write(&train, text)?;
    let e = match model_dir::load(&out) {
        Ok(_) => bail!("a model directory accepted data that gained a line"),
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        e.contains("train.rating: changed since training"),
        "unexpected refusal: {e}"
    );
    println!(
        "model directory lgrec-ml100k itemknn ok: HR@10 {:.4} read back identically, changed data refused ({:.1}s)",
        after.metrics.get("HR@10").unwrap_or(f64::NAN),
        t.elapsed().as_secs_f64()
    );
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

fn check_stats(root: &Path, expected: &[Expected]) -> Result<()> {
    let mut failures = Vec::new();
    for e in expected {
        let s = DatasetStats::of(&registry::load(&e.name, Some(root))?);
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
        for (rel, &rows) in &e.relation_rows {
            check(
                rel,
                s.relations
                    .iter()
                    .find(|r| &r.name == rel)
                    .map_or(0, |r| r.rows),
                rows,
            );
        }
        for (ent, &n) in &e.entities {
            check(
                ent,
                s.other_entities
                    .iter()
                    .find(|x| &x.0 == ent)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_parse_and_name_registered_models_and_protocols() {
        let c = checks().unwrap();
        for t in &c.training {
            hinrec::registry::model(&t.model).unwrap();
            ExperimentConfig::parse(&t.protocol).unwrap();
            parse_toml(&t.settings).unwrap();
        }
        assert!(c
            .training
            .iter()
            .any(|t| t.protocol.contains("positive_above")));
    }
}
