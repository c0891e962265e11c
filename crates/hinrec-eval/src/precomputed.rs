//! Scores computed ahead of time for chosen pairs, served through [`Scorer`].
//!
//! Models whose scoring runs on candle (which must not run inside rayon's
//! parallel loops) score all the pairs a protocol needs in large batches
//! first; the protocol then reads them from here.

use crate::protocol::Scorer;

/// Per-user sorted (item, score) lists; pairs never scored read as NaN,
/// which ranks lowest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrecomputedScores {
    n_items: usize,
    per_user: Vec<Vec<(u32, f32)>>,
}

impl PrecomputedScores {
    /// Collects `scores[k]` of `pairs[k]`.
    pub fn new(n_users: usize, n_items: usize, pairs: &[(u32, u32)], scores: &[f32]) -> Self {
        let mut per_user = vec![Vec::new(); n_users];
        for (&(u, i), &s) in pairs.iter().zip(scores) {
            per_user[u as usize].push((i, s));
        }
        for row in &mut per_user {
            row.sort_unstable_by_key(|e| e.0);
            row.dedup_by_key(|e| e.0);
        }
        PrecomputedScores { n_items, per_user }
    }
}

impl Scorer for PrecomputedScores {
    fn n_items(&self) -> usize {
        self.n_items
    }

    fn score(&self, user: u32, items: &[u32], out: &mut [f32]) {
        let row = &self.per_user[user as usize];
        for (o, &i) in out.iter_mut().zip(items) {
            *o = row
                .binary_search_by_key(&i, |e| e.0)
                .map_or(f32::NAN, |k| row[k].1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_missing_pairs() {
        let s = PrecomputedScores::new(2, 5, &[(0, 3), (0, 1), (1, 4)], &[0.5, 0.7, 0.9]);
        let mut out = [0.0; 3];
        s.score(0, &[1, 3, 2], &mut out);
        assert_eq!(&out[..2], &[0.7, 0.5]);
        assert!(out[2].is_nan());
    }
}
