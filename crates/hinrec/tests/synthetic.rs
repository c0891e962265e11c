//! End-to-end on synthetic data: the pipeline trains, collaborative models
//! beat popularity, and a saved model evaluates and recommends as before.

use std::path::PathBuf;

use hinrec::data::{registry, synthetic, Dataset};
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::model_dir::{self, RunInfo};
use hinrec::models::{fit, ModelKind};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/synthetic-small")
}

/// The fixture has 150 items and users with up to 75: 50 negatives fit.
fn fixture_config() -> ExperimentConfig {
    ExperimentConfig {
        negatives: 50,
        ..ExperimentConfig::default()
    }
}

fn hr10(p: &Prepared, kind: ModelKind, cfg: &ExperimentConfig, seed: u64) -> f64 {
    let f = fit(kind, p, cfg, seed, &mut |_| {}).unwrap();
    p.evaluate_sampled(f.scorer(), kind.name(), seed, &[10])
        .metrics
        .get("HR@10")
        .unwrap()
}

#[test]
fn fixture_matches_its_generator_settings() {
    let text = std::fs::read_to_string(fixture().with_extension("toml")).unwrap();
    let cfg: synthetic::SyntheticConfig = toml::from_str(&text).unwrap();
    let generated = synthetic::generate(&cfg).unwrap();
    let loaded = registry::load(fixture().to_str().unwrap(), None).unwrap();
    assert_eq!(loaded.interactions, generated.interactions);
}

#[test]
fn bpr_and_itemknn_beat_popularity_on_the_fixture() {
    let ds: Dataset = registry::load(fixture().to_str().unwrap(), None).unwrap();
    let cfg = fixture_config();
    let p = Prepared::new(&ds, &cfg).unwrap();
    let pop = hr10(&p, ModelKind::MostPop, &cfg, 1);
    let bpr = hr10(&p, ModelKind::Bpr, &cfg, 1);
    let knn = hr10(&p, ModelKind::ItemKnn, &cfg, 1);
    assert!(bpr > pop + 0.08, "BPR {bpr:.3} vs MostPop {pop:.3}");
    assert!(knn > pop + 0.08, "ItemKNN {knn:.3} vs MostPop {pop:.3}");
}

#[test]
fn bpr_beats_popularity_clearly_on_the_default_synthetic_data() {
    let ds = registry::load("synthetic", None).unwrap();
    let cfg = ExperimentConfig::default();
    let p = Prepared::new(&ds, &cfg).unwrap();
    let pop = hr10(&p, ModelKind::MostPop, &cfg, 3);
    let bpr = hr10(&p, ModelKind::Bpr, &cfg, 3);
    assert!(bpr > pop + 0.1, "BPR {bpr:.3} vs MostPop {pop:.3}");
}

#[test]
fn saved_model_evaluates_identically_and_recommends_unseen_items() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture().to_str().unwrap().to_string();
    let ds = registry::load(&spec, None).unwrap();
    let cfg = fixture_config();
    let p = Prepared::new(&ds, &cfg).unwrap();
    let fitted = fit(ModelKind::Bpr, &p, &cfg, 2, &mut |_| {}).unwrap();
    let info = RunInfo {
        model: ModelKind::Bpr,
        seed: 2,
        data: spec,
        data_root: None,
        dataset: ds.name.clone(),
        split: p.split_label.clone(),
        config: cfg,
    };
    model_dir::save(dir.path(), &info, &fitted.model, &ds, &p).unwrap();
    let loaded = model_dir::load(dir.path()).unwrap();
    let pairs = |x: &hinrec::data::Interactions| x.pairs().collect::<Vec<_>>();
    let (a, b) = (&loaded.prepared.split, &p.split);
    assert!(pairs(&a.train) == pairs(&b.train) && pairs(&a.valid) == pairs(&b.valid));
    assert!(pairs(&a.test) == pairs(&b.test));
    assert_eq!(loaded.prepared.test_negatives, p.test_negatives);
    let before = p.evaluate_full(fitted.scorer(), "bpr", 2, &[10]);
    let after = loaded
        .prepared
        .evaluate_full(loaded.model.scorer(), "bpr", 2, &[10]);
    assert_eq!(before.metrics, after.metrics);
    let top = hinrec::recommend::top_k(loaded.model.scorer(), &loaded.prepared.split, 0, 10);
    assert_eq!(top.len(), 10);
    assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
    assert!(top
        .iter()
        .all(|(i, _)| !p.split.known_items(0).any(|k| k == *i)));
    let e = model_dir::load(&dir.path().join("nope"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a model directory"), "{e}");
}
