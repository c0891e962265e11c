//! Neighbour sampling for hinrec models.
//!
//! [`NeighborLists`] gives every node a fixed number `k` of neighbour slots:
//! its neighbours ranked by a score (LGRec ranks a user's training items,
//! and an item's training users, by a pretrained matrix-factorisation score,
//! lgrec.txt section 2.1), the best `k` kept, the rest padded and masked.
//! Random walks for HHFAN join this crate with that model.
//!
//! ```
//! use hinrec_data::Interactions;
//! use hinrec_sample::NeighborLists;
//!
//! let train = Interactions::from_pairs(2, 4, &[(0, 1), (0, 3), (1, 2)]);
//! // Score = item id: user 0's best neighbour is item 3.
//! let lists = NeighborLists::of_users(&train, 2, |_, i| i as f32);
//! assert_eq!(lists.neighbors(0), &[3, 1]);
//! assert_eq!(lists.mask(1), &[1.0, 0.0]);
//! ```

use hinrec_data::Interactions;
use rayon::prelude::*;

/// `k` neighbour slots per node, row-major, with a 0/1 mask for real
/// neighbours; padded slots hold id 0 and mask 0.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighborLists {
    k: usize,
    ids: Vec<u32>,
    mask: Vec<f32>,
    counts: Vec<usize>,
}

impl NeighborLists {
    /// Each user's training items ranked by `score(user, item)` (higher
    /// first; ties by smaller id), best `k` kept.
    pub fn of_users<F>(train: &Interactions, k: usize, score: F) -> Self
    where
        F: Fn(u32, u32) -> f32 + Sync,
    {
        Self::build(train.n_users(), k, |u| {
            train
                .user_items(u)
                .iter()
                .map(|&i| (i, score(u, i)))
                .collect()
        })
    }

    /// Each item's training users ranked by `score(user, item)`, best `k`
    /// kept.
    pub fn of_items<F>(train: &Interactions, k: usize, score: F) -> Self
    where
        F: Fn(u32, u32) -> f32 + Sync,
    {
        Self::build(train.n_items(), k, |i| {
            train
                .item_users(i)
                .iter()
                .map(|&u| (u, score(u, i)))
                .collect()
        })
    }

    fn build<G>(n: usize, k: usize, candidates: G) -> Self
    where
        G: Fn(u32) -> Vec<(u32, f32)> + Sync,
    {
        let rows: Vec<Vec<u32>> = (0..n as u32)
            .into_par_iter()
            .map(|node| {
                let mut c = candidates(node);
                let by_score =
                    |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
                if c.len() > k {
                    c.select_nth_unstable_by(k, by_score);
                    c.truncate(k);
                }
                c.sort_unstable_by(by_score);
                c.into_iter().map(|x| x.0).collect()
            })
            .collect();
        let mut out = NeighborLists {
            k,
            ids: vec![0; n * k],
            mask: vec![0.0; n * k],
            counts: Vec::with_capacity(n),
        };
        for (node, row) in rows.into_iter().enumerate() {
            out.ids[node * k..node * k + row.len()].copy_from_slice(&row);
            out.mask[node * k..node * k + row.len()].fill(1.0);
            out.counts.push(row.len());
        }
        out
    }

    /// Slots per node.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The `k` slots of `node` (padding included).
    pub fn neighbors(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.ids[n * self.k..(n + 1) * self.k]
    }

    /// The mask of `node`'s slots: 1 for a real neighbour, 0 for padding.
    pub fn mask(&self, node: u32) -> &[f32] {
        let n = node as usize;
        &self.mask[n * self.k..(n + 1) * self.k]
    }

    /// Number of real neighbours of `node`.
    pub fn count(&self, node: u32) -> usize {
        self.counts[node as usize]
    }

    /// All slots, row-major (`len() x k`).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// All masks, row-major.
    pub fn masks(&self) -> &[f32] {
        &self.mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranked_truncated_padded_and_masked() {
        let train =
            Interactions::from_pairs(3, 5, &[(0, 0), (0, 2), (0, 4), (1, 1), (2, 2), (2, 3)]);
        // Score prefers small item ids for user 0 and large ones otherwise.
        let score = |u: u32, i: u32| if u == 0 { -(i as f32) } else { i as f32 };
        let users = NeighborLists::of_users(&train, 2, score);
        assert_eq!(users.neighbors(0), &[0, 2]);
        assert_eq!(users.neighbors(1), &[1, 0]);
        assert_eq!(users.mask(1), &[1.0, 0.0]);
        assert_eq!(users.neighbors(2), &[3, 2]);
        assert_eq!((users.count(0), users.count(1)), (2, 1));
        let items = NeighborLists::of_items(&train, 3, |u, _| u as f32);
        assert_eq!(items.neighbors(2), &[2, 0, 0]);
        assert_eq!(items.mask(2), &[1.0, 1.0, 0.0]);
        assert_eq!(items.count(3), 1);
        assert_eq!(items.len(), 5);
    }

    #[test]
    fn ties_break_by_smaller_id() {
        let train = Interactions::from_pairs(1, 4, &[(0, 3), (0, 1), (0, 2)]);
        let l = NeighborLists::of_users(&train, 2, |_, _| 1.0);
        assert_eq!(l.neighbors(0), &[1, 2]);
    }
}
