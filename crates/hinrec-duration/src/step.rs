//! DURation's training step (eq. 8 on one batch, and its update) on plain
//! `f32` rows, forward and backward written out, outside candle.
//!
//! The same equations as [`crate::network`]'s towers and
//! [`Duration::step_rows`]'s losses (a test holds the two to each other's
//! values and updates). As candle ops, a step was about 40 small ops with
//! their allocations, the kernel blocks of eq. 4 computed in full, and
//! every tower on the main thread (`perf record`, docs/duration.md); here
//! it is the bags (parallel over owners), a dozen products on reused
//! buffers, the alignment's symmetric kernel tiles in parallel
//! ([`hinrec_nn::alignment_rows`]) and the row-wise Adam on the rows the
//! histories touched.

use std::ops::Range;

use candle_core::Var;
use hinrec_nn::alignment_rows::{
    distributional_variance_grad, median_gamma_rows, topology_grad, AlignmentScratch,
};
use hinrec_nn::dense_mlp::{column_sums, DenseLayer};
use hinrec_nn::embedding::EmbeddingTable;
use hinrec_nn::optim::{Adam, AdamConfig};
use rayon::prelude::*;

use crate::data::{History, Row};
use crate::network::Duration;
use crate::params::{DurationError, Result};
use crate::train::{StepLosses, BANDWIDTH_ROWS};

/// Buffers a training loop keeps from step to step.
#[derive(Debug, Default)]
pub(crate) struct StepScratch {
    align: AlignmentScratch,
    /// Each user's / item's slot in the step (`u32::MAX`: absent).
    user_slot: Vec<u32>,
    item_slot: Vec<u32>,
    /// Table-shaped gradients of the two bag tables, and which of their
    /// rows the step touched.
    user_table_grad: Vec<f32>,
    item_table_grad: Vec<f32>,
    user_touched: Vec<bool>,
    item_touched: Vec<bool>,
}

fn values(v: &Var) -> Result<Vec<f32>> {
    Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?)
}

fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// `g` where `h > 0`, else 0 (ReLU's backward from its output `h`).
fn relu_back(g: &mut [f32], h: &[f32]) {
    g.iter_mut()
        .zip(h)
        .for_each(|(g, &h)| *g = if h > 0.0 { *g } else { 0.0 });
}

/// Section 3.2's bags `Y_o W` of `owners` through `history` over `table`,
/// `owners x d`, in parallel over owners.
fn bags(table: &EmbeddingTable, history: &History, owners: &[u32]) -> Vec<f32> {
    let d = table.dim();
    let mut out = vec![0f32; owners.len() * d];
    out.par_chunks_mut(d)
        .zip(owners.par_iter())
        .with_min_len(16)
        .for_each(|(o, &owner)| {
            let (ids, weights) = history.of(owner);
            for (&j, &w) in ids.iter().zip(weights) {
                o.iter_mut()
                    .zip(table.row(j))
                    .for_each(|(o, v)| *o += w * v);
            }
        });
    out
}

/// A row's own rating taken out of its bag: `h[r] = bag[slot[r]] -
/// own[r] table[other[r]]`.
fn without_own(
    bags: &[f32],
    slot: &[u32],
    table: &EmbeddingTable,
    other: &[u32],
    own: &[f32],
) -> Vec<f32> {
    let d = table.dim();
    let mut h = Vec::with_capacity(slot.len() * d);
    for ((&s, &o), &c) in slot.iter().zip(other).zip(own) {
        let b = &bags[s as usize * d..(s as usize + 1) * d];
        h.extend(b.iter().zip(table.row(o)).map(|(b, t)| b - c * t));
    }
    h
}

/// A tower's first layer on the step's rows: `ReLU(bag - own + b)`, each
/// row's bag with its own rating taken out ([`without_own`]); `layer` is
/// the table, the histories that index it and the bias.
fn first_layer(
    (table, history, bias): (&EmbeddingTable, &History, &Var),
    owners: &[u32],
    slot: &[u32],
    other: &[u32],
    own: &[f32],
) -> Result<Vec<f32>> {
    let bags = bags(table, history, owners);
    let mut a = without_own(&bags, slot, table, other, own);
    let bias = values(bias)?;
    a.chunks_mut(table.dim())
        .for_each(|r| r.iter_mut().zip(&bias).for_each(|(v, b)| *v += b));
    relu(&mut a);
    Ok(a)
}

/// Disjoint ranges of table rows a gradient scatter is split into (fixed,
/// so the sums' order does not depend on the thread count). Each part
/// reads every entry, so more parts than cores only cost: on douban-dtcdr
/// 8 parts gave 157 K rows/s on two threads, 4 about 200 K, 2 about 235 K.
const SCATTER_PARTS: usize = 2;

/// The bag table's gradient, table-shaped in `grad` (only the rows in
/// `touched` are written, the rest may hold old values): `w dbag[owner]`
/// for every history entry of the step's owners, `-own[r] dh[r]` onto
/// `other[r]`. Returns the touched rows, ascending.
#[allow(clippy::too_many_arguments)]
fn table_gradient(
    history: &History,
    owners: &[u32],
    dbags: &[f32],
    other: &[u32],
    own: &[f32],
    dh: &[f32],
    d: usize,
    grad: &mut Vec<f32>,
    touched: &mut Vec<bool>,
    rows: usize,
) -> Vec<u32> {
    grad.resize(rows * d, 0.0);
    touched.clear();
    touched.resize(rows, false);
    for &o in owners {
        for &j in history.of(o).0 {
            touched[j as usize] = true;
        }
    }
    for &j in other {
        touched[j as usize] = true;
    }
    let ids: Vec<u32> = (0..rows as u32).filter(|&j| touched[j as usize]).collect();
    let part_rows = rows.div_ceil(SCATTER_PARTS).max(1);
    grad.par_chunks_mut(part_rows * d)
        .enumerate()
        .for_each(|(p, g)| {
            let range = p * part_rows..((p + 1) * part_rows).min(rows);
            for j in range.clone() {
                if touched[j] {
                    g[(j - range.start) * d..(j - range.start + 1) * d].fill(0.0);
                }
            }
            let mut add = |j: u32, w: f32, src: &[f32]| {
                let j = j as usize;
                if range.contains(&j) {
                    let at = (j - range.start) * d;
                    g[at..at + d]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(g, s)| *g += w * s);
                }
            };
            for (s, &o) in owners.iter().enumerate() {
                let (ids, weights) = history.of(o);
                let src = &dbags[s * d..(s + 1) * d];
                for (&j, &w) in ids.iter().zip(weights) {
                    add(j, w, src);
                }
            }
            for (r, (&j, &c)) in other.iter().zip(own).enumerate() {
                add(j, -c, &dh[r * d..(r + 1) * d]);
            }
        });
    ids
}

/// Distinct values in first-seen order and each value's slot.
fn slots(values: impl Iterator<Item = u32>, slot: &mut Vec<u32>, n: usize) -> (Vec<u32>, Vec<u32>) {
    slot.clear();
    slot.resize(n, u32::MAX);
    let mut distinct = Vec::new();
    let at = values
        .map(|v| {
            let s = &mut slot[v as usize];
            if *s == u32::MAX {
                *s = distinct.len() as u32;
                distinct.push(v);
            }
            *s
        })
        .collect();
    (distinct, at)
}

/// `sum over slots of rows` of `dh` by slot: `owners x d`.
fn gather_by_slot(dh: &[f32], slot: &[u32], owners: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0f32; owners * d];
    for (r, &s) in slot.iter().enumerate() {
        out[s as usize * d..(s as usize + 1) * d]
            .iter_mut()
            .zip(&dh[r * d..(r + 1) * d])
            .for_each(|(o, g)| *o += g);
    }
    out
}

impl Duration {
    /// One step of eq. 8 on `rows`, laid out kind by kind (`blocks[p]`
    /// the range of kind `p`'s rows, together covering the rows in
    /// order); with `update`, the Adam update of every weight the step
    /// reached too.
    pub(crate) fn step_fused(
        &mut self,
        rows: &[Row],
        blocks: &[(usize, Range<usize>)],
        update: Option<(&mut Adam, &AdamConfig)>,
        scratch: &mut StepScratch,
    ) -> Result<StepLosses> {
        let n = rows.len();
        let d = self.cfg.dim;
        let mut at = 0;
        for (kind, r) in blocks {
            if r.start != at || *kind >= self.kinds.len() {
                return Err(DurationError::Data(format!(
                    "step blocks {blocks:?} do not cover the {n} rows in order"
                )));
            }
            if r.end > n {
                break;
            }
            let items = &self.kinds[*kind].items;
            if let Some(row) = rows[r.clone()].iter().find(|x| !items.contains(&x.item)) {
                return Err(DurationError::Data(format!(
                    "item {} is not a {} (a step block of kind {kind})",
                    row.item, self.kinds[*kind].name
                )));
            }
            at = r.end;
        }
        if let Some(r) = rows.iter().find(|r| r.user as usize >= self.n_users()) {
            return Err(DurationError::Data(format!(
                "user {} in a step of a model of {} users",
                r.user,
                self.n_users()
            )));
        }
        if at != n || n == 0 {
            return Err(DurationError::Data(format!(
                "step blocks {blocks:?} do not cover the {n} rows in order"
            )));
        }
        let maps = self.cfg.maps_attributes();
        let row_users: Vec<u32> = rows.iter().map(|r| r.user).collect();
        let row_items: Vec<u32> = rows.iter().map(|r| r.item).collect();
        let (users, ru) = slots(
            row_users.iter().copied(),
            &mut scratch.user_slot,
            self.n_users(),
        );
        let (items, ri) = slots(
            row_items.iter().copied(),
            &mut scratch.item_slot,
            self.item_history.owners(),
        );
        // A row's own rating leaves both bags (it is its label).
        let own_u: Vec<f32> = rows
            .iter()
            .map(|r| r.weight * self.user_history.scale(r.user))
            .collect();
        let own_i: Vec<f32> = rows
            .iter()
            .map(|r| r.weight * self.item_history.scale(r.item))
            .collect();

        let side = Side {
            rows,
            blocks,
            row_users: &row_users,
            row_items: &row_items,
        };
        // The two towers are independent until the readout.
        let (user, item) = rayon::join(
            || self.user_forward(&users, &ru, &own_u, &side),
            || self.item_forward(&items, &ri, &own_i, &side),
        );
        let (user, mut item) = (user?, item?);
        let (u, x) = (&user.out, &item.out);

        // Eq. 7 on the readout <u, x> + offset.
        let offset = values(&self.offset)?[0];
        let mut c_sum = 0f64;
        let mut dlogit = vec![0f32; n];
        for (r, row) in rows.iter().enumerate() {
            let l = u[r * d..(r + 1) * d]
                .iter()
                .zip(&x[r * d..(r + 1) * d])
                .map(|(a, b)| a * b)
                .sum::<f32>()
                + offset;
            let y = row.label;
            c_sum += (l.max(0.0) - l * y + (-l.abs()).exp().ln_1p()) as f64;
            dlogit[r] = (1.0 / (1.0 + (-l).exp()) - y) / n as f32;
        }
        let c = c_sum / n as f64;
        let mut total = c;
        // Eq. 8's alignment and topology terms, their gradients onto the
        // mapped rows.
        let mapped = &item.mapped;
        let mut dmapped = vec![0f32; mapped.len()];
        let (mut a_val, mut t_val) = (0.0, 0.0);
        if maps {
            if blocks.len() >= 2 && self.cfg.alpha > 0.0 {
                let gamma = if self.cfg.gamma > 0.0 {
                    self.cfg.gamma
                } else {
                    median_gamma_rows(&mapped[..n.min(BANDWIDTH_ROWS) * d], d)?
                };
                let sizes: Vec<usize> = blocks.iter().map(|b| b.1.len()).collect();
                a_val = distributional_variance_grad(
                    mapped,
                    d,
                    &sizes,
                    gamma,
                    self.cfg.alpha as f32,
                    &mut dmapped,
                    &mut scratch.align,
                )?;
                total += self.cfg.alpha * a_val;
            }
            if self.cfg.beta > 0.0 {
                for ((kind, range), raw) in blocks.iter().zip(&item.raws) {
                    let dr = self.kinds[*kind].raw_dim;
                    if range.len() < 2 || dr < 2 {
                        continue;
                    }
                    let span = range.start * d..range.end * d;
                    t_val += topology_grad(
                        raw,
                        dr,
                        &mapped[span.clone()],
                        d,
                        self.cfg.beta as f32,
                        &mut dmapped[span],
                    )?;
                }
                total += self.cfg.beta * t_val;
            }
        }
        let reg = self.cfg.reg / n as f64;
        if reg > 0.0 {
            let sq: f64 = u.iter().chain(x).map(|&v| (v as f64) * (v as f64)).sum();
            total += reg * sq;
        }
        let losses = StepLosses {
            classification: c,
            alignment: a_val,
            topology: t_val,
            total,
        };
        let Some((adam, adam_cfg)) = update else {
            return Ok(losses);
        };

        // Backward: the readout's gradients onto both towers' outputs.
        let reg2 = (2.0 * reg) as f32;
        let mut du = vec![0f32; n * d];
        let mut dx = vec![0f32; n * d];
        let chunks = du.chunks_mut(d).zip(dx.chunks_mut(d));
        for (((gu, gx), (ur, xr)), &g) in chunks.zip(u.chunks(d).zip(x.chunks(d))).zip(&dlogit) {
            for ((gu, gx), (&a, &b)) in gu.iter_mut().zip(gx).zip(ur.iter().zip(xr)) {
                *gu = g * b + reg2 * a;
                *gx = g * a + reg2 * b;
            }
        }
        let d_offset: f32 = dlogit.iter().sum();
        item.dmapped = dmapped;
        let (user_grads, item_grads) = rayon::join(
            || user.backward(du, d),
            || item.backward(dx, blocks, d, maps),
        );
        let ([d_uw, d_ub, d_user_bias], dau) = user_grads?;
        let ([d_iw, d_ib, d_item_bias], map_grads, dai) = item_grads?;
        // Adam on the dense weights, in the order of `named_vars`.
        let mut grads: Vec<&[f32]> = vec![
            &d_user_bias,
            &d_item_bias,
            std::slice::from_ref(&d_offset),
            &d_uw,
            &d_ub,
            &d_iw,
            &d_ib,
        ];
        // A kind with no rows in the step (only one with no training rows
        // at all) gets zeros: its moments are zero, so it does not move.
        let zeros: Vec<Vec<Vec<f32>>> = self
            .maps
            .iter()
            .map(|m| {
                m.layers
                    .iter()
                    .flat_map(|l| [l.weight.elem_count(), l.bias.elem_count()])
                    .map(|c| vec![0f32; c])
                    .collect()
            })
            .collect();
        let mut per_kind: Vec<Option<&[Vec<f32>; 4]>> = vec![None; self.maps.len()];
        for ((kind, _), g) in blocks.iter().zip(&map_grads) {
            per_kind[*kind] = Some(g);
        }
        for (k, g) in per_kind.iter().enumerate() {
            match g {
                Some(g) => grads.extend(g.iter().map(|v| v.as_slice())),
                None => grads.extend(zeros[k].iter().map(|v| v.as_slice())),
            }
        }
        adam.step_with(&grads)?;
        // The bag tables, row-wise on the rows the histories reached.
        let (n_users, n_items) = (self.n_users(), self.item_history.owners());
        let StepScratch {
            user_table_grad,
            item_table_grad,
            user_touched,
            item_touched,
            ..
        } = scratch;
        let (user_bag, item_bag) = (&mut self.user_bag, &mut self.item_bag);
        let (user_history, item_history) = (&self.user_history, &self.item_history);
        let (a, b) = rayon::join(
            || -> candle_core::Result<()> {
                let dbags = gather_by_slot(&dau, &ru, users.len(), d);
                let ids = table_gradient(
                    user_history,
                    &users,
                    &dbags,
                    &row_items,
                    &own_u,
                    &dau,
                    d,
                    user_table_grad,
                    user_touched,
                    n_items,
                );
                user_bag.apply_table_rows(&ids, user_table_grad, adam_cfg)
            },
            || -> candle_core::Result<()> {
                let dbags = gather_by_slot(&dai, &ri, items.len(), d);
                let ids = table_gradient(
                    item_history,
                    &items,
                    &dbags,
                    &row_users,
                    &own_i,
                    &dai,
                    d,
                    item_table_grad,
                    item_touched,
                    n_users,
                );
                item_bag.apply_table_rows(&ids, item_table_grad, adam_cfg)
            },
        );
        a?;
        b?;
        Ok(losses)
    }

    /// Section 3.2's user tower on the step's rows: `u = ReLU(ReLU(Y_u* W
    /// + b) W_u + c_u)`, the row's own item out of its bag.
    fn user_forward(
        &self,
        users: &[u32],
        slot: &[u32],
        own: &[f32],
        side: &Side<'_>,
    ) -> Result<UserForward> {
        let n = side.rows.len();
        let a = first_layer(
            (&self.user_bag, &self.user_history, &self.user_bias),
            users,
            slot,
            side.row_items,
            own,
        )?;
        let layer = self.user_out.to_dense()?;
        let mut out = layer.forward_rows(&a, n)?;
        relu(&mut out);
        Ok(UserForward { layer, a, out })
    }

    /// The item tower: `x = ReLU([ReLU(Y_*x W + b), f_p(r)] W_x + c_x)`,
    /// `f_p(r) = ReLU(r W_1 + b_1) W_2 + b_2` per block's kind.
    fn item_forward(
        &self,
        items: &[u32],
        slot: &[u32],
        own: &[f32],
        side: &Side<'_>,
    ) -> Result<ItemForward> {
        let d = self.cfg.dim;
        let n = side.rows.len();
        let a = first_layer(
            (&self.item_bag, &self.item_history, &self.item_bias),
            items,
            slot,
            side.row_users,
            own,
        )?;
        let mut maps = Vec::new();
        let mut raws = Vec::new();
        let mut hidden = Vec::new();
        let mut mapped = Vec::new();
        if self.cfg.maps_attributes() {
            for (kind, range) in side.blocks {
                let m = &self.maps[*kind];
                let layers = [m.layers[0].to_dense()?, m.layers[1].to_dense()?];
                let raw = self.kinds[*kind].raw_rows(side.row_items[range.clone()].iter().copied());
                let mut h1 = layers[0].forward_rows(&raw, range.len())?;
                relu(&mut h1);
                mapped.extend(layers[1].forward_rows(&h1, range.len())?);
                maps.push(layers);
                raws.push(raw);
                hidden.push(h1);
            }
        }
        let input = if self.cfg.maps_attributes() {
            let mut input = Vec::with_capacity(n * 2 * d);
            for (a, m) in a.chunks(d).zip(mapped.chunks(d)) {
                input.extend_from_slice(a);
                input.extend_from_slice(m);
            }
            input
        } else {
            a.clone()
        };
        let layer = self.item_out.to_dense()?;
        let mut out = layer.forward_rows(&input, n)?;
        relu(&mut out);
        Ok(ItemForward {
            layer,
            a,
            maps,
            raws,
            hidden,
            mapped,
            dmapped: Vec::new(),
            input,
            out,
        })
    }
}

/// The step's rows as both towers read them.
struct Side<'a> {
    rows: &'a [Row],
    blocks: &'a [(usize, Range<usize>)],
    row_users: &'a [u32],
    row_items: &'a [u32],
}

/// What the user tower's forward keeps for its backward.
struct UserForward {
    layer: DenseLayer,
    /// `ReLU(h + b)`, the output layer's input.
    a: Vec<f32>,
    /// `u`.
    out: Vec<f32>,
}

impl UserForward {
    /// From `du` (the gradient of `u`): the output layer's weight and bias
    /// and the first bias's gradients, and the bag rows' gradient.
    fn backward(&self, mut du: Vec<f32>, d: usize) -> Result<([Vec<f32>; 3], Vec<f32>)> {
        let n = du.len() / d;
        relu_back(&mut du, &self.out);
        let [dw, db, mut da] = self.layer.backward_rows(&self.a, &du, n)?;
        relu_back(&mut da, &self.a);
        let d_bias = column_sums(&da, d);
        Ok(([dw, db, d_bias], da))
    }
}

/// What the item tower's forward keeps for its backward.
struct ItemForward {
    layer: DenseLayer,
    a: Vec<f32>,
    /// Per block: `f_p`'s two layers, the raw rows and the hidden rows.
    maps: Vec<[DenseLayer; 2]>,
    raws: Vec<Vec<f32>>,
    hidden: Vec<Vec<f32>>,
    /// `f_p(r)` of every row, and the alignment's and topology's gradient
    /// of it (set before the backward).
    mapped: Vec<f32>,
    dmapped: Vec<f32>,
    input: Vec<f32>,
    out: Vec<f32>,
}

/// The item tower's dense gradients (output weight, output bias, first
/// bias), each block's `f_p` gradients, and the bag rows' gradient.
type ItemGrads = ([Vec<f32>; 3], Vec<[Vec<f32>; 4]>, Vec<f32>);

impl ItemForward {
    fn backward(
        mut self,
        mut dx: Vec<f32>,
        blocks: &[(usize, Range<usize>)],
        d: usize,
        maps: bool,
    ) -> Result<ItemGrads> {
        let n = dx.len() / d;
        relu_back(&mut dx, &self.out);
        let [dw, db, dinput] = self.layer.backward_rows(&self.input, &dx, n)?;
        let mut da = Vec::with_capacity(n * d);
        if maps {
            for (r, g) in dinput.chunks(2 * d).enumerate() {
                da.extend_from_slice(&g[..d]);
                self.dmapped[r * d..(r + 1) * d]
                    .iter_mut()
                    .zip(&g[d..])
                    .for_each(|(m, v)| *m += v);
            }
        } else {
            da = dinput;
        }
        relu_back(&mut da, &self.a);
        let d_bias = column_sums(&da, d);
        let mut map_grads = Vec::new();
        for (((layers, raw), h1), (_, range)) in self
            .maps
            .iter()
            .zip(&self.raws)
            .zip(&self.hidden)
            .zip(blocks)
        {
            let dm = &self.dmapped[range.start * d..range.end * d];
            let [dw2, db2, mut dh1] = layers[1].backward_rows(h1, dm, range.len())?;
            relu_back(&mut dh1, h1);
            let [dw1, db1, _] = layers[0].backward_rows(raw, &dh1, range.len())?;
            map_grads.push([dw1, db1, dw2, db2]);
        }
        Ok(([dw, db, d_bias], map_grads, da))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{Tensor, D};
    use hinrec_nn::alignment::{distributional_variance, median_gamma, topology};
    use hinrec_nn::init::Rng;
    use hinrec_nn::loss::{bce_with_logits, l2};

    use super::*;
    use crate::data::Kind;
    use crate::params::{DurationConfig, Variant};

    impl Duration {
        /// The step as composed candle ops with autograd: the reference
        /// [`Duration::step_fused`] is held to.
        fn step_rows(
            &mut self,
            rows: &[Row],
            blocks: &[(usize, Range<usize>)],
            update: Option<(&mut Adam, &AdamConfig)>,
        ) -> Result<StepLosses> {
            let n = rows.len();
            let dev = self.dev.clone();
            let (mut users, mut items): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
            let (mut u_slot, mut i_slot) = (HashMap::new(), HashMap::new());
            let slot_of = |v: u32, list: &mut Vec<u32>, map: &mut HashMap<u32, u32>| {
                *map.entry(v).or_insert_with(|| {
                    list.push(v);
                    list.len() as u32 - 1
                })
            };
            let ru: Vec<u32> = rows
                .iter()
                .map(|r| slot_of(r.user, &mut users, &mut u_slot))
                .collect();
            let ri: Vec<u32> = rows
                .iter()
                .map(|r| slot_of(r.item, &mut items, &mut i_slot))
                .collect();
            let row_items: Vec<u32> = rows.iter().map(|r| r.item).collect();
            let row_users: Vec<u32> = rows.iter().map(|r| r.user).collect();
            // Section 3.2's history bags, once per distinct user and item; a
            // row's own rating is taken out of both (it is its label).
            let ub = self.bags(&self.user_bag, &self.user_history, &users, &row_items)?;
            let ib = self.bags(&self.item_bag, &self.item_history, &items, &row_users)?;
            let idx = |v: Vec<u32>| Tensor::from_vec(v, n, &dev);
            let own = |leaf: &Tensor, at: &[u32], w: Vec<f32>| -> candle_core::Result<Tensor> {
                leaf.index_select(&Tensor::from_vec(at.to_vec(), n, &dev)?, 0)?
                    .broadcast_mul(&Tensor::from_vec(w, (n, 1), &dev)?)
            };
            let uw: Vec<f32> = rows
                .iter()
                .map(|r| r.weight * self.user_history.scale(r.user))
                .collect();
            let iw: Vec<f32> = rows
                .iter()
                .map(|r| r.weight * self.item_history.scale(r.item))
                .collect();
            let hu = (ub.bags.index_select(&idx(ru)?, 0)?
                - own(ub.leaf.as_tensor(), &ub.extra_at, uw)?)?;
            let hi = (ib.bags.index_select(&idx(ri)?, 0)?
                - own(ib.leaf.as_tensor(), &ib.extra_at, iw)?)?;
            // f_p(r) of each kind's rows (section 3.2), in row order.
            let mut raws = Vec::new();
            let mut maps = Vec::new();
            if self.cfg.maps_attributes() {
                for (kind, range) in blocks {
                    let (raw, mapped) = self.map_items(*kind, &row_items[range.clone()])?;
                    raws.push(raw);
                    maps.push(mapped);
                }
            }
            let mapped = if maps.is_empty() {
                None
            } else {
                Some(Tensor::cat(&maps, 0)?)
            };
            let u = self.user_tower(&hu)?;
            let x = self.item_tower(&hi, mapped.as_ref())?;
            // Eq. 7 on the readout <u, x> + offset.
            let logits = (&u * &x)?
                .sum(D::Minus1)?
                .broadcast_add(self.offset.as_tensor())?;
            let labels =
                Tensor::from_vec(rows.iter().map(|r| r.label).collect::<Vec<_>>(), n, &dev)?;
            let c = bce_with_logits(&logits, &labels)?;
            let mut loss = c.clone();
            let (mut a_val, mut t_val) = (0.0, 0.0);
            if self.cfg.maps_attributes() {
                if maps.len() >= 2 && self.cfg.alpha > 0.0 {
                    let gamma = if self.cfg.gamma > 0.0 {
                        self.cfg.gamma
                    } else {
                        let m = mapped
                            .as_ref()
                            .ok_or_else(|| DurationError::Data("no mapped rows".into()))?;
                        median_gamma(&m.narrow(0, 0, n.min(BANDWIDTH_ROWS))?)?
                    };
                    let refs: Vec<&Tensor> = maps.iter().collect();
                    let a = distributional_variance(&refs, gamma)?;
                    a_val = a.to_scalar::<f32>()? as f64;
                    loss = (loss + (a * self.cfg.alpha)?)?;
                }
                if self.cfg.beta > 0.0 {
                    let mut t_sum: Option<Tensor> = None;
                    for (raw, m) in raws.iter().zip(&maps) {
                        if m.dim(0)? < 2 || raw.dim(1)? < 2 {
                            continue;
                        }
                        let t = topology(raw, m)?;
                        t_sum = Some(match t_sum {
                            Some(s) => (s + t)?,
                            None => t,
                        });
                    }
                    if let Some(t) = t_sum {
                        t_val = t.to_scalar::<f32>()? as f64;
                        loss = (loss + (t * self.cfg.beta)?)?;
                    }
                }
            }
            if self.cfg.reg > 0.0 {
                let reg = (l2(&[&u, &x])? * (self.cfg.reg / n as f64))?;
                loss = (loss + reg)?;
            }
            let losses = StepLosses {
                classification: c.to_scalar::<f32>()? as f64,
                alignment: a_val,
                topology: t_val,
                total: loss.to_scalar::<f32>()? as f64,
            };
            if let Some((adam, emb_cfg)) = update {
                let grads = loss.backward()?;
                adam.step(&grads)?;
                if let Some(g) = grads.get(ub.leaf.as_tensor()) {
                    self.user_bag.apply(&ub.ids, g, emb_cfg)?;
                }
                if let Some(g) = grads.get(ib.leaf.as_tensor()) {
                    self.item_bag.apply(&ib.ids, g, emb_cfg)?;
                }
            }
            Ok(losses)
        }
    }

    /// Five users, two kinds (items 0-5 with 3-wide raw rows, 6-9 with
    /// 4-wide ones), training rows with their rating weights, and a step's
    /// rows kind by kind (one sampled negative, weight 0).
    type Blocks = Vec<(usize, Range<usize>)>;

    fn fixture(variant: Variant) -> (Duration, Vec<Row>, Blocks) {
        let mut rng = Rng::new(11);
        let train: Vec<(u32, u32, f32)> = (0..5u32)
            .flat_map(|u| {
                (0..10u32)
                    .filter(move |i| (u + i) % 3 != 0)
                    .map(move |i| (u, i))
            })
            .map(|(u, i)| (u, i, 0.2 + 0.2 * ((u * 7 + i) % 5) as f32))
            .collect();
        let user_history = History::build(5, &train);
        let flipped: Vec<(u32, u32, f32)> = train.iter().map(|&(u, i, w)| (i, u, w)).collect();
        let item_history = History::build(10, &flipped);
        let raw =
            |rng: &mut Rng, n: usize| rng.normal(n, 1.0).into_iter().map(|v| v as f32).collect();
        let kinds = vec![
            Kind {
                name: "a".into(),
                items: 0..6,
                raw_dim: 3,
                raw: raw(&mut rng, 18),
            },
            Kind {
                name: "b".into(),
                items: 6..10,
                raw_dim: 4,
                raw: raw(&mut rng, 16),
            },
        ];
        let cfg = DurationConfig {
            dim: 4,
            alpha: 2.0,
            beta: 0.01,
            reg: 0.1,
            init_std: 0.5,
            variant,
            ..Default::default()
        };
        let model = Duration::init(&cfg, kinds, user_history, item_history, 3).unwrap();
        let row = |&(u, i, w): &(u32, u32, f32)| Row {
            user: u,
            item: i,
            label: (w > 0.5) as u8 as f32,
            weight: w,
        };
        let mut rows: Vec<Row> = train.iter().filter(|t| t.1 < 6).take(7).map(row).collect();
        rows.push(Row {
            user: 0,
            item: 3,
            label: 0.0,
            weight: 0.0,
        });
        let first = rows.len();
        rows.extend(train.iter().filter(|t| t.1 >= 6).take(5).map(row));
        let blocks = vec![(0, 0..first), (1, first..rows.len())];
        (model, rows, blocks)
    }

    /// Every weight and table value, by name.
    fn snapshot(m: &Duration) -> HashMap<String, Vec<f32>> {
        m.state()
            .unwrap()
            .into_iter()
            .filter(|(k, _)| !k.contains(".m") && !k.contains(".v") && !k.contains("step"))
            .map(|(k, t)| {
                (
                    k,
                    t.flatten_all()
                        .unwrap()
                        .to_dtype(candle_core::DType::F32)
                        .unwrap()
                        .to_vec1()
                        .unwrap(),
                )
            })
            .collect()
    }

    /// The fused step gives candle's losses and, through one Adam step
    /// with `eps = 1` (so an update is `-g / (|g| + 1)`, smooth in the
    /// gradient), candle's update of every weight and table row.
    #[test]
    fn the_fused_step_is_the_candle_step() {
        for variant in [Variant::Full, Variant::Dmf] {
            let (mut a, rows, blocks) = fixture(variant);
            let (mut b, _, _) = fixture(variant);
            let before = snapshot(&a);
            let cfg = AdamConfig {
                lr: 1.0,
                eps: 1.0,
                ..Default::default()
            };
            let vars = |m: &Duration| m.named_vars().into_iter().map(|v| v.1).collect();
            let mut adam_a = Adam::new(vars(&a), cfg).unwrap();
            let mut adam_b = Adam::new(vars(&b), cfg).unwrap();
            let want = a
                .step_rows(&rows, &blocks, Some((&mut adam_a, &cfg)))
                .unwrap();
            let mut scratch = StepScratch::default();
            let got = b
                .step_fused(&rows, &blocks, Some((&mut adam_b, &cfg)), &mut scratch)
                .unwrap();
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-5 * y.abs().max(1.0);
            assert!(
                close(got.classification, want.classification),
                "{got:?} {want:?}"
            );
            assert!(close(got.alignment, want.alignment), "{got:?} {want:?}");
            assert!(close(got.topology, want.topology), "{got:?} {want:?}");
            assert!(close(got.total, want.total), "{got:?} {want:?}");
            if variant == Variant::Full {
                assert!(want.alignment > 0.0 && want.topology > 0.0, "{want:?}");
            }
            let (sa, sb) = (snapshot(&a), snapshot(&b));
            let mut moved = 0;
            for (name, w0) in &before {
                for ((x, y), w) in sa[name].iter().zip(&sb[name]).zip(w0) {
                    assert!((x - y).abs() < 2e-5, "{variant:?} {name}: {x} {y}");
                    moved += ((x - w).abs() > 1e-4) as usize;
                }
            }
            assert!(moved > 50, "{moved} values moved");
        }
    }

    #[test]
    fn blocks_that_do_not_cover_the_rows_are_an_error() {
        let (mut m, rows, _) = fixture(Variant::Full);
        let mut s = StepScratch::default();
        assert!(m.step_fused(&rows, &[(0, 0..3)], None, &mut s).is_err());
        assert!(m
            .step_fused(&rows, &[(0, 1..rows.len())], None, &mut s)
            .is_err());
        assert!(m
            .step_fused(&rows, &[(5, 0..rows.len())], None, &mut s)
            .is_err());
        // Items of the other kind in a block.
        assert!(m
            .step_fused(&rows, &[(0, 0..rows.len())], None, &mut s)
            .is_err());
        let first = rows.iter().position(|r| r.item >= 6).unwrap();
        let blocks = [(0, 0..first), (1, first..rows.len())];
        assert!(m.step_fused(&rows, &blocks, None, &mut s).is_ok());
    }
}
