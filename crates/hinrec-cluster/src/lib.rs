//! Clustering for hinrec: seeded k-means and a cluster index.
//!
//! - [`kmeans`]: k-means++ seeding then Lloyd iterations, parallel over
//!   points with rayon, and the same centroids for a seed whatever the
//!   thread count (per-point work is independent; sums are taken over
//!   fixed chunks combined in order). GLRS clusters its item space with
//!   it; HHFAN quantises image and audio features with it.
//! - [`index`]: a [`index::ClusterIndex`] over the clusters: centroids and
//!   inverted lists, probed by dot product or distance, the coarse stage
//!   of GLRS's Algorithm 1.
//!
//! ```
//! use hinrec_cluster::{index::{ClusterIndex, Metric}, kmeans::{KMeans, KMeansConfig}};
//!
//! // Two obvious groups on a line.
//! let points = [0.0f32, 0.1, 0.2, 10.0, 10.1, 10.2];
//! let km = KMeans::fit(&points, 1, &KMeansConfig { k: 2, seed: 3, ..KMeansConfig::default() })?;
//! assert_ne!(km.assignment[0], km.assignment[5]);
//! let index = ClusterIndex::new(&km, Metric::L2);
//! assert_eq!(index.candidates(&[9.0], 1), vec![3, 4, 5]);
//! # Ok::<(), hinrec_cluster::ClusterError>(())
//! ```

pub mod index;
pub mod kmeans;

/// Why clustering could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClusterError {
    /// A setting or an input size is unusable.
    #[error("k-means: {0}")]
    Invalid(String),
}
