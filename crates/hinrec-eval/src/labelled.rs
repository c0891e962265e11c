//! DURation's protocol: one ROC AUC over labelled (user, item) rows,
//! pooled over every item kind and per kind. The negatives are observed
//! rows labelled negative (low ratings), or stored sampled items where
//! the data has no low ratings.
//!
//! Unlike the ranking protocols, a tie counts one half (the ROC AUC that
//! scikit-learn's `roc_auc_score` computes): a popularity score ties
//! often, and the AUC of a constant score is then 0.5, chance.

use std::ops::Range;

use crate::protocol::{ScoreError, Scorer, MAX_SCORES_PER_CALL};
use crate::report::Metrics;

/// An item kind's ids in the combined item space (`book` ids 0..6777).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKind {
    /// Its name, the suffix of its metric (`AUC:book`).
    pub name: String,
    /// Its items.
    pub items: Range<u32>,
}

/// ROC AUC of `scores` against `labels` (ties count one half), or `None`
/// unless both labels occur.
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 || scores.len() != labels.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mann-Whitney: the positives' rank sum, each tie group at its mean rank.
    let mut rank_sum = 0f64;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let mean_rank = (start + end + 1) as f64 / 2.0; // 1-based
        let pos = order[start..end].iter().filter(|&&k| labels[k]).count();
        rank_sum += mean_rank * pos as f64;
        start = end;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// The ROC AUC of `model` over `rows` (user, item, label): `AUC` over all
/// of them and `AUC:<kind>` over each kind's items, where a kind has both
/// labels; `count` is the number of rows.
pub fn labelled_auc<S: Scorer + ?Sized>(
    model: &S,
    rows: &[(u32, u32, bool)],
    kinds: &[ItemKind],
) -> Result<Metrics, ScoreError> {
    let pairs: Vec<(u32, u32)> = rows.iter().map(|&(u, i, _)| (u, i)).collect();
    let mut scores = vec![0f32; pairs.len()];
    for (p, s) in pairs
        .chunks(MAX_SCORES_PER_CALL)
        .zip(scores.chunks_mut(MAX_SCORES_PER_CALL))
    {
        model.score_pairs(p, s)?;
    }
    if let Some(k) = scores.iter().position(|s| !s.is_finite()) {
        return Err(format!("score {} of pair {:?} is not finite", scores[k], pairs[k]).into());
    }
    let labels: Vec<bool> = rows.iter().map(|r| r.2).collect();
    let mut m = Metrics {
        count: rows.len(),
        ..Metrics::default()
    };
    if let Some(a) = roc_auc(&scores, &labels) {
        m.values.insert("AUC".into(), a);
    }
    for kind in kinds {
        let (s, l): (Vec<f32>, Vec<bool>) = rows
            .iter()
            .zip(&scores)
            .filter(|(r, _)| kind.items.contains(&r.1))
            .map(|(r, &s)| (s, r.2))
            .unzip();
        if let Some(a) = roc_auc(&s, &l) {
            m.values.insert(format!("AUC:{}", kind.name), a);
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores an item by a table.
    struct ByItem(Vec<f32>);
    impl Scorer for ByItem {
        fn n_items(&self) -> usize {
            self.0.len()
        }
        fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
            for (o, &(_, i)) in out.iter_mut().zip(pairs) {
                *o = self.0[i as usize];
            }
            Ok(())
        }
    }

    #[test]
    fn auc_by_hand_with_ties() {
        // Positives 0.9, 0.3; negatives 0.5, 0.3, 0.1: wins 3 + 1 + a half
        // (0.3 against 0.3) of 6.
        let auc = roc_auc(
            &[0.9, 0.5, 0.3, 0.3, 0.1],
            &[true, false, true, false, false],
        );
        assert!((auc.unwrap() - 4.5 / 6.0).abs() < 1e-12);
        assert_eq!(roc_auc(&[1.0; 4], &[true, false, true, false]), Some(0.5));
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, true]), None);
        assert_eq!(roc_auc(&[2.0, 1.0], &[true, false]), Some(1.0));
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, false]), Some(0.0));
    }

    #[test]
    fn pooled_and_per_kind() {
        // Items 0-1 are books, 2-3 music. Books: positive 0 (0.8) over
        // negative 1 (0.2): 1. Music: positive 3 (0.1) under negative 2
        // (0.6): 0. Pooled: positives 0.8, 0.1 against 0.2, 0.6: 2 of 4.
        let m = ByItem(vec![0.8, 0.2, 0.6, 0.1]);
        let rows = [(0, 0, true), (0, 1, false), (1, 2, false), (1, 3, true)];
        let kinds = [
            ItemKind {
                name: "book".into(),
                items: 0..2,
            },
            ItemKind {
                name: "music".into(),
                items: 2..4,
            },
        ];
        let r = labelled_auc(&m, &rows, &kinds).unwrap();
        assert_eq!(r.get("AUC"), Some(0.5));
        assert_eq!(r.get("AUC:book"), Some(1.0));
        assert_eq!(r.get("AUC:music"), Some(0.0));
        assert_eq!(r.count, 4);
        // A kind with one label has no AUC, and a non-finite score is an error.
        let r = labelled_auc(&m, &rows[..3], &kinds).unwrap();
        assert_eq!(r.get("AUC:music"), None);
        let bad = ByItem(vec![f32::NAN, 0.2, 0.6, 0.1]);
        assert!(labelled_auc(&bad, &rows, &kinds).is_err());
    }
}
