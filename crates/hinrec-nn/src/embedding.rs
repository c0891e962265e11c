//! Embedding tables kept outside candle and updated row-wise with lazy
//! Adam.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, Var};

use rayon::prelude::*;

use crate::optim::{AdamConfig, AdamStep};

/// Rows one parallel task updates at least.
const ROWS_PER_TASK: usize = 128;

/// An embedding table kept outside candle and updated row-wise.
///
/// [`EmbeddingTable::gather`] copies the rows a batch touches into a small
/// leaf variable; the model works on that; [`EmbeddingTable::apply`] takes its
/// gradient and runs Adam on those rows only (lazy Adam: a row's moments
/// change only when the row is in a batch; bias correction uses the table's
/// step count). Neither the gradient nor the optimizer ever touches the
/// whole table.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingTable {
    rows: usize,
    dim: usize,
    data: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
}

impl EmbeddingTable {
    /// A table with the given values (row-major, `rows x dim`).
    pub fn new(rows: usize, dim: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * dim, "table data has the wrong length");
        EmbeddingTable {
            rows,
            dim,
            m: vec![0.0; data.len()],
            v: vec![0.0; data.len()],
            data,
            step: 0,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Row width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Every row, row-major (for products over the whole table).
    pub fn values(&self) -> &[f32] {
        &self.data
    }

    /// Row `r`.
    pub fn row(&self, r: u32) -> &[f32] {
        &self.data[r as usize * self.dim..(r as usize + 1) * self.dim]
    }

    /// The rows `ids` (distinct) as a `(ids.len(), dim)` leaf variable.
    pub fn gather(&self, ids: &[u32], dtype: DType, dev: &Device) -> Result<Var> {
        let buf = self.gather_rows(ids);
        Var::from_tensor(&Tensor::from_vec(buf, (ids.len(), self.dim), dev)?.to_dtype(dtype)?)
    }

    /// The whole table as a constant tensor (for evaluation).
    pub fn tensor(&self, dtype: DType, dev: &Device) -> Result<Tensor> {
        Tensor::from_vec(self.data.clone(), (self.rows, self.dim), dev)?.to_dtype(dtype)
    }

    /// The rows `ids`, row-major.
    pub fn gather_rows(&self, ids: &[u32]) -> Vec<f32> {
        let mut buf = Vec::with_capacity(ids.len() * self.dim);
        self.gather_rows_into(ids, &mut buf);
        buf
    }

    /// The rows `ids` into `buf` (cleared first; its allocation reused).
    pub fn gather_rows_into(&self, ids: &[u32], buf: &mut Vec<f32>) {
        buf.clear();
        for &r in ids {
            buf.extend_from_slice(self.row(r));
        }
    }

    /// One lazy-Adam step on rows `ids` with their gradient `grad`
    /// (`(ids.len(), dim)`).
    pub fn apply(&mut self, ids: &[u32], grad: &Tensor, cfg: &AdamConfig) -> Result<()> {
        let g: Vec<f32> = grad.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        self.apply_rows(ids, &g, cfg)
    }

    /// [`EmbeddingTable::apply`] with the gradient as plain row-major
    /// values.
    pub fn apply_rows(&mut self, ids: &[u32], g: &[f32], cfg: &AdamConfig) -> Result<()> {
        if g.len() != ids.len() * self.dim {
            candle_core::bail!(
                "embedding: a gradient of {} values for {} rows of {}",
                g.len(),
                ids.len(),
                self.dim
            );
        }
        if let Some(&r) = ids.iter().find(|&&r| r as usize >= self.rows) {
            candle_core::bail!("embedding: row {r} of a table of {}", self.rows);
        }
        self.step += 1;
        let k = AdamStep::new(cfg, self.step);
        let d = self.dim;
        if d > 0 && ids.windows(2).all(|w| w[0] < w[1]) {
            // Ascending ids: the rows are disjoint, split off in order and
            // updated in parallel (each row's update is its own, so the
            // result is the sequential one).
            self.disjoint_rows(ids)
                .into_par_iter()
                .zip(g.par_chunks(d))
                .with_min_len(ROWS_PER_TASK)
                .for_each(|((w, m, v), g)| k.apply(w, m, v, g));
            return Ok(());
        }
        for (n, &r) in ids.iter().enumerate() {
            let rows = r as usize * d..(r as usize + 1) * d;
            k.apply(
                &mut self.data[rows.clone()],
                &mut self.m[rows.clone()],
                &mut self.v[rows],
                &g[n * d..(n + 1) * d],
            );
        }
        Ok(())
    }

    /// [`EmbeddingTable::apply_rows`] with the gradient laid out like the
    /// table (`rows x dim`, row `r` at `r * dim`), of which only the rows
    /// `ids` (ascending) are read: no copy of them into a compact buffer.
    pub fn apply_table_rows(&mut self, ids: &[u32], g: &[f32], cfg: &AdamConfig) -> Result<()> {
        if g.len() != self.data.len() {
            candle_core::bail!(
                "embedding: a table-shaped gradient of {} values for {} x {}",
                g.len(),
                self.rows,
                self.dim
            );
        }
        if !ids.windows(2).all(|w| w[0] < w[1])
            || ids.last().is_some_and(|&r| r as usize >= self.rows)
        {
            candle_core::bail!("embedding: rows must be ascending and inside the table");
        }
        self.step += 1;
        let k = AdamStep::new(cfg, self.step);
        let d = self.dim;
        if d == 0 {
            return Ok(());
        }
        self.disjoint_rows(ids)
            .into_par_iter()
            .zip(ids.par_iter())
            .with_min_len(ROWS_PER_TASK)
            .for_each(|((w, m, v), &r)| k.apply(w, m, v, &g[r as usize * d..(r as usize + 1) * d]));
        Ok(())
    }

    /// The values and moments of rows `ids` (ascending, inside the
    /// table, `dim > 0`), split off the table in order.
    #[allow(clippy::type_complexity)]
    fn disjoint_rows(&mut self, ids: &[u32]) -> Vec<(&mut [f32], &mut [f32], &mut [f32])> {
        let d = self.dim;
        let (mut data, mut m, mut v) = (&mut self.data[..], &mut self.m[..], &mut self.v[..]);
        let mut rows = Vec::with_capacity(ids.len());
        let mut at = 0;
        for &r in ids {
            let skip = (r as usize - at) * d;
            let (w, rest) = std::mem::take(&mut data)[skip..].split_at_mut(d);
            data = rest;
            let (mr, rest) = std::mem::take(&mut m)[skip..].split_at_mut(d);
            m = rest;
            let (vr, rest) = std::mem::take(&mut v)[skip..].split_at_mut(d);
            v = rest;
            rows.push((w, mr, vr));
            at = r as usize + 1;
        }
        rows
    }

    /// The state to checkpoint: values, moments and step.
    pub fn state(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        let dev = Device::Cpu;
        let shape = (self.rows, self.dim);
        Ok(HashMap::from([
            (
                format!("{prefix}.rows"),
                Tensor::from_vec(self.data.clone(), shape, &dev)?,
            ),
            (
                format!("{prefix}.adam.m"),
                Tensor::from_vec(self.m.clone(), shape, &dev)?,
            ),
            (
                format!("{prefix}.adam.v"),
                Tensor::from_vec(self.v.clone(), shape, &dev)?,
            ),
            (
                format!("{prefix}.adam.step"),
                Tensor::new(&[self.step as f64], &dev)?,
            ),
        ]))
    }

    /// Restores what [`EmbeddingTable::state`] saved.
    pub fn from_state(prefix: &str, t: &HashMap<String, Tensor>) -> Result<Self> {
        let get = |k: String| {
            t.get(&k)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks {k}")))
        };
        let w = get(format!("{prefix}.rows"))?;
        let (rows, dim) = w.dims2()?;
        let flat =
            |x: Tensor| -> Result<Vec<f32>> { x.to_dtype(DType::F32)?.flatten_all()?.to_vec1() };
        let (m, v) = (
            flat(get(format!("{prefix}.adam.m"))?)?,
            flat(get(format!("{prefix}.adam.v"))?)?,
        );
        if m.len() != rows * dim || v.len() != rows * dim {
            return Err(candle_core::Error::Msg(format!(
                "{prefix}: the Adam moments do not match the {rows} x {dim} rows"
            )));
        }
        let step = get(format!("{prefix}.adam.step"))?
            .flatten_all()?
            .to_vec1::<f64>()?;
        Ok(EmbeddingTable {
            rows,
            dim,
            data: flat(w)?,
            m,
            v,
            step: step.first().copied().unwrap_or(0.0) as u64,
        })
    }
}
