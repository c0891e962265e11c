//! A trained model that scores by a dot product of user and item rows
//! (LightGCN's layer means), parallel over users inside each call.

use std::path::Path;

use candle_core::{Device, Tensor};
use hinrec_cluster::kmeans::dot;
use hinrec_eval::{score_pairs_by_user, score_users_by_user, ScoreError, Scorer};
use hinrec_nn::checkpoint;
use hinrec_train::ModelError;
use std::collections::HashMap;

/// User and item rows, row-major, `dim` wide; `score(u, i) = users[u] .
/// items[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    dim: usize,
    users: Vec<f32>,
    items: Vec<f32>,
}

impl Factors {
    /// Factors from rows (`users.len()` and `items.len()` multiples of
    /// `dim`).
    pub fn new(dim: usize, users: Vec<f32>, items: Vec<f32>) -> Result<Self, String> {
        if dim == 0 || !users.len().is_multiple_of(dim) || !items.len().is_multiple_of(dim) {
            return Err(format!(
                "factors of {} and {} values are not rows of {dim}",
                users.len(),
                items.len()
            ));
        }
        Ok(Factors { dim, users, items })
    }

    /// Row width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// User rows.
    pub fn users(&self) -> &[f32] {
        &self.users
    }

    /// Item rows.
    pub fn items(&self) -> &[f32] {
        &self.items
    }

    fn n_users(&self) -> usize {
        self.users.len() / self.dim
    }

    fn user(&self, u: u32) -> &[f32] {
        &self.users[u as usize * self.dim..(u as usize + 1) * self.dim]
    }

    /// Saves the rows as `{prefix}.users` and `{prefix}.items`.
    pub fn save(&self, path: &Path, prefix: &str) -> Result<(), ModelError> {
        let t = |v: &[f32]| Tensor::from_slice(v, (v.len() / self.dim, self.dim), &Device::Cpu);
        let state = HashMap::from([
            (
                format!("{prefix}.users"),
                t(&self.users).map_err(|e| ModelError::file(path, e))?,
            ),
            (
                format!("{prefix}.items"),
                t(&self.items).map_err(|e| ModelError::file(path, e))?,
            ),
        ]);
        checkpoint::save_model(path, &state)
    }

    /// Reads what [`Factors::save`] wrote; `dim` is the width the
    /// parameters say.
    pub fn load(path: &Path, prefix: &str, dim: usize) -> Result<Self, ModelError> {
        checkpoint::load_model(path, |s| -> Result<Factors, String> {
            let get = |k: String| -> Result<(Vec<f32>, usize), String> {
                let t = s.get(&k).ok_or(format!("the file lacks {k}"))?;
                let (_, d) = t.dims2().map_err(|e| e.to_string())?;
                let v = t.flatten_all().and_then(|t| t.to_vec1::<f32>());
                Ok((v.map_err(|e| e.to_string())?, d))
            };
            let (users, du) = get(format!("{prefix}.users"))?;
            let (items, di) = get(format!("{prefix}.items"))?;
            if du != dim || di != dim {
                return Err(format!(
                    "rows are {du} and {di} wide, the parameters say dim = {dim}"
                ));
            }
            Factors::new(dim, users, items)
        })
    }
}

impl Scorer for Factors {
    fn n_items(&self) -> usize {
        self.items.len() / self.dim
    }

    fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
        let d = self.dim;
        score_pairs_by_user(self.n_users(), self.n_items(), pairs, out, |u, items, o| {
            let p = self.user(u);
            for (o, &i) in o.iter_mut().zip(items) {
                *o = dot(p, &self.items[i as usize * d..(i as usize + 1) * d]);
            }
        })
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        score_users_by_user(self.n_users(), self.n_items(), users, out, |u, o| {
            let p = self.user(u);
            for (o, q) in o.iter_mut().zip(self.items.chunks_exact(self.dim)) {
                *o = dot(p, q);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_dot_products_and_round_trip() {
        let f = Factors::new(2, vec![1.0, 0.0, 0.5, 0.5], vec![2.0, 1.0, -1.0, 3.0]).unwrap();
        let mut out = [0f32; 2];
        f.score_pairs(&[(0, 1), (1, 0)], &mut out).unwrap();
        assert_eq!(out, [-1.0, 1.5]);
        let mut all = [0f32; 4];
        f.score_users(&[1, 0], &mut all).unwrap();
        assert_eq!(all, [1.5, 1.0, 2.0, -1.0]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.safetensors");
        f.save(&p, "final").unwrap();
        assert_eq!(Factors::load(&p, "final", 2).unwrap(), f);
        assert!(Factors::load(&p, "final", 3).is_err());
        assert!(Factors::new(2, vec![1.0], vec![]).is_err());
    }
}
