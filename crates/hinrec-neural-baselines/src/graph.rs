//! LightGCN's graph: the user-item bipartite graph of the training pairs
//! as one symmetric CSR over `n_users + n_items` nodes, weighted
//! `1 / sqrt(deg(u) deg(i))` (eq. 7 of He et al. 2020: `D^-1/2 A D^-1/2`),
//! and its products with row-major embedding matrices.
//!
//! A product `out = Â x` runs over output rows in parallel, each row a
//! fixed-order sum, so the result does not depend on the thread count.

use hinrec_data::Interactions;
use rayon::prelude::*;

/// Output rows one parallel task computes at least.
const ROWS_PER_TASK: usize = 64;

/// The normalised adjacency `Â` of the bipartite graph: users are nodes
/// `0..n_users`, item `i` is node `n_users + i`.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedGraph {
    n_users: usize,
    ptr: Vec<usize>,
    cols: Vec<u32>,
    weights: Vec<f32>,
}

impl NormalizedGraph {
    /// The graph of `train`'s pairs (isolated nodes have empty rows).
    pub fn new(train: &Interactions) -> Self {
        let (nu, ni) = (train.n_users(), train.n_items());
        let inv_sqrt = |d: usize| if d == 0 { 0.0 } else { 1.0 / (d as f64).sqrt() };
        let du: Vec<f64> = (0..nu as u32)
            .map(|u| inv_sqrt(train.user_degree(u)))
            .collect();
        let di: Vec<f64> = (0..ni as u32)
            .map(|i| inv_sqrt(train.item_degree(i)))
            .collect();
        let mut ptr = Vec::with_capacity(nu + ni + 1);
        let mut cols = Vec::with_capacity(2 * train.nnz());
        let mut weights = Vec::with_capacity(2 * train.nnz());
        ptr.push(0);
        for u in 0..nu as u32 {
            for &i in train.user_items(u) {
                cols.push(nu as u32 + i);
                weights.push((du[u as usize] * di[i as usize]) as f32);
            }
            ptr.push(cols.len());
        }
        for i in 0..ni as u32 {
            for &u in train.item_users(i) {
                cols.push(u);
                weights.push((du[u as usize] * di[i as usize]) as f32);
            }
            ptr.push(cols.len());
        }
        NormalizedGraph {
            n_users: nu,
            ptr,
            cols,
            weights,
        }
    }

    /// Nodes (users then items).
    pub fn nodes(&self) -> usize {
        self.ptr.len() - 1
    }

    /// Users (the first nodes).
    pub fn n_users(&self) -> usize {
        self.n_users
    }

    /// Stored entries (twice the training pairs).
    pub fn nnz(&self) -> usize {
        self.cols.len()
    }

    /// Row `r`: its neighbours and their weights.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let span = self.ptr[r]..self.ptr[r + 1];
        (&self.cols[span.clone()], &self.weights[span])
    }

    /// `out = Â x` over every row (`x`, `out` row-major, `dim` wide).
    pub fn propagate(&self, x: &[f32], out: &mut [f32], dim: usize) {
        if dim == 0 {
            return;
        }
        out.par_chunks_mut(dim * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(t, o)| {
                pulp::Arch::new().dispatch(RowsJob {
                    graph: self,
                    x,
                    out: o,
                    rows: Rows::From(t * ROWS_PER_TASK),
                    dim,
                })
            });
    }

    /// Rows `rows` of `Â x` into `out` (`rows.len() x dim`, in that
    /// order), in parallel.
    pub fn rows_product(&self, rows: &[u32], x: &[f32], out: &mut [f32], dim: usize) {
        if dim == 0 {
            return;
        }
        out.par_chunks_mut(dim * ROWS_PER_TASK)
            .zip(rows.par_chunks(ROWS_PER_TASK))
            .for_each(|(o, r)| {
                pulp::Arch::new().dispatch(RowsJob {
                    graph: self,
                    x,
                    out: o,
                    rows: Rows::Listed(r),
                    dim,
                })
            });
    }

    /// Row `r` of `Â x` into `out` (`dim` values).
    #[inline(always)]
    pub fn row_product(&self, r: usize, x: &[f32], out: &mut [f32], dim: usize) {
        let (cols, w) = self.row(r);
        let mut start = 0;
        // Lanes held in registers across the whole row, then stored once.
        start = accumulate::<64>(cols, w, x, out, dim, start);
        start = accumulate::<16>(cols, w, x, out, dim, start);
        accumulate::<1>(cols, w, x, out, dim, start);
    }

    /// `out += Â g` where `g` is nonzero only on `rows` (distinct; `g`
    /// holds their values in that order, `dim` wide): a scatter over
    /// those rows' neighbours, cheaper than a full product when the rows
    /// are few. `Â` is symmetric, so row `r`'s entries are column `r`'s.
    /// Users' rows reach items only and items' rows users only, so the two
    /// halves run in parallel.
    pub fn scatter_add(&self, rows: &[u32], g: &[f32], out: &mut [f32], dim: usize) {
        let nu = self.n_users;
        let (to_users, to_items) = out.split_at_mut(nu * dim);
        let half = |dst: &mut [f32], offset: usize, from_users: bool| {
            pulp::Arch::new().dispatch(ScatterJob {
                graph: self,
                rows,
                g,
                dst,
                offset,
                from_users,
                dim,
            })
        };
        rayon::join(|| half(to_items, nu, true), || half(to_users, 0, false));
    }
}

/// `out[start..]` in blocks of `L` lanes, each block the weighted sum of
/// the row's neighbours' values summed in a local array (registers) and
/// stored once; returns where the blocks stopped.
#[inline(always)]
fn accumulate<const L: usize>(
    cols: &[u32],
    w: &[f32],
    x: &[f32],
    out: &mut [f32],
    dim: usize,
    mut start: usize,
) -> usize {
    while start + L <= dim {
        let mut acc = [0f32; L];
        for (&c, &w) in cols.iter().zip(w) {
            let at = c as usize * dim + start;
            if let Some(s) = x[at..at + L].first_chunk::<L>() {
                for l in 0..L {
                    acc[l] += w * s[l];
                }
            }
        }
        out[start..start + L].copy_from_slice(&acc);
        start += L;
    }
    start
}

/// Which rows a [`RowsJob`] computes.
enum Rows<'a> {
    /// Consecutive rows from this one.
    From(usize),
    /// These rows.
    Listed(&'a [u32]),
}

/// A block of output rows as a `pulp` job: the row products inlined into
/// a function compiled for AVX2 (or AVX-512) where the CPU has it.
struct RowsJob<'a> {
    graph: &'a NormalizedGraph,
    x: &'a [f32],
    out: &'a mut [f32],
    rows: Rows<'a>,
    dim: usize,
}

impl pulp::WithSimd for RowsJob<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let RowsJob {
            graph,
            x,
            out,
            rows,
            dim,
        } = self;
        for (k, o) in out.chunks_exact_mut(dim).enumerate() {
            let r = match rows {
                Rows::From(first) => first + k,
                Rows::Listed(r) => r[k] as usize,
            };
            graph.row_product(r, x, o, dim);
        }
    }
}

/// One half of [`NormalizedGraph::scatter_add`] as a `pulp` job.
struct ScatterJob<'a> {
    graph: &'a NormalizedGraph,
    rows: &'a [u32],
    g: &'a [f32],
    /// The users' or the items' rows of the output.
    dst: &'a mut [f32],
    /// The first node of `dst`.
    offset: usize,
    from_users: bool,
    dim: usize,
}

impl pulp::WithSimd for ScatterJob<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (nu, dim) = (self.graph.n_users, self.dim);
        for (&r, gr) in self.rows.iter().zip(self.g.chunks_exact(dim)) {
            if ((r as usize) < nu) != self.from_users {
                continue;
            }
            let (cols, w) = self.graph.row(r as usize);
            for (&c, &w) in cols.iter().zip(w) {
                let at = (c as usize - self.offset) * dim;
                for (o, &s) in self.dst[at..at + dim].iter_mut().zip(gr) {
                    *o += w * s;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two users, two items: u0-i0, u0-i1, u1-i1.
    fn small() -> NormalizedGraph {
        NormalizedGraph::new(&Interactions::from_pairs(2, 2, &[(0, 0), (0, 1), (1, 1)]))
    }

    #[test]
    fn weights_are_the_symmetric_normalisation() {
        let g = small();
        assert_eq!((g.nodes(), g.nnz(), g.n_users()), (4, 6, 2));
        // deg: u0 2, u1 1, i0 1, i1 2.
        let (c, w) = g.row(0);
        assert_eq!(c, &[2, 3]);
        assert!((w[0] - 1.0 / 2f32.sqrt()).abs() < 1e-6);
        assert!((w[1] - 0.5).abs() < 1e-6);
        let (c, w) = g.row(3);
        assert_eq!(c, &[0, 1]);
        assert!((w[0] - 0.5).abs() < 1e-6 && (w[1] - 1.0 / 2f32.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn propagate_and_scatter_agree_with_a_dense_product() {
        for dim in [2, 83] {
            products_agree(dim);
        }
    }

    /// `dim` 83 = 64 + 16 + 3 takes every block width of `accumulate`.
    fn products_agree(dim: usize) {
        let g = small();
        let x: Vec<f32> = (0..4 * dim).map(|k| (k % 7) as f32 * 0.5 - 1.0).collect();
        let mut dense = [0f32; 16];
        for r in 0..4 {
            let (c, w) = g.row(r);
            for (&c, &w) in c.iter().zip(w) {
                dense[r * 4 + c as usize] = w;
            }
        }
        let product = |x: &[f32]| {
            let mut want = vec![0f32; 4 * dim];
            for r in 0..4 {
                for c in 0..4 {
                    for k in 0..dim {
                        want[r * dim + k] += dense[r * 4 + c] * x[c * dim + k];
                    }
                }
            }
            want
        };
        let close = |a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len());
            for (a, b) in a.iter().zip(b) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        };
        let mut out = vec![0f32; 4 * dim];
        g.propagate(&x, &mut out, dim);
        close(&out, &product(&x));
        let mut two = vec![0f32; 2 * dim];
        g.rows_product(&[3, 1], &x, &mut two, dim);
        close(&two[..dim], &out[3 * dim..]);
        close(&two[dim..], &out[dim..2 * dim]);
        // The same product from the rows that are nonzero only.
        let rows = [0u32, 2, 3];
        let g_rows: Vec<f32> = rows
            .iter()
            .flat_map(|&r| x[r as usize * dim..(r as usize + 1) * dim].to_vec())
            .collect();
        let mut x_sparse = x.clone();
        x_sparse[dim..2 * dim].fill(0.0);
        let mut out = vec![0f32; 4 * dim];
        g.scatter_add(&rows, &g_rows, &mut out, dim);
        close(&out, &product(&x_sparse));
    }
}
