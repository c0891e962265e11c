//! Ranking within a retrieval stage's candidates: a [`Scorer`] whose
//! items outside the user's candidates score minus infinity, so every
//! protocol measures a two-stage recommender (GLRS's Algorithm 1: probe
//! clusters, then re-rank) as it would serve. A positive outside the
//! candidates ties with every other item left out and, ties counting
//! against the positive, is a miss.

use rayon::prelude::*;

use crate::protocol::{check_len, check_users, ScoreError, Scorer};

/// The candidate items of a user (ascending), or `None` for every item.
pub type Candidates<'a> = dyn Fn(u32) -> Option<Vec<u32>> + Sync + 'a;

/// `scorer` restricted to `candidates`.
pub struct Pruned<'a, S: ?Sized> {
    /// The re-ranking model.
    pub scorer: &'a S,
    /// The retrieval stage.
    pub candidates: &'a Candidates<'a>,
}

impl<S: Scorer + ?Sized> Pruned<'_, S> {
    /// Scores `user`'s row (`out`, every item) within its candidates.
    fn score_row(&self, user: u32, out: &mut [f32]) -> Result<(), ScoreError> {
        match (self.candidates)(user) {
            None => self.scorer.score_users(&[user], out),
            Some(c) => {
                let pairs: Vec<(u32, u32)> = c.iter().map(|&i| (user, i)).collect();
                let mut s = vec![0f32; pairs.len()];
                self.scorer.score_pairs(&pairs, &mut s)?;
                out.fill(f32::NEG_INFINITY);
                for (&i, v) in c.iter().zip(s) {
                    if let Some(slot) = out.get_mut(i as usize) {
                        *slot = v;
                    }
                }
                Ok(())
            }
        }
    }
}

impl<S: Scorer + ?Sized> Scorer for Pruned<'_, S> {
    fn n_items(&self) -> usize {
        self.scorer.n_items()
    }

    fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
        self.scorer.score_pairs(pairs, out)?;
        // Pairs come grouped by user in every protocol: one candidate list
        // per run of a user.
        let mut start = 0;
        while start < pairs.len() {
            let u = pairs[start].0;
            let end = start + pairs[start..].iter().take_while(|p| p.0 == u).count();
            if let Some(c) = (self.candidates)(u) {
                for (o, &(_, i)) in out[start..end].iter_mut().zip(&pairs[start..end]) {
                    if c.binary_search(&i).is_err() {
                        *o = f32::NEG_INFINITY;
                    }
                }
            }
            start = end;
        }
        Ok(())
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        let n = self.n_items();
        check_len("score_users", out.len(), users.len() * n)?;
        check_users(users.iter().copied(), usize::MAX)?;
        // Scorers run their own work (candle or rayon) per call; users are
        // taken one at a time here.
        for (row, &u) in out.chunks_mut(n.max(1)).zip(users) {
            self.score_row(u, row)?;
        }
        Ok(())
    }
}

/// Full ranking of `target` within `candidates` (a test item outside them
/// is a miss), with `CandidateRecall` ([`candidate_recall`]) and `Scanned`
/// (the mean share of the catalogue the candidates hold) added.
pub fn pruned_ranking<S: Scorer + ?Sized>(
    model: &S,
    candidates: &Candidates<'_>,
    target: &hinrec_data::Interactions,
    exclude: &[&hinrec_data::Interactions],
    ks: &[usize],
) -> Result<crate::Metrics, ScoreError> {
    let pruned = Pruned {
        scorer: model,
        candidates,
    };
    let mut m = crate::full_ranking(&pruned, target, exclude, ks)?;
    m.values.insert(
        "CandidateRecall".into(),
        candidate_recall(target, candidates),
    );
    let users: Vec<u32> = (0..target.n_users() as u32)
        .filter(|&u| target.user_degree(u) > 0)
        .collect();
    let n = model.n_items().max(1) as f64;
    let scanned = users
        .iter()
        .map(|&u| candidates(u).map_or(1.0, |c| c.len() as f64 / n))
        .sum::<f64>()
        / users.len().max(1) as f64;
    m.values.insert("Scanned".into(), scanned);
    Ok(m)
}

/// The share of `target` items of each user that `candidates` holds,
/// averaged over users with targets: the retrieval stage's own recall.
pub fn candidate_recall(target: &hinrec_data::Interactions, candidates: &Candidates<'_>) -> f64 {
    let users: Vec<u32> = (0..target.n_users() as u32)
        .filter(|&u| target.user_degree(u) > 0)
        .collect();
    // Summed in user order: a parallel float sum's order (and so its last
    // bit) would depend on the thread scheduling.
    let sum: f64 = users
        .par_iter()
        .map(|&u| {
            let t = target.user_items(u);
            match candidates(u) {
                None => 1.0,
                Some(c) => {
                    t.iter().filter(|i| c.binary_search(i).is_ok()).count() as f64 / t.len() as f64
                }
            }
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    if users.is_empty() {
        0.0
    } else {
        sum / users.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::full_ranking;
    use hinrec_data::Interactions;

    /// Scores item i as i (higher ids rank first).
    struct ById(usize);

    impl Scorer for ById {
        fn n_items(&self) -> usize {
            self.0
        }
        fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
            for (o, p) in out.iter_mut().zip(pairs) {
                *o = p.1 as f32;
            }
            Ok(())
        }
    }

    #[test]
    fn items_outside_the_candidates_never_rank_and_missed_positives_are_misses() {
        // 10 items; user 0's candidates {1, 2, 5}, test items {2, 9}.
        let cands = |u: u32| (u == 0).then(|| vec![1, 2, 5]);
        let model = ById(10);
        let pruned = Pruned {
            scorer: &model,
            candidates: &cands,
        };
        let mut row = vec![0f32; 10];
        pruned.score_users(&[0], &mut row).unwrap();
        assert_eq!(row[5], 5.0);
        assert_eq!(row[9], f32::NEG_INFINITY);
        let test = Interactions::from_pairs(1, 10, &[(0, 2), (0, 9)]);
        let train = Interactions::from_pairs(1, 10, &[(0, 1)]);
        // Exhaustive: 9 ranks first, 2 after 8..3 (6 items) -> rank 7.
        let full = full_ranking(&model, &test, &[&train], &[2]).unwrap();
        assert_eq!(full.get("Recall@2"), Some(0.5));
        // Pruned: candidates {2, 5} after removing training item 1; item 2
        // ranks second, 9 is a miss: Recall@2 = 1/2, HR@1 = 0.
        let m = full_ranking(&pruned, &test, &[&train], &[1, 2]).unwrap();
        assert_eq!(m.get("Recall@2"), Some(0.5));
        assert_eq!(m.get("HR@1"), Some(0.0));
        assert_eq!(m.get("ARHR@2"), Some(0.5));
        let mut pair = [0f32; 2];
        pruned.score_pairs(&[(0, 9), (0, 5)], &mut pair).unwrap();
        assert_eq!(pair, [f32::NEG_INFINITY, 5.0]);
        assert_eq!(candidate_recall(&test, &cands), 0.5);
    }
}
