//! The evaluation protocols. Each one asks the model for all the scores it
//! needs in a few large batches from the calling thread (a candle model may
//! then run its network on big tensors, never inside rayon), and computes
//! the per-user metrics in parallel with rayon afterwards.

use hinrec_data::{EvalNegatives, Interactions};
use rayon::prelude::*;

use crate::metrics::{ranks_against, UserMetrics};
use crate::report::Metrics;

/// Why a model could not score (a tensor operation failed, an id is out of
/// its range, ...).
pub type ScoreError = Box<dyn std::error::Error + Send + Sync>;

/// A trained model as evaluation sees it: batched scores for (user, item)
/// pairs, higher is better.
///
/// The protocols call these methods from one thread with every pair they
/// need (bounded by [`MAX_SCORES_PER_CALL`] for full ranking); a model that
/// runs no candle op may parallelise inside them with rayon
/// ([`score_pairs_by_user`] and [`score_users_by_user`] do that for a
/// per-user scoring function).
pub trait Scorer {
    /// Number of items in the id space.
    fn n_items(&self) -> usize;

    /// Writes the score of `pairs[k]` into `out[k]` (same lengths).
    fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError>;

    /// Writes every item's score for each of `users` into `out`, row-major
    /// (`users.len() x n_items`). The default scores the pairs in order.
    fn score_users(&self, users: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        let n = self.n_items() as u32;
        let pairs: Vec<(u32, u32)> = users
            .iter()
            .flat_map(|&u| (0..n).map(move |i| (u, i)))
            .collect();
        self.score_pairs(&pairs, out)
    }
}

impl<S: Scorer + ?Sized> Scorer for &S {
    fn n_items(&self) -> usize {
        (**self).n_items()
    }
    fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
        (**self).score_pairs(pairs, out)
    }
    fn score_users(&self, users: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        (**self).score_users(users, out)
    }
}

/// The most scores one full-ranking call asks for (32 MiB of `f32`): users
/// are scored in blocks of `MAX_SCORES_PER_CALL / n_items`.
pub const MAX_SCORES_PER_CALL: usize = 1 << 23;

/// An error unless `got` output slots match the `want` scores asked for.
pub fn check_len(what: &str, got: usize, want: usize) -> Result<(), ScoreError> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: {got} output slots for {want} scores").into())
    }
}

/// An error unless `out` has one slot per pair and every pair lies in
/// `n_users x n_items`: the checks of a [`Scorer::score_pairs`] that
/// indexes tables.
pub fn check_pairs(
    pairs: &[(u32, u32)],
    out: &[f32],
    n_users: usize,
    n_items: usize,
) -> Result<(), ScoreError> {
    check_len("score_pairs", out.len(), pairs.len())?;
    check_users(pairs.iter().map(|p| p.0), n_users)?;
    match pairs.iter().find(|p| p.1 as usize >= n_items) {
        Some(&(u, i)) => {
            Err(format!("pair ({u}, {i}): item {i} is outside the model's {n_items} items").into())
        }
        None => Ok(()),
    }
}

/// An error naming the first user id outside `0..n_users`.
pub fn check_users(users: impl IntoIterator<Item = u32>, n_users: usize) -> Result<(), ScoreError> {
    match users.into_iter().find(|&u| u as usize >= n_users) {
        Some(u) => Err(format!("user {u} is outside the model's {n_users} users").into()),
        None => Ok(()),
    }
}

/// Consecutive pairs of one user and their output slots.
type UserRun<'a> = (&'a [(u32, u32)], &'a mut [f32]);

/// [`Scorer::score_pairs`] for a model of `n_users x n_items` that scores
/// one user's items at a time without candle: the pairs are checked, then
/// `f(user, items, out)` runs in parallel over the runs of consecutive
/// pairs of one user.
pub fn score_pairs_by_user<F>(
    n_users: usize,
    n_items: usize,
    pairs: &[(u32, u32)],
    out: &mut [f32],
    f: F,
) -> Result<(), ScoreError>
where
    F: Fn(u32, &[u32], &mut [f32]) + Sync,
{
    check_pairs(pairs, out, n_users, n_items)?;
    // One slice of pairs and of outputs per run of the same user.
    let mut runs: Vec<UserRun<'_>> = Vec::new();
    let (mut pairs, mut out) = (pairs, out);
    while let Some(&(u, _)) = pairs.first() {
        let n = pairs.iter().take_while(|p| p.0 == u).count();
        let (p, rest_p) = pairs.split_at(n);
        let (o, rest_o) = std::mem::take(&mut out).split_at_mut(n);
        runs.push((p, o));
        (pairs, out) = (rest_p, rest_o);
    }
    runs.into_par_iter()
        .for_each_init(Vec::new, |items, (p, o)| {
            items.clear();
            items.extend(p.iter().map(|x| x.1));
            f(p[0].0, items, o);
        });
    Ok(())
}

/// [`Scorer::score_users`] for a model of `n_users x n_items` that scores
/// all items of one user at a time without candle: the users are checked,
/// then `f(user, row)` runs in parallel over users.
pub fn score_users_by_user<F>(
    n_users: usize,
    n_items: usize,
    users: &[u32],
    out: &mut [f32],
    f: F,
) -> Result<(), ScoreError>
where
    F: Fn(u32, &mut [f32]) + Sync,
{
    check_len("score_users", out.len(), users.len() * n_items)?;
    check_users(users.iter().copied(), n_users)?;
    if n_items == 0 {
        return Ok(());
    }
    out.par_chunks_mut(n_items)
        .zip(users.par_iter())
        .for_each(|(row, &u)| f(u, row));
    Ok(())
}

/// The scores of every candidate of `negatives`: per test pair, the
/// positive then its negatives, in one call.
fn candidate_scores<S: Scorer + ?Sized>(
    model: &S,
    negatives: &EvalNegatives,
) -> Result<Vec<f32>, ScoreError> {
    // The model checks the ids (check_pairs).
    let pairs = negatives.candidate_pairs();
    let mut scores = vec![0f32; pairs.len()];
    model.score_pairs(&pairs, &mut scores)?;
    Ok(scores)
}

/// Each test pair's slice of the candidate scores (positive first).
fn per_pair_slices<'a>(negatives: &EvalNegatives, scores: &'a mut [f32]) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(negatives.len());
    let mut rest = scores;
    for n in &negatives.negatives {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n.len() + 1);
        out.push(head);
        rest = tail;
    }
    out
}

/// The sampled protocol: each test pair's positive ranked against its stored
/// negatives; metrics averaged over test pairs.
pub fn sampled<S: Scorer + ?Sized>(
    model: &S,
    negatives: &EvalNegatives,
    ks: &[usize],
) -> Result<Metrics, ScoreError> {
    let mut scores = candidate_scores(model, negatives)?;
    let per_pair: Vec<UserMetrics> = per_pair_slices(negatives, &mut scores)
        .into_par_iter()
        .map(|s| {
            let (head, rest) = s.split_at_mut(1);
            let n = rest.len();
            let (ranks, beaten) = ranks_against(head, rest);
            UserMetrics::from_ranks(&ranks, &beaten, n, ks)
        })
        .collect();
    Ok(Metrics::average(&per_pair, ks))
}

/// HHFAN's pooled protocol (hhfan.md IV.C, "pair each observed user-item
/// pair with 1000 unobserved micro-videos"): each user of `negatives`
/// ([`EvalNegatives::sample_per_user`]) ranks all of its `target` items
/// against its one stored list; metrics (Precision/Recall/NDCG@K and the
/// per-user AUC of eq. 12) averaged over those users. Pooled precision
/// grows with the number of held-out items per user.
pub fn pooled<S: Scorer + ?Sized>(
    model: &S,
    target: &Interactions,
    negatives: &EvalNegatives,
    ks: &[usize],
) -> Result<Metrics, ScoreError> {
    let mut pairs = Vec::new();
    let mut bounds = Vec::with_capacity(negatives.len());
    for (&(u, _), negs) in negatives.pairs.iter().zip(&negatives.negatives) {
        if u as usize >= target.n_users() {
            return Err(format!("pooled list of user {u} outside the evaluated data").into());
        }
        let pos = target.user_items(u);
        let start = pairs.len();
        pairs.extend(pos.iter().map(|&i| (u, i)));
        pairs.extend(negs.iter().map(|&j| (u, j)));
        bounds.push((start, pos.len(), negs.len()));
    }
    let mut scores = vec![0f32; pairs.len()];
    for (p, s) in pairs
        .chunks(MAX_SCORES_PER_CALL)
        .zip(scores.chunks_mut(MAX_SCORES_PER_CALL))
    {
        model.score_pairs(p, s)?;
    }
    let per_user: Vec<UserMetrics> = bounds
        .par_iter()
        .map(|&(start, n_pos, n_neg)| {
            let s = &scores[start..start + n_pos + n_neg];
            let mut neg = s[n_pos..].to_vec();
            let (ranks, beaten) = ranks_against(&s[..n_pos], &mut neg);
            UserMetrics::from_ranks(&ranks, &beaten, n_neg, ks)
        })
        .collect();
    Ok(Metrics::average(&per_user, ks))
}

/// The full-ranking protocol: for every user with items in `target`, rank
/// them among all items except `exclude` (the user's training items, and
/// validation items when testing); metrics averaged over those users.
/// The result does not depend on how the work is divided.
pub fn full_ranking<S: Scorer + ?Sized>(
    model: &S,
    target: &Interactions,
    exclude: &[&Interactions],
    ks: &[usize],
) -> Result<Metrics, ScoreError> {
    let n = model.n_items();
    if target.n_items() > n {
        return Err(format!(
            "the evaluated data has {} items, the model {n}",
            target.n_items()
        )
        .into());
    }
    let users: Vec<u32> = (0..target.n_users() as u32)
        .filter(|&u| target.user_degree(u) > 0)
        .collect();
    let block = (MAX_SCORES_PER_CALL / n.max(1)).max(1);
    let mut per_user: Vec<UserMetrics> = Vec::with_capacity(users.len());
    let mut scores = Vec::new();
    for chunk in users.chunks(block) {
        scores.clear();
        scores.resize(chunk.len() * n, 0f32);
        model.score_users(chunk, &mut scores)?;
        let rows: Vec<UserMetrics> = scores
            .par_chunks(n.max(1))
            .zip(chunk.par_iter())
            .map_init(
                || (vec![false; n], Vec::new(), Vec::new()),
                |(masked, pos, neg), (scores, &u)| {
                    let known = exclude.iter().flat_map(|x| x.user_items(u));
                    let targets = target.user_items(u);
                    for &i in known.clone().chain(targets) {
                        masked[i as usize] = true;
                    }
                    pos.clear();
                    pos.extend(targets.iter().map(|&i| scores[i as usize]));
                    neg.clear();
                    neg.extend((0..n).filter(|&i| !masked[i]).map(|i| scores[i]));
                    for &i in known.chain(targets) {
                        masked[i as usize] = false;
                    }
                    let (ranks, beaten) = ranks_against(pos, neg);
                    UserMetrics::from_ranks(&ranks, &beaten, neg.len(), ks)
                },
            )
            .collect();
        per_user.extend(rows);
    }
    Ok(Metrics::average(&per_user, ks))
}

/// One AUC over every test pair against every stored negative: test pairs
/// are positives, their stored negatives are negatives. Ties count against
/// the positive, as everywhere in this crate but [`crate::labelled_auc`].
pub fn global_auc<S: Scorer + ?Sized>(
    model: &S,
    negatives: &EvalNegatives,
) -> Result<f64, ScoreError> {
    let mut scores = candidate_scores(model, negatives)?;
    let mut pos = Vec::with_capacity(negatives.len());
    let mut neg = Vec::with_capacity(scores.len());
    for s in per_pair_slices(negatives, &mut scores) {
        pos.push(s[0]);
        neg.extend_from_slice(&s[1..]);
    }
    if pos.is_empty() || neg.is_empty() {
        return Ok(0.0);
    }
    let (_, beaten) = ranks_against(&pos, &mut neg);
    let wins: usize = beaten.iter().sum();
    Ok(wins as f64 / (pos.len() as f64 * neg.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table(Vec<Vec<f32>>);
    impl Scorer for Table {
        fn n_items(&self) -> usize {
            self.0[0].len()
        }
        fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
            score_pairs_by_user(self.0.len(), self.n_items(), pairs, out, |u, items, out| {
                for (o, &i) in out.iter_mut().zip(items) {
                    *o = self.0[u as usize][i as usize];
                }
            })
        }
    }

    #[test]
    fn pooled_ranks_every_test_item_against_one_list() {
        // User 0: test items 1 and 2, list [3, 4]; scores 4 > 3 > 2 > 1.
        let m = Table(vec![vec![0.0, 1.0, 3.0, 4.0, 2.0, 0.0]]);
        let test = Interactions::from_pairs(1, 6, &[(0, 1), (0, 2)]);
        let negs = EvalNegatives {
            pairs: vec![(0, 1)],
            negatives: vec![vec![3, 4]],
        };
        let r = pooled(&m, &test, &negs, &[2]).unwrap();
        // Ranking: 3 (neg), 2 (pos), 4 (neg), 1 (pos): one hit in the top 2.
        assert_eq!(r.get("Precision@2"), Some(0.5));
        assert_eq!(r.get("Recall@2"), Some(0.5));
        let ndcg = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((r.get("NDCG@2").unwrap() - ndcg).abs() < 1e-12);
        // Pairs won: item 2 beats 4; item 1 beats none: 1 of 4.
        assert_eq!(r.get("AUC"), Some(0.25));
    }

    #[test]
    fn constant_scorer_gets_zero_everywhere() {
        let m = Table(vec![vec![0.5; 6]; 2]);
        let test = Interactions::from_pairs(2, 6, &[(0, 1), (1, 2)]);
        let train = Interactions::from_pairs(2, 6, &[(0, 0), (1, 0)]);
        let negs = EvalNegatives::sample(&test, &[&train, &test], 3, 1).unwrap();
        let r = sampled(&m, &negs, &[1, 3]).unwrap();
        assert_eq!(r.get("HR@3"), Some(0.0));
        assert_eq!(r.get("AUC"), Some(0.0));
        let r = full_ranking(&m, &test, &[&train], &[3]).unwrap();
        assert_eq!(r.get("NDCG@3"), Some(0.0));
        assert_eq!(global_auc(&m, &negs).unwrap(), 0.0);
    }

    #[test]
    fn full_ranking_excludes_training_items_by_hand() {
        // user 0: train {0}, test {2}; scores 9,1,5,7,3 -> candidates 1,2,3,4
        // ranked 3(7),2(5),4(3),1(1): the positive is second.
        let m = Table(vec![vec![9.0, 1.0, 5.0, 7.0, 3.0]]);
        let train = Interactions::from_pairs(1, 5, &[(0, 0)]);
        let test = Interactions::from_pairs(1, 5, &[(0, 2)]);
        let r = full_ranking(&m, &test, &[&train], &[1, 2]).unwrap();
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
        assert!((global_auc(&m, &negs).unwrap() - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn runs_of_one_user_are_scored_together_in_order() {
        let m = Table(vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
        let pairs = [(0, 2), (0, 0), (1, 1), (0, 1)];
        let mut out = [0f32; 4];
        m.score_pairs(&pairs, &mut out).unwrap();
        assert_eq!(out, [3.0, 1.0, 5.0, 2.0]);
        let mut all = [0f32; 6];
        m.score_users(&[1, 0], &mut all).unwrap();
        assert_eq!(all, [4.0, 5.0, 6.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn an_item_outside_the_model_is_an_error_not_a_panic() {
        let m = Table(vec![vec![1.0, 2.0]]);
        let negs = EvalNegatives {
            pairs: vec![(0, 0)],
            negatives: vec![vec![5]],
        };
        let e = sampled(&m, &negs, &[1]).unwrap_err().to_string();
        assert!(e.contains("item 5"), "{e}");
        let mut out = [0f32; 1];
        assert!(m.score_pairs(&[(0, 0)], &mut out[..0]).is_err());
    }
}
