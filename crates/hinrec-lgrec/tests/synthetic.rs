//! LGRec trains end to end on the synthetic fixture and beats popularity on
//! the same stored candidates; its ablations run.

use hinrec_baselines::MostPop;
use hinrec_data::{registry, EvalNegatives, SplitRule};
use hinrec_eval::sampled;
use hinrec_graph::Hin;
use hinrec_lgrec::{Lgrec, LgrecConfig, Variant};

fn fixture() -> String {
    format!(
        "{}/../../fixtures/synthetic-small",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn lgrec_beats_popularity_on_the_fixture() {
    let ds = registry::load(&fixture(), None).unwrap();
    let split = SplitRule::LeaveOneOutLatest
        .apply(&ds.interactions, 0)
        .unwrap()
        .carve_validation(SplitRule::LeaveOneOutLatest, 1)
        .unwrap();
    let all = [&split.train, &split.valid, &split.test];
    let test = EvalNegatives::sample(&split.test, &all, 50, 2).unwrap();
    let valid = EvalNegatives::sample(&split.valid, &all[..2], 50, 3).unwrap();
    let hin = Hin::from_dataset(&ds, &split.train);
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
    let ds = registry::load(&fixture(), None).unwrap();
    let split = SplitRule::LeaveOneOutLatest
        .apply(&ds.interactions, 0)
        .unwrap();
    let hin = Hin::from_dataset(&ds, &split.train);
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
