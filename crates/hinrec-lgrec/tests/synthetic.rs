//! LGRec trains end to end on the synthetic fixture and beats popularity on
//! the same stored candidates; its ablations run; a saved model scores
//! alone; resuming and auditing leave training unchanged.

use hinrec_baselines::MostPop;
use hinrec_data::{registry, EvalNegatives, Split, SplitRule};
use hinrec_eval::{sampled, Scorer};
use hinrec_graph::Hin;
use hinrec_lgrec::{Lgrec, LgrecConfig, Variant};
use hinrec_train::{
    CheckpointPolicy, EpochReport, FitContext, ModelParams, Progress, Silent, TrainedModel,
    Validation,
};

fn fixture() -> String {
    format!(
        "{}/../../fixtures/synthetic-small",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The fixture split leave-one-out (latest) with a validation item carved
/// the same way, and its HIN from training interactions.
fn split_and_hin() -> (Split, Hin) {
    let ds = registry::load(&fixture(), None).unwrap();
    let split = SplitRule::LeaveOneOutLatest
        .apply(&ds.interactions, 0)
        .unwrap()
        .carve_validation(SplitRule::LeaveOneOutLatest, 1)
        .unwrap();
    let hin = Hin::from_dataset(&ds, &split.train);
    (split, hin)
}

/// The context of a fit on the fixture.
fn context<'a>(
    split: &'a Split,
    hin: &'a Hin,
    valid: &'a EvalNegatives,
    seed: u64,
    progress: &'a mut dyn Progress,
) -> FitContext<'a> {
    FitContext {
        hin: Some(hin),
        ..FitContext::new(split, Validation::sampled(valid), seed, progress)
    }
}

/// A small LGRec that trains in well under a second, without early stop.
fn tiny_config(epochs: usize) -> LgrecConfig {
    LgrecConfig {
        dim: 8,
        k_user: 10,
        k_item: 10,
        epochs,
        patience: 10,
        lr: 0.01,
        meta_paths: vec!["UIUI".into()],
        bpr_epochs: 5,
        ..LgrecConfig::default()
    }
}

fn hr10<S: Scorer + ?Sized>(m: &S, negs: &EvalNegatives) -> f64 {
    sampled(m, negs, &[10]).unwrap().get("HR@10").unwrap()
}

#[test]
fn lgrec_beats_popularity_on_the_fixture() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid, &split.test];
    let test = EvalNegatives::sample(&split.test, &all, 50, 2).unwrap();
    let valid = EvalNegatives::sample(&split.valid, &all[..2], 50, 3).unwrap();
    let cfg = LgrecConfig {
        dim: 16,
        k_user: 20,
        k_item: 20,
        epochs: 8,
        lr: 0.01,
        meta_paths: vec!["UIUI".into(), "UIGI".into(), "UAUI".into()],
        bpr_epochs: 20,
        ..LgrecConfig::default()
    };
    let pop = hr10(&MostPop::fit(&split.train), &test);
    let (model, summary) =
        Lgrec::fit(&cfg, &mut context(&split, &hin, &valid, 1, &mut Silent)).unwrap();
    assert!(summary.best_epoch >= 1 && summary.epochs <= 8);
    let hr = hr10(&model, &test);
    assert!(hr > pop + 0.05, "LGRec HR@10 {hr:.3} vs MostPop {pop:.3}");
    for variant in [Variant::NoAtt, Variant::NoGlo] {
        let cfg = LgrecConfig {
            variant,
            epochs: 2,
            ..cfg.clone()
        };
        let (m, _) = Lgrec::fit(&cfg, &mut context(&split, &hin, &valid, 1, &mut Silent)).unwrap();
        assert!(hr10(&m, &test) > 0.0, "{variant:?}");
    }
}

#[test]
fn bad_configurations_are_clear_errors_before_training() {
    let (split, hin) = split_and_hin();
    let none = EvalNegatives::default();
    for variant in [Variant::Full, Variant::NoAtt] {
        let cfg = LgrecConfig {
            variant,
            ..LgrecConfig::default()
        };
        let e = Lgrec::fit(&cfg, &mut context(&split, &hin, &none, 1, &mut Silent))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("needs meta-paths"), "{e}");
    }
    let cfg = LgrecConfig {
        meta_paths: vec!["UXUI".into()],
        ..LgrecConfig::default()
    };
    let e = Lgrec::fit(&cfg, &mut context(&split, &hin, &none, 1, &mut Silent))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains('X'), "{e}");
    let cfg = LgrecConfig {
        dim: 0,
        ..tiny_config(1)
    };
    assert!(ModelParams::check(&cfg).is_err());
}

#[test]
fn the_datasets_meta_paths_serve_when_the_config_names_none() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid];
    let valid = EvalNegatives::sample(&split.valid, &all, 20, 3).unwrap();
    let paths = vec!["UIUI".to_string()];
    let mut silent = Silent;
    let mut ctx = context(&split, &hin, &valid, 2, &mut silent);
    ctx.meta_paths = &paths;
    let cfg = LgrecConfig {
        meta_paths: vec![],
        ..tiny_config(1)
    };
    assert!(Lgrec::fit(&cfg, &mut ctx).is_ok());
}

#[test]
fn a_saved_model_loads_without_retraining_and_scores_the_same() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid];
    let valid = EvalNegatives::sample(&split.valid, &all, 20, 3).unwrap();
    let cfg = tiny_config(2);
    let (model, _) = Lgrec::fit(&cfg, &mut context(&split, &hin, &valid, 3, &mut Silent)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    TrainedModel::save(&model, &path).unwrap();
    let back = ModelParams::load(&cfg, &path).unwrap();
    let pairs: Vec<(u32, u32)> = (0..20).map(|u| (u, (u * 7) % 30)).collect();
    assert_eq!(
        model.score_pairs(&pairs).unwrap(),
        back.score_pairs(&pairs).unwrap()
    );
    // Named after the layers, the candle-nn way.
    let names = hinrec_nn::checkpoint::load(&path).unwrap();
    for n in [
        "f.0.weight",
        "g.1.bias",
        "a",
        "rel.2.weight",
        "out.weight",
        "items.rows",
        "items.adam.m",
        "user_neighbors.ids",
    ] {
        assert!(names.contains_key(n), "{n}");
    }
    let other = LgrecConfig { dim: 16, ..cfg };
    assert!(
        ModelParams::load(&other, &path).is_err(),
        "a 16-d model is not an 8-d file"
    );
}

#[test]
fn resuming_from_a_checkpoint_reaches_the_same_model() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid];
    let valid = EvalNegatives::sample(&split.valid, &all, 20, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fit = |epochs, checkpoints: CheckpointPolicy| {
        let mut epochs_run = Vec::new();
        let mut progress =
            hinrec_train::Callbacks(|_, _| {}, |r: &EpochReport| epochs_run.push(r.epoch));
        let mut ctx = context(&split, &hin, &valid, 4, &mut progress);
        ctx.checkpoints = checkpoints;
        let (m, _) = Lgrec::fit(&tiny_config(epochs), &mut ctx).unwrap();
        (m, epochs_run)
    };
    let ckpt = CheckpointPolicy {
        dir: Some(dir.path().to_path_buf()),
        resume: true,
        tag: "lgrec test".into(),
    };
    let (whole, _) = fit(3, CheckpointPolicy::default());
    let (_, first) = fit(2, ckpt.clone());
    let (resumed, second) = fit(3, ckpt);
    assert_eq!((first, second), (vec![1, 2], vec![3]));
    assert!(dir.path().join("epoch-00003/best.safetensors").exists());
    let pairs: Vec<(u32, u32)> = (0..20).map(|u| (u, (u * 7) % 30)).collect();
    assert_eq!(
        whole.score_pairs(&pairs).unwrap(),
        resumed.score_pairs(&pairs).unwrap()
    );
}

#[test]
fn an_audit_is_reported_per_epoch_and_leaves_training_alone() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid, &split.test];
    let test = EvalNegatives::sample(&split.test, &all, 20, 2).unwrap();
    let valid = EvalNegatives::sample(&split.valid, &all[..2], 20, 3).unwrap();
    let cfg = tiny_config(4);
    let (plain, s_plain) =
        Lgrec::fit(&cfg, &mut context(&split, &hin, &valid, 5, &mut Silent)).unwrap();
    let mut silent = Silent;
    let mut ctx = context(&split, &hin, &valid, 5, &mut silent);
    ctx.audit = Some(&test);
    let (audited, s_audited) = Lgrec::fit(&cfg, &mut ctx).unwrap();
    assert!(s_plain.audit.is_empty());
    assert_eq!(s_audited.audit.len(), s_audited.epochs);
    assert_eq!(s_plain.best_epoch, s_audited.best_epoch);
    let pairs: Vec<(u32, u32)> = (0..20).map(|u| (u, (u * 7) % 30)).collect();
    assert_eq!(
        plain.score_pairs(&pairs).unwrap(),
        audited.score_pairs(&pairs).unwrap()
    );
    // The kept model is the best epoch's, so its test figure is that
    // epoch's audit entry.
    let at_best = &s_audited.audit[s_audited.best_epoch - 1];
    let kept = sampled(&audited, &test, &[10]).unwrap();
    assert_eq!(kept.get("NDCG@10"), at_best.get("NDCG@10"));
}
