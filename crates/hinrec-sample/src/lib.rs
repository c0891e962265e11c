//! Neighbour sampling for hinrec models.
//!
//! [`NeighborLists`] gives every node a fixed number `k` of neighbour slots:
//! its neighbours ranked by a score (LGRec ranks a user's training items,
//! and an item's training users, by a pretrained matrix-factorisation score,
//! lgrec.txt section 2.1), the best `k` kept, the rest padded and masked.
//! [`walk`] holds HHFAN's random walk with restart over a typed graph and
//! the per-type neighbour groups it keeps (hhfan.md III.D).
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
use rand::Rng;
use rayon::prelude::*;

pub mod walk;

/// A uniform item in `0..n_items` that is not in `seen` (sorted), drawn by
/// rejection from `rng`; `None` when the user has every item. The one
/// negative sampler of BPR-MF, LGRec and REDA.
pub fn unseen_item<R: Rng + ?Sized>(seen: &[u32], n_items: u32, rng: &mut R) -> Option<u32> {
    if seen.len() >= n_items as usize {
        return None;
    }
    loop {
        let j = rng.random_range(0..n_items);
        if seen.binary_search(&j).is_err() {
            return Some(j);
        }
    }
}

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

    /// Lists from `k`, the row-major slots and each node's number of real
    /// neighbours (what [`NeighborLists::ids`] and [`NeighborLists::count`]
    /// return), as a saved model stores them; padding must hold id 0.
    pub fn from_parts(k: usize, ids: Vec<u32>, counts: Vec<usize>) -> Result<Self, String> {
        if k == 0 || ids.len() != counts.len() * k {
            return Err(format!(
                "{} neighbour slots do not fill {} nodes of {k}",
                ids.len(),
                counts.len()
            ));
        }
        if let Some(n) = counts.iter().position(|&c| c > k) {
            return Err(format!(
                "node {n} has {} neighbours in {k} slots",
                counts[n]
            ));
        }
        let mut mask = vec![0.0; ids.len()];
        for (node, &c) in counts.iter().enumerate() {
            mask[node * k..node * k + c].fill(1.0);
        }
        Ok(NeighborLists {
            k,
            ids,
            mask,
            counts,
        })
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
    use rand::SeedableRng;

    #[test]
    fn unseen_items_avoid_the_history() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let j = unseen_item(&[0, 2, 3], 5, &mut rng).unwrap();
            assert!(j == 1 || j == 4);
        }
        assert_eq!(unseen_item(&[0, 1], 2, &mut rng), None);
    }

    #[test]
    fn lists_rebuild_from_their_parts() {
        let train = Interactions::from_pairs(3, 4, &[(0, 1), (0, 3), (1, 2)]);
        let lists = NeighborLists::of_users(&train, 2, |_, i| i as f32);
        let counts = (0..3).map(|u| lists.count(u)).collect();
        let back = NeighborLists::from_parts(2, lists.ids().to_vec(), counts).unwrap();
        assert_eq!(back, lists);
        assert!(NeighborLists::from_parts(2, vec![0; 5], vec![1, 1, 1]).is_err());
        assert!(NeighborLists::from_parts(1, vec![0; 2], vec![2, 0]).is_err());
    }

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
