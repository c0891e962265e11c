//! k-means: k-means++ seeding (Arthur and Vassilvitskii 2007) then Lloyd
//! iterations, seeded and independent of the thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ClusterError;

/// Points per chunk of the parallel centroid sums: fixed, so the sums are
/// added in the same order on any number of threads.
const CHUNK: usize = 1024;

/// k-means settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KMeansConfig {
    /// Clusters.
    pub k: usize,
    /// Most Lloyd iterations.
    pub max_iter: usize,
    /// Seed of the k-means++ draws.
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        KMeansConfig {
            k: 8,
            max_iter: 100,
            seed: 0,
        }
    }
}

/// A fitted clustering of `n` points of `dim` dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Dimensions.
    pub dim: usize,
    /// Centroids, row-major `k x dim`.
    pub centroids: Vec<f32>,
    /// The cluster of each point.
    pub assignment: Vec<u32>,
    /// Sum of squared distances of the points to their centroids.
    pub inertia: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
}

/// Running sums [`dot`] and [`sq_dist`] keep: a single running sum cannot
/// be vectorised (float addition is not associative); 16 of them, added
/// in a fixed order, can, and the result still does not depend on the
/// machine or the thread count.
const LANES: usize = 16;

/// `sum f(a_j, b_j)` over 16 running sums, then the tail.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for j in 0..LANES {
            acc[j] += f(x[j], y[j]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Squared Euclidean distance.
pub fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| (x - y) * (x - y))
}

/// Dot product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

/// The nearest of `centroids` (row-major, `dim` wide) to `x`, and the
/// squared distance; ties go to the smaller index.
pub fn nearest(centroids: &[f32], dim: usize, x: &[f32]) -> (u32, f32) {
    let mut best = (0u32, f32::INFINITY);
    for (c, row) in centroids.chunks_exact(dim).enumerate() {
        let d = sq_dist(row, x);
        if d < best.1 {
            best = (c as u32, d);
        }
    }
    best
}

impl KMeans {
    /// Clusters `points` (row-major, `dim` wide) into `cfg.k` clusters.
    /// Fails on an empty input, `k` of 0 or more than the points, a
    /// ragged buffer or a non-finite value.
    pub fn fit(points: &[f32], dim: usize, cfg: &KMeansConfig) -> Result<Self, ClusterError> {
        let bad = |m: String| Err(ClusterError::Invalid(m));
        if dim == 0 || points.is_empty() || !points.len().is_multiple_of(dim) {
            return bad(format!(
                "{} values do not make rows of {dim} dimensions",
                points.len()
            ));
        }
        let n = points.len() / dim;
        if cfg.k == 0 || cfg.k > n {
            return bad(format!("k = {} with {n} points (want 1 to {n})", cfg.k));
        }
        if let Some(p) = points.iter().position(|v| !v.is_finite()) {
            return bad(format!("point {} has a non-finite value", p / dim));
        }
        let mut centroids = plus_plus(points, dim, cfg.k, cfg.seed);
        let mut assignment = vec![u32::MAX; n];
        let mut iterations = 0;
        for _ in 0..cfg.max_iter.max(1) {
            iterations += 1;
            let next: Vec<(u32, f32)> = points
                .par_chunks_exact(dim)
                .map(|x| nearest(&centroids, dim, x))
                .collect();
            let changed = next.iter().zip(&assignment).any(|(a, &old)| a.0 != old);
            for (slot, a) in assignment.iter_mut().zip(&next) {
                *slot = a.0;
            }
            centroids = update(points, dim, cfg.k, &assignment, &next, &centroids);
            if !changed {
                break;
            }
        }
        let inertia = points
            .par_chunks_exact(dim)
            .zip(&assignment)
            .map(|(x, &c)| {
                let row = &centroids[c as usize * dim..(c as usize + 1) * dim];
                sq_dist(row, x) as f64
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum();
        Ok(KMeans {
            dim,
            centroids,
            assignment,
            inertia,
            iterations,
        })
    }

    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.centroids.len() / self.dim
    }

    /// Centroid `c`.
    pub fn centroid(&self, c: u32) -> &[f32] {
        &self.centroids[c as usize * self.dim..(c as usize + 1) * self.dim]
    }

    /// The nearest centroid of a new point.
    pub fn predict(&self, x: &[f32]) -> u32 {
        nearest(&self.centroids, self.dim, x).0
    }
}

/// k-means++: the first centroid uniform, each next one drawn with
/// probability proportional to the squared distance to the nearest chosen
/// one.
fn plus_plus(points: &[f32], dim: usize, k: usize, seed: u64) -> Vec<f32> {
    let n = points.len() / dim;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let first = rng.random_range(0..n);
    let mut centroids = row(first).to_vec();
    let mut d2: Vec<f32> = points
        .par_chunks_exact(dim)
        .map(|x| sq_dist(x, row(first)))
        .collect();
    while centroids.len() < k * dim {
        let total: f64 = d2.iter().map(|&v| v as f64).sum();
        let pick = if total > 0.0 {
            let target = rng.random_range(0.0..total);
            let mut acc = 0.0f64;
            let mut pick = n - 1;
            for (i, &v) in d2.iter().enumerate() {
                acc += v as f64;
                if acc > target {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            // Every point sits on a centroid: any point will do.
            rng.random_range(0..n)
        };
        let c = row(pick).to_vec();
        d2.par_iter_mut()
            .zip(points.par_chunks_exact(dim))
            .for_each(|(d, x)| *d = d.min(sq_dist(x, &c)));
        centroids.extend_from_slice(&c);
    }
    centroids
}

/// The means of the clusters; an empty cluster takes the point farthest
/// from its own centroid (the smallest index among equals), which leaves
/// that point's cluster.
fn update(
    points: &[f32],
    dim: usize,
    k: usize,
    assignment: &[u32],
    nearest: &[(u32, f32)],
    old: &[f32],
) -> Vec<f32> {
    let partial: Vec<(Vec<f64>, Vec<usize>)> = points
        .par_chunks(CHUNK * dim)
        .zip(assignment.par_chunks(CHUNK))
        .map(|(xs, cs)| {
            let mut sum = vec![0f64; k * dim];
            let mut count = vec![0usize; k];
            for (x, &c) in xs.chunks_exact(dim).zip(cs) {
                count[c as usize] += 1;
                for (s, v) in sum[c as usize * dim..(c as usize + 1) * dim]
                    .iter_mut()
                    .zip(x)
                {
                    *s += *v as f64;
                }
            }
            (sum, count)
        })
        .collect();
    let mut sum = vec![0f64; k * dim];
    let mut count = vec![0usize; k];
    for (s, c) in &partial {
        for (a, b) in sum.iter_mut().zip(s) {
            *a += b;
        }
        for (a, b) in count.iter_mut().zip(c) {
            *a += b;
        }
    }
    let mut out = old.to_vec();
    let mut taken = vec![false; assignment.len()];
    for c in 0..k {
        if count[c] > 0 {
            for j in 0..dim {
                out[c * dim + j] = (sum[c * dim + j] / count[c] as f64) as f32;
            }
            continue;
        }
        let far = nearest.iter().enumerate().filter(|(i, _)| !taken[*i]).fold(
            None::<(usize, f32)>,
            |best, (i, &(_, d))| match best {
                Some((_, bd)) if bd >= d => best,
                _ => Some((i, d)),
            },
        );
        if let Some((i, _)) = far {
            taken[i] = true;
            out[c * dim..(c + 1) * dim].copy_from_slice(&points[i * dim..(i + 1) * dim]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_distance_at_every_length() {
        for n in [0usize, 1, 15, 16, 17, 64, 70] {
            let a: Vec<f32> = (0..n).map(|k| k as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|k| 1.0 - k as f32 * 0.25).collect();
            let d: f64 = a.iter().zip(&b).map(|(x, y)| (x * y) as f64).sum();
            let q: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| ((x - y) * (x - y)) as f64)
                .sum();
            assert!((dot(&a, &b) as f64 - d).abs() < 1e-3, "{n}");
            assert!((sq_dist(&a, &b) as f64 - q).abs() < 1e-3, "{n}");
        }
    }

    /// Three tight 2-d blobs of 200 points around (0,0), (5,5), (0,9).
    fn blobs() -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let centres = [(0.0, 0.0), (5.0, 5.0), (0.0, 9.0)];
        let mut out = Vec::new();
        for k in 0..600 {
            let (x, y) = centres[k % 3];
            out.push(x + rng.random_range(-0.5..0.5));
            out.push(y + rng.random_range(-0.5..0.5));
        }
        out
    }

    #[test]
    fn finds_the_blobs() {
        let p = blobs();
        let km = KMeans::fit(
            &p,
            2,
            &KMeansConfig {
                k: 3,
                ..KMeansConfig::default()
            },
        )
        .unwrap();
        for k in 0..600 {
            assert_eq!(km.assignment[k], km.assignment[k % 3], "point {k}");
        }
        let mut cs: Vec<(i32, i32)> = (0..3)
            .map(|c| {
                let r = km.centroid(c);
                (r[0].round() as i32, r[1].round() as i32)
            })
            .collect();
        cs.sort();
        assert_eq!(cs, vec![(0, 0), (0, 9), (5, 5)]);
        assert!(km.inertia < 600.0 * 0.2, "{}", km.inertia);
    }

    #[test]
    fn lloyd_step_by_hand() {
        // Points 0, 1, 9, 10 in 1-d with k = 2: the means are 0.5 and 9.5.
        let km = KMeans::fit(
            &[0.0, 1.0, 9.0, 10.0],
            1,
            &KMeansConfig {
                k: 2,
                seed: 5,
                max_iter: 10,
            },
        )
        .unwrap();
        let mut c = km.centroids.clone();
        c.sort_by(f32::total_cmp);
        assert_eq!(c, vec![0.5, 9.5]);
        assert_eq!(km.inertia, 4.0 * 0.25);
    }

    #[test]
    fn same_result_for_a_seed_on_any_thread_count() {
        let p: Vec<f32> = {
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            (0..5000 * 8).map(|_| rng.random_range(-1.0..1.0)).collect()
        };
        let cfg = KMeansConfig {
            k: 20,
            max_iter: 30,
            seed: 4,
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| KMeans::fit(&p, 8, &cfg).unwrap())
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
        assert_ne!(
            one,
            KMeans::fit(&p, 8, &KMeansConfig { seed: 5, ..cfg }).unwrap()
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cfg = KMeansConfig {
            k: 3,
            ..KMeansConfig::default()
        };
        assert!(KMeans::fit(&[], 2, &cfg).is_err());
        assert!(KMeans::fit(&[1.0, 2.0, 3.0], 2, &cfg).is_err());
        assert!(KMeans::fit(&[1.0, 2.0], 2, &cfg).is_err(), "k above n");
        assert!(KMeans::fit(&[1.0, f32::NAN, 3.0, 4.0, 5.0, 6.0], 2, &cfg).is_err());
        let zero = KMeansConfig { k: 0, ..cfg };
        assert!(KMeans::fit(&[1.0, 2.0], 1, &zero).is_err());
    }

    #[test]
    fn duplicate_points_still_give_k_centroids() {
        let p = vec![1.0f32; 10];
        let km = KMeans::fit(
            &p,
            1,
            &KMeansConfig {
                k: 3,
                ..KMeansConfig::default()
            },
        )
        .unwrap();
        assert_eq!(km.k(), 3);
        assert_eq!(km.inertia, 0.0);
    }
}
