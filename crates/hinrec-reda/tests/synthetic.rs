//! REDA trains end to end on the synthetic fixture and beats popularity on
//! the same stored candidates; its ablations run; a resumed run matches an
//! uninterrupted one; a saved model scores alone.

use hinrec_baselines::MostPop;
use hinrec_data::{registry, EvalNegatives, Split, SplitRule};
use hinrec_eval::{sampled, Scorer};
use hinrec_reda::{Reda, RedaConfig, Variant};
use hinrec_train::{
    Callbacks, CheckpointPolicy, EpochReport, FitContext, ModelParams, Progress, Silent,
    TrainedModel, Validation,
};

fn split() -> Split {
    let dir = format!(
        "{}/../../fixtures/synthetic-small",
        env!("CARGO_MANIFEST_DIR")
    );
    let ds = registry::load(&dir, None).unwrap();
    SplitRule::LeaveOneOutLatest
        .apply(&ds.interactions, 0)
        .unwrap()
        .carve_validation(SplitRule::LeaveOneOutLatest, 1)
        .unwrap()
}

fn context<'a>(
    split: &'a Split,
    valid: &'a EvalNegatives,
    seed: u64,
    progress: &'a mut dyn Progress,
) -> FitContext<'a> {
    FitContext::new(split, Validation::sampled(valid), seed, progress)
}

fn small() -> RedaConfig {
    RedaConfig {
        dim: 16,
        aspects: 2,
        memory_slots: 8,
        batch: 256,
        epochs: 15,
        lr: 0.01,
        ..RedaConfig::default()
    }
}

fn hr10<S: Scorer + ?Sized>(m: &S, negs: &EvalNegatives) -> f64 {
    sampled(m, negs, &[10]).unwrap().get("HR@10").unwrap()
}

#[test]
fn reda_beats_popularity_on_the_fixture() {
    let split = split();
    let all = [&split.train, &split.valid, &split.test];
    let test = EvalNegatives::sample(&split.test, &all, 50, 2).unwrap();
    let valid = EvalNegatives::sample(&split.valid, &all[..2], 50, 3).unwrap();
    let pop = hr10(&MostPop::fit(&split.train), &test);
    let (model, summary) =
        Reda::fit(&small(), &mut context(&split, &valid, 1, &mut Silent)).unwrap();
    assert!(summary.best_epoch >= 1);
    let hr = hr10(&model, &test);
    assert!(hr > pop + 0.05, "REDA HR@10 {hr:.3} vs MostPop {pop:.3}");
    for variant in [Variant::Npil, Variant::Nmal] {
        let cfg = RedaConfig {
            variant,
            epochs: 2,
            ..small()
        };
        let (m, _) = Reda::fit(&cfg, &mut context(&split, &valid, 1, &mut Silent)).unwrap();
        assert!(hr10(&m, &test) > 0.0, "{variant:?}");
    }
}

#[test]
fn resumed_training_matches_an_uninterrupted_run() {
    let split = split();
    let all = [&split.train, &split.valid];
    let valid = EvalNegatives::sample(&split.valid, &all, 20, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = |epochs| RedaConfig {
        epochs,
        patience: 100,
        ..small()
    };
    let ckpt = |resume| CheckpointPolicy {
        dir: Some(dir.path().to_path_buf()),
        resume,
        tag: "reda test".into(),
    };
    let (whole, _) = Reda::fit(&cfg(3), &mut context(&split, &valid, 1, &mut Silent)).unwrap();
    let mut silent = Silent;
    let mut ctx = context(&split, &valid, 1, &mut silent);
    ctx.checkpoints = ckpt(false);
    Reda::fit(&cfg(2), &mut ctx).unwrap();
    let mut epochs = Vec::new();
    let mut progress = Callbacks(|_, _| {}, |r: &EpochReport| epochs.push(r.epoch));
    let mut ctx = context(&split, &valid, 1, &mut progress);
    ctx.checkpoints = ckpt(true);
    let (resumed, _) = Reda::fit(&cfg(3), &mut ctx).unwrap();
    assert_eq!(epochs, vec![3]);
    let pairs = [(0u32, 1u32), (5, 7), (9, 2)];
    // Patience 100 and a deterministic run end both on the same best epoch.
    assert_eq!(
        whole.score_pairs(&pairs).unwrap(),
        resumed.score_pairs(&pairs).unwrap()
    );
}

#[test]
fn a_saved_model_loads_without_its_training_data() {
    let split = split();
    let all = [&split.train, &split.valid];
    let valid = EvalNegatives::sample(&split.valid, &all, 20, 3).unwrap();
    let cfg = RedaConfig {
        epochs: 1,
        user_pairs: 5,
        ..small()
    };
    let (model, _) = Reda::fit(&cfg, &mut context(&split, &valid, 7, &mut Silent)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    TrainedModel::save(&model, &path).unwrap();
    let back = ModelParams::load(&cfg, &path).unwrap();
    let pairs = [(0u32, 1u32), (5, 7), (9, 2), (9, 3)];
    assert_eq!(
        model.score_pairs(&pairs).unwrap(),
        back.score_pairs(&pairs).unwrap()
    );
    let names = hinrec_nn::checkpoint::load(&path).unwrap();
    for n in [
        "items.rows",
        "memory.keys",
        "weight.hidden.weight",
        "weight.h",
        "history.items",
    ] {
        assert!(names.contains_key(n), "{n}");
    }
}

#[test]
fn bad_configurations_are_errors() {
    let cfg = RedaConfig {
        dim: 0,
        ..RedaConfig::default()
    };
    assert!(ModelParams::check(&cfg).is_err());
    let split = split();
    let none = EvalNegatives::default();
    assert!(Reda::fit(&cfg, &mut context(&split, &none, 1, &mut Silent)).is_err());
}
