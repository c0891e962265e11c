//! LGRec trains end to end on the synthetic fixture and beats popularity on
//! the same stored candidates; its ablations run.

use hinrec_baselines::MostPop;
use hinrec_data::{registry, EvalNegatives, Split, SplitRule};
use hinrec_eval::sampled;
use hinrec_graph::Hin;
use hinrec_lgrec::{Lgrec, LgrecConfig, Variant};

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
    let pop = sampled(&MostPop::fit(&split.train), &test, &[10])
        .get("HR@10")
        .unwrap();
    let (model, summary) = Lgrec::fit(&hin, &split, &valid, &cfg, 1, |_| {}).unwrap();
    assert!(summary.best_epoch >= 1 && summary.epochs <= 8);
    let hr = sampled(&model.scorer_for(&test).unwrap(), &test, &[10])
        .get("HR@10")
        .unwrap();
    assert!(hr > pop + 0.05, "LGRec HR@10 {hr:.3} vs MostPop {pop:.3}");
    for variant in [Variant::NoAtt, Variant::NoGlo] {
        let cfg = LgrecConfig {
            variant,
            epochs: 2,
            ..cfg.clone()
        };
        let (m, _) = Lgrec::fit(&hin, &split, &valid, &cfg, 1, |_| {}).unwrap();
        let hr = sampled(&m.scorer_for(&test).unwrap(), &test, &[10])
            .get("HR@10")
            .unwrap();
        assert!(hr > 0.0, "{variant:?}");
    }
}

#[test]
fn bad_configurations_are_errors() {
    let (split, hin) = split_and_hin();
    let none = EvalNegatives::default();
    let cfg = LgrecConfig {
        meta_paths: vec![],
        ..LgrecConfig::default()
    };
    assert!(Lgrec::fit(&hin, &split, &none, &cfg, 1, |_| {}).is_err());
    let cfg = LgrecConfig {
        meta_paths: vec!["UXUI".into()],
        ..LgrecConfig::default()
    };
    assert!(Lgrec::fit(&hin, &split, &none, &cfg, 1, |_| {}).is_err());
}

#[test]
fn resuming_from_a_checkpoint_reaches_the_same_model() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid];
    let valid = EvalNegatives::sample(&split.valid, &all, 20, 3).unwrap();
    let cfg = tiny_config;
    let dir = tempfile::tempdir().unwrap();
    let opts = hinrec_lgrec::FitOptions {
        checkpoint_dir: Some(dir.path().to_path_buf()),
        resume: true,
    };
    let fit = |epochs, opts: &hinrec_lgrec::FitOptions| {
        let mut epochs_run = Vec::new();
        let (m, _) = Lgrec::fit_with(
            &hin,
            &split,
            &valid,
            &cfg(epochs),
            4,
            opts,
            &mut |_, _| {},
            &mut |r| epochs_run.push(r.epoch),
        )
        .unwrap();
        (m, epochs_run)
    };
    let (whole, _) = fit(3, &hinrec_lgrec::FitOptions::default());
    let (_, first) = fit(2, &opts);
    let (resumed, second) = fit(3, &opts);
    assert_eq!((first, second), (vec![1, 2], vec![3]));
    assert!(dir.path().join("best.safetensors").exists());
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
    let (plain, s_plain) = Lgrec::fit(&hin, &split, &valid, &cfg, 5, |_| {}).unwrap();
    let (audited, s_audited, per_epoch) = Lgrec::fit_audited(
        &hin,
        &split,
        &valid,
        Some(&test),
        &cfg,
        5,
        &hinrec_lgrec::FitOptions::default(),
        &mut |_, _| {},
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(per_epoch.len(), s_audited.epochs);
    assert_eq!(s_plain.best_epoch, s_audited.best_epoch);
    let pairs: Vec<(u32, u32)> = (0..20).map(|u| (u, (u * 7) % 30)).collect();
    assert_eq!(
        plain.score_pairs(&pairs).unwrap(),
        audited.score_pairs(&pairs).unwrap()
    );
    // The kept model is the best epoch's, so its test figure is that
    // epoch's audit entry.
    let at_best = &per_epoch[s_audited.best_epoch - 1];
    let kept = sampled(&audited.scorer_for(&test).unwrap(), &test, &[10]);
    assert_eq!(kept.get("NDCG@10"), at_best.get("NDCG@10"));
}
