//! NeuMF and LightGCN train end to end on the synthetic fixture, beat
//! popularity on the same stored candidates, and a run resumed from its
//! checkpoints ends where an uninterrupted one does.

use hinrec_baselines::MostPop;
use hinrec_data::{registry, EvalNegatives, Split, SplitRule};
use hinrec_eval::{sampled, Scorer};
use hinrec_neural_baselines::{LightGcnConfig, NeuMfConfig, Towers};
use hinrec_train::{CheckpointPolicy, FitContext, ModelParams, Silent, Validation};

fn split() -> Split {
    let fixture = format!(
        "{}/../../fixtures/synthetic-small",
        env!("CARGO_MANIFEST_DIR")
    );
    let ds = registry::load(&fixture, None).unwrap();
    SplitRule::LeaveOneOutLatest
        .apply(&ds.interactions, 0)
        .unwrap()
        .carve_validation(SplitRule::LeaveOneOutLatest, 1)
        .unwrap()
}

fn hr10<S: Scorer + ?Sized>(m: &S, negs: &EvalNegatives) -> f64 {
    sampled(m, negs, &[10]).unwrap().get("HR@10").unwrap()
}

/// Test HR@10 of `params` fitted on the fixture, and of a second fit that
/// stops after `cut` epochs and resumes from its checkpoints (the two must
/// score the test candidates identically).
fn fit_and_resume<P: ModelParams>(
    params: &P,
    cut: P,
    split: &Split,
    test: &EvalNegatives,
    valid: &EvalNegatives,
) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let policy = |resume| CheckpointPolicy {
        dir: Some(dir.path().to_path_buf()),
        resume,
        tag: "t".into(),
    };
    let fit = |p: &P, checkpoints| {
        let mut progress = Silent;
        let mut ctx = FitContext::new(split, Validation::sampled(valid), 5, &mut progress);
        ctx.checkpoints = checkpoints;
        p.fit(&mut ctx).unwrap().model
    };
    let whole = fit(params, CheckpointPolicy::default());
    fit(&cut, policy(false));
    let resumed = fit(params, policy(true));
    let pairs = test.candidate_pairs();
    let (mut a, mut b) = (vec![0f32; pairs.len()], vec![0f32; pairs.len()]);
    whole.score_pairs(&pairs, &mut a).unwrap();
    resumed.score_pairs(&pairs, &mut b).unwrap();
    assert_eq!(
        a, b,
        "a resumed run must end where an uninterrupted one does"
    );
    hr10(&whole, test)
}

#[test]
fn each_beats_popularity_and_resumes_exactly() {
    let split = split();
    let all = [&split.train, &split.valid, &split.test];
    let test = EvalNegatives::sample(&split.test, &all, 50, 2).unwrap();
    let valid = EvalNegatives::sample(&split.valid, &all[..2], 50, 3).unwrap();
    let pop = hr10(&MostPop::fit(&split.train), &test);
    let lgcn = LightGcnConfig {
        dim: 16,
        layers: 2,
        lr: 0.01,
        batch: 256,
        epochs: 12,
        patience: 100,
        ..LightGcnConfig::default()
    };
    let cut = LightGcnConfig {
        epochs: 5,
        ..lgcn.clone()
    };
    let hr = fit_and_resume(&lgcn, cut, &split, &test, &valid);
    assert!(hr > pop + 0.05, "LightGCN {hr:.3} vs MostPop {pop:.3}");
    let neumf = NeuMfConfig {
        gmf_dim: 16,
        mlp_dim: 16,
        hidden: vec![32, 16],
        lr: 0.005,
        batch: 512,
        epochs: 8,
        patience: 100,
        ..NeuMfConfig::default()
    };
    let cut = NeuMfConfig {
        epochs: 3,
        ..neumf.clone()
    };
    let hr = fit_and_resume(&neumf, cut, &split, &test, &valid);
    assert!(hr > pop + 0.05, "NeuMF {hr:.3} vs MostPop {pop:.3}");
    let gmf = NeuMfConfig {
        towers: Towers::Gmf,
        ..neumf
    };
    let cut = NeuMfConfig {
        epochs: 3,
        ..gmf.clone()
    };
    let hr = fit_and_resume(&gmf, cut, &split, &test, &valid);
    assert!(hr > pop + 0.05, "GMF {hr:.3} vs MostPop {pop:.3}");
}
