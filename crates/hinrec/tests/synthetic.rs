//! End to end on synthetic data, through the registry as the command line
//! uses it: every model trains, collaborative and paper models beat
//! popularity, LGRec runs on a user's own manifest, a saved model
//! evaluates and recommends as before, and a killed `hinrec train`
//! resumes to the same result.

use std::path::{Path, PathBuf};
use std::process::Command;

use hinrec::data::{registry, synthetic, Dataset};
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::model_dir::{self, RunInfo};
use hinrec::models::{fit_quiet, params};
use hinrec::registry::{parse_toml, MODELS};

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

/// Sampled HR@10 of registered `model` with its demo settings plus
/// `extra` (TOML). A model with a retrieval index (GLRS) is measured as it
/// serves and as its paper evaluates: within its candidates.
fn hr10(
    ds: &Dataset,
    p: &Prepared,
    cfg: &ExperimentConfig,
    model: &str,
    extra: &str,
    seed: u64,
) -> f64 {
    let entry = hinrec::registry::model(model).unwrap();
    let mut sets = parse_toml(entry.demo).unwrap();
    sets.extend(parse_toml(extra).unwrap());
    let params = params(entry, cfg, &sets).unwrap();
    let hin = params.needs_hin().then(|| p.hin(ds));
    let f = fit_quiet(params.as_ref(), p, hin.as_ref(), cfg, seed).unwrap();
    let m = f.model.as_ref();
    let cands = |u: u32| m.candidates(u);
    let report = if m.candidates(0).is_some() {
        let pruned = hinrec::eval::Pruned {
            scorer: m,
            candidates: &cands,
        };
        p.evaluate_sampled(&pruned, model, seed, &[10])
    } else {
        p.evaluate_sampled(m, model, seed, &[10])
    };
    report.unwrap().metrics.get("HR@10").unwrap()
}

/// What a model directory records of a run.
struct Run<'a> {
    model: &'a str,
    params: &'a dyn hinrec::train::AnyParams,
    seed: u64,
    data: &'a str,
}

/// `model` written to a model directory at `out` as `hinrec train` writes
/// it, and read back.
fn save_and_load(
    out: &Path,
    run: &Run<'_>,
    model: &dyn hinrec::train::TrainedModel,
    ds: &Dataset,
    p: &Prepared,
    cfg: &ExperimentConfig,
) -> model_dir::Loaded {
    let info = RunInfo {
        model: run.model.into(),
        seed: run.seed,
        data: run.data.into(),
        data_root: None,
        dataset: ds.name.clone(),
        split: p.split_label.clone(),
        config: cfg.clone(),
        params: hinrec::models::resolved(run.params, p).to_toml().unwrap(),
    };
    model_dir::check_target(out, false).unwrap();
    model_dir::save(out, &info, model, ds, p, None).unwrap();
    model_dir::load(out).unwrap()
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
    let pop = hr10(&ds, &p, &cfg, "mostpop", "", 1);
    let bpr = hr10(&ds, &p, &cfg, "bpr", "", 1);
    let knn = hr10(&ds, &p, &cfg, "itemknn", "", 1);
    assert!(bpr > pop + 0.08, "BPR {bpr:.3} vs MostPop {pop:.3}");
    assert!(knn > pop + 0.08, "ItemKNN {knn:.3} vs MostPop {pop:.3}");
}

#[test]
fn every_registered_model_beats_popularity_on_the_default_synthetic_data() {
    let ds = registry::load("synthetic", None).unwrap();
    let cfg = ExperimentConfig::default();
    let p = Prepared::new(&ds, &cfg).unwrap();
    let pop = hr10(&ds, &p, &cfg, "mostpop", "", 3);
    let mut below = Vec::new();
    for m in MODELS.iter().filter(|m| m.name != "mostpop") {
        let hr = hr10(&ds, &p, &cfg, m.name, "", 3);
        eprintln!("{} {hr:.3} vs MostPop {pop:.3}", m.name);
        if hr <= pop + 0.05 {
            below.push(format!("{} {hr:.3}", m.name));
        }
    }
    assert!(
        below.is_empty(),
        "not 0.05 above MostPop's {pop:.3}: {below:?}"
    );
}

/// `hinrec synth` output as a user's own data: the written manifest with
/// the meta-paths replaced by `paths` (none: the key removed).
fn own_dataset(dir: &Path, paths: Option<&str>) -> PathBuf {
    let ds = synthetic::generate(&synthetic::SyntheticConfig::default()).unwrap();
    synthetic::write_folder(&ds, dir).unwrap();
    let manifest = dir.join("manifest.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut t: toml::Table = text.parse().unwrap();
    t.remove("metapaths");
    if let Some(p) = paths {
        t.insert(
            "metapaths".into(),
            parse_toml(&format!("v = {p}")).unwrap()["v"].clone(),
        );
    }
    std::fs::write(&manifest, toml::to_string(&t).unwrap()).unwrap();
    manifest
}

#[test]
fn lgrec_trains_on_a_manifest_hinrec_does_not_ship_and_beats_popularity() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = own_dataset(dir.path(), Some(r#"["UIUI", "UIGI", "UAUI"]"#));
    let ds = registry::load(manifest.to_str().unwrap(), None).unwrap();
    let cfg = ExperimentConfig::default();
    let p = Prepared::new(&ds, &cfg).unwrap();
    assert_eq!(p.meta_paths, ["UIUI", "UIGI", "UAUI"]);
    let pop = hr10(&ds, &p, &cfg, "mostpop", "", 1);
    let lgrec = hr10(&ds, &p, &cfg, "lgrec", "", 1);
    assert!(lgrec > pop + 0.05, "LGRec {lgrec:.3} vs MostPop {pop:.3}");
}

#[test]
fn meta_path_mistakes_are_errors_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ExperimentConfig::default();
    let cases = [
        (None, "lgrec-noatt", "needs meta-paths"),
        (Some(r#"["UIXI"]"#), "lgrec", "X"),
    ];
    for (paths, model, want) in cases {
        let manifest = own_dataset(dir.path(), paths);
        let ds = registry::load(manifest.to_str().unwrap(), None).unwrap();
        let p = Prepared::new(&ds, &cfg).unwrap();
        let entry = hinrec::registry::model(model).unwrap();
        let params = params(entry, &cfg, &toml::Table::new()).unwrap();
        let hin = p.hin(&ds);
        let e = fit_quiet(params.as_ref(), &p, Some(&hin), &cfg, 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(want), "{model} {paths:?}: {e}");
    }
}

#[test]
fn saved_models_evaluate_identically_and_recommend_unseen_items() {
    let spec = fixture().to_str().unwrap().to_string();
    let ds = registry::load(&spec, None).unwrap();
    let cfg = fixture_config();
    let p = Prepared::new(&ds, &cfg).unwrap();
    let hin = p.hin(&ds);
    let paths = parse_toml("meta_paths = [\"UIUI\"]").unwrap();
    for entry in MODELS {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model");
        let mut sets = parse_toml(entry.demo).unwrap();
        if entry.table == "lgrec" {
            sets.extend(paths.clone());
        }
        let params = params(entry, &cfg, &sets).unwrap();
        let fitted = fit_quiet(params.as_ref(), &p, Some(&hin), &cfg, 2).unwrap();
        let run = Run {
            model: entry.name,
            params: params.as_ref(),
            seed: 2,
            data: &spec,
        };
        let loaded = save_and_load(&out, &run, fitted.model.as_ref(), &ds, &p, &cfg);
        let pairs = |x: &hinrec::data::Interactions| x.pairs().collect::<Vec<_>>();
        let (a, b) = (&loaded.prepared.split, &p.split);
        assert!(pairs(&a.train) == pairs(&b.train) && pairs(&a.valid) == pairs(&b.valid));
        assert!(pairs(&a.test) == pairs(&b.test));
        assert_eq!(loaded.prepared.test_negatives, p.test_negatives);
        let before = p
            .evaluate_full(fitted.model.as_ref(), entry.name, 2, &[10])
            .unwrap();
        let after = loaded
            .prepared
            .evaluate_full(loaded.model.as_ref(), entry.name, 2, &[10])
            .unwrap();
        assert_eq!(before.metrics, after.metrics, "{}", entry.name);
        let top =
            hinrec::recommend::top_k(loaded.model.as_ref(), &loaded.prepared.split, 0, 10).unwrap();
        assert_eq!(top.len(), 10);
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(top
            .iter()
            .all(|(i, _)| !p.split.known_items(0).any(|k| k == *i)));
        let why = loaded.model.explain(0, top[0].0).unwrap();
        match entry.paper {
            "baseline" => assert!(why.is_empty()),
            _ => assert!(!why.is_empty(), "{} explains", entry.name),
        }
        for r in &why {
            if let hinrec::train::Reason::Items { weights, .. } = r {
                assert!(weights.iter().all(|(i, _)| p.split.train.contains(0, *i)));
            }
        }
        if entry.name == "lgrec" {
            let sum: f32 = match &why[0] {
                hinrec::train::Reason::Items { weights, .. } => weights.iter().map(|w| w.1).sum(),
                _ => 0.0,
            };
            assert!(sum > 0.0 && sum <= 1.0 + 1e-5, "attention weights {sum}");
            assert!(
                matches!(&why[2], hinrec::train::Reason::Values { values, .. } if values.len() == 1 && values[0].0 == "UIUI")
            );
        }
        let e = model_dir::check_target(&out, false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--force"), "{e}");
    }
    let e = model_dir::load(&fixture().join("nope"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a model directory"), "{e}");
}

fn hinrec(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hinrec"));
    c.args(args).env("CANDLE_NUM_THREADS", "1");
    c
}

/// The final line of `hinrec evaluate --json` for `dir`.
fn evaluate(dir: &Path) -> serde_json::Value {
    let out = hinrec(&["evaluate", "--model-dir", dir.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_object_mut().unwrap().remove("wall_s");
    v
}

#[test]
fn a_killed_training_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture();
    let args = |out: &Path| {
        vec![
            "train".to_string(),
            "--model".into(),
            "lgrec".into(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--config".into(),
            dir.path().join("cfg.toml").to_str().unwrap().into(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--threads".into(),
            "2".into(),
        ]
    };
    std::fs::write(
        dir.path().join("cfg.toml"),
        "negatives = 50\n[lgrec]\ndim = 8\nk_user = 10\nk_item = 10\nepochs = 12\npatience = 12\nlr = 0.01\nbpr_epochs = 5\nmeta_paths = [\"UIUI\"]\nbatch = 64\n",
    )
    .unwrap();
    let whole = dir.path().join("whole");
    let a: Vec<String> = args(&whole);
    let st = hinrec(&a.iter().map(String::as_str).collect::<Vec<_>>())
        .status()
        .unwrap();
    assert!(st.success());
    let killed = dir.path().join("killed");
    let a: Vec<String> = args(&killed);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let ckpt = dir.path().join(".killed.checkpoints");
    let has_checkpoint = || {
        std::fs::read_dir(&ckpt).is_ok_and(|mut rd| {
            rd.any(|e| {
                e.is_ok_and(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("epoch-") && !n.ends_with(".tmp")
                })
            })
        })
    };
    let mut child = hinrec(&a)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !has_checkpoint() && t.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(has_checkpoint(), "no checkpoint within a minute");
    hinrec::paths::copy_dir(&ckpt, &dir.path().join(".other.checkpoints")).unwrap();
    assert!(
        !killed.join("model.safetensors").exists(),
        "killed after the end"
    );
    let mut resumed: Vec<&str> = a.clone();
    resumed.push("--resume");
    let out = hinrec(&resumed).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming"));
    assert_eq!(evaluate(&whole), evaluate(&killed));
    // Other parameters than the checkpoint's are refused.
    let other = dir.path().join("other");
    let a: Vec<String> = args(&other);
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    a.extend(["--resume", "--set", "lr=0.02"]);
    let out = hinrec(&a).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other settings"));
}

/// DURation's labelled protocol on the synthetic data, whose ratings
/// follow the user's group (in-group 3-5 stars, others 1-4): every rated
/// row kept, above 3 positive, a global split, AUC validation.
#[test]
fn duration_beats_popularity_on_labelled_synthetic_ratings() {
    let ds = registry::load("synthetic", None).unwrap();
    let cfg = ExperimentConfig::parse(
        "split = { kind = \"global-ratio\", train = 0.7, valid = 0.2 }\npositive_above = 3.0\nmetric = \"AUC\"",
    )
    .unwrap();
    let p = Prepared::new(&ds, &cfg).unwrap();
    let ls = p.labelled.as_ref().unwrap();
    // The positives' split is what baselines train on; the rated rows
    // include the low ratings.
    assert!(ls.rated.train.nnz() > p.split.train.nnz());
    assert!(p.test_rows.iter().any(|r| !r.2) && p.test_rows.iter().any(|r| r.2));
    let hin = p.hin(&ds);
    let auc = |model: &str| {
        let entry = hinrec::registry::model(model).unwrap();
        let params = params(entry, &cfg, &parse_toml(entry.demo).unwrap()).unwrap();
        let f = fit_quiet(params.as_ref(), &p, Some(&hin), &cfg, 1).unwrap();
        p.evaluate_labelled(f.model.as_ref(), model, 1)
            .unwrap()
            .metrics
            .get("AUC")
            .unwrap()
    };
    let pop = auc("mostpop");
    let duration = auc("duration");
    // A model directory keeps the labelled test rows and evaluates the same.
    let entry = hinrec::registry::model("duration").unwrap();
    let params = params(entry, &cfg, &parse_toml(entry.demo).unwrap()).unwrap();
    let f = fit_quiet(params.as_ref(), &p, Some(&hin), &cfg, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = Run {
        model: "duration",
        params: params.as_ref(),
        seed: 1,
        data: "synthetic",
    };
    let loaded = save_and_load(
        &dir.path().join("model"),
        &run,
        f.model.as_ref(),
        &ds,
        &p,
        &cfg,
    );
    assert_eq!(loaded.prepared.test_rows, p.test_rows);
    let before = p
        .evaluate_labelled(f.model.as_ref(), "duration", 1)
        .unwrap();
    let after = loaded
        .prepared
        .evaluate_labelled(loaded.model.as_ref(), "duration", 1)
        .unwrap();
    assert_eq!(before.metrics, after.metrics);
    assert!(
        duration > pop + 0.05,
        "DURation {duration:.3} vs MostPop {pop:.3}"
    );
    // The ranking protocols refuse nothing, but the labelled one needs labels.
    let implicit = Prepared::new(&ds, &ExperimentConfig::default()).unwrap();
    assert!(implicit.labelled.is_none());
    let e = ExperimentConfig::parse("positive_above = 3.0").unwrap_err();
    assert!(format!("{e:#}").contains("AUC"), "{e:#}");
}
