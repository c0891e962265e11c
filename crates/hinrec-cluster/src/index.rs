//! A cluster index: centroids with an inverted list of the items of each,
//! probed by dot product (largest first) or Euclidean distance (smallest
//! first); the coarse stage of GLRS's Algorithm 1.

use serde::{Deserialize, Serialize};

use crate::kmeans::{sq_dist, KMeans};

/// How a query is compared with centroids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Largest dot product first.
    Dot,
    /// Smallest Euclidean distance first.
    L2,
}

/// Centroids and inverted lists.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterIndex {
    /// Dimensions.
    pub dim: usize,
    /// Centroids, row-major.
    pub centroids: Vec<f32>,
    /// Items of each cluster, ascending.
    pub lists: Vec<Vec<u32>>,
    /// How clusters are probed.
    pub metric: Metric,
}

impl ClusterIndex {
    /// The index of a clustering whose point `k` is item `k`.
    pub fn new(km: &KMeans, metric: Metric) -> Self {
        let mut lists = vec![Vec::new(); km.k()];
        for (item, &c) in km.assignment.iter().enumerate() {
            lists[c as usize].push(item as u32);
        }
        ClusterIndex {
            dim: km.dim,
            centroids: km.centroids.clone(),
            lists,
            metric,
        }
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// Whether the index has no cluster.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// The `k` clusters nearest to `query`, nearest first (ties: smaller
    /// cluster id first).
    pub fn probe(&self, query: &[f32], k: usize) -> Vec<u32> {
        let mut scored: Vec<(f32, u32)> = self
            .centroids
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(c, row)| {
                let s = match self.metric {
                    Metric::Dot => -row.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(),
                    Metric::L2 => sq_dist(row, query),
                };
                (s, c as u32)
            })
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|s| s.1).collect()
    }

    /// The items of the `k` probed clusters, ascending.
    pub fn candidates(&self, query: &[f32], k: usize) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .probe(query, k)
            .into_iter()
            .flat_map(|c| self.lists[c as usize].iter().copied())
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(metric: Metric) -> ClusterIndex {
        // Centroids (1,0), (0,1), (-1,0); items 0-1, 2, 3-5.
        let km = KMeans {
            dim: 2,
            centroids: vec![1.0, 0.0, 0.0, 1.0, -1.0, 0.0],
            assignment: vec![0, 0, 1, 2, 2, 2],
            inertia: 0.0,
            iterations: 1,
        };
        ClusterIndex::new(&km, metric)
    }

    #[test]
    fn probes_by_dot_product_and_by_distance() {
        let dot = index(Metric::Dot);
        assert_eq!(dot.probe(&[0.9, 0.5], 3), vec![0, 1, 2]);
        assert_eq!(dot.candidates(&[0.9, 0.5], 2), vec![0, 1, 2]);
        // A long query: the dot product and the distance disagree.
        let q = [-3.0, 2.5];
        assert_eq!(dot.probe(&q, 1), vec![2]);
        let l2 = index(Metric::L2);
        assert_eq!(l2.probe(&[0.1, 0.9], 1), vec![1]);
        assert_eq!(l2.candidates(&[-0.8, 0.1], 1), vec![3, 4, 5]);
        assert_eq!(l2.probe(&q, 3).len(), 3);
        assert_eq!(l2.probe(&q, 10).len(), 3, "k above the clusters");
    }
}
