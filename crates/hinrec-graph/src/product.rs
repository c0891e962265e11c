//! Commuting matrices of meta-paths by sparse products, never dense.
//!
//! The product order is chosen by matrix-chain dynamic programming on
//! estimated flops (from nnz counts). The chosen tree is evaluated with its
//! left spine *streamed*: each output row is computed by pushing one sparse
//! row vector through the spine's factors with a dense accumulator, so the
//! left-hand intermediates never exist in memory; only right-hand sub-chains
//! the plan prefers to multiply first are materialised. Rows are processed
//! in parallel chunks and a [`RowRule`] is applied to each finished row, so a
//! nearly dense product can be thresholded without ever sitting whole.

use crate::hin::SpMat;
use rayon::prelude::*;

/// What to keep of each row of a commuting matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowRule {
    /// The path counts themselves.
    Count,
    /// 1 where the count is positive.
    Positive,
    /// 1 where the count is greater than the mean of its row taken over all
    /// columns (zeros included): the rule behind LGRec's labels.
    AboveRowMean,
    /// 1 for the `k` largest positive counts of the row (ties at the
    /// boundary are kept).
    TopK(usize),
}

impl RowRule {
    /// The test a count must pass in a row holding `vals` (its nonzero
    /// counts) out of `n_cols` columns: `Some((t, strict))` keeps counts
    /// `> t` (strict) or `>= t` and turns them into 1; `None` keeps counts.
    fn threshold(self, vals: &[f32], n_cols: usize) -> Option<(f32, bool)> {
        match self {
            RowRule::Count => None,
            RowRule::Positive => Some((0.0, true)),
            RowRule::AboveRowMean => {
                let sum: f64 = vals.iter().map(|&v| f64::from(v)).sum();
                Some(((sum / n_cols.max(1) as f64) as f32, true))
            }
            RowRule::TopK(0) => Some((f32::INFINITY, true)),
            RowRule::TopK(k) => {
                let mut pos: Vec<f32> = vals.iter().copied().filter(|&v| v > 0.0).collect();
                if pos.len() > k {
                    pos.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                    Some((pos[k - 1], false))
                } else {
                    Some((0.0, true))
                }
            }
        }
    }

    /// Applies the rule to one row of (column, count) entries of a row with
    /// `n_cols` columns, keeping the entries' order.
    pub fn apply(self, entries: &mut Vec<(u32, f32)>, n_cols: usize) {
        let vals: Vec<f32> = entries.iter().map(|e| e.1).collect();
        if let Some((t, strict)) = self.threshold(&vals, n_cols) {
            entries.retain(|e| {
                if strict {
                    e.1 > t
                } else {
                    e.1 >= t && e.1 > 0.0
                }
            });
            entries.iter_mut().for_each(|e| e.1 = 1.0);
        }
    }

    /// Applies the rule to the row stored in `ix[start..]` / `vals[start..]`,
    /// compacting in place.
    pub fn apply_tail(self, ix: &mut Vec<u32>, vals: &mut Vec<f32>, start: usize, n_cols: usize) {
        let Some((t, strict)) = self.threshold(&vals[start..], n_cols) else {
            return;
        };
        let mut w = start;
        for r in start..ix.len() {
            let v = vals[r];
            if if strict { v > t } else { v >= t && v > 0.0 } {
                ix[w] = ix[r];
                vals[w] = 1.0;
                w += 1;
            }
        }
        ix.truncate(w);
        vals.truncate(w);
    }
}

/// How a chain of factors is multiplied: leaves are factor indices.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// One factor.
    Leaf(usize),
    /// Left times right.
    Product(Box<Plan>, Box<Plan>),
}

/// Matrix-chain order on estimated flops.
///
/// Multiplying `X (r x k)` by `Y (k x c)` is estimated at
/// `nnz(X) * nnz(Y) / k` flops with `min(r * c, flops)` nonzeros in the
/// result. Returns the plan and its estimated flops.
pub fn plan(factors: &[&SpMat]) -> (Plan, f64) {
    let n = factors.len();
    let dims: Vec<f64> = std::iter::once(factors[0].rows() as f64)
        .chain(factors.iter().map(|f| f.cols() as f64))
        .collect();
    let mut cost = vec![vec![0f64; n]; n];
    let mut nnz = vec![vec![0f64; n]; n];
    let mut split = vec![vec![0usize; n]; n];
    for i in 0..n {
        nnz[i][i] = factors[i].nnz() as f64;
    }
    for len in 2..=n {
        for i in 0..=n - len {
            let j = i + len - 1;
            cost[i][j] = f64::INFINITY;
            for s in i..j {
                let flops = nnz[i][s] * nnz[s + 1][j] / dims[s + 1].max(1.0);
                let c = cost[i][s] + cost[s + 1][j] + flops;
                // Ties favour the left-deep order, which streams.
                if c < cost[i][j] * (1.0 - 1e-9) || cost[i][j].is_infinite() {
                    cost[i][j] = c;
                    split[i][j] = s;
                    nnz[i][j] = flops.min(dims[i] * dims[j + 1]);
                }
            }
        }
    }
    fn build(split: &[Vec<usize>], i: usize, j: usize) -> Plan {
        if i == j {
            Plan::Leaf(i)
        } else {
            let s = split[i][j];
            Plan::Product(
                Box::new(build(split, i, s)),
                Box::new(build(split, s + 1, j)),
            )
        }
    }
    (build(&split, 0, n - 1), cost[0][n - 1])
}

/// Rows processed per parallel chunk: bounds the memory of unfinished rows.
const CHUNK_ROWS: usize = 1024;

/// Multiplies the chain `factors` in the order of [`plan`], applying `rule`
/// to every output row.
pub fn commuting_matrix(factors: &[&SpMat], rule: RowRule) -> SpMat {
    let (p, _) = plan(factors);
    eval(&p, factors, rule)
}

fn eval(p: &Plan, factors: &[&SpMat], rule: RowRule) -> SpMat {
    // Flatten the left spine: ((F0 * F1) * F2) * F3 streams rows of F0.
    let mut spine = Vec::new();
    let mut node = p;
    while let Plan::Product(l, r) = node {
        spine.push(r.as_ref());
        node = l;
    }
    spine.reverse();
    let materialise = |q: &Plan| -> Option<SpMat> {
        match q {
            Plan::Leaf(_) => None,
            _ => Some(eval(q, factors, RowRule::Count)),
        }
    };
    let first = materialise(node);
    let rest: Vec<Option<SpMat>> = spine.iter().map(|q| materialise(q)).collect();
    let leaf = |q: &Plan| match q {
        Plan::Leaf(i) => *i,
        Plan::Product(..) => unreachable!("materialised"),
    };
    let head: &SpMat = first.as_ref().unwrap_or_else(|| factors[leaf(node)]);
    let tail: Vec<&SpMat> = rest
        .iter()
        .zip(&spine)
        .map(|(m, q)| m.as_ref().unwrap_or_else(|| factors[leaf(q)]))
        .collect();
    stream_rows(head, &tail, rule)
}

/// Row `r` of `head * tail[0] * tail[1] * ...` for every `r`, with `rule`
/// applied per row, assembled chunk by chunk into CSR.
pub fn stream_rows(head: &SpMat, tail: &[&SpMat], rule: RowRule) -> SpMat {
    let rows = head.rows();
    let cols = tail.last().map_or(head.cols(), |m| m.cols());
    let widths: Vec<usize> = tail.iter().map(|m| m.cols()).collect();
    let mut indptr = Vec::with_capacity(rows + 1);
    indptr.push(0usize);
    let mut indices: Vec<u32> = Vec::new();
    let mut data: Vec<f32> = Vec::new();
    let starts: Vec<usize> = (0..rows).step_by(TASK_ROWS).collect();
    for group in starts.chunks(CHUNK_ROWS / TASK_ROWS) {
        // Each task fills contiguous buffers for TASK_ROWS rows.
        let parts: Vec<(Vec<usize>, Vec<u32>, Vec<f32>)> = group
            .par_iter()
            .map_init(
                || RowWorkspace::new(&widths),
                |ws, &start| {
                    let end = (start + TASK_ROWS).min(rows);
                    let (mut lens, mut ix, mut vals) =
                        (Vec::with_capacity(end - start), Vec::new(), Vec::new());
                    for r in start..end {
                        let before = ix.len();
                        ws.row_append(head, tail, r, &mut ix, &mut vals);
                        rule.apply_tail(&mut ix, &mut vals, before, cols);
                        lens.push(ix.len() - before);
                    }
                    (lens, ix, vals)
                },
            )
            .collect();
        for (lens, ix, vals) in parts {
            for l in lens {
                indptr.push(indptr.last().copied().unwrap_or(0) + l);
            }
            indices.extend(ix);
            data.extend(vals);
        }
    }
    SpMat::new((rows, cols), indptr, indices, data)
}

/// Rows per parallel task.
const TASK_ROWS: usize = 32;

/// Dense accumulators for pushing a sparse row through a chain.
pub struct RowWorkspace {
    acc: Vec<Vec<f32>>,
    touched: Vec<Vec<u32>>,
}

impl RowWorkspace {
    /// Accumulators for factors with the given column counts.
    pub fn new(widths: &[usize]) -> Self {
        RowWorkspace {
            acc: widths.iter().map(|&w| vec![0f32; w]).collect(),
            touched: widths.iter().map(|_| Vec::new()).collect(),
        }
    }

    /// Appends row `r` of `head * tail...`, sorted by column, to `ix` and
    /// `vals`.
    pub fn row_append(
        &mut self,
        head: &SpMat,
        tail: &[&SpMat],
        r: usize,
        ix: &mut Vec<u32>,
        vals: &mut Vec<f32>,
    ) {
        let hv = head.outer_view(r).expect("row in range");
        let start: Vec<(u32, f32)> = hv.iter().map(|(c, &v)| (c as u32, v)).collect();
        let Some((last, inner)) = tail.split_last() else {
            ix.extend(start.iter().map(|e| e.0));
            vals.extend(start.iter().map(|e| e.1));
            return;
        };
        let v = self.push_through(start, inner);
        // The last step writes straight into the output, sorted.
        let k = inner.len();
        let ip = last.indptr();
        let ip = ip.raw_storage();
        let flops: usize = v
            .iter()
            .map(|&(i, _)| ip[i as usize + 1] - ip[i as usize])
            .sum();
        if flops * 16 > last.cols() {
            // A dense-ish row: accumulate without tracking, then one ordered,
            // branch-free scan (cheaper than sorting the touched columns).
            // One spare slot absorbs the write after the last nonzero.
            self.ensure(k, last.cols());
            let acc = &mut self.acc[k][..last.cols()];
            let (lix, ldv) = (last.indices(), last.data());
            for &(i, w) in &v {
                let (a, b) = (ip[i as usize], ip[i as usize + 1]);
                for (&j, x) in lix[a..b].iter().zip(&ldv[a..b]) {
                    acc[j as usize] += w * x;
                }
            }
            let (base, n) = (ix.len(), flops.min(last.cols()));
            ix.resize(base + n + 1, 0);
            vals.resize(base + n + 1, 0.0);
            let (out_ix, out_vals) = (&mut ix[base..], &mut vals[base..]);
            let mut w = 0usize;
            for (j, a) in acc.iter_mut().enumerate() {
                out_ix[w] = j as u32;
                out_vals[w] = *a;
                w += usize::from(*a != 0.0);
                *a = 0.0;
            }
            ix.truncate(base + w);
            vals.truncate(base + w);
        } else {
            self.step(&v, last, k);
            let (acc, touched) = (&mut self.acc[k], &mut self.touched[k]);
            touched.sort_unstable();
            for &j in touched.iter() {
                ix.push(j);
                vals.push(acc[j as usize]);
                acc[j as usize] = 0.0;
            }
            touched.clear();
        }
    }

    /// Makes accumulator `k` exist with at least `width` slots.
    fn ensure(&mut self, k: usize, width: usize) {
        while k >= self.acc.len() {
            self.acc.push(Vec::new());
            self.touched.push(Vec::new());
        }
        if self.acc[k].len() < width {
            self.acc[k].resize(width, 0.0);
        }
    }

    /// Accumulates `v * m` into accumulator `k` (grown as needed), recording
    /// the touched columns.
    fn step(&mut self, v: &[(u32, f32)], m: &SpMat, k: usize) {
        self.ensure(k, m.cols());
        let (acc, touched) = (&mut self.acc[k], &mut self.touched[k]);
        let ip = m.indptr();
        let ip = ip.raw_storage();
        let (ix, dv) = (m.indices(), m.data());
        for &(i, w) in v {
            let (a, b) = (ip[i as usize], ip[i as usize + 1]);
            for (&j, x) in ix[a..b].iter().zip(&dv[a..b]) {
                let slot = &mut acc[j as usize];
                if *slot == 0.0 {
                    touched.push(j);
                }
                *slot += w * x;
            }
        }
    }

    /// Multiplies the sparse row vector `v` by each matrix of `chain`
    /// (non-negative weights); the result is in no particular order.
    pub fn push_through(&mut self, v: Vec<(u32, f32)>, chain: &[&SpMat]) -> Vec<(u32, f32)> {
        self.chain(v, chain, false)
    }

    /// Like [`RowWorkspace::push_through`], with the result sorted by column.
    pub fn push_through_sorted(&mut self, v: Vec<(u32, f32)>, chain: &[&SpMat]) -> Vec<(u32, f32)> {
        self.chain(v, chain, true)
    }

    fn chain(&mut self, mut v: Vec<(u32, f32)>, chain: &[&SpMat], sorted: bool) -> Vec<(u32, f32)> {
        for (k, m) in chain.iter().enumerate() {
            self.step(&v, m, k);
            let (acc, touched) = (&mut self.acc[k], &mut self.touched[k]);
            if sorted && k + 1 == chain.len() {
                touched.sort_unstable();
            }
            v.clear();
            for &j in touched.iter() {
                v.push((j, acc[j as usize]));
                acc[j as usize] = 0.0;
            }
            touched.clear();
        }
        if sorted && chain.is_empty() {
            v.sort_unstable_by_key(|e| e.0);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hin::binary_csr;

    fn dense(m: &SpMat) -> Vec<Vec<f32>> {
        let mut d = vec![vec![0f32; m.cols()]; m.rows()];
        for (v, (r, c)) in m.iter() {
            d[r as usize][c as usize] = *v;
        }
        d
    }

    fn naive(ms: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
        let mut acc = ms[0].clone();
        for m in &ms[1..] {
            let mut out = vec![vec![0f32; m[0].len()]; acc.len()];
            for (i, row) in acc.iter().enumerate() {
                for (k, &a) in row.iter().enumerate() {
                    for (j, &b) in m[k].iter().enumerate() {
                        out[i][j] += a * b;
                    }
                }
            }
            acc = out;
        }
        acc
    }

    fn example() -> (SpMat, SpMat, SpMat) {
        // U-M (3 x 4), M-T (4 x 2), T-M (2 x 4)
        let um = binary_csr(3, 4, &mut vec![(0, 0), (0, 1), (1, 1), (1, 2), (2, 3)]);
        let mt = binary_csr(4, 2, &mut vec![(0, 0), (1, 0), (1, 1), (2, 1), (3, 1)]);
        let tm = mt.transpose_view().to_csr();
        (um, mt, tm)
    }

    #[test]
    fn products_match_the_naive_dense_product_in_any_order() {
        let (um, mt, tm) = example();
        let mu = um.transpose_view().to_csr();
        for chain in [
            vec![&um, &mt, &tm],
            vec![&um, &mu, &um],
            vec![&um, &mu, &um, &mu, &um],
        ] {
            let want = naive(&chain.iter().map(|m| dense(m)).collect::<Vec<_>>());
            assert_eq!(dense(&commuting_matrix(&chain, RowRule::Count)), want);
            let streamed = stream_rows(chain[0], &chain[1..], RowRule::Count);
            assert_eq!(dense(&streamed), want);
        }
    }

    #[test]
    fn plan_prefers_the_cheap_order() {
        // A (1 x 1000, 1000 nnz) * B (1000 x 1000, 1000 nnz) * C (1000 x 1, 1 nnz):
        // (A*B)*C costs 1000 + ~1; A*(B*C) costs 1 + 1.
        let a = binary_csr(1, 1000, &mut (0..1000).map(|j| (0, j)).collect());
        let b = binary_csr(1000, 1000, &mut (0..1000).map(|j| (j, j)).collect());
        let c = binary_csr(1000, 1, &mut vec![(5, 0)]);
        let (p, cost) = plan(&[&a, &b, &c]);
        assert_eq!(
            p,
            Plan::Product(
                Box::new(Plan::Leaf(0)),
                Box::new(Plan::Product(
                    Box::new(Plan::Leaf(1)),
                    Box::new(Plan::Leaf(2))
                ))
            )
        );
        assert!(cost < 10.0, "{cost}");
        let out = commuting_matrix(&[&a, &b, &c], RowRule::Count);
        assert_eq!(dense(&out), vec![vec![1.0]]);
    }

    #[test]
    fn row_rules_by_hand() {
        let row = || vec![(0u32, 3.0f32), (2, 1.0), (3, 2.0), (5, 0.0)];
        let mut r = row();
        RowRule::Positive.apply(&mut r, 6);
        assert_eq!(r, vec![(0, 1.0), (2, 1.0), (3, 1.0)]);
        // mean over 6 columns = 6 / 6 = 1: keep 3 and 2, not 1.
        let mut r = row();
        RowRule::AboveRowMean.apply(&mut r, 6);
        assert_eq!(r, vec![(0, 1.0), (3, 1.0)]);
        let mut r = row();
        RowRule::TopK(1).apply(&mut r, 6);
        assert_eq!(r, vec![(0, 1.0)]);
        let mut r = vec![(0u32, 2.0f32), (1, 2.0), (2, 1.0)];
        RowRule::TopK(1).apply(&mut r, 3);
        assert_eq!(r.len(), 2, "ties at the boundary are kept");
    }
}
