//! The candle composition of eq. 1-8 and 10 that [`crate::rows`] writes
//! out: the tests' reference for its values and gradients.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};
use hinrec_nn::layers::{masked_mean, sum_middle, weighted_sum_middle};
use hinrec_nn::loss::{bpr, l2};
use hinrec_nn::optim::{Adam, AdamConfig};

use crate::graph::Role;
use crate::network::{Hhfan, LEAKY};
use crate::params::{HhfanError, Result, Variant};

/// Eq. 4-5 over the attribute groups `x` `(n, A, d)`, summed over the
/// groups: `sum_a (softmax(Q K^T / sqrt(d)) V + X)_a` with `Q = X W^Q` and
/// so on, and the attention `(n, A, A)`. Reassociated for a third of the
/// products (the same values): `Q K^T = X (W^Q W^K^T) X^T`, and the sum
/// over `a` of `(P V)_a` is `(1^T P) X W^V`, one product per node.
pub(crate) fn attribute_attention(
    x: &Tensor,
    wq: &Tensor,
    wk: &Tensor,
    wv: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (n, a, d) = x.dims3()?;
    let wqk = wq.matmul(&wk.t()?)?;
    let xm = x.reshape((n * a, d))?.matmul(&wqk)?.reshape((n, a, d))?;
    let s = (xm.matmul(&x.transpose(1, 2)?.contiguous()?)? / (d as f64).sqrt())?;
    // candle_nn's `softmax_last_dim` has no backward: W^Q and W^K would
    // never train.
    let p = candle_nn::ops::softmax(&s, candle_core::D::Minus1)?;
    let read = sum_middle(&p)?; // (n, A): how much each group is read
    let mixed = weighted_sum_middle(&read, x)?;
    let out = (mixed.matmul(wv)? + sum_middle(x)?)?;
    Ok((out, p))
}

/// Eq. 6-7: the candidates `c` `(n, G, d)` weighted by
/// `softmax(LeakyReLU(u_0 . q + u_1 . c_g))` for each node's own row `q`
/// `(n, d)`, with `u` `(2, d)`; the combination `(n, d)` and the weights
/// `(n, G)`.
pub(crate) fn neighbour_attention(
    q: &Tensor,
    c: &Tensor,
    u: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (n, g, d) = c.dims3()?;
    let own = q.matmul(&u.get(0)?.unsqueeze(1)?)?; // (n, 1)
    let grp = c
        .reshape((n * g, d))?
        .matmul(&u.get(1)?.unsqueeze(1)?)?
        .reshape((n, g))?;
    let s = candle_nn::ops::leaky_relu(&grp.broadcast_add(&own)?, LEAKY)?;
    let alpha = candle_nn::ops::softmax(&s, candle_core::D::Minus1)?;
    let e = weighted_sum_middle(&alpha, c)?;
    Ok((e, alpha))
}

/// The embeddings of a set of target nodes, the leaves whose rows take
/// the gradient, and the attention weights for explanations.
pub(crate) struct Embedded {
    /// `(targets, d)`.
    pub e: Tensor,
    /// Per ID type: the unique rows gathered and their leaf.
    pub leaves: Vec<(usize, Vec<u32>, Var)>,
    /// Eq. 7's weights over (user group, item group, attributes), `(n, G)`.
    pub alpha: Option<Tensor>,
    /// Eq. 4's attention among attribute groups, `(n, A, A)`.
    pub attr: Option<Tensor>,
}

/// [`Hhfan::embed`] and the step as candle ops.
impl Hhfan {
    /// Eq. 1-7 for `targets` (global ids of users and items).
    pub(crate) fn embed(&self, targets: &[u32]) -> Result<Embedded> {
        let d = self.cfg.dim;
        let n = targets.len();
        let n_types = self.kinds.len();
        // Eq. 1 for the unique nodes each type needs: the targets'
        // neighbours and the targets themselves (eq. 7's query).
        let mut uniq: Vec<Vec<u32>> = vec![Vec::new(); n_types];
        let mut pos: Vec<Vec<u32>> = self.kinds.iter().map(|k| vec![u32::MAX; k.count]).collect();
        let mut add = |t: usize, id: u32, uniq: &mut Vec<Vec<u32>>| {
            if pos[t][id as usize] == u32::MAX {
                pos[t][id as usize] = uniq[t].len() as u32;
                uniq[t].push(id);
            }
            pos[t][id as usize]
        };
        let mut query_idx = Vec::with_capacity(n);
        for &v in targets {
            for t in 0..n_types {
                let l = self.groups.len(v, t);
                for &id in &self.groups.ids(v, t)[..l] {
                    add(t, id, &mut uniq);
                }
            }
        }
        let own: Vec<(usize, u32)> = targets.iter().map(|&v| self.local(v)).collect();
        for &(t, id) in &own {
            query_idx.push(add(t, id, &mut uniq));
        }
        let mut leaves = Vec::new();
        let mut f: Vec<Tensor> = Vec::with_capacity(n_types);
        for (t, ids) in uniq.iter().enumerate() {
            if ids.is_empty() {
                f.push(Tensor::zeros((1, d), DType::F32, &self.dev)?);
                continue;
            }
            match (&self.tables[t], &self.content[t]) {
                (Some(table), _) => {
                    let leaf = table.gather(ids, DType::F32, &self.dev)?;
                    f.push(leaf.as_tensor().clone());
                    leaves.push((t, ids.clone(), leaf));
                }
                (None, Some(lin)) => {
                    let k = &self.kinds[t];
                    let mut rows = Vec::with_capacity(ids.len() * k.feature_dim);
                    for &id in ids {
                        let at = id as usize * k.feature_dim;
                        rows.extend_from_slice(&k.features[at..at + k.feature_dim]);
                    }
                    let x = Tensor::from_vec(rows, (ids.len(), k.feature_dim), &self.dev)?;
                    f.push(candle_nn::ops::leaky_relu(&lin.forward(&x)?, LEAKY)?);
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
        for t in 0..n_types {
            let k = self.groups.keep()[t];
            if k == 0 {
                agg.push(Tensor::zeros((n, d), DType::F32, &self.dev)?);
                continue;
            }
            let mut idx = Vec::with_capacity(n * k);
            let mut lengths = Vec::with_capacity(n);
            let mut mask = Vec::with_capacity(n * k);
            for &v in targets {
                let l = self.groups.len(v, t);
                for (s, &id) in self.groups.ids(v, t).iter().enumerate() {
                    idx.push(if s < l { pos[t][id as usize] } else { 0 });
                    mask.push(if s < l { 1f32 } else { 0.0 });
                }
                lengths.push(l as u32);
            }
            agg.push(if self.cfg.variant == Variant::L {
                let m = Tensor::from_vec(mask, (n, k), &self.dev)?;
                masked_mean(&f[t], idx, &m)?
            } else {
                self.lstms[t].forward_rows(&f[t], idx, k, lengths)?
            });
        }
        // Eq. 4-5: the attribute groups combined.
        let attr_types: Vec<usize> = (0..n_types)
            .filter(|&t| self.kinds[t].role == Role::Attribute && self.groups.keep()[t] > 0)
            .collect();
        let mut attr_w = None;
        let e_attrs = if attr_types.is_empty() {
            None
        } else {
            let xs: Vec<&Tensor> = attr_types.iter().map(|&t| &agg[t]).collect();
            let x = Tensor::stack(&xs, 1)?; // (n, A, d)
            Some(if self.cfg.variant == Variant::A {
                sum_middle(&x)?
            } else {
                let (out, p) = attribute_attention(&x, &self.wq, &self.wk, &self.wv)?;
                attr_w = Some(p);
                out
            })
        };
        // Eq. 1's row of each target itself: eq. 7's query (and a
        // candidate of eq. 6 with `include_self`).
        let q = if self.cfg.variant != Variant::N || self.cfg.include_self {
            let all = Tensor::cat(&f, 0)?;
            let starts: Vec<u32> = f
                .iter()
                .scan(0u32, |s, t| {
                    let at = *s;
                    *s += t.dim(0).unwrap_or(0) as u32;
                    Some(at)
                })
                .collect();
            let qi: Vec<u32> = own
                .iter()
                .zip(&query_idx)
                .map(|(&(t, _), &p)| starts[t] + p)
                .collect();
            Some(all.index_select(&Tensor::from_vec(qi, n, &self.dev)?, 0)?)
        } else {
            None
        };
        // Eq. 6-7: the user group, the item group and the attributes.
        let mut cands = vec![&agg[0], &agg[1]];
        if let Some(e) = &e_attrs {
            cands.push(e);
        }
        if let (true, Some(q)) = (self.cfg.include_self, &q) {
            cands.push(q);
        }
        let c = Tensor::stack(&cands, 1)?; // (n, G, d)
        let g = cands.len();
        let (e, alpha) = match &q {
            Some(q) if self.cfg.variant != Variant::N => {
                let (e, alpha) = neighbour_attention(q, &c, self.att.as_tensor())?;
                (e, Some(alpha))
            }
            _ => ((sum_middle(&c)? / g as f64)?, None),
        };
        Ok(Embedded {
            e,
            leaves,
            alpha,
            attr: attr_w,
        })
    }

    /// One BPR step (eq. 10) on triples `(users[k], pos[k], neg[k])`.
    pub(crate) fn step_candle(
        &mut self,
        (users, pos, neg): (&[u32], &[u32], &[u32]),
        adam: &mut Adam,
        emb_cfg: &AdamConfig,
    ) -> Result<f64> {
        let b = users.len();
        // The batch's unique users and items, embedded once.
        let mut targets: Vec<u32> = Vec::new();
        let mut slot: HashMap<u32, u32> = HashMap::new();
        let mut at = |v: u32, targets: &mut Vec<u32>| {
            *slot.entry(v).or_insert_with(|| {
                targets.push(v);
                targets.len() as u32 - 1
            })
        };
        let ui: Vec<u32> = users
            .iter()
            .map(|&u| at(self.user_node(u), &mut targets))
            .collect();
        let pi: Vec<u32> = pos
            .iter()
            .map(|&i| at(self.item_node(i), &mut targets))
            .collect();
        let ni: Vec<u32> = neg
            .iter()
            .map(|&i| at(self.item_node(i), &mut targets))
            .collect();
        let emb = self.embed(&targets)?;
        let dev = &self.dev;
        let pick = |idx: Vec<u32>| emb.e.index_select(&Tensor::from_vec(idx, b, dev)?, 0);
        let (eu, ep, en) = (pick(ui)?, pick(pi)?, pick(ni)?);
        let sp = (&eu * &ep)?.sum(1)?;
        let sn = (&eu * &en)?.sum(1)?;
        let mut loss = bpr(&sp, &sn)?;
        if self.cfg.reg > 0.0 {
            let rows: Vec<&Tensor> = emb.leaves.iter().map(|l| l.2.as_tensor()).collect();
            let reg = ((l2(&rows)? + l2(&[&eu, &ep, &en])?)? * (self.cfg.reg / b as f64))?;
            loss = (loss + reg)?;
        }
        let grads = loss.backward()?;
        adam.step(&grads)?;
        for (t, ids, leaf) in &emb.leaves {
            if let (Some(g), Some(table)) = (grads.get(leaf.as_tensor()), self.tables[*t].as_mut())
            {
                table.apply(ids, g, emb_cfg)?;
            }
        }
        Ok(loss.to_scalar::<f32>()? as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use hinrec_nn::gradcheck::max_gradient_error;
    use hinrec_nn::init::Rng;

    fn t(v: Vec<f64>, shape: &[usize]) -> Tensor {
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// Eq. 4-5 as printed: three products, attention, residual, sum.
    fn as_printed(x: &Tensor, wq: &Tensor, wk: &Tensor, wv: &Tensor) -> Tensor {
        let (n, a, d) = x.dims3().unwrap();
        let flat = x.reshape((n * a, d)).unwrap();
        let proj = |w: &Tensor| flat.matmul(w).unwrap().reshape((n, a, d)).unwrap();
        let (q, k, v) = (proj(wq), proj(wk), proj(wv));
        let s = (q
            .matmul(&k.transpose(1, 2).unwrap().contiguous().unwrap())
            .unwrap()
            / (d as f64).sqrt())
        .unwrap();
        let p = candle_nn::ops::softmax(&s, candle_core::D::Minus1).unwrap();
        (p.matmul(&v).unwrap() + x).unwrap().sum(1).unwrap()
    }

    #[test]
    fn reassociated_attribute_attention_equals_the_printed_equations() {
        let (n, a, d) = (3, 4, 5);
        let mut rng = Rng::new(3);
        let x = t(rng.normal(n * a * d, 1.0), &[n, a, d]);
        let w: Vec<Tensor> = (0..3).map(|_| t(rng.normal(d * d, 0.5), &[d, d])).collect();
        let (ours, p) = attribute_attention(&x, &w[0], &w[1], &w[2]).unwrap();
        let want = as_printed(&x, &w[0], &w[1], &w[2]);
        let diff = (ours - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
        // Each row of the attention sums to one.
        let rows = p
            .sum(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert!(rows.iter().all(|r| (r - 1.0).abs() < 1e-12));
        // Gradients through the reassociated form, for x and W^K.
        let proj = t(rng.normal(n * d, 1.0), &[n, d]);
        let xs = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let ex = max_gradient_error(&xs, &[n, a, d], |x| {
            (attribute_attention(x, &w[0], &w[1], &w[2])?.0 * &proj)?.sum_all()
        })
        .unwrap();
        let ks = w[1].flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let ek = max_gradient_error(&ks, &[d, d], |k| {
            (attribute_attention(&x, &w[0], k, &w[2])?.0 * &proj)?.sum_all()
        })
        .unwrap();
        assert!(ex < 1e-7 && ek < 1e-7, "{ex} {ek}");
    }

    #[test]
    fn neighbour_attention_weights_sum_to_one_and_u_takes_a_gradient() {
        let (n, g, d) = (3, 4, 5);
        let mut rng = Rng::new(4);
        let q = t(rng.normal(n * d, 1.0), &[n, d]);
        let c = t(rng.normal(n * g * d, 1.0), &[n, g, d]);
        let us = rng.normal(2 * d, 0.5);
        let (e, alpha) = neighbour_attention(&q, &c, &t(us.clone(), &[2, d])).unwrap();
        let rows = alpha.sum(1).unwrap().to_vec1::<f64>().unwrap();
        assert!(rows.iter().all(|r| (r - 1.0).abs() < 1e-12));
        // The first row by hand: sum_g alpha_g c_g.
        let (a0, c0) = (alpha.get(0).unwrap(), c.get(0).unwrap());
        let want = a0
            .unsqueeze(0)
            .unwrap()
            .matmul(&c0)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let diff = (e.get(0).unwrap() - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f64>().unwrap() < 1e-12);
        let proj = t(rng.normal(n * d, 1.0), &[n, d]);
        let err = max_gradient_error(&us, &[2, d], |u| {
            (neighbour_attention(&q, &c, u)?.0 * &proj)?.sum_all()
        })
        .unwrap();
        assert!(err < 1e-7, "{err}");
    }
}
