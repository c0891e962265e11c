//! MostPop: every user gets the items with the most training interactions.

use std::path::Path;

use hinrec_data::Interactions;
use hinrec_eval::{score_pairs_by_user, score_users_by_user, ScoreError, Scorer};

use crate::error::Result;
use crate::io::{self, Array, Loaded};

/// Scores an item by its number of training interactions.
#[derive(Debug, Clone, PartialEq)]
pub struct MostPop {
    counts: Vec<f32>,
}

impl MostPop {
    /// Counts the training interactions of each item.
    pub fn fit(train: &Interactions) -> Self {
        MostPop {
            counts: train.item_counts().into_iter().map(|c| c as f32).collect(),
        }
    }

    /// Saves to safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        let n = self.counts.len();
        io::save(
            path,
            vec![("counts", Array::F32(&self.counts, vec![n]))],
            "mostpop",
        )
    }

    /// Loads from safetensors.
    pub fn load(path: &Path) -> Result<Self> {
        Ok(MostPop {
            counts: Loaded::read(path)?.f32("counts")?.0,
        })
    }
}

impl Scorer for MostPop {
    fn n_items(&self) -> usize {
        self.counts.len()
    }

    fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
        // Popularity is the same for every user id.
        score_pairs_by_user(usize::MAX, self.n_items(), pairs, out, |_, items, o| {
            for (o, &i) in o.iter_mut().zip(items) {
                *o = self.counts[i as usize];
            }
        })
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        score_users_by_user(usize::MAX, self.n_items(), users, out, |_, o| {
            o.copy_from_slice(&self.counts)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_round_trip() {
        let x = Interactions::from_pairs(3, 3, &[(0, 1), (1, 1), (2, 0)]);
        let m = MostPop::fit(&x);
        let mut out = [0.0; 3];
        m.score_users(&[0], &mut out).unwrap();
        assert_eq!(out, [1.0, 2.0, 0.0]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        m.save(&p).unwrap();
        assert_eq!(MostPop::load(&p).unwrap(), m);
    }
}
