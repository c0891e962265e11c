//! HHFAN trains end to end on the synthetic fixture and beats popularity on
//! the same stored candidates; its ablations run; the same seed gives the
//! same model on any thread count; a saved model scores alone; resuming
//! reaches the same model.

use hinrec_baselines::MostPop;
use hinrec_data::{registry, EvalNegatives, Split, SplitRule};
use hinrec_eval::{pooled, sampled, Scorer};
use hinrec_graph::Hin;
use hinrec_hhfan::{Hhfan, HhfanConfig, Variant};
use hinrec_train::{
    CheckpointPolicy, FitContext, ModelParams, Progress, Silent, TrainedModel, Validation,
};

fn fixture() -> String {
    format!(
        "{}/../../fixtures/synthetic-small",
        env!("CARGO_MANIFEST_DIR")
    )
}

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

fn tiny(epochs: usize) -> HhfanConfig {
    HhfanConfig {
        dim: 8,
        epochs,
        patience: 10,
        lr: 0.01,
        positives_per_user: 10,
        batch: 128,
        ..HhfanConfig::default()
    }
}

fn hr10<S: Scorer + ?Sized>(m: &S, negs: &EvalNegatives) -> f64 {
    sampled(m, negs, &[10]).unwrap().get("HR@10").unwrap()
}

#[test]
fn hhfan_beats_popularity_on_the_fixture() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid, &split.test];
    let test = EvalNegatives::sample(&split.test, &all, 50, 2).unwrap();
    let valid = EvalNegatives::sample(&split.valid, &all[..2], 50, 3).unwrap();
    let cfg = HhfanConfig {
        dim: 16,
        tau: 1,
        include_self: true,
        ..tiny(12)
    };
    let pop_model = MostPop::fit(&split.train);
    let pop = hr10(&pop_model, &test);
    let (model, summary) =
        Hhfan::fit(&cfg, &mut context(&split, &hin, &valid, 1, &mut Silent)).unwrap();
    assert!(summary.best_epoch >= 1 && summary.epochs <= 12);
    let hr = hr10(&model, &test);
    assert!(hr > pop + 0.05, "HHFAN HR@10 {hr:.3} vs MostPop {pop:.3}");
    // The pooled protocol on the same model: AUC above popularity's.
    let lists = EvalNegatives::sample_per_user(&split.test, &all, 50, 4).unwrap();
    let auc = |m: &dyn Scorer| {
        pooled(m, &split.test, &lists, &[10])
            .unwrap()
            .get("AUC")
            .unwrap()
    };
    assert!(
        auc(&model) > auc(&pop_model),
        "{} vs {}",
        auc(&model),
        auc(&pop_model)
    );
    for variant in [Variant::L, Variant::A, Variant::N] {
        let cfg = HhfanConfig { variant, ..tiny(2) };
        let (m, _) = Hhfan::fit(&cfg, &mut context(&split, &hin, &valid, 1, &mut Silent)).unwrap();
        assert!(hr10(&m, &test) > 0.0, "{variant:?}");
    }
}

#[test]
fn a_seed_gives_the_same_model_on_any_thread_count() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid];
    let valid = EvalNegatives::sample(&split.valid, &all, 20, 3).unwrap();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let (m, _) =
                    Hhfan::fit(&tiny(2), &mut context(&split, &hin, &valid, 5, &mut Silent))
                        .unwrap();
                let pairs: Vec<(u32, u32)> = (0..30).map(|u| (u, (u * 11) % 40)).collect();
                let mut out = vec![0f32; pairs.len()];
                m.score_pairs(&pairs, &mut out).unwrap();
                out
            })
    };
    assert_eq!(run(1), run(2));
}

#[test]
fn a_saved_model_loads_without_retraining_and_explains() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid];
    let valid = EvalNegatives::sample(&split.valid, &all, 20, 3).unwrap();
    let cfg = tiny(1);
    let (model, _) = Hhfan::fit(&cfg, &mut context(&split, &hin, &valid, 3, &mut Silent)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    TrainedModel::save(&model, &path).unwrap();
    let back = ModelParams::load(&cfg, &path).unwrap();
    let users: Vec<u32> = (0..10).collect();
    let n = model.n_items();
    let (mut a, mut b) = (vec![0f32; 10 * n], vec![0f32; 10 * n]);
    model.score_users(&users, &mut a).unwrap();
    back.score_users(&users, &mut b).unwrap();
    assert_eq!(a, b);
    let names = hinrec_nn::checkpoint::load(&path).unwrap();
    for key in [
        "lstm.0.w",
        "lstm.1.b",
        "attr.wq",
        "neighbor.u",
        "nodes.0.rows",
        "groups.ids",
        "final.items",
    ] {
        assert!(names.contains_key(key), "{key}");
    }
    let why = back.explain(0, 1).unwrap();
    assert!(why.len() >= 3, "{why:?}");
    assert!(back.explain(0, 10_000).is_err());
    let other = HhfanConfig { dim: 16, ..cfg };
    assert!(ModelParams::load(&other, &path).is_err());
}

#[test]
fn resuming_from_a_checkpoint_reaches_the_same_model() {
    let (split, hin) = split_and_hin();
    let all = [&split.train, &split.valid];
    let valid = EvalNegatives::sample(&split.valid, &all, 20, 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fit = |epochs, checkpoints: CheckpointPolicy| {
        let mut silent = Silent;
        let mut ctx = context(&split, &hin, &valid, 4, &mut silent);
        ctx.checkpoints = checkpoints;
        let cfg = HhfanConfig {
            patience: 10,
            ..tiny(epochs)
        };
        let (m, _) = Hhfan::fit(&cfg, &mut ctx).unwrap();
        let pairs: Vec<(u32, u32)> = (0..30).map(|u| (u, (u * 7) % 40)).collect();
        let mut out = vec![0f32; pairs.len()];
        m.score_pairs(&pairs, &mut out).unwrap();
        out
    };
    let ckpt = CheckpointPolicy {
        dir: Some(dir.path().to_path_buf()),
        resume: true,
        tag: "t".into(),
    };
    let straight = fit(3, CheckpointPolicy::default());
    fit(2, ckpt.clone());
    let resumed = fit(3, ckpt);
    assert_eq!(straight, resumed);
}

#[test]
fn bad_settings_are_errors_before_training() {
    let (split, hin) = split_and_hin();
    let none = EvalNegatives::default();
    for bad in [
        HhfanConfig { dim: 7, ..tiny(1) },
        HhfanConfig {
            restart: 1.0,
            ..tiny(1)
        },
        HhfanConfig { tau: 0, ..tiny(1) },
        HhfanConfig { lr: 0.0, ..tiny(1) },
    ] {
        assert!(ModelParams::check(&bad).is_err(), "{bad:?}");
        assert!(Hhfan::fit(&bad, &mut context(&split, &hin, &none, 1, &mut Silent)).is_err());
    }
    let mut silent = Silent;
    let ctx = FitContext::new(&split, Validation::sampled(&none), 1, &mut silent);
    assert!(ModelParams::check_data(&tiny(1), &ctx).is_err(), "no HIN");
}
