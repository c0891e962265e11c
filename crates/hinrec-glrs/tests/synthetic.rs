//! GLRS end to end on the synthetic HIN: a killed fit resumes from its
//! per-stage checkpoints to the uninterrupted model, a fit is the same
//! with and without the space cache, and the retrieval stage holds most
//! of what exhaustive ranking finds.

use hinrec_data::{synthetic, EvalNegatives, Split, SplitRule};
use hinrec_eval::{full_ranking, Pruned, Scorer};
use hinrec_glrs::{clear_cache, Glrs, GlrsConfig, Variant};
use hinrec_train::{CheckpointPolicy, FitContext, Silent, Validation};

fn data() -> (Split, EvalNegatives) {
    let ds = synthetic::generate(&synthetic::SyntheticConfig {
        n_users: 150,
        n_items: 120,
        ..synthetic::SyntheticConfig::default()
    })
    .unwrap();
    let split = SplitRule::LeaveOneOutRandom
        .apply(&ds.interactions, 1)
        .unwrap()
        .carve_validation(SplitRule::LeaveOneOutRandom, 2)
        .unwrap();
    let valid = EvalNegatives::sample(&split.valid, &[&split.train, &split.valid], 30, 3).unwrap();
    (split, valid)
}

fn cfg(epochs: usize) -> GlrsConfig {
    GlrsConfig {
        variant: Variant::Ap,
        epochs,
        patience: 100,
        clusters: 6,
        lr: 0.003,
        batch: 128,
        ..GlrsConfig::default()
    }
}

fn scores(m: &Glrs) -> Vec<f32> {
    let users: Vec<u32> = (0..20).collect();
    let mut out = vec![0f32; users.len() * m.n_items()];
    m.score_users(&users, &mut out).unwrap();
    out
}

fn fit(split: &Split, valid: &EvalNegatives, c: &GlrsConfig, ckpt: CheckpointPolicy) -> Glrs {
    let mut silent = Silent;
    let mut ctx = FitContext::new(split, Validation::sampled(valid), 4, &mut silent);
    ctx.checkpoints = ckpt;
    Glrs::fit(c, &mut ctx).unwrap().0
}

#[test]
fn a_resumed_fit_reaches_the_uninterrupted_model_and_the_cache_changes_nothing() {
    let (split, valid) = data();
    clear_cache();
    let whole = fit(&split, &valid, &cfg(4), CheckpointPolicy::default());
    // The cache now holds the spaces: the same fit again is the same model.
    let cached = fit(&split, &valid, &cfg(4), CheckpointPolicy::default());
    assert_eq!(scores(&whole), scores(&cached));
    // A fit killed after LD (stages run one after the other, each with its
    // own checkpoint folder): GD, GP and LD resume from their last
    // checkpoints, LP and the attention train from the start.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = |resume| CheckpointPolicy {
        dir: Some(dir.path().to_path_buf()),
        resume,
        tag: "glrs test".into(),
    };
    clear_cache();
    fit(&split, &valid, &cfg(4), ckpt(false));
    for stage in ["gd", "gp", "ld", "lp", "attention"] {
        assert!(
            dir.path().join(stage).join("epoch-00004").is_dir(),
            "{stage}"
        );
    }
    for stage in ["lp", "attention"] {
        std::fs::remove_dir_all(dir.path().join(stage)).unwrap();
    }
    clear_cache();
    let resumed = fit(&split, &valid, &cfg(4), ckpt(true));
    assert!(
        scores(&whole) == scores(&resumed),
        "the resumed fit differs"
    );
}

#[test]
fn the_probed_clusters_hold_most_of_what_exhaustive_ranking_finds() {
    let (split, valid) = data();
    let mut c = cfg(6);
    c.variant = Variant::Gap;
    c.probe = 3;
    let model = fit(&split, &valid, &c, CheckpointPolicy::default());
    let cands = |u: u32| Some(model.candidates(u, 3));
    let known = [&split.train, &split.valid];
    let full = full_ranking(&model, &split.test, &known, &[10]).unwrap();
    let pruned = full_ranking(
        &Pruned {
            scorer: &model,
            candidates: &cands,
        },
        &split.test,
        &known,
        &[10],
    )
    .unwrap();
    let (f, p) = (
        full.get("Recall@10").unwrap(),
        pruned.get("Recall@10").unwrap(),
    );
    assert!(p >= 0.6 * f, "half the clusters keep most hits: {p} vs {f}");
    // Probing every cluster is exhaustive ranking.
    let all = |u: u32| Some(model.candidates(u, 6));
    let every = full_ranking(
        &Pruned {
            scorer: &model,
            candidates: &all,
        },
        &split.test,
        &known,
        &[10],
    )
    .unwrap();
    assert_eq!(every.get("Recall@10"), Some(f));
}
