//! DURation on the synthetic ratings with its items cut into two kinds:
//! eq. 8's terms are assembled as written, the DMF variant has neither
//! alignment nor topology, the per-kind model scores each kind with its
//! own part, and a saved model scores as before.

use hinrec_data::synthetic::{generate, SyntheticConfig};
use hinrec_data::{LabelRule, LabelledSplit, SplitRule};
use hinrec_duration::{Duration, DurationConfig, PerKind, Variant};
use hinrec_eval::{labelled_auc, ItemKind, Scorer};
use hinrec_train::{FitContext, ModelParams, Silent, TrainedModel, Validation, ValidationData};

fn setup() -> (LabelledSplit, hinrec_data::Split, Vec<ItemKind>) {
    let ds = generate(&SyntheticConfig {
        n_users: 400,
        n_items: 200,
        ..Default::default()
    })
    .unwrap();
    let rated = SplitRule::GlobalRatio {
        train: 0.7,
        valid: 0.2,
    }
    .apply(&ds.interactions, 1)
    .unwrap();
    let ls = LabelledSplit::new(
        rated,
        LabelRule {
            positive_above: 3.0,
        },
    )
    .unwrap();
    let positives = ls.positives();
    let kinds = vec![
        ItemKind {
            name: "a".into(),
            items: 0..80,
        },
        ItemKind {
            name: "b".into(),
            items: 80..200,
        },
    ];
    (ls, positives, kinds)
}

/// A fit on the labelled rows with AUC validation, seed 1.
fn context<'a>(
    ls: &'a LabelledSplit,
    positives: &'a hinrec_data::Split,
    kinds: &'a [ItemKind],
    valid: &'a [(u32, u32, bool)],
    silent: &'a mut Silent,
) -> FitContext<'a> {
    FitContext {
        labelled: Some(ls),
        item_kinds: kinds,
        ..FitContext::new(
            positives,
            Validation {
                data: ValidationData::Labelled(valid),
                metric: "AUC".into(),
            },
            1,
            silent,
        )
    }
}

#[test]
fn terms_add_up_and_both_variants_beat_chance() {
    let (ls, positives, kinds) = setup();
    let valid = ls.rule.labelled(&ls.rated.valid);
    let test = ls.rule.labelled(&ls.rated.test);
    for variant in [Variant::Full, Variant::Dmf] {
        let cfg = DurationConfig {
            dim: 8,
            batch: 64,
            epochs: 15,
            lr: 0.01,
            variant,
            ..Default::default()
        };
        let mut silent = Silent;
        let mut ctx = context(&ls, &positives, &kinds, &valid, &mut silent);
        let (mut model, summary) = Duration::fit(&cfg, &mut ctx).unwrap();
        assert!(summary.best_valid.unwrap() > 0.5);
        let m = labelled_auc(&model, &test, &kinds).unwrap();
        // The full model also reads each item's training statistics
        // (its mean rating among them): far above chance here; the
        // histories alone learn the groups slowly at this size.
        let bound = if variant == Variant::Full { 0.6 } else { 0.52 };
        assert!(m.get("AUC").unwrap() > bound, "{variant:?} {:?}", m.values);
        assert!(m.get("AUC:a").is_some() && m.get("AUC:b").is_some());
        let terms = model.terms_of_one_step(&ctx, 7).unwrap();
        let total = terms.total;
        match variant {
            Variant::Full => {
                assert!(terms.alignment > 0.0 && terms.topology > 0.0, "{terms:?}");
                let want =
                    terms.classification + cfg.alpha * terms.alignment + cfg.beta * terms.topology;
                assert!(
                    (total - want).abs() < 1e-4 * want.max(1.0),
                    "{total} {want}"
                );
            }
            Variant::Dmf => {
                assert_eq!((terms.alignment, terms.topology), (0.0, 0.0));
                assert!((total - terms.classification).abs() < 1e-6);
            }
        }
        // Saved and loaded, it scores the same.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        model.save(&path).unwrap();
        let loaded = cfg.load(&path).unwrap();
        let pairs: Vec<(u32, u32)> = test.iter().map(|r| (r.0, r.1)).collect();
        let (mut a, mut b) = (vec![0f32; pairs.len()], vec![0f32; pairs.len()]);
        model.score_pairs(&pairs, &mut a).unwrap();
        loaded.score_pairs(&pairs, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(!model.explain(0, 5).unwrap().is_empty());
        // The alignment figure: each kind's sampled rows, projected.
        let view = hinrec_duration::paper::alignment_view(&model, 100, 3);
        match variant {
            Variant::Full => {
                let view = view.unwrap();
                let sizes: Vec<usize> = view.points.iter().map(Vec::len).collect();
                assert_eq!(sizes, vec![80, 100]);
                assert!(
                    view.variance >= 0.0 && view.explained > 0.0 && view.explained <= 1.0 + 1e-9
                );
                assert_eq!(
                    view,
                    hinrec_duration::paper::alignment_view(&model, 100, 3).unwrap()
                );
            }
            Variant::Dmf => assert!(view.is_err()),
        }
    }
}

#[test]
fn the_per_kind_model_scores_each_kind_with_its_own_part() {
    let (ls, positives, kinds) = setup();
    let valid = ls.rule.labelled(&ls.rated.valid);
    let cfg = DurationConfig {
        dim: 8,
        batch: 64,
        epochs: 3,
        ..Default::default()
    };
    let mut silent = Silent;
    let mut ctx = context(&ls, &positives, &kinds, &valid, &mut silent);
    let (model, _) = PerKind::fit(&cfg, &mut ctx).unwrap();
    assert_eq!(model.parts().len(), 2);
    let pairs = [(3u32, 5u32), (3, 140)];
    let mut out = [0f32; 2];
    model.score_pairs(&pairs, &mut out).unwrap();
    let mut own = [0f32; 1];
    model.parts()[0].score_pairs(&pairs[..1], &mut own).unwrap();
    assert_eq!(out[0], own[0]);
    model.parts()[1].score_pairs(&pairs[1..], &mut own).unwrap();
    assert_eq!(out[1], own[0]);
    let mut all = vec![0f32; model.n_items()];
    model.score_users(&[3], &mut all).unwrap();
    assert_eq!((all[5], all[140]), (out[0], out[1]));
}
