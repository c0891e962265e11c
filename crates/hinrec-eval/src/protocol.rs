//! The evaluation protocols, parallel over users with rayon.

use hinrec_data::{EvalNegatives, Interactions};
use rayon::prelude::*;

use crate::metrics::{ranks_against, UserMetrics};
use crate::report::Metrics;

/// A trained model as evaluation sees it: scores for (user, item) pairs,
/// higher is better.
pub trait Scorer {
    /// Number of items in the id space.
    fn n_items(&self) -> usize;

    /// Writes the score of each of `items` for `user` into `out`.
    fn score(&self, user: u32, items: &[u32], out: &mut [f32]);

    /// Writes the score of every item for `user` into `out` (length
    /// [`Scorer::n_items`]). Override when scoring all items at once is
    /// cheaper than through a list.
    fn score_all(&self, user: u32, out: &mut [f32]) {
        let items: Vec<u32> = (0..self.n_items() as u32).collect();
        self.score(user, &items, out);
    }
}

/// The sampled protocol: each test pair's positive ranked against its stored
/// negatives; metrics averaged over test pairs.
pub fn sampled<S: Scorer + Sync + ?Sized>(
    model: &S,
    negatives: &EvalNegatives,
    ks: &[usize],
) -> Metrics {
    let per_pair: Vec<UserMetrics> = negatives
        .pairs
        .par_iter()
        .zip(&negatives.negatives)
        .map_init(
            || (Vec::new(), Vec::new()),
            |(items, scores), (&(u, i), negs)| {
                items.clear();
                items.push(i);
                items.extend_from_slice(negs);
                scores.clear();
                scores.resize(items.len(), 0.0);
                model.score(u, items, scores);
                let (head, rest) = scores.split_at_mut(1);
                let (ranks, beaten) = ranks_against(head, rest);
                UserMetrics::from_ranks(&ranks, &beaten, negs.len(), ks)
            },
        )
        .collect();
    Metrics::average(&per_pair, ks)
}

/// The full-ranking protocol: for every user with items in `target`, rank
/// them among all items except `exclude` (the user's training items, and
/// validation items when testing); metrics averaged over those users.
/// The result does not depend on how the work is divided.
pub fn full_ranking<S: Scorer + Sync + ?Sized>(
    model: &S,
    target: &Interactions,
    exclude: &[&Interactions],
    ks: &[usize],
) -> Metrics {
    let n = model.n_items();
    let users: Vec<u32> = (0..target.n_users() as u32)
        .filter(|&u| target.user_degree(u) > 0)
        .collect();
    let per_user: Vec<UserMetrics> = users
        .par_iter()
        .map_init(
            || (vec![0f32; n], vec![false; n], Vec::new(), Vec::new()),
            |(scores, masked, pos, neg), &u| {
                model.score_all(u, scores);
                for x in exclude {
                    for &i in x.user_items(u) {
                        masked[i as usize] = true;
                    }
                }
                let targets = target.user_items(u);
                for &i in targets {
                    masked[i as usize] = true;
                }
                pos.clear();
                pos.extend(targets.iter().map(|&i| scores[i as usize]));
                neg.clear();
                neg.extend((0..n).filter(|&i| !masked[i]).map(|i| scores[i]));
                for x in exclude {
                    for &i in x.user_items(u) {
                        masked[i as usize] = false;
                    }
                }
                for &i in targets {
                    masked[i as usize] = false;
                }
                let (ranks, beaten) = ranks_against(pos, neg);
                UserMetrics::from_ranks(&ranks, &beaten, neg.len(), ks)
            },
        )
        .collect();
    Metrics::average(&per_user, ks)
}

/// One AUC over every labeled pair: test pairs are positives, their stored
/// negatives are negatives (DURation's protocol). Ties count against the
/// positive, as everywhere in this crate.
pub fn global_auc<S: Scorer + Sync + ?Sized>(model: &S, negatives: &EvalNegatives) -> f64 {
    let scored: Vec<(f32, Vec<f32>)> = negatives
        .pairs
        .par_iter()
        .zip(&negatives.negatives)
        .map(|(&(u, i), negs)| {
            let mut items = vec![i];
            items.extend_from_slice(negs);
            let mut s = vec![0f32; items.len()];
            model.score(u, &items, &mut s);
            (s[0], s[1..].to_vec())
        })
        .collect();
    let pos: Vec<f32> = scored.iter().map(|x| x.0).collect();
    let mut neg: Vec<f32> = scored.into_iter().flat_map(|x| x.1).collect();
    if pos.is_empty() || neg.is_empty() {
        return 0.0;
    }
    let (_, beaten) = ranks_against(&pos, &mut neg);
    let wins: usize = beaten.iter().sum();
    wins as f64 / (pos.len() as f64 * neg.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table(Vec<Vec<f32>>);
    impl Scorer for Table {
        fn n_items(&self) -> usize {
            self.0[0].len()
        }
        fn score(&self, user: u32, items: &[u32], out: &mut [f32]) {
            for (o, &i) in out.iter_mut().zip(items) {
                *o = self.0[user as usize][i as usize];
            }
        }
    }

    #[test]
    fn constant_scorer_gets_zero_everywhere() {
        let m = Table(vec![vec![0.5; 6]; 2]);
        let test = Interactions::from_pairs(2, 6, &[(0, 1), (1, 2)]);
        let train = Interactions::from_pairs(2, 6, &[(0, 0), (1, 0)]);
        let negs = EvalNegatives::sample(&test, &[&train, &test], 3, 1).unwrap();
        let r = sampled(&m, &negs, &[1, 3]);
        assert_eq!(r.get("HR@3"), Some(0.0));
        assert_eq!(r.get("AUC"), Some(0.0));
        let r = full_ranking(&m, &test, &[&train], &[3]);
        assert_eq!(r.get("NDCG@3"), Some(0.0));
        assert_eq!(global_auc(&m, &negs), 0.0);
    }

    #[test]
    fn full_ranking_excludes_training_items_by_hand() {
        // user 0: train {0}, test {2}; scores 9,1,5,7,3 -> candidates 1,2,3,4
        // ranked 3(7),2(5),4(3),1(1): the positive is second.
        let m = Table(vec![vec![9.0, 1.0, 5.0, 7.0, 3.0]]);
        let train = Interactions::from_pairs(1, 5, &[(0, 0)]);
        let test = Interactions::from_pairs(1, 5, &[(0, 2)]);
        let r = full_ranking(&m, &test, &[&train], &[1, 2]);
        assert_eq!(r.get("HR@1"), Some(0.0));
        assert_eq!(r.get("HR@2"), Some(1.0));
        assert_eq!(r.get("MRR@2"), Some(0.5));
        assert!((r.get("AUC").unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.count, 1);
    }

    #[test]
    fn global_auc_by_hand() {
        // positives 0.9 and 0.3; negatives 0.5, 0.1, 0.3 -> wins 3 + 1 of 6.
        let m = Table(vec![vec![0.9, 0.5, 0.1, 0.3]]);
        let negs = EvalNegatives {
            pairs: vec![(0, 0), (0, 3)],
            negatives: vec![vec![1, 2], vec![3]],
        };
        assert!((global_auc(&m, &negs) - 4.0 / 6.0).abs() < 1e-12);
    }
}
