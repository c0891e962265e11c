//! Metrics of one user (or one test pair) from the ranks of its positives.
//!
//! Definitions (K a cutoff, T the positives, r(p) the 0-based rank of p):
//! - HR@K = 1 if some positive ranks below K;
//! - Precision@K = hits / K, Recall@K = hits / |T|;
//! - NDCG@K = sum over hits of 1/log2(r+2), divided by the ideal
//!   sum over j < min(|T|, K) of 1/log2(j+2);
//! - MRR@K = 1/(r+1) of the best-ranked positive if it is a hit, else 0;
//! - ARHR@K = sum over hits of 1/(r+1) (GLRS's definition, not divided);
//! - AUC = share of (positive, negative) pairs with the positive strictly
//!   higher.

/// Positives ranked above positive `k` (score `p`): higher, or equal and
/// earlier. NaN counts as the lowest score.
fn positives_above(pos: &[f32], k: usize, p: f32) -> usize {
    let clean = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x };
    pos.iter()
        .enumerate()
        .filter(|&(j, &q)| {
            let q = clean(q);
            q > p || (q == p && j < k)
        })
        .count()
}

/// Up to this many positives, [`ranks_against`] counts instead of sorting.
const COUNT_BELOW: usize = 8;

/// Ranks (0-based) of `pos` scores among the `neg` scores and each other.
///
/// A negative with an equal score ranks above the positive (ties count
/// against it); among positives with equal scores the earlier one ranks
/// first. NaN scores count as the lowest possible. `neg` may be reordered
/// (NaN replaced; sorted descending when there are many positives). Also returns, for each positive, the number of negatives it
/// beats strictly (for AUC).
pub fn ranks_against(pos: &[f32], neg: &mut [f32]) -> (Vec<usize>, Vec<usize>) {
    let clean = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x };
    for x in neg.iter_mut() {
        *x = clean(*x);
    }
    // A few positives: count the negatives at or above each in one pass
    // each (the same counts as the sorted search below, without the sort
    // that dominated full ranking's time).
    if pos.len() <= COUNT_BELOW {
        let mut ranks = Vec::with_capacity(pos.len());
        let mut beaten = Vec::with_capacity(pos.len());
        for (k, &p) in pos.iter().enumerate() {
            let p = clean(p);
            let above_neg = neg.iter().filter(|&&x| x >= p).count();
            ranks.push(above_neg + positives_above(pos, k, p));
            beaten.push(neg.len() - above_neg);
        }
        return (ranks, beaten);
    }
    neg.sort_unstable_by(|a, b| b.total_cmp(a));
    let mut ranks = Vec::with_capacity(pos.len());
    let mut beaten = Vec::with_capacity(pos.len());
    for (k, &p) in pos.iter().enumerate() {
        let p = clean(p);
        let above_neg = neg.partition_point(|&x| x >= p);
        ranks.push(above_neg + positives_above(pos, k, p));
        beaten.push(neg.len() - above_neg);
    }
    (ranks, beaten)
}

/// Metric values of one user at a list of cutoffs.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMetrics {
    /// Per cutoff: HR, NDCG, Precision, Recall, MRR, ARHR.
    pub at_k: Vec<[f64; 6]>,
    /// AUC over this user's (positive, negative) pairs.
    pub auc: f64,
}

/// Names of the per-cutoff metrics, in [`UserMetrics::at_k`] order.
pub const AT_K_NAMES: [&str; 6] = ["HR", "NDCG", "Precision", "Recall", "MRR", "ARHR"];

impl UserMetrics {
    /// Computes every metric from positives' ranks and beaten-negative
    /// counts (as [`ranks_against`] returns them) among `n_neg` negatives.
    pub fn from_ranks(ranks: &[usize], beaten: &[usize], n_neg: usize, ks: &[usize]) -> Self {
        let n_pos = ranks.len();
        let at_k = ks
            .iter()
            .map(|&k| {
                let hits: Vec<usize> = ranks.iter().copied().filter(|&r| r < k).collect();
                let h = hits.len() as f64;
                let dcg: f64 = hits.iter().map(|&r| 1.0 / ((r + 2) as f64).log2()).sum();
                let idcg: f64 = (0..n_pos.min(k))
                    .map(|j| 1.0 / ((j + 2) as f64).log2())
                    .sum();
                let best = hits.iter().min().map_or(0.0, |&r| 1.0 / (r + 1) as f64);
                let arhr: f64 = hits.iter().map(|&r| 1.0 / (r + 1) as f64).sum();
                [
                    f64::from(u8::from(h > 0.0)),
                    if idcg > 0.0 { dcg / idcg } else { 0.0 },
                    if k > 0 { h / k as f64 } else { 0.0 },
                    if n_pos > 0 { h / n_pos as f64 } else { 0.0 },
                    best,
                    arhr,
                ]
            })
            .collect();
        let pairs = n_pos * n_neg;
        let auc = if pairs > 0 {
            beaten.iter().sum::<usize>() as f64 / pairs as f64
        } else {
            0.0
        };
        UserMetrics { at_k, auc }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_count_against_the_positive() {
        let (r, b) = ranks_against(&[1.0], &mut [1.0, 1.0, 0.5]);
        assert_eq!(r, [2]);
        assert_eq!(b, [1]);
        let (r, b) = ranks_against(&[0.0], &mut [0.0; 99]);
        assert_eq!(r, [99]);
        assert_eq!(b, [0]);
        let (r, _) = ranks_against(&[f32::NAN], &mut [f32::NAN, -1.0]);
        assert_eq!(r, [2]);
    }

    #[test]
    fn counting_and_sorting_give_the_same_ranks() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n_pos in [1, 3, 8, 9, 30] {
            for _ in 0..20 {
                // Coarse values, so ties are common.
                let mut v = || (rng.random_range(0..20) as f32) / 4.0;
                let pos: Vec<f32> = (0..n_pos).map(|_| v()).collect();
                let neg: Vec<f32> = (0..100).map(|_| v()).collect();
                let got = ranks_against(&pos, &mut neg.clone());
                // Reference: the sorted search on its own.
                let mut sorted = neg.clone();
                sorted.sort_unstable_by(|a, b| b.total_cmp(a));
                let want: Vec<usize> = pos
                    .iter()
                    .enumerate()
                    .map(|(k, &p)| {
                        sorted.partition_point(|&x| x >= p)
                            + pos
                                .iter()
                                .enumerate()
                                .filter(|&(j, &q)| q > p || (q == p && j < k))
                                .count()
                    })
                    .collect();
                assert_eq!(got.0, want, "{n_pos} positives");
            }
        }
    }

    #[test]
    fn several_positives_rank_among_each_other() {
        // positives 0.9, 0.2, 0.9 ; negatives 1.0, 0.5, 0.1: the 0.2 has two
        // negatives and two positives above it.
        let (r, b) = ranks_against(&[0.9, 0.2, 0.9], &mut [0.5, 1.0, 0.1]);
        assert_eq!(r, [1, 4, 2]);
        assert_eq!(b, [2, 1, 2]);
    }

    #[test]
    fn hand_computed_metrics() {
        // One positive at rank 2 (third place) of 100 negatives.
        let m = UserMetrics::from_ranks(&[2], &[97], 100, &[1, 3, 10]);
        assert_eq!(m.at_k[0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let ndcg = 1.0 / 4f64.log2();
        assert_eq!(m.at_k[1], [1.0, ndcg, 1.0 / 3.0, 1.0, 1.0 / 3.0, 1.0 / 3.0]);
        assert!((m.auc - 0.97).abs() < 1e-12);
        // Two positives at ranks 0 and 4, K = 5: DCG = 1 + 1/log2(6),
        // IDCG = 1 + 1/log2(3); ARHR = 1 + 1/5.
        let m = UserMetrics::from_ranks(&[0, 4], &[10, 6], 10, &[5]);
        let [hr, ndcg, p, r, mrr, arhr] = m.at_k[0];
        assert_eq!((hr, p, r, mrr), (1.0, 0.4, 1.0, 1.0));
        let want = (1.0 + 1.0 / 6f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg - want).abs() < 1e-12);
        assert!((arhr - 1.2).abs() < 1e-12);
        assert!((m.auc - 16.0 / 20.0).abs() < 1e-12);
    }
}
