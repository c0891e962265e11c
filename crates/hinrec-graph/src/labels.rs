//! Meta-path labels of chosen (user, item) pairs, without building any
//! commuting matrix.
//!
//! For a path with factors `R1 ... Rk`, the count of pair `(u, v)` is row `u`
//! of `R1 ... R(k-1)` (one sparse vector pushed through the chain with dense
//! accumulators) dotted with column `v` of `Rk` (a row of its transpose). The
//! row mean over all columns is `(row u of R1 ... R(k-1)) . (Rk 1) / cols`,
//! since the row sums of a product are `A (B (C 1))`. Pairs are grouped by
//! user so each user's vector is computed once; users run in parallel.
//! Memory is the graph plus one accumulator per type per thread.

use crate::hin::SpMat;
use rayon::prelude::*;

use crate::error::{GraphError, Result};
use crate::hin::Hin;
use crate::metapath::MetaPath;
use crate::product::{RowRule, RowWorkspace};

struct PathParts<'a> {
    prefix: Vec<&'a SpMat>,
    last_t: SpMat,
    last_row_sums: Vec<f32>,
    rows: usize,
    cols: usize,
    last: &'a SpMat,
}

/// Computes the labels of several meta-paths for chosen pairs.
pub struct PairLabeler<'a> {
    paths: Vec<PathParts<'a>>,
    names: Vec<String>,
    rule: RowRule,
}

impl<'a> PairLabeler<'a> {
    /// Resolves `paths` on `hin`; every path must start at the same type
    /// (users) and end at the same type (items).
    pub fn new(hin: &'a Hin, paths: &[&str], rule: RowRule) -> Result<Self> {
        let mut parts = Vec::new();
        for p in paths {
            let mp = MetaPath::parse(hin, p)?;
            let last = *mp.factors.last().expect("a path has a step");
            let prefix = mp.factors[..mp.factors.len() - 1].to_vec();
            let last_row_sums = (0..last.rows())
                .map(|r| last.outer_view(r).map_or(0.0, |v| v.data().iter().sum()))
                .collect();
            parts.push(PathParts {
                prefix,
                last_t: last.transpose_view().to_csr(),
                last_row_sums,
                rows: mp.rows(),
                cols: mp.cols(),
                last,
            });
        }
        if let Some(first) = parts.first() {
            if parts
                .iter()
                .any(|p| p.rows != first.rows || p.cols != first.cols)
            {
                return Err(GraphError::BadPath(
                    paths.join(","),
                    "the meta-paths do not all join the same two types".into(),
                ));
            }
        }
        Ok(PairLabeler {
            paths: parts,
            names: paths.iter().map(|s| s.to_string()).collect(),
            rule,
        })
    }

    /// Names of the meta-paths, in label order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Labels of `pairs`, row-major: `labels[k * n_paths + p]` is 1.0 when
    /// pair `k` passes the rule on path `p`, else 0.0.
    pub fn labels(&self, pairs: &[(u32, u32)]) -> Result<Vec<f32>> {
        let np = self.paths.len();
        let mut out = vec![0f32; pairs.len() * np];
        if np == 0 {
            return Ok(out);
        }
        let (rows, cols) = (self.paths[0].rows, self.paths[0].cols);
        if let Some(&(u, v)) = pairs
            .iter()
            .find(|&&(u, v)| u as usize >= rows || v as usize >= cols)
        {
            return Err(GraphError::PairOutOfRange(u, v));
        }
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by_key(|&k| pairs[k].0);
        let groups: Vec<&[usize]> = order.chunk_by(|&a, &b| pairs[a].0 == pairs[b].0).collect();
        for (p, path) in self.paths.iter().enumerate() {
            let widths: Vec<usize> = path
                .prefix
                .iter()
                .map(|m| m.cols())
                .chain([path.cols])
                .collect();
            let per_group: Vec<Vec<(usize, f32)>> = groups
                .par_iter()
                .map_init(
                    || (RowWorkspace::new(&widths), vec![0f32; path.last.rows()]),
                    |(ws, dense), group| self.group_labels(path, ws, dense, pairs, group),
                )
                .collect();
            for g in per_group {
                for (k, label) in g {
                    out[k * np + p] = label;
                }
            }
        }
        Ok(out)
    }

    fn group_labels(
        &self,
        path: &PathParts<'_>,
        ws: &mut RowWorkspace,
        dense: &mut [f32],
        pairs: &[(u32, u32)],
        group: &[usize],
    ) -> Vec<(usize, f32)> {
        let u = pairs[group[0]].0;
        let reach = ws.push_through(vec![(u, 1.0f32)], &path.prefix);
        if let RowRule::TopK(_) = self.rule {
            // The k largest need the whole row: push through the last factor too.
            let mut row = ws.push_through(reach, &[path.last]);
            self.rule.apply(&mut row, path.cols);
            row.sort_unstable_by_key(|e| e.0);
            return group
                .iter()
                .map(|&k| {
                    let hit = row.binary_search_by_key(&pairs[k].1, |e| e.0).is_ok();
                    (k, f32::from(u8::from(hit)))
                })
                .collect();
        }
        for &(x, w) in &reach {
            dense[x as usize] = w;
        }
        let mean = match self.rule {
            RowRule::AboveRowMean => {
                let sum: f64 = reach
                    .iter()
                    .map(|&(x, w)| f64::from(w) * f64::from(path.last_row_sums[x as usize]))
                    .sum();
                sum / path.cols.max(1) as f64
            }
            _ => 0.0,
        };
        let out = group
            .iter()
            .map(|&k| {
                // Column v of the last factor dotted with the user's reach.
                let col = path
                    .last_t
                    .outer_view(pairs[k].1 as usize)
                    .expect("checked range");
                let c: f32 = col.iter().map(|(x, w)| w * dense[x]).sum();
                let label = match self.rule {
                    RowRule::Count => c,
                    RowRule::Positive => f32::from(u8::from(c > 0.0)),
                    _ => f32::from(u8::from(f64::from(c) > mean)),
                };
                (k, label)
            })
            .collect();
        for &(x, _) in &reach {
            dense[x as usize] = 0.0;
        }
        out
    }
}
