//! Eq. 1-8 on plain `f32` rows, forward and backward written out, outside
//! candle: the training step (with eq. 10's loss), the final embeddings
//! and the explanations all run this forward.
//!
//! As candle ops a step was some fifty small ops on the main thread
//! around the fused LSTM (about half of a step, docs/hhfan.md); here the
//! attention of eq. 4-7 is a loop per node, in parallel over nodes, and
//! the products are one call each over the batch's rows. The candle
//! composition stays in the tests as the reference (one step gives its
//! loss and its update of every weight).

use candle_core::Var;
use hinrec_nn::dense_mlp::{gemm, DenseLayer};
use hinrec_nn::loss::softplus_f32;
use hinrec_nn::lstm::{lstm_mean_values, LstmMeanTape};
use hinrec_nn::optim::{Adam, AdamConfig};
use rayon::prelude::*;

use crate::graph::Role;
use crate::network::{Hhfan, LEAKY};
use crate::params::{HhfanError, Result, Variant};

/// Nodes per parallel task of the per-node attention loops.
const NODES_PER_TASK: usize = 64;

fn values(v: &Var) -> Result<Vec<f32>> {
    Ok(v.as_tensor().flatten_all()?.to_vec1::<f32>()?)
}

/// The dense weights of one step, as plain values.
struct Weights {
    /// Eq. 1's transform of each content type.
    content: Vec<Option<DenseLayer>>,
    /// Eq. 3's LSTM of each type: `[2, d + d/2, 2d]` and `[2, 2d]`.
    lstm: Vec<(Vec<f32>, Vec<f32>)>,
    /// Eq. 4's `W^Q`, `W^K`, `W^V`.
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    /// Eq. 7's `u`, `(2, d)`.
    att: Vec<f32>,
}

/// The rows a set of targets reads: each type's unique nodes (the
/// targets' neighbours, then the targets themselves) and the groups as
/// rows of them.
struct Plan {
    /// Unique nodes of each type, ids within the type.
    uniq: Vec<Vec<u32>>,
    /// Each target's type and row in its type's `uniq`.
    own: Vec<(usize, u32)>,
    /// Per type: the group slots as rows of `uniq[t]`, `n x keep[t]`
    /// (padding reads row 0), and the groups' lengths.
    idx: Vec<Vec<u32>>,
    lengths: Vec<Vec<u32>>,
}

/// Eq. 4-5's intermediate values, kept for the backward.
struct AttrTape {
    /// `(n, A, d)`: the attribute groups' embeddings.
    x: Vec<f32>,
    /// `W^Q W^K^T` and `X W^Q W^K^T` (empty for HHFAN-a).
    wqk: Vec<f32>,
    xm: Vec<f32>,
    /// `(n, A, A)`: the attention.
    p: Vec<f32>,
    /// `(n, d)`: `sum_a (1^T P)_a x_a`.
    mixed: Vec<f32>,
}

/// A forward pass over `n` targets and what its backward reads.
pub(crate) struct Forward {
    plan: Plan,
    weights: Weights,
    /// Eq. 1's rows of each type's unique nodes.
    f: Vec<Vec<f32>>,
    /// The content features those rows were computed from.
    inputs: Vec<Option<Vec<f32>>>,
    /// Eq. 3's group embeddings per type, `(n, d)`.
    agg: Vec<Vec<f32>>,
    lstm: Vec<Option<LstmMeanTape>>,
    /// Attribute types in eq. 4's order.
    attr_types: Vec<usize>,
    attr: Option<AttrTape>,
    /// Eq. 5's output, `(n, d)`.
    e_attr: Option<Vec<f32>>,
    /// Each target's own eq. 1 row, `(n, d)`.
    q: Option<Vec<f32>>,
    /// Eq. 6's candidates per target, `G`.
    g: usize,
    /// Eq. 7's scores before the LeakyReLU, `(n, G)` (empty without
    /// attention).
    pre: Vec<f32>,
    /// Eq. 7's weights over (user group, item group, attributes, the node
    /// itself), `(n, G)` (empty without attention).
    pub alpha: Vec<f32>,
    /// The targets' embeddings `E`, `(n, d)`.
    pub e: Vec<f32>,
}

/// The gradients of one step, as [`Hhfan::named_vars`] orders the dense
/// variables (`None`: the step did not reach it), and each ID type's
/// rows.
struct Gradients {
    dense: Vec<Option<Vec<f32>>>,
    /// Type, rows (ids within the type) and their gradient.
    rows: Vec<(usize, Vec<u32>, Vec<f32>)>,
}

fn leaky(x: &mut [f32]) {
    let s = LEAKY as f32;
    x.iter_mut().for_each(|v| {
        if *v < 0.0 {
            *v *= s
        }
    });
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn add_scaled(out: &mut [f32], w: f32, x: &[f32]) {
    out.iter_mut().zip(x).for_each(|(o, v)| *o += w * v);
}

/// `softmax` of `x` in place.
fn softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0f32;
    x.iter_mut().for_each(|v| {
        *v = (*v - m).exp();
        s += *v;
    });
    x.iter_mut().for_each(|v| *v /= s);
}

impl Forward {
    /// Eq. 4's attention among the attribute groups, `(n, A, A)` (empty
    /// without it).
    pub(crate) fn attr_attention(&self) -> &[f32] {
        self.attr.as_ref().map_or(&[], |a| &a.p)
    }
}

impl Hhfan {
    fn weights(&self) -> Result<Weights> {
        let content = self
            .content
            .iter()
            .map(|c| c.as_ref().map(|l| l.to_dense()).transpose())
            .collect::<candle_core::Result<_>>()?;
        let lstm = self
            .lstms
            .iter()
            .map(|l| Ok((values(&l.w)?, values(&l.b)?)))
            .collect::<Result<_>>()?;
        Ok(Weights {
            content,
            lstm,
            wq: values(&self.wq)?,
            wk: values(&self.wk)?,
            wv: values(&self.wv)?,
            att: values(&self.att)?,
        })
    }

    fn plan(&self, targets: &[u32]) -> Plan {
        let n_types = self.kinds.len();
        let mut uniq: Vec<Vec<u32>> = vec![Vec::new(); n_types];
        let mut pos: Vec<Vec<u32>> = self.kinds.iter().map(|k| vec![u32::MAX; k.count]).collect();
        let mut add = |t: usize, id: u32, uniq: &mut Vec<Vec<u32>>| {
            let p = &mut pos[t][id as usize];
            if *p == u32::MAX {
                *p = uniq[t].len() as u32;
                uniq[t].push(id);
            }
            *p
        };
        let mut idx: Vec<Vec<u32>> = (0..n_types)
            .map(|t| Vec::with_capacity(targets.len() * self.groups.keep()[t]))
            .collect();
        let mut lengths: Vec<Vec<u32>> = vec![Vec::with_capacity(targets.len()); n_types];
        for &v in targets {
            for t in 0..n_types {
                let l = self.groups.len(v, t);
                for (s, &id) in self.groups.ids(v, t).iter().enumerate() {
                    idx[t].push(if s < l { add(t, id, &mut uniq) } else { 0 });
                }
                lengths[t].push(l as u32);
            }
        }
        let own = targets
            .iter()
            .map(|&v| {
                let (t, id) = self.local(v);
                (t, add(t, id, &mut uniq))
            })
            .collect();
        Plan {
            uniq,
            own,
            idx,
            lengths,
        }
    }

    /// Eq. 1-7 for `targets` (global ids of users and items).
    pub(crate) fn forward(&self, targets: &[u32]) -> Result<Forward> {
        let d = self.cfg.dim;
        let n = targets.len();
        let n_types = self.kinds.len();
        let variant = self.cfg.variant;
        let weights = self.weights()?;
        let plan = self.plan(targets);
        // Eq. 1 for each type's unique nodes.
        let mut f = Vec::with_capacity(n_types);
        let mut inputs = Vec::with_capacity(n_types);
        for (t, ids) in plan.uniq.iter().enumerate() {
            match (&self.tables[t], &weights.content[t]) {
                _ if ids.is_empty() => {
                    f.push(Vec::new());
                    inputs.push(None);
                }
                (Some(table), _) => {
                    f.push(table.gather_rows(ids));
                    inputs.push(None);
                }
                (None, Some(layer)) => {
                    let k = &self.kinds[t];
                    let mut x = Vec::with_capacity(ids.len() * k.feature_dim);
                    for &id in ids {
                        let at = id as usize * k.feature_dim;
                        x.extend_from_slice(&k.features[at..at + k.feature_dim]);
                    }
                    let mut z = layer.forward_rows(&x, ids.len())?;
                    leaky(&mut z);
                    f.push(z);
                    inputs.push(Some(x));
                }
                (None, None) => {
                    return Err(HhfanError::Data(format!(
                        "node type {} has neither an embedding nor a transform",
                        self.kinds[t].name
                    )))
                }
            }
        }
        // Eq. 2-3: each neighbour group through its type's aggregator.
        let mut agg = Vec::with_capacity(n_types);
        let mut lstm = Vec::with_capacity(n_types);
        for (t, ft) in f.iter().enumerate() {
            let k = self.groups.keep()[t];
            if k == 0 || ft.is_empty() {
                agg.push(vec![0f32; n * d]);
                lstm.push(None);
            } else if variant == Variant::L {
                agg.push(masked_mean(ft, &plan.idx[t], &plan.lengths[t], k, d));
                lstm.push(None);
            } else {
                let (w, b) = &weights.lstm[t];
                let (out, tape) = lstm_mean_values(
                    ft,
                    d,
                    plan.idx[t].clone(),
                    k,
                    w,
                    b,
                    2,
                    plan.lengths[t].clone(),
                )?;
                agg.push(out);
                lstm.push(Some(tape));
            }
        }
        // Eq. 4-5: the attribute groups combined.
        let attr_types: Vec<usize> = (0..n_types)
            .filter(|&t| self.kinds[t].role == Role::Attribute && self.groups.keep()[t] > 0)
            .collect();
        let (attr, e_attr) = if attr_types.is_empty() {
            (None, None)
        } else {
            let a = attr_types.len();
            let mut x = vec![0f32; n * a * d];
            x.par_chunks_mut(a * d).enumerate().for_each(|(r, xr)| {
                for (j, &t) in attr_types.iter().enumerate() {
                    xr[j * d..(j + 1) * d].copy_from_slice(&agg[t][r * d..(r + 1) * d]);
                }
            });
            let (tape, out) = if variant == Variant::A {
                let out = sum_groups(&x, a, d);
                let tape = AttrTape {
                    x,
                    wqk: Vec::new(),
                    xm: Vec::new(),
                    p: Vec::new(),
                    mixed: Vec::new(),
                };
                (tape, out)
            } else {
                attribute_attention(x, &weights, n, a, d)?
            };
            (Some(tape), Some(out))
        };
        // Eq. 1's row of each target itself: eq. 7's query (and a
        // candidate of eq. 6 with `include_self`).
        let q = (variant != Variant::N || self.cfg.include_self).then(|| {
            let mut q = Vec::with_capacity(n * d);
            for &(t, r) in &plan.own {
                q.extend_from_slice(&f[t][r as usize * d..(r as usize + 1) * d]);
            }
            q
        });
        // Eq. 6-7 over the user group, the item group, the attributes and
        // the node itself.
        let mut cands: Vec<&[f32]> = vec![&agg[0], &agg[1]];
        if let Some(e) = &e_attr {
            cands.push(e);
        }
        if let (true, Some(q)) = (self.cfg.include_self, &q) {
            cands.push(q);
        }
        let g = cands.len();
        let mut e = vec![0f32; n * d];
        let (mut pre, mut alpha) = (Vec::new(), Vec::new());
        match &q {
            Some(q) if variant != Variant::N => {
                pre = vec![0f32; n * g];
                alpha = vec![0f32; n * g];
                let (u0, u1) = weights.att.split_at(d);
                e.par_chunks_mut(NODES_PER_TASK * d)
                    .zip(pre.par_chunks_mut(NODES_PER_TASK * g))
                    .zip(alpha.par_chunks_mut(NODES_PER_TASK * g))
                    .enumerate()
                    .for_each(|(c, ((e, pre), alpha))| {
                        for (k, ((e, pre), alpha)) in e
                            .chunks_mut(d)
                            .zip(pre.chunks_mut(g))
                            .zip(alpha.chunks_mut(g))
                            .enumerate()
                        {
                            let r = c * NODES_PER_TASK + k;
                            let own = dot(&q[r * d..(r + 1) * d], u0);
                            for (j, cand) in cands.iter().enumerate() {
                                pre[j] = dot(&cand[r * d..(r + 1) * d], u1) + own;
                                alpha[j] = pre[j];
                            }
                            leaky(alpha);
                            softmax(alpha);
                            for (j, cand) in cands.iter().enumerate() {
                                add_scaled(e, alpha[j], &cand[r * d..(r + 1) * d]);
                            }
                        }
                    });
            }
            _ => {
                let inv = 1.0 / g as f32;
                e.par_chunks_mut(d).enumerate().for_each(|(r, e)| {
                    for cand in &cands {
                        e.iter_mut()
                            .zip(&cand[r * d..(r + 1) * d])
                            .for_each(|(o, v)| *o += v);
                    }
                    e.iter_mut().for_each(|v| *v *= inv);
                });
            }
        }
        Ok(Forward {
            plan,
            weights,
            f,
            inputs,
            agg,
            lstm,
            attr_types,
            attr,
            e_attr,
            q,
            g,
            pre,
            alpha,
            e,
        })
    }

    /// One BPR step (eq. 10) on triples `(users[k], pos[k], neg[k])`,
    /// with its Adam update; the loss.
    pub(crate) fn step_rows(
        &mut self,
        (users, pos, neg): (&[u32], &[u32], &[u32]),
        adam: &mut Adam,
        emb_cfg: &AdamConfig,
    ) -> Result<f64> {
        let b = users.len();
        if b == 0 || pos.len() != b || neg.len() != b {
            return Err(HhfanError::Data(format!(
                "a batch of {b} users, {} positives and {} negatives",
                pos.len(),
                neg.len()
            )));
        }
        let (nu, ni) = (self.kinds[0].count, self.kinds[1].count);
        if let Some(&u) = users.iter().find(|&&u| u as usize >= nu) {
            return Err(HhfanError::Data(format!("user {u} of {nu}")));
        }
        if let Some(&i) = pos.iter().chain(neg).find(|&&i| i as usize >= ni) {
            return Err(HhfanError::Data(format!("item {i} of {ni}")));
        }
        // The batch's unique users and items, embedded once.
        let mut slot = vec![u32::MAX; nu + ni];
        let mut targets = Vec::new();
        let mut at = |v: u32| {
            let s = &mut slot[v as usize];
            if *s == u32::MAX {
                *s = targets.len() as u32;
                targets.push(v);
            }
            *s as usize
        };
        let ui: Vec<usize> = users.iter().map(|&u| at(self.user_node(u))).collect();
        let pi: Vec<usize> = pos.iter().map(|&i| at(self.item_node(i))).collect();
        let ni_: Vec<usize> = neg.iter().map(|&i| at(self.item_node(i))).collect();
        let fw = self.forward(&targets)?;
        let d = self.cfg.dim;
        let e = &fw.e;
        let row = |s: usize| &e[s * d..(s + 1) * d];
        // Eq. 10: mean softplus(s_neg - s_pos), plus reg / b times the
        // squares of the ID rows read and of the triples' embeddings.
        let reg = self.cfg.reg as f32;
        let scale = 2.0 * reg / b as f32;
        let mut de = vec![0f32; e.len()];
        let mut loss = 0f64;
        let mut squares = 0f64;
        for k in 0..b {
            let (u, p, q) = (ui[k], pi[k], ni_[k]);
            let x = dot(row(u), row(q)) - dot(row(u), row(p));
            loss += softplus_f32(x) as f64;
            let g = 1.0 / (1.0 + (-x).exp()) / b as f32;
            if reg > 0.0 {
                squares += [u, p, q]
                    .iter()
                    .map(|&s| dot(row(s), row(s)) as f64)
                    .sum::<f64>();
            }
            for (w, o) in [(-g, p), (g, q)] {
                add_scaled(&mut de[u * d..(u + 1) * d], w, row(o));
                add_scaled(&mut de[o * d..(o + 1) * d], w, row(u));
            }
            if reg > 0.0 {
                for s in [u, p, q] {
                    add_scaled(&mut de[s * d..(s + 1) * d], scale, row(s));
                }
            }
        }
        let mut loss = loss / b as f64;
        if reg > 0.0 {
            for (t, f) in fw.f.iter().enumerate() {
                if self.tables[t].is_some() {
                    squares += f.iter().map(|&v| (v * v) as f64).sum::<f64>();
                }
            }
            loss += squares * reg as f64 / b as f64;
        }
        let grads = self.backward(fw, &de, scale)?;
        let dense: Vec<Option<&[f32]>> = grads.dense.iter().map(|g| g.as_deref()).collect();
        adam.step_some(&dense)?;
        for (t, ids, g) in &grads.rows {
            if let Some(table) = self.tables[*t].as_mut() {
                table.apply_rows(ids, g, emb_cfg)?;
            }
        }
        Ok(loss)
    }

    /// The gradients of every weight and ID row from `de`, the gradient
    /// of the targets' embeddings; `scale` times each ID row read is
    /// added to its gradient (eq. 10's L2, `2 reg / b`).
    fn backward(&self, fw: Forward, de: &[f32], scale: f32) -> Result<Gradients> {
        let d = self.cfg.dim;
        let n = fw.e.len() / d;
        let n_types = self.kinds.len();
        let variant = self.cfg.variant;
        let g = fw.g;
        // Eq. 6-7.
        let mut cands: Vec<&[f32]> = vec![&fw.agg[0], &fw.agg[1]];
        if let Some(e) = &fw.e_attr {
            cands.push(e);
        }
        if let (true, Some(q)) = (self.cfg.include_self, &fw.q) {
            cands.push(q);
        }
        let mut dc: Vec<Vec<f32>> = vec![vec![0f32; n * d]; g];
        let mut dq = vec![0f32; n * d];
        let mut du = None;
        if fw.alpha.is_empty() {
            let inv = 1.0 / g as f32;
            for dcj in &mut dc {
                dcj.iter_mut().zip(de).for_each(|(o, v)| *o = v * inv);
            }
        } else {
            let (u0, u1) = fw.weights.att.split_at(d);
            let q = fw.q.as_deref().unwrap_or(&[]);
            // Per node: d(pre) and the candidates' and query's gradients.
            let mut dpre = vec![0f32; n * g];
            let mut dcn = vec![0f32; n * g * d];
            dpre.par_chunks_mut(NODES_PER_TASK * g)
                .zip(dcn.par_chunks_mut(NODES_PER_TASK * g * d))
                .zip(dq.par_chunks_mut(NODES_PER_TASK * d))
                .enumerate()
                .for_each(|(c, ((dpre, dcn), dq))| {
                    for (k, ((dpre, dcn), dq)) in dpre
                        .chunks_mut(g)
                        .zip(dcn.chunks_mut(g * d))
                        .zip(dq.chunks_mut(d))
                        .enumerate()
                    {
                        let r = c * NODES_PER_TASK + k;
                        let der = &de[r * d..(r + 1) * d];
                        let alpha = &fw.alpha[r * g..(r + 1) * g];
                        let pre = &fw.pre[r * g..(r + 1) * g];
                        // At most four candidates (eq. 6).
                        let mut dalpha = [0f32; 4];
                        for (j, cand) in cands.iter().enumerate() {
                            dalpha[j] = dot(der, &cand[r * d..(r + 1) * d]);
                        }
                        let mean: f32 = (0..g).map(|j| alpha[j] * dalpha[j]).sum();
                        let mut sum = 0f32;
                        for j in 0..g {
                            let slope = if pre[j] > 0.0 { 1.0 } else { LEAKY as f32 };
                            dpre[j] = alpha[j] * (dalpha[j] - mean) * slope;
                            sum += dpre[j];
                            let dcj = &mut dcn[j * d..(j + 1) * d];
                            dcj.iter_mut()
                                .zip(der)
                                .zip(u1)
                                .for_each(|((o, &v), &w)| *o = alpha[j] * v + dpre[j] * w);
                        }
                        dq.iter_mut().zip(u0).for_each(|(o, &w)| *o = sum * w);
                    }
                });
            // du_0 = sum_r (sum_j dpre) q_r, du_1 = sum_{r, j} dpre c_j,
            // in row order.
            let mut dut = vec![0f32; 2 * d];
            for r in 0..n {
                let dp = &dpre[r * g..(r + 1) * g];
                add_scaled(&mut dut[..d], dp.iter().sum(), &q[r * d..(r + 1) * d]);
                for (j, cand) in cands.iter().enumerate() {
                    add_scaled(&mut dut[d..], dp[j], &cand[r * d..(r + 1) * d]);
                }
            }
            du = Some(dut);
            dc.par_iter_mut().enumerate().for_each(|(j, dcj)| {
                for r in 0..n {
                    let at = (r * g + j) * d;
                    dcj[r * d..(r + 1) * d].copy_from_slice(&dcn[at..at + d]);
                }
            });
        }
        let mut dc = dc.into_iter();
        let mut dagg: Vec<Vec<f32>> = vec![Vec::new(); n_types];
        dagg[0] = dc.next().unwrap_or_default();
        dagg[1] = dc.next().unwrap_or_default();
        let de_attr = fw.e_attr.as_ref().and_then(|_| dc.next());
        if let Some(dself) = dc.next() {
            dq.iter_mut().zip(&dself).for_each(|(o, v)| *o += v);
        }
        // Eq. 4-5.
        let (mut dwq, mut dwk, mut dwv) = (None, None, None);
        if let (Some(tape), Some(de_attr)) = (&fw.attr, &de_attr) {
            let a = fw.attr_types.len();
            let dx = if variant == Variant::A {
                let mut dx = vec![0f32; n * a * d];
                dx.par_chunks_mut(a * d).enumerate().for_each(|(r, dxr)| {
                    for dxa in dxr.chunks_mut(d) {
                        dxa.copy_from_slice(&de_attr[r * d..(r + 1) * d]);
                    }
                });
                dx
            } else {
                let (dx, [q, k, v]) =
                    attribute_attention_back(tape, &fw.weights, de_attr, n, a, d)?;
                (dwq, dwk, dwv) = (Some(q), Some(k), Some(v));
                dx
            };
            for (j, &t) in fw.attr_types.iter().enumerate() {
                let mut dt = vec![0f32; n * d];
                dt.par_chunks_mut(d).enumerate().for_each(|(r, o)| {
                    o.copy_from_slice(&dx[(r * a + j) * d..(r * a + j + 1) * d]);
                });
                dagg[t] = dt;
            }
        }
        // Eq. 2-3, then eq. 1.
        let mut df: Vec<Vec<f32>> = fw.f.iter().map(|f| vec![0f32; f.len()]).collect();
        let mut dlstm: Vec<Option<(Vec<f32>, Vec<f32>)>> = vec![None; n_types];
        for (t, tape) in fw.lstm.into_iter().enumerate() {
            let k = self.groups.keep()[t];
            if k == 0 || dagg[t].is_empty() {
                continue;
            }
            match tape {
                Some(tape) => {
                    let w = &fw.weights.lstm[t].0;
                    let (dt, dw, db) = tape.backward(&fw.f[t], w, &dagg[t])?;
                    df[t] = dt;
                    dlstm[t] = Some((dw, db));
                }
                None if variant == Variant::L => {
                    masked_mean_back(
                        &mut df[t],
                        &dagg[t],
                        &fw.plan.idx[t],
                        &fw.plan.lengths[t],
                        k,
                        d,
                    );
                }
                None => {
                    // No node of this type in the batch: the LSTM read
                    // zeros and its weights take zero gradients.
                    let (w, b) = &fw.weights.lstm[t];
                    dlstm[t] = Some((vec![0f32; w.len()], vec![0f32; b.len()]));
                }
            }
        }
        for (r, &(t, row)) in fw.plan.own.iter().enumerate() {
            add_scaled(
                &mut df[t][row as usize * d..(row as usize + 1) * d],
                1.0,
                &dq[r * d..(r + 1) * d],
            );
        }
        let mut dense = Vec::new();
        let mut rows = Vec::new();
        for (t, (dft, ids)) in df.into_iter().zip(fw.plan.uniq).enumerate() {
            match (&self.tables[t], &fw.weights.content[t]) {
                _ if ids.is_empty() => {
                    if fw.weights.content[t].is_some() {
                        dense.extend([None, None]);
                    }
                }
                (Some(_), _) => {
                    let mut gt = dft;
                    add_scaled(&mut gt, scale, &fw.f[t]);
                    rows.push((t, ids, gt));
                }
                (None, Some(layer)) => {
                    let mut dz = dft;
                    dz.iter_mut().zip(&fw.f[t]).for_each(|(g, &y)| {
                        if y <= 0.0 {
                            *g *= LEAKY as f32
                        }
                    });
                    let x = fw.inputs[t].as_deref().unwrap_or(&[]);
                    let [dw, db, _] = layer.backward_rows(x, &dz, ids.len())?;
                    dense.extend([Some(dw), Some(db)]);
                }
                (None, None) => {}
            }
        }
        if variant != Variant::L {
            for dl in dlstm {
                match dl {
                    Some((dw, db)) => dense.extend([Some(dw), Some(db)]),
                    None => dense.extend([None, None]),
                }
            }
        }
        if variant != Variant::A {
            dense.extend([dwq, dwk, dwv]);
        }
        if variant != Variant::N {
            dense.push(du);
        }
        Ok(Gradients { dense, rows })
    }
}

/// The mean of each group's rows of `f` (zero for an empty group).
fn masked_mean(f: &[f32], idx: &[u32], lengths: &[u32], k: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0f32; lengths.len() * d];
    out.par_chunks_mut(d).enumerate().for_each(|(r, o)| {
        let l = lengths[r] as usize;
        for &i in &idx[r * k..r * k + l] {
            add_scaled(o, 1.0, &f[i as usize * d..(i as usize + 1) * d]);
        }
        let inv = 1.0 / l.max(1) as f32;
        o.iter_mut().for_each(|v| *v *= inv);
    });
    out
}

/// [`masked_mean`]'s gradient onto the rows of `f`, added to `df`.
fn masked_mean_back(
    df: &mut [f32],
    dout: &[f32],
    idx: &[u32],
    lengths: &[u32],
    k: usize,
    d: usize,
) {
    for (r, &l) in lengths.iter().enumerate() {
        let l = l as usize;
        let w = 1.0 / l.max(1) as f32;
        for &i in &idx[r * k..r * k + l] {
            add_scaled(
                &mut df[i as usize * d..(i as usize + 1) * d],
                w,
                &dout[r * d..(r + 1) * d],
            );
        }
    }
}

/// `sum_a x[r, a]` for `x` `(n, a, d)`.
fn sum_groups(x: &[f32], a: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len() / a.max(1)];
    out.par_chunks_mut(d).enumerate().for_each(|(r, o)| {
        for xa in x[r * a * d..(r + 1) * a * d].chunks(d) {
            add_scaled(o, 1.0, xa);
        }
    });
    out
}

/// Eq. 4-5, reassociated as [`crate::network`]'s candle form: `Q K^T =
/// X (W^Q W^K^T) X^T`, and `sum_a (P V)_a = (1^T P) X W^V`; plus the
/// residual, summed over the groups.
fn attribute_attention(
    x: Vec<f32>,
    w: &Weights,
    n: usize,
    a: usize,
    d: usize,
) -> Result<(AttrTape, Vec<f32>)> {
    let mut wqk = vec![0f32; d * d];
    gemm(&w.wq, false, &w.wk, true, &mut wqk, (d, d, d), 0.0)?;
    let mut xm = vec![0f32; n * a * d];
    gemm(&x, false, &wqk, false, &mut xm, (n * a, d, d), 0.0)?;
    let sd = (d as f32).sqrt();
    let mut p = vec![0f32; n * a * a];
    let mut mixed = vec![0f32; n * d];
    p.par_chunks_mut(a * a)
        .zip(mixed.par_chunks_mut(d))
        .enumerate()
        .for_each(|(r, (p, mixed))| {
            let xr = &x[r * a * d..(r + 1) * a * d];
            let mr = &xm[r * a * d..(r + 1) * a * d];
            for (i, pi) in p.chunks_mut(a).enumerate() {
                for (j, v) in pi.iter_mut().enumerate() {
                    *v = dot(&mr[i * d..(i + 1) * d], &xr[j * d..(j + 1) * d]) / sd;
                }
                softmax(pi);
            }
            for j in 0..a {
                let read: f32 = (0..a).map(|i| p[i * a + j]).sum();
                add_scaled(mixed, read, &xr[j * d..(j + 1) * d]);
            }
        });
    let mut out = sum_groups(&x, a, d);
    gemm(&mixed, false, &w.wv, false, &mut out, (n, d, d), 1.0)?;
    Ok((
        AttrTape {
            x,
            wqk,
            xm,
            p,
            mixed,
        },
        out,
    ))
}

/// [`attribute_attention`]'s gradients from its output's `dout`: the
/// groups' `(n, a, d)` and `[dW^Q, dW^K, dW^V]`.
fn attribute_attention_back(
    tape: &AttrTape,
    w: &Weights,
    dout: &[f32],
    n: usize,
    a: usize,
    d: usize,
) -> Result<(Vec<f32>, [Vec<f32>; 3])> {
    let mut dwv = vec![0f32; d * d];
    gemm(&tape.mixed, true, dout, false, &mut dwv, (d, n, d), 0.0)?;
    let mut dmixed = vec![0f32; n * d];
    gemm(dout, false, &w.wv, true, &mut dmixed, (n, d, d), 0.0)?;
    let sd = (d as f32).sqrt();
    let mut dx = vec![0f32; n * a * d];
    let mut dxm = vec![0f32; n * a * d];
    dx.par_chunks_mut(a * d)
        .zip(dxm.par_chunks_mut(a * d))
        .enumerate()
        .for_each(|(r, (dx, dxm))| {
            let xr = &tape.x[r * a * d..(r + 1) * a * d];
            let mr = &tape.xm[r * a * d..(r + 1) * a * d];
            let p = &tape.p[r * a * a..(r + 1) * a * a];
            let (dor, dmr) = (&dout[r * d..(r + 1) * d], &dmixed[r * d..(r + 1) * d]);
            let mut dread = vec![0f32; a];
            for j in 0..a {
                let read: f32 = (0..a).map(|i| p[i * a + j]).sum();
                let dxj = &mut dx[j * d..(j + 1) * d];
                dxj.iter_mut()
                    .zip(dor)
                    .zip(dmr)
                    .for_each(|((o, &v), &m)| *o = v + read * m);
                dread[j] = dot(dmr, &xr[j * d..(j + 1) * d]);
            }
            // P's row i takes dread as its gradient; through the softmax
            // and the scale, d(S_ij) = P_ij (dread_j - P_i . dread) / sqrt(d).
            for i in 0..a {
                let pi = &p[i * a..(i + 1) * a];
                let mean: f32 = pi.iter().zip(&dread).map(|(p, g)| p * g).sum();
                for j in 0..a {
                    let ds = pi[j] * (dread[j] - mean) / sd;
                    add_scaled(&mut dxm[i * d..(i + 1) * d], ds, &xr[j * d..(j + 1) * d]);
                    add_scaled(&mut dx[j * d..(j + 1) * d], ds, &mr[i * d..(i + 1) * d]);
                }
            }
        });
    gemm(&dxm, false, &tape.wqk, true, &mut dx, (n * a, d, d), 1.0)?;
    let mut dwqk = vec![0f32; d * d];
    gemm(&tape.x, true, &dxm, false, &mut dwqk, (d, n * a, d), 0.0)?;
    let mut dwq = vec![0f32; d * d];
    gemm(&dwqk, false, &w.wk, false, &mut dwq, (d, d, d), 0.0)?;
    let mut dwk = vec![0f32; d * d];
    gemm(&dwqk, true, &w.wq, false, &mut dwk, (d, d, d), 0.0)?;
    Ok((dx, [dwq, dwk, dwv]))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use hinrec_graph::{Adjacency, Hin, NodeFeatures, NodeType};
    use hinrec_sample::walk::NeighborGroups;

    use super::*;
    use crate::graph::Mhig;
    use crate::params::HhfanConfig;

    /// 12 users with an age, 10 items with a genre and a 3-wide image
    /// feature (quantised into 3 image nodes).
    fn hin() -> Hin {
        let ty = |name: &str, count| NodeType {
            name: name.into(),
            code: None,
            count,
        };
        let inter: Vec<(u32, u32)> = (0..12u32)
            .flat_map(|u| (0..4u32).map(move |k| (u, (u * 3 + k * 2) % 10)))
            .collect();
        let age: Vec<(u32, u32)> = (0..12u32).map(|u| (u, u % 3)).collect();
        let genre: Vec<(u32, u32)> = (0..10u32).map(|i| (i, i % 4)).collect();
        Hin {
            types: vec![ty("user", 12), ty("item", 10), ty("age", 3), ty("genre", 4)],
            relations: vec![
                Adjacency::new("interactions", 0, 1, (12, 10), &inter),
                Adjacency::new("user_age", 0, 2, (12, 3), &age),
                Adjacency::new("item_genre", 1, 3, (10, 4), &genre),
            ],
            features: vec![NodeFeatures {
                name: "image".into(),
                node_type: 1,
                dim: 3,
                data: (0..30).map(|v| ((v * 7) % 11) as f32 / 5.0 - 1.0).collect(),
            }],
        }
    }

    fn model(variant: Variant, include_self: bool) -> Hhfan {
        let mhig = Mhig::build(&hin(), 3, 1).unwrap();
        let cfg = HhfanConfig {
            dim: 8,
            variant,
            include_self,
            reg: 0.05,
            init_std: 0.3,
            ..HhfanConfig::default()
        };
        let groups =
            NeighborGroups::sample(&mhig.graph, &Hhfan::walk_config(&cfg, &mhig, 1)).unwrap();
        Hhfan::init(&cfg, mhig.kinds, groups, 7).unwrap()
    }

    fn snapshot(m: &Hhfan) -> HashMap<String, Vec<f32>> {
        let mut out: HashMap<String, Vec<f32>> = m
            .named_vars()
            .into_iter()
            .map(|(k, v)| (k, values(&v).unwrap()))
            .collect();
        for (t, table) in m.tables.iter().enumerate() {
            if let Some(tb) = table {
                out.insert(format!("nodes.{t}"), tb.values().to_vec());
            }
        }
        out
    }

    const USERS: [u32; 7] = [0, 1, 2, 3, 0, 5, 11];
    const POS: [u32; 7] = [0, 3, 6, 9, 2, 5, 3];
    const NEG: [u32; 7] = [1, 1, 7, 4, 8, 0, 9];

    #[test]
    fn the_forward_is_the_candle_forward() {
        for (variant, include_self) in [
            (Variant::Full, true),
            (Variant::Full, false),
            (Variant::L, true),
            (Variant::A, true),
            (Variant::N, false),
        ] {
            let m = model(variant, include_self);
            let targets: Vec<u32> = (0..22).collect();
            let got = m.forward(&targets).unwrap();
            let want = m.embed(&targets).unwrap();
            let we: Vec<f32> = want.e.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(got.e.len(), we.len());
            for (x, y) in got.e.iter().zip(&we) {
                assert!((x - y).abs() < 1e-5, "{variant:?}: {x} {y}");
            }
            match want.alpha {
                Some(a) => {
                    let wa: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
                    assert_eq!(got.alpha.len(), wa.len());
                    for (x, y) in got.alpha.iter().zip(&wa) {
                        assert!((x - y).abs() < 1e-5, "{variant:?}: {x} {y}");
                    }
                }
                None => assert!(got.alpha.is_empty()),
            }
            let wp: Vec<f32> = want
                .attr
                .map(|p| p.flatten_all().unwrap().to_vec1().unwrap())
                .unwrap_or_default();
            assert_eq!(got.attr_attention().len(), wp.len(), "{variant:?}");
            for (x, y) in got.attr_attention().iter().zip(&wp) {
                assert!((x - y).abs() < 1e-5, "{variant:?}: {x} {y}");
            }
        }
    }

    /// One step gives candle's loss and, through Adam with `eps = 1` (an
    /// update is `-g / (|g| + 1)`, smooth in the gradient), candle's
    /// update of every weight and table row.
    #[test]
    fn the_step_is_the_candle_step() {
        for (variant, include_self) in [
            (Variant::Full, true),
            (Variant::Full, false),
            (Variant::L, true),
            (Variant::A, false),
            (Variant::N, true),
            (Variant::N, false),
        ] {
            let mut a = model(variant, include_self);
            let mut b = model(variant, include_self);
            let before = snapshot(&a);
            let cfg = AdamConfig {
                lr: 1.0,
                eps: 1.0,
                ..Default::default()
            };
            let vars = |m: &Hhfan| m.named_vars().into_iter().map(|v| v.1).collect();
            let mut adam_a = Adam::new(vars(&a), cfg).unwrap();
            let mut adam_b = Adam::new(vars(&b), cfg).unwrap();
            let batch = (&USERS[..], &POS[..], &NEG[..]);
            let want = a.step_candle(batch, &mut adam_a, &cfg).unwrap();
            let got = b.step_rows(batch, &mut adam_b, &cfg).unwrap();
            assert!(
                (got - want).abs() < 1e-5 * want.abs().max(1.0),
                "{variant:?}: loss {got} against {want}"
            );
            let (sa, sb) = (snapshot(&a), snapshot(&b));
            let mut moved = 0;
            for (name, w0) in &before {
                for ((x, y), w) in sa[name].iter().zip(&sb[name]).zip(w0) {
                    assert!(
                        (x - y).abs() < 2e-5,
                        "{variant:?} {include_self} {name}: {x} {y}"
                    );
                    moved += ((x - w).abs() > 1e-4) as usize;
                }
            }
            assert!(moved > 100, "{variant:?}: {moved} values moved");
        }
    }

    #[test]
    fn batches_out_of_range_are_errors() {
        let mut m = model(Variant::Full, true);
        let cfg = AdamConfig::default();
        let mut adam = Adam::new(m.named_vars().into_iter().map(|v| v.1).collect(), cfg).unwrap();
        for batch in [
            (&[12u32][..], &[0u32][..], &[1u32][..]),
            (&[0], &[10], &[1]),
            (&[0], &[0], &[]),
            (&[], &[], &[]),
        ] {
            assert!(m.step_rows(batch, &mut adam, &cfg).is_err(), "{batch:?}");
        }
    }
}
