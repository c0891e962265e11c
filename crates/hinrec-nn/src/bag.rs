//! An embedding bag as one op: each bag is a weighted sum of rows of a
//! table, `out[b] = sum over its entries e of w_e table[row_e]`
//! (DURation's history towers, section 3.2's `Y_u* W`).
//!
//! Composed from candle ops it is an `index_select` of every entry's row,
//! a broadcast product with the weights and an `index_add`, each an
//! `entries x d` tensor forward and again backward; here the forward is
//! one pass over the entries (parallel over bags) and the backward one
//! pass that adds `w_e g[b]` onto the entries' rows.

use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;

use crate::slot_ops::{contiguous, flat};

/// Bags in CSR form over the rows of a table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BagIndex {
    /// Start of each bag's entries (plus the end).
    pub offsets: Vec<usize>,
    /// Each entry's table row.
    pub rows: Vec<u32>,
    /// Each entry's weight.
    pub weights: Vec<f32>,
}

impl BagIndex {
    /// An empty index (no bags).
    pub fn new() -> Self {
        BagIndex {
            offsets: vec![0],
            rows: Vec::new(),
            weights: Vec::new(),
        }
    }

    /// Appends a bag of `(row, weight)` entries.
    pub fn push(&mut self, entries: impl IntoIterator<Item = (u32, f32)>) {
        for (r, w) in entries {
            self.rows.push(r);
            self.weights.push(w);
        }
        self.offsets.push(self.rows.len());
    }

    /// Number of bags.
    pub fn bags(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    fn check(&self, table_rows: usize) -> Result<()> {
        let ok = self.offsets.first() == Some(&0)
            && self.offsets.windows(2).all(|w| w[0] <= w[1])
            && self.offsets.last() == Some(&self.rows.len())
            && self.weights.len() == self.rows.len();
        if !ok {
            bail!("embedding bag: malformed index");
        }
        if let Some(r) = self.rows.iter().find(|&&r| r as usize >= table_rows) {
            bail!("embedding bag: row {r} of a table of {table_rows}");
        }
        Ok(())
    }
}

/// The bags of `index` over `table` `(rows, d)`: `(index.bags(), d)`.
pub fn embedding_bag(table: &Tensor, index: Arc<BagIndex>) -> Result<Tensor> {
    let (rows, _) = table.dims2()?;
    index.check(rows)?;
    table.contiguous()?.apply_op1(EmbeddingBag(index))
}

struct EmbeddingBag(Arc<BagIndex>);

impl EmbeddingBag {
    fn forward<T: Float + Send + Sync>(&self, table: &[T], d: usize) -> Vec<T> {
        let ix = &self.0;
        let mut out = vec![T::zero(); ix.bags() * d];
        out.par_chunks_mut(d.max(1)).enumerate().for_each(|(b, o)| {
            for e in ix.offsets[b]..ix.offsets[b + 1] {
                let w = T::from(ix.weights[e]).unwrap_or_else(T::zero);
                let r = ix.rows[e] as usize * d;
                for (x, &t) in o.iter_mut().zip(&table[r..r + d]) {
                    *x = *x + w * t;
                }
            }
        });
        out
    }

    fn backward<T: Float>(&self, g: &[T], rows: usize, d: usize) -> Vec<T> {
        let ix = &self.0;
        let mut out = vec![T::zero(); rows * d];
        for b in 0..ix.bags() {
            let gb = &g[b * d..(b + 1) * d];
            for e in ix.offsets[b]..ix.offsets[b + 1] {
                let w = T::from(ix.weights[e]).unwrap_or_else(T::zero);
                let r = ix.rows[e] as usize * d;
                for (x, &v) in out[r..r + d].iter_mut().zip(gb) {
                    *x = *x + w * v;
                }
            }
        }
        out
    }
}

impl CustomOp1 for EmbeddingBag {
    fn name(&self) -> &'static str {
        "embedding-bag"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, d) = l.shape().dims2()?;
        let storage = match s {
            CpuStorage::F32(_) => CpuStorage::F32(self.forward(contiguous::<f32>(s, l)?, d)),
            CpuStorage::F64(_) => CpuStorage::F64(self.forward(contiguous::<f64>(s, l)?, d)),
            _ => bail!("embedding bag supports f32 and f64"),
        };
        Ok((storage, Shape::from((self.0.bags(), d))))
    }

    fn bwd(&self, table: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (rows, d) = table.dims2()?;
        let g = match table.dtype() {
            candle_core::DType::F64 => Tensor::from_vec(
                self.backward::<f64>(&flat(grad)?, rows, d),
                (rows, d),
                table.device(),
            )?,
            _ => Tensor::from_vec(
                self.backward::<f32>(
                    &flat::<f32>(&grad.to_dtype(candle_core::DType::F32)?)?,
                    rows,
                    d,
                ),
                (rows, d),
                table.device(),
            )?
            .to_dtype(table.dtype())?,
        };
        Ok(Some(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::max_gradient_error;
    use candle_core::Device;

    fn index() -> Arc<BagIndex> {
        let mut ix = BagIndex::new();
        ix.push([(0, 1.0), (2, 0.5)]);
        ix.push([]);
        ix.push([(2, 2.0), (2, -1.0), (1, 0.25)]);
        Arc::new(ix)
    }

    #[test]
    fn bags_by_hand() {
        let t = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], (3, 2), &Device::Cpu).unwrap();
        let out = embedding_bag(&t, index())
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        // [1,2] + 0.5 [5,6]; nothing; 2 [5,6] - [5,6] + 0.25 [3,4].
        assert_eq!(out, vec![vec![3.5, 5.0], vec![0.0, 0.0], vec![5.75, 7.0]]);
        let t32 = t.to_dtype(candle_core::DType::F32).unwrap();
        let o32 = embedding_bag(&t32, index())
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(o32[2], vec![5.75, 7.0]);
    }

    #[test]
    fn gradient_matches_finite_differences_with_repeated_rows() {
        let w =
            Tensor::from_vec(vec![0.3, -1.0, 0.5, 2.0, 0.1, -0.4], (3, 2), &Device::Cpu).unwrap();
        let x = [0.2, -0.1, 0.7, 0.4, -0.3, 0.9];
        let e = max_gradient_error(&x, &[3, 2], |t| {
            (embedding_bag(t, index())? * &w)?.sqr()?.sum_all()
        })
        .unwrap();
        assert!(e < 1e-6, "{e}");
    }

    #[test]
    fn a_bad_index_is_an_error() {
        let t = Tensor::zeros((2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(embedding_bag(&t, index()).is_err()); // row 2 of 2
        let bad = BagIndex {
            offsets: vec![0, 3],
            rows: vec![0],
            weights: vec![1.0],
        };
        assert!(embedding_bag(&t, Arc::new(bad)).is_err());
    }
}

/// The fused bag gives the composed ops' values bit for bit, forward and
/// backward; a model's results still move when it switches, because the
/// table's gradient then arrives as one sum instead of row by row into
/// whatever the other consumers of the rows already added.
#[cfg(test)]
mod same_as_composed {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn bitwise() {
        let dev = Device::Cpu;
        let mut rng = crate::init::Rng::new(3);
        let (rows, d) = (50, 8);
        let vals: Vec<f32> = rng
            .normal(rows * d, 1.0)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        let mut ix = BagIndex::new();
        let mut pos = Vec::new();
        let mut seg = Vec::new();
        let mut w = Vec::new();
        for b in 0..20u32 {
            let entries: Vec<(u32, f32)> = (0..(b % 7 + 1))
                .map(|k| ((b * 13 + k * 7) % rows as u32, 0.1 + k as f32 * 0.37))
                .collect();
            for &(r, x) in &entries {
                pos.push(r);
                seg.push(b);
                w.push(x);
            }
            ix.push(entries);
        }
        let n = pos.len();
        let leaf = Var::from_tensor(&Tensor::from_vec(vals, (rows, d), &dev).unwrap()).unwrap();
        let g = Tensor::from_vec(
            rng.normal(20 * d, 1.0)
                .into_iter()
                .map(|v| v as f32)
                .collect::<Vec<_>>(),
            (20, d),
            &dev,
        )
        .unwrap();
        let fused = embedding_bag(leaf.as_tensor(), Arc::new(ix)).unwrap();
        let composed = Tensor::zeros((20, d), DType::F32, &dev)
            .unwrap()
            .index_add(
                &Tensor::from_vec(seg, n, &dev).unwrap(),
                &leaf
                    .as_tensor()
                    .index_select(&Tensor::from_vec(pos, n, &dev).unwrap(), 0)
                    .unwrap()
                    .broadcast_mul(&Tensor::from_vec(w, (n, 1), &dev).unwrap())
                    .unwrap(),
                0,
            )
            .unwrap();
        assert_eq!(
            fused.to_vec2::<f32>().unwrap(),
            composed.to_vec2::<f32>().unwrap(),
            "forward"
        );
        let gf = (fused * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (composed * &g)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert_eq!(
            gf.get(leaf.as_tensor()).unwrap().to_vec2::<f32>().unwrap(),
            gc.get(leaf.as_tensor()).unwrap().to_vec2::<f32>().unwrap(),
            "backward"
        );
    }
}
