//! GLRS's networks and the trained model (glrs.txt section 3).
//!
//! - [`Tower`]: one side of a representation network (Fig. 2): an ID
//!   embedding, hidden layers with ReLU, a linear output of `d`
//!   dimensions, L2-normalised. Users and items have separate towers.
//! - [`SpaceNet`]: the two towers of one representation space g^(r).
//! - [`Tables`]: a trained space's outputs for every user and item (the
//!   networks map IDs, so after training a space is just these rows).
//! - [`Attention`]: the per-channel transforms f^(r) of eq. 7, the
//!   compatibility softmax of eq. 8 and the blend of eq. 9.
//! - [`Glrs`]: the trained model: the spaces its variant blends, the
//!   attention, and the cluster index over the GD item space (Algorithm
//!   1); it scores with precomputed channel vectors.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use hinrec_cluster::index::{ClusterIndex, Metric};
use hinrec_cluster::kmeans::KMeans;
use hinrec_eval::{check_len, check_pairs, check_users, ScoreError, Scorer};
use hinrec_nn::checkpoint;
use hinrec_nn::dense_mlp::{gemm, DenseMlp};
use hinrec_nn::embedding::EmbeddingTable;
use hinrec_nn::init::Rng;
use hinrec_nn::layers::{Linear, Mlp};
use hinrec_train::{ModelError, Reason, TrainedModel};
use rayon::prelude::*;

use crate::params::{GlrsConfig, GlrsError, Loss, Result, Space};

/// One tower of a representation network (Fig. 2).
#[derive(Debug, Clone)]
pub struct Tower {
    /// The ID embedding (`n x hidden`), updated row-wise.
    pub embedding: EmbeddingTable,
    /// Hidden layers (ReLU) and the linear output layer.
    pub mlp: Mlp,
}

impl Tower {
    /// A seeded tower for `n` IDs: embedding rows uniform in +-0.05 (as
    /// Keras's default), Xavier layers `hidden x layers` then `d`.
    pub fn new(rng: &mut Rng, n: usize, cfg: &GlrsConfig, dev: &Device) -> Result<Self> {
        let data = rng.uniform_f32(n * cfg.hidden, 0.05);
        let mut dims = vec![cfg.hidden; cfg.layers + 1];
        dims.push(cfg.dim);
        Ok(Tower {
            embedding: EmbeddingTable::new(n, cfg.hidden, data),
            mlp: Mlp::new(rng, &dims, DType::F32, dev)?,
        })
    }

    /// The tower as a fused MLP over plain rows (its current weights;
    /// the output L2-normalised).
    pub fn dense(&self) -> Result<DenseMlp> {
        Ok(self.mlp.to_dense(true)?)
    }

    /// Every ID's representation, row-major `n x d`.
    pub fn table(&self) -> Result<Vec<f32>> {
        let mlp = self.dense()?;
        let n = self.embedding.rows() as u32;
        let mut out = Vec::with_capacity(n as usize * mlp.d_out());
        let ids: Vec<u32> = (0..n).collect();
        for chunk in ids.chunks(4096) {
            let x = self.embedding.gather_rows(chunk);
            out.extend(mlp.forward(&x, chunk.len())?.out);
        }
        Ok(out)
    }
}

/// The user and item towers of one representation space g^(r).
#[derive(Debug, Clone)]
pub struct SpaceNet {
    /// The user tower.
    pub users: Tower,
    /// The item tower.
    pub items: Tower,
}

impl SpaceNet {
    /// Fresh towers, seeded.
    pub fn new(n_users: usize, n_items: usize, cfg: &GlrsConfig, seed: u64) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let dev = Device::Cpu;
        Ok(SpaceNet {
            users: Tower::new(&mut rng, n_users, cfg, &dev)?,
            items: Tower::new(&mut rng, n_items, cfg, &dev)?,
        })
    }

    /// An independent copy (new variables: training it leaves `self` as it
    /// is).
    pub fn deep_copy(&self) -> Result<Self> {
        let copy = |t: &Tower| -> Result<Tower> {
            let layers = t
                .mlp
                .layers
                .iter()
                .map(|l| {
                    Ok(Linear {
                        weight: Var::from_tensor(&l.weight.as_tensor().copy()?)?,
                        bias: Var::from_tensor(&l.bias.as_tensor().copy()?)?,
                    })
                })
                .collect::<candle_core::Result<_>>()?;
            Ok(Tower {
                embedding: t.embedding.clone(),
                mlp: Mlp { layers },
            })
        };
        Ok(SpaceNet {
            users: copy(&self.users)?,
            items: copy(&self.items)?,
        })
    }

    /// Dense variables by name (`user.0.weight`, `item.2.bias`).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut v = self.users.mlp.named_vars("user");
        v.extend(self.items.mlp.named_vars("item"));
        v
    }

    /// The trained space's rows.
    pub fn tables(&self) -> Result<Tables> {
        Ok(Tables {
            dim: self.users.mlp.layers.last().map_or(0, |l| l.bias.dims()[1]),
            users: self.users.table()?,
            items: self.items.table()?,
        })
    }
}

/// A representation space's outputs for every user and item.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    /// d.
    pub dim: usize,
    /// Users, row-major `n_users x d`.
    pub users: Vec<f32>,
    /// Items, row-major `n_items x d`.
    pub items: Vec<f32>,
}

impl Tables {
    /// Users.
    pub fn n_users(&self) -> usize {
        self.users.len() / self.dim.max(1)
    }

    /// Items.
    pub fn n_items(&self) -> usize {
        self.items.len() / self.dim.max(1)
    }

    /// User `u`'s row.
    pub fn user(&self, u: u32) -> &[f32] {
        &self.users[u as usize * self.dim..(u as usize + 1) * self.dim]
    }

    /// Item `i`'s row.
    pub fn item(&self, i: u32) -> &[f32] {
        &self.items[i as usize * self.dim..(i as usize + 1) * self.dim]
    }
}

pub(crate) use hinrec_cluster::kmeans::dot;

/// `rows (n x d) * table^T (d x m)` as a row-major `n x m` vector.
fn product(rows: &[f32], n: usize, table: &Tensor) -> candle_core::Result<Vec<f32>> {
    let d = table.dim(1)?;
    let a = Tensor::from_slice(rows, (n, d), &Device::Cpu)?;
    a.matmul(&table.t()?)?.flatten_all()?.to_vec1::<f32>()
}

/// A space scored alone: users against items by dot product. Its vectors
/// are unit length, so this is also the order of Euclidean distance
/// (`|u - i|^2 = 2 - 2 <u, i>`).
pub struct SpaceScorer<'a> {
    /// The rows.
    pub tables: &'a Tables,
}

impl Scorer for SpaceScorer<'_> {
    fn n_items(&self) -> usize {
        self.tables.n_items()
    }

    fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
        let t = self.tables;
        check_pairs(pairs, out, t.n_users(), t.n_items())?;
        out.par_iter_mut()
            .zip(pairs.par_iter())
            .for_each(|(o, &(u, i))| *o = dot(t.user(u), t.item(i)));
        Ok(())
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        let t = self.tables;
        check_users(users.iter().copied(), t.n_users())?;
        let n = t.n_items();
        check_len("score_users", out.len(), users.len() * n)?;
        let items = Tensor::from_slice(&t.items, (n, t.dim), &Device::Cpu).map_err(box_err)?;
        for (chunk, o) in users.chunks(USER_BLOCK).zip(out.chunks_mut(USER_BLOCK * n)) {
            let rows: Vec<f32> = chunk
                .iter()
                .flat_map(|&u| t.user(u).iter().copied())
                .collect();
            o.copy_from_slice(&product(&rows, chunk.len(), &items).map_err(box_err)?);
        }
        Ok(())
    }
}

/// Users scored per matrix product.
const USER_BLOCK: usize = 256;

fn box_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> ScoreError {
    Box::new(e)
}

/// The attention network (eq. 7-9): a linear transform f^(r) per channel.
#[derive(Debug, Clone)]
pub struct Attention {
    /// f^(r), `d x d` with bias, one per blended space.
    pub transforms: Vec<Linear>,
}

impl Attention {
    /// Seeded transforms for `r` channels of `d` dimensions.
    ///
    /// Each f^(r) starts as the identity (zero bias), so α starts as the
    /// softmax of the pair's cosine in each space: eq. 8's "more attention
    /// where the user and the item are more compatible" before any
    /// training. The paper does not give an initialisation; Xavier
    /// weights start from random α and validated no better (docs/glrs.md).
    pub fn new(r: usize, d: usize) -> Result<Self> {
        let dev = Device::Cpu;
        let transforms = (0..r)
            .map(|_| {
                Ok(Linear {
                    weight: Var::from_tensor(&Tensor::eye(d, DType::F32, &dev)?)?,
                    bias: Var::zeros((1, d), DType::F32, &dev)?,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Attention { transforms })
    }

    /// Its variables by name, `f.{space}.weight` and `.bias`.
    pub fn named_vars(&self, spaces: &[Space]) -> Vec<(String, Var)> {
        self.transforms
            .iter()
            .zip(spaces)
            .flat_map(|(l, s)| l.named_vars(&format!("f.{}", s.name())))
            .collect()
    }

    /// Eq. 7-9 on the triplets `(users[k], pos[k], neg[k])` over the
    /// frozen spaces `spaces` (one per transform): ū, ī+, ī- and α
    /// (`b x R`) into `t`, with what [`Attention::blend_backward`] needs;
    /// `t`'s buffers are reused from batch to batch. α comes from the user
    /// and the positive item only (eq. 8).
    ///
    /// Fused: per channel one product over the stacked user and positive
    /// rows, channels in parallel (each its own output, so the thread
    /// count changes nothing).
    pub fn blend(
        &self,
        spaces: &[&Tables],
        (users, pos, neg): (&[u32], &[u32], &[u32]),
        t: &mut Blend,
    ) -> Result<()> {
        let r = self.transforms.len();
        let b = users.len();
        let msg = |m: String| GlrsError::Candle(candle_core::Error::Msg(m));
        if r == 0 || r > MAX_CHANNELS || spaces.len() != r || pos.len() != b || neg.len() != b {
            return Err(msg(format!(
                "attention over {r} channels given {} spaces and {b}, {} and {} ids",
                spaces.len(),
                pos.len(),
                neg.len()
            )));
        }
        let d = spaces[0].dim;
        for sp in spaces {
            let bad_user = users.iter().find(|&&u| u as usize >= sp.n_users());
            let bad_item = pos.iter().chain(neg).find(|&&i| i as usize >= sp.n_items());
            if sp.dim != d || bad_user.is_some() || bad_item.is_some() {
                return Err(msg(format!(
                    "attention: a space of {} dimensions (not {d}) or an id outside it",
                    sp.dim
                )));
            }
        }
        t.weights = self.weights()?;
        if t.weights
            .iter()
            .any(|(w, bias)| w.len() != d * d || bias.len() != d)
        {
            return Err(msg(format!("attention: transforms that are not {d} x {d}")));
        }
        t.b = b;
        t.d = d;
        t.channels.resize_with(r, Channel::default);
        // Eq. 7: u^(r) = f^(r)(g^(r)(u)) and i^(r) = f^(r)(g^(r)(i+)),
        // users stacked over positives.
        t.channels
            .par_iter_mut()
            .zip(spaces.par_iter())
            .zip(t.weights.par_iter())
            .try_for_each(|((ch, sp), (w, bias))| -> Result<()> {
                ch.x.clear();
                for &u in users {
                    ch.x.extend_from_slice(sp.user(u));
                }
                for &i in pos {
                    ch.x.extend_from_slice(sp.item(i));
                }
                ch.neg.clear();
                for &i in neg {
                    ch.neg.extend_from_slice(sp.item(i));
                }
                ch.f.clear();
                for _ in 0..2 * b {
                    ch.f.extend_from_slice(bias);
                }
                gemm(&ch.x, false, w, false, &mut ch.f, (2 * b, d, d), 1.0)?;
                Ok(())
            })?;
        // Eq. 8: alpha^(r) = softmax over r of u^(r) . i^(r).
        t.alpha.clear();
        let mut compat = [0f32; MAX_CHANNELS];
        for k in 0..b {
            for (c, ch) in compat.iter_mut().zip(&t.channels) {
                *c = dot(
                    &ch.f[k * d..(k + 1) * d],
                    &ch.f[(b + k) * d..(b + k + 1) * d],
                );
            }
            let m = compat[..r]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let e = compat[..r].iter().map(|x| (x - m).exp());
            let sum: f32 = e.clone().sum();
            t.alpha.extend(e.map(|x| x / sum));
        }
        // Eq. 9: weighted sums with the same alpha for u, i+ and i-.
        let (alpha, channels) = (&t.alpha, &t.channels);
        let mix = |out: &mut Vec<f32>, rows: &dyn Fn(&Channel, usize) -> &[f32]| {
            out.clear();
            out.resize(b * d, 0.0);
            for (k, o) in out.chunks_mut(d).enumerate() {
                for (q, ch) in channels.iter().enumerate() {
                    let a = alpha[k * r + q];
                    o.iter_mut()
                        .zip(rows(ch, k))
                        .for_each(|(o, &v)| *o += a * v);
                }
            }
        };
        mix(&mut t.u, &|ch, k| &ch.x[k * d..(k + 1) * d]);
        mix(&mut t.p, &|ch, k| &ch.x[(b + k) * d..(b + k + 1) * d]);
        mix(&mut t.n, &|ch, k| &ch.neg[k * d..(k + 1) * d]);
        Ok(())
    }

    /// The gradients of the transforms (in the order of
    /// [`Attention::named_vars`]: weight then bias per channel) given
    /// those of ū, ī+ and ī- (each `b x d`), into `t`'s `grads`.
    pub fn blend_backward(&self, t: &mut Blend, du: &[f32], dp: &[f32], dn: &[f32]) -> Result<()> {
        let (b, d, r) = (t.b, t.d, t.channels.len());
        if [du.len(), dp.len(), dn.len()] != [b * d; 3] {
            return Err(GlrsError::Candle(candle_core::Error::Msg(format!(
                "attention: gradients of {}, {} and {} values for {b} rows of {d}",
                du.len(),
                dp.len(),
                dn.len()
            ))));
        }
        // Through eq. 9 to alpha, then eq. 8's softmax to the compatibilities.
        t.ds.clear();
        let mut dalpha = [0f32; MAX_CHANNELS];
        for k in 0..b {
            let rows = k * d..(k + 1) * d;
            for (g, ch) in dalpha.iter_mut().zip(&t.channels) {
                *g = dot(&du[rows.clone()], &ch.x[rows.clone()])
                    + dot(&dp[rows.clone()], &ch.x[(b + k) * d..(b + k + 1) * d])
                    + dot(&dn[rows.clone()], &ch.neg[rows.clone()]);
            }
            let a = &t.alpha[k * r..(k + 1) * r];
            let mean: f32 = a.iter().zip(&dalpha).map(|(x, y)| x * y).sum();
            t.ds.extend(a.iter().zip(&dalpha).map(|(&x, &g)| x * (g - mean)));
        }
        // Through eq. 7: d(u . i)/du = i and /di = u, then the transform.
        let ds = &t.ds;
        t.grads.resize_with(2 * r, Vec::new);
        t.channels
            .par_iter_mut()
            .zip(t.grads.par_chunks_mut(2))
            .enumerate()
            .try_for_each(|(q, (ch, g))| -> Result<()> {
                ch.df.clear();
                ch.df.resize(2 * b * d, 0.0);
                let (dfu, dfi) = ch.df.split_at_mut(b * d);
                for k in 0..b {
                    let s = ds[k * r + q];
                    let rows = k * d..(k + 1) * d;
                    let (fu, fi) = (&ch.f[rows.clone()], &ch.f[(b + k) * d..(b + k + 1) * d]);
                    dfu[rows.clone()]
                        .iter_mut()
                        .zip(fi)
                        .for_each(|(o, &v)| *o = s * v);
                    dfi[rows].iter_mut().zip(fu).for_each(|(o, &v)| *o = s * v);
                }
                let [dw, db] = g else {
                    return Ok(());
                };
                dw.clear();
                dw.resize(d * d, 0.0);
                gemm(&ch.x, true, &ch.df, false, dw, (d, 2 * b, d), 0.0)?;
                db.clear();
                db.resize(d, 0.0);
                for row in ch.df.chunks(d) {
                    db.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                }
                Ok(())
            })?;
        Ok(())
    }

    /// Each transform's weight (`d x d`, row-major) and bias.
    fn weights(&self) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        self.transforms
            .iter()
            .map(|l| {
                let flat = |t: &Tensor| -> candle_core::Result<Vec<f32>> {
                    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
                };
                Ok((flat(l.weight.as_tensor())?, flat(l.bias.as_tensor())?))
            })
            .collect()
    }
}

/// Spaces an attention blends at most (the four of section 4.3).
pub const MAX_CHANNELS: usize = 4;

/// One channel of [`Attention::blend`]: the stacked user and positive rows
/// g^(r), their transforms f^(r), the negative rows, and the gradient of
/// the transforms' outputs.
#[derive(Debug, Clone, Default)]
struct Channel {
    x: Vec<f32>,
    f: Vec<f32>,
    neg: Vec<f32>,
    df: Vec<f32>,
}

/// The outputs of [`Attention::blend`], what its backward needs, and the
/// gradients [`Attention::blend_backward`] leaves; reusable across
/// batches.
#[derive(Debug, Clone, Default)]
pub struct Blend {
    b: usize,
    d: usize,
    /// ū, `b x d`.
    pub u: Vec<f32>,
    /// ī+, `b x d`.
    pub p: Vec<f32>,
    /// ī-, `b x d`.
    pub n: Vec<f32>,
    /// α, `b x R`.
    pub alpha: Vec<f32>,
    /// The transforms' gradients, weight then bias per channel.
    pub grads: Vec<Vec<f32>>,
    channels: Vec<Channel>,
    weights: Vec<(Vec<f32>, Vec<f32>)>,
    ds: Vec<f32>,
}

/// The trained attention's per-channel vectors: f^(r)(g^(r)) of every user
/// and item, computed once after training.
#[derive(Debug, Clone)]
struct Channels {
    users: Vec<Vec<f32>>,
    items: Vec<Vec<f32>>,
}

/// A trained GLRS.
#[derive(Debug, Clone)]
pub struct Glrs {
    pub(crate) cfg: GlrsConfig,
    /// The spaces the variant scores with, in its order.
    pub(crate) spaces: Vec<(Space, Tables)>,
    /// The GD space (the index's own space).
    pub(crate) gd: Tables,
    pub(crate) attention: Option<Attention>,
    channels: Option<Channels>,
    /// The k-means of the GD item space.
    pub(crate) clusters: KMeans,
    pub(crate) index: ClusterIndex,
    /// Seconds each stage of the fit took (empty for a loaded model;
    /// a stage served from the process's cache takes about none).
    pub timings: Vec<(String, f64)>,
}

impl Glrs {
    /// Assembles a trained model; precomputes the channel vectors.
    pub(crate) fn assemble(
        cfg: &GlrsConfig,
        spaces: Vec<(Space, Tables)>,
        gd: Tables,
        attention: Option<Attention>,
        clusters: KMeans,
    ) -> Result<Self> {
        let channels = match &attention {
            Some(a) => Some(channels(a, &spaces)?),
            None => None,
        };
        let index = ClusterIndex::new(&clusters, Metric::L2);
        Ok(Glrs {
            cfg: cfg.clone(),
            spaces,
            gd,
            attention,
            channels,
            clusters,
            index,
            timings: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GlrsConfig {
        &self.cfg
    }

    /// The spaces the variant blends, with their rows.
    pub fn spaces(&self) -> &[(Space, Tables)] {
        &self.spaces
    }

    /// The GD space (the index's own space).
    pub fn gd(&self) -> &Tables {
        &self.gd
    }

    /// The cluster index over the GD item space.
    pub fn index(&self) -> &ClusterIndex {
        &self.index
    }

    /// The k-means of the GD item space.
    pub fn clusters(&self) -> &KMeans {
        &self.clusters
    }

    /// Users.
    pub fn n_users(&self) -> usize {
        self.gd.n_users()
    }

    /// Algorithm 1's candidates for `user` with `probe` clusters: the
    /// items of the clusters nearest to the user's GD vector.
    pub fn candidates(&self, user: u32, probe: usize) -> Vec<u32> {
        self.index.candidates(self.gd.user(user), probe)
    }

    /// The attention weights α over the variant's spaces for a pair (one
    /// weight of 1 for a single space).
    pub fn alpha(&self, user: u32, item: u32) -> Vec<f32> {
        match &self.channels {
            None => vec![1.0],
            Some(c) => {
                let a: Vec<f32> = c
                    .users
                    .iter()
                    .zip(&c.items)
                    .map(|(us, is)| {
                        let d = self.cfg.dim;
                        dot(
                            &us[user as usize * d..(user as usize + 1) * d],
                            &is[item as usize * d..(item as usize + 1) * d],
                        )
                    })
                    .collect();
                softmax(&a)
            }
        }
    }

    /// The score of one pair: a single space's dot product, or eq. 9's
    /// blend with the pair's own α, compared by dot product (product
    /// loss) or negative squared distance (distance loss).
    fn score_one(&self, user: u32, item: u32) -> f32 {
        let Some(loss) = self.cfg.variant.attention_loss() else {
            let t = &self.spaces[0].1;
            return dot(t.user(user), t.item(item));
        };
        let alpha = self.alpha(user, item);
        let d = self.cfg.dim;
        let mut ub = vec![0f32; d];
        let mut ib = vec![0f32; d];
        for ((_, t), &a) in self.spaces.iter().zip(&alpha) {
            for ((x, y), (p, q)) in ub
                .iter_mut()
                .zip(ib.iter_mut())
                .zip(t.user(user).iter().zip(t.item(item)))
            {
                *x += a * p;
                *y += a * q;
            }
        }
        match loss {
            Loss::Product => dot(&ub, &ib),
            Loss::Distance => -ub
                .iter()
                .zip(&ib)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>(),
        }
    }

    /// Scores of `users x` every item, by matrix products: R compatibility
    /// products and R^2 space products, combined per pair.
    fn score_block(&self, users: &[u32], out: &mut [f32]) -> candle_core::Result<()> {
        let n = self.n_items();
        let d = self.cfg.dim;
        let b = users.len();
        let rows = |t: &[f32]| -> Vec<f32> {
            users
                .iter()
                .flat_map(|&u| t[u as usize * d..(u as usize + 1) * d].iter().copied())
                .collect()
        };
        let table = |t: &[f32]| Tensor::from_slice(t, (n, d), &Device::Cpu);
        let (Some(c), Some(loss)) = (&self.channels, self.cfg.variant.attention_loss()) else {
            let t = &self.spaces[0].1;
            out.copy_from_slice(&product(&rows(&t.users), b, &table(&t.items)?)?);
            return Ok(());
        };
        let r = self.spaces.len();
        let compat: Vec<Vec<f32>> = (0..r)
            .map(|k| product(&rows(&c.users[k]), b, &table(&c.items[k])?))
            .collect::<candle_core::Result<_>>()?;
        let items: Vec<Tensor> = self
            .spaces
            .iter()
            .map(|(_, t)| table(&t.items))
            .collect::<candle_core::Result<_>>()?;
        let mut cross = Vec::with_capacity(r * r);
        for (_, tu) in &self.spaces {
            let ru = rows(&tu.users);
            for ti in &items {
                cross.push(product(&ru, b, ti)?);
            }
        }
        // Per-user and per-item Gram matrices of the spaces, for distances.
        let gram = |pick: &dyn Fn(&Tables) -> &[f32]| -> Vec<f32> {
            let m = pick(&self.spaces[0].1).len() / d;
            let mut g = vec![0f32; m * r * r];
            for (x, (_, ta)) in self.spaces.iter().enumerate() {
                for (y, (_, tb)) in self.spaces.iter().enumerate() {
                    let (a, bb) = (pick(ta), pick(tb));
                    for k in 0..m {
                        g[k * r * r + x * r + y] =
                            dot(&a[k * d..(k + 1) * d], &bb[k * d..(k + 1) * d]);
                    }
                }
            }
            g
        };
        let (gu, gi) = match loss {
            Loss::Distance => (gram(&|t: &Tables| &t.users), gram(&|t: &Tables| &t.items)),
            Loss::Product => (Vec::new(), Vec::new()),
        };
        out.par_chunks_mut(n).enumerate().for_each(|(row, o)| {
            let u = users[row] as usize;
            let mut a = vec![0f32; r];
            for (i, slot) in o.iter_mut().enumerate() {
                let at = row * n + i;
                for (k, ak) in a.iter_mut().enumerate() {
                    *ak = compat[k][at];
                }
                let alpha = softmax(&a);
                let mut uv = 0f32;
                let mut uu = 0f32;
                let mut vv = 0f32;
                for x in 0..r {
                    for y in 0..r {
                        let w = alpha[x] * alpha[y];
                        uv += w * cross[x * r + y][at];
                        if loss == Loss::Distance {
                            uu += w * gu[u * r * r + x * r + y];
                            vv += w * gi[i * r * r + x * r + y];
                        }
                    }
                }
                *slot = match loss {
                    Loss::Product => uv,
                    Loss::Distance => -(uu + vv - 2.0 * uv),
                };
            }
        });
        Ok(())
    }

    /// Restores a model that [`TrainedModel::save`] wrote with `cfg`.
    pub fn from_state(cfg: &GlrsConfig, state: &HashMap<String, Tensor>) -> Result<Self> {
        cfg.check()?;
        let bad = |m: String| GlrsError::Config(format!("saved GLRS: {m}"));
        let table = |name: &str| -> Result<(Vec<f32>, usize)> {
            let t = state
                .get(name)
                .ok_or_else(|| bad(format!("lacks {name}")))?;
            let (n, d) = t.dims2().map_err(|_| bad(format!("{name} is not 2-d")))?;
            if d != cfg.dim {
                return Err(bad(format!(
                    "{name} has {d} columns, the parameters say dim = {}",
                    cfg.dim
                )));
            }
            let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("{name} holds a non-finite value")));
            }
            Ok((v, n))
        };
        let space = |s: Space| -> Result<Tables> {
            let (users, _) = table(&format!("space.{}.users", s.name()))?;
            let (items, _) = table(&format!("space.{}.items", s.name()))?;
            Ok(Tables {
                dim: cfg.dim,
                users,
                items,
            })
        };
        let gd = space(Space::Gd)?;
        let spaces: Vec<(Space, Tables)> = cfg
            .variant
            .spaces()
            .iter()
            .map(|&s| {
                Ok((
                    s,
                    if s == Space::Gd {
                        gd.clone()
                    } else {
                        space(s)?
                    },
                ))
            })
            .collect::<Result<_>>()?;
        for (s, t) in &spaces {
            if t.n_users() != gd.n_users() || t.n_items() != gd.n_items() {
                return Err(bad(format!(
                    "space {} is {} x {}, GD {} x {}",
                    s.name(),
                    t.n_users(),
                    t.n_items(),
                    gd.n_users(),
                    gd.n_items()
                )));
            }
        }
        let (centroids, m) = table("index.centroids")?;
        let assignment: Vec<u32> = state
            .get("index.assignment")
            .ok_or_else(|| bad("lacks index.assignment".into()))?
            .flatten_all()?
            .to_vec1::<u32>()
            .map_err(|_| bad("index.assignment is not u32".into()))?;
        if assignment.len() != gd.n_items() || assignment.iter().any(|&c| c as usize >= m) {
            return Err(bad(format!(
                "index.assignment has {} entries for {} items, or a cluster beyond {m}",
                assignment.len(),
                gd.n_items()
            )));
        }
        let clusters = KMeans {
            dim: cfg.dim,
            centroids,
            assignment,
            inertia: 0.0,
            iterations: 0,
        };
        let attention = match cfg.variant.attention_loss() {
            None => None,
            Some(_) => {
                let a = Attention::new(spaces.len(), cfg.dim)?;
                let names: Vec<Space> = spaces.iter().map(|s| s.0).collect();
                checkpoint::load_vars(&a.named_vars(&names), state)?;
                Some(a)
            }
        };
        Self::assemble(cfg, spaces, gd, attention, clusters)
    }

    /// Every tensor the model needs to score, named after its part.
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let dev = Device::Cpu;
        let d = self.cfg.dim;
        let mut out = HashMap::new();
        let mut put = |name: String, t: &Tables| -> candle_core::Result<()> {
            out.insert(
                format!("{name}.users"),
                Tensor::from_slice(&t.users, (t.n_users(), d), &dev)?,
            );
            out.insert(
                format!("{name}.items"),
                Tensor::from_slice(&t.items, (t.n_items(), d), &dev)?,
            );
            Ok(())
        };
        put("space.gd".into(), &self.gd)?;
        for (s, t) in &self.spaces {
            if *s != Space::Gd {
                put(format!("space.{}", s.name()), t)?;
            }
        }
        out.insert(
            "index.centroids".into(),
            Tensor::from_slice(&self.clusters.centroids, (self.clusters.k(), d), &dev)?,
        );
        out.insert(
            "index.assignment".into(),
            Tensor::from_slice(
                &self.clusters.assignment,
                self.clusters.assignment.len(),
                &dev,
            )?,
        );
        if let Some(a) = &self.attention {
            let names: Vec<Space> = self.spaces.iter().map(|s| s.0).collect();
            out.extend(checkpoint::vars_state(&a.named_vars(&names))?);
        }
        Ok(out)
    }
}

/// Softmax of a few values.
pub(crate) fn softmax(a: &[f32]) -> Vec<f32> {
    let m = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = a.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// f^(r)(g^(r)) for every user and item of each blended space.
fn channels(a: &Attention, spaces: &[(Space, Tables)]) -> Result<Channels> {
    let dev = Device::Cpu;
    let mut users = Vec::new();
    let mut items = Vec::new();
    for (f, (_, t)) in a.transforms.iter().zip(spaces) {
        let d = t.dim;
        let u = Tensor::from_slice(&t.users, (t.n_users(), d), &dev)?;
        let i = Tensor::from_slice(&t.items, (t.n_items(), d), &dev)?;
        users.push(f.forward(&u)?.flatten_all()?.to_vec1::<f32>()?);
        items.push(f.forward(&i)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(Channels { users, items })
}

impl Scorer for Glrs {
    fn n_items(&self) -> usize {
        self.gd.n_items()
    }

    fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
        check_pairs(pairs, out, self.n_users(), self.n_items())?;
        out.par_iter_mut()
            .zip(pairs.par_iter())
            .for_each(|(o, &(u, i))| *o = self.score_one(u, i));
        Ok(())
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> Result<(), ScoreError> {
        check_users(users.iter().copied(), self.n_users())?;
        let n = self.n_items();
        check_len("score_users", out.len(), users.len() * n)?;
        for (chunk, o) in users.chunks(USER_BLOCK).zip(out.chunks_mut(USER_BLOCK * n)) {
            self.score_block(chunk, o).map_err(box_err)?;
        }
        Ok(())
    }
}

impl TrainedModel for Glrs {
    fn save(&self, path: &std::path::Path) -> Result<(), ModelError> {
        checkpoint::save_model(path, &self.state()?)
    }

    fn explain(&self, user: u32, item: u32) -> Result<Vec<Reason>, ModelError> {
        if user as usize >= self.n_users() || item as usize >= self.n_items() {
            return Err(ModelError::Data(format!(
                "pair ({user}, {item}) is outside the model"
            )));
        }
        let alpha = self.alpha(user, item);
        let mut out = vec![Reason::Values {
            what: format!(
                "attention weight of each space for this pair (eq. 8, {})",
                self.cfg.variant.name()
            ),
            values: self
                .spaces
                .iter()
                .zip(&alpha)
                .map(|((s, _), &a)| (s.name().to_uppercase(), a))
                .collect(),
        }];
        out.push(Reason::Values {
            what: "each space's own score <u, i> (cosine: the vectors are unit length)".into(),
            values: self
                .spaces
                .iter()
                .map(|(s, t)| (s.name().to_uppercase(), dot(t.user(user), t.item(item))))
                .collect(),
        });
        let probed = self.index.probe(self.gd.user(user), self.cfg.probe);
        let c = self.clusters.assignment[item as usize];
        out.push(Reason::Values {
            what: format!(
                "the item's GD cluster and the user's {} probed clusters (Algorithm 1)",
                self.cfg.probe
            ),
            values: std::iter::once(("item cluster".to_string(), c as f32))
                .chain(
                    probed
                        .iter()
                        .enumerate()
                        .map(|(k, &p)| (format!("probe {}", k + 1), p as f32)),
                )
                .collect(),
        });
        Ok(out)
    }

    fn candidates(&self, user: u32) -> Option<Vec<u32>> {
        ((user as usize) < self.n_users()).then(|| self.candidates(user, self.cfg.probe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Variant;
    use candle_core::D;
    use hinrec_cluster::kmeans::KMeansConfig;
    use rand::{Rng as _, SeedableRng};

    /// Random unit rows.
    fn unit_rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut v: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        for row in v.chunks_mut(d) {
            let n = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= n);
        }
        v
    }

    fn model(variant: Variant) -> Glrs {
        let (nu, ni, d) = (7, 11, 4);
        let cfg = GlrsConfig {
            variant,
            dim: d,
            clusters: 3,
            probe: 2,
            local_clusters: 2,
            ..GlrsConfig::default()
        };
        let tables = |s: u64| Tables {
            dim: d,
            users: unit_rows(nu, d, s),
            items: unit_rows(ni, d, s + 100),
        };
        let spaces: Vec<(Space, Tables)> = variant
            .spaces()
            .iter()
            .enumerate()
            .map(|(k, &s)| (s, tables(k as u64 + 1)))
            .collect();
        let gd = tables(1);
        let km = KMeans::fit(
            &gd.items,
            d,
            &KMeansConfig {
                k: 3,
                ..KMeansConfig::default()
            },
        )
        .unwrap();
        let attention = variant
            .attention_loss()
            .map(|_| Attention::new(spaces.len(), d).unwrap());
        Glrs::assemble(&cfg, spaces, gd, attention, km).unwrap()
    }

    #[test]
    fn matrix_scoring_equals_the_per_pair_formula_for_every_variant() {
        for v in Variant::ALL {
            let m = model(v);
            let users = [0u32, 3, 6];
            let mut block = vec![0f32; users.len() * 11];
            m.score_users(&users, &mut block).unwrap();
            let pairs: Vec<(u32, u32)> = users
                .iter()
                .flat_map(|&u| (0..11).map(move |i| (u, i)))
                .collect();
            let mut each = vec![0f32; pairs.len()];
            m.score_pairs(&pairs, &mut each).unwrap();
            for (a, b) in block.iter().zip(&each) {
                assert!((a - b).abs() < 1e-4, "{v:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn attention_blend_by_hand() {
        // Two channels, d = 2, identity transforms: alpha = softmax(u.i).
        let a = Attention::new(2, 2).unwrap();
        let space = |u: [f32; 2]| Tables {
            dim: 2,
            users: u.to_vec(),
            items: vec![1.0, 0.0, 0.0, 1.0],
        };
        let (s1, s2) = (space([1.0, 0.0]), space([0.0, 1.0]));
        let mut t = Blend::default();
        a.blend(&[&s1, &s2], (&[0], &[0], &[1]), &mut t).unwrap();
        // Compatibilities 1 and 0: alpha = (e/(e+1), 1/(e+1)).
        let e = std::f32::consts::E;
        let want = [e / (e + 1.0), 1.0 / (e + 1.0)];
        assert!((t.alpha[0] - want[0]).abs() < 1e-6 && (t.alpha[1] - want[1]).abs() < 1e-6);
        assert!((t.u[0] - want[0]).abs() < 1e-6 && (t.u[1] - want[1]).abs() < 1e-6);
        assert_eq!(t.p, vec![1.0, 0.0]);
        assert_eq!(t.n, vec![0.0, 1.0]);
        assert!(a.blend(&[&s1], (&[0], &[0], &[1]), &mut t).is_err());
        assert!(a.blend(&[&s1, &s2], (&[0], &[0], &[2]), &mut t).is_err());
        assert!(a.blend(&[&s1, &s2], (&[1], &[0], &[1]), &mut t).is_err());
    }

    /// Eq. 7-9 as candle ops (the reference for the fused blend).
    fn candle_blend(
        a: &Attention,
        users: &[Tensor],
        pos: &[Tensor],
        neg: &[Tensor],
    ) -> (Tensor, Tensor, Tensor) {
        let compat: Vec<Tensor> = a
            .transforms
            .iter()
            .zip(users)
            .zip(pos)
            .map(|((f, u), p)| {
                (f.forward(u).unwrap() * f.forward(p).unwrap())
                    .unwrap()
                    .sum_keepdim(1)
                    .unwrap()
            })
            .collect();
        let x = Tensor::cat(&compat, 1).unwrap();
        let e = x
            .broadcast_sub(&x.max_keepdim(D::Minus1).unwrap())
            .unwrap()
            .exp()
            .unwrap();
        let alpha = e.broadcast_div(&e.sum_keepdim(D::Minus1).unwrap()).unwrap();
        let mix = |xs: &[Tensor]| -> Tensor {
            xs.iter()
                .enumerate()
                .map(|(r, x)| x.broadcast_mul(&alpha.narrow(1, r, 1).unwrap()).unwrap())
                .reduce(|a, b| (a + b).unwrap())
                .unwrap()
        };
        (mix(users), mix(pos), mix(neg))
    }

    #[test]
    fn fused_blend_and_its_gradients_match_candle_autograd() {
        let (r, b, d) = (3, 7, 5);
        let dev = Device::Cpu;
        let mut rng = Rng::new(5);
        let a = Attention::new(r, d).unwrap();
        // Move the transforms off the identity.
        for l in &a.transforms {
            let w: Vec<f32> = rng.uniform_f32(d * d, 0.5);
            let eye: Vec<f32> = (0..d * d).map(|k| f32::from(k % (d + 1) == 0)).collect();
            let w: Vec<f32> = w.iter().zip(&eye).map(|(x, e)| x + e).collect();
            l.weight
                .set(&Tensor::from_vec(w, (d, d), &dev).unwrap())
                .unwrap();
            let bias: Vec<f32> = rng.uniform_f32(d, 0.3);
            l.bias
                .set(&Tensor::from_vec(bias, (1, d), &dev).unwrap())
                .unwrap();
        }
        // Each channel's own space; the batch's rows are its users 0..b,
        // positives 0..b and negatives b..2b.
        let spaces: Vec<Tables> = (0..r)
            .map(|_| Tables {
                dim: d,
                users: rng.uniform_f32(b * d, 1.0),
                items: rng.uniform_f32(2 * b * d, 1.0),
            })
            .collect();
        let refs: Vec<&Tables> = spaces.iter().collect();
        let ids: Vec<u32> = (0..b as u32).collect();
        let negs: Vec<u32> = (b as u32..2 * b as u32).collect();
        let grads_of = |k: usize| -> Vec<f32> {
            spaces[0].items[k * b * d..(k + 1) * b * d]
                .iter()
                .map(|v| v * 0.7 - 0.1)
                .collect()
        };
        let (du, dp, dn) = (grads_of(0), grads_of(1), spaces[1].users.clone());
        let mut t = Blend::default();
        // Twice: the second reuses the first's buffers.
        for _ in 0..2 {
            a.blend(&refs, (&ids, &ids, &negs), &mut t).unwrap();
            a.blend_backward(&mut t, &du, &dp, &dn).unwrap();
        }
        let ten = |rows: &dyn Fn(&Tables) -> Vec<f32>| -> Vec<Tensor> {
            spaces
                .iter()
                .map(|s| Tensor::from_vec(rows(s), (b, d), &dev).unwrap())
                .collect()
        };
        let (u, p, n) = candle_blend(
            &a,
            &ten(&|s| s.users.clone()),
            &ten(&|s| s.items[..b * d].to_vec()),
            &ten(&|s| s.items[b * d..].to_vec()),
        );
        let flat = |t: &Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
        for (x, y) in [(&t.u, flat(&u)), (&t.p, flat(&p)), (&t.n, flat(&n))] {
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-5, "{a} against {b}");
            }
        }
        let g = |v: &[f32]| Tensor::from_vec(v.to_vec(), (b, d), &dev).unwrap();
        let surrogate = ((u * g(&du)).unwrap().sum_all().unwrap()
            + (p * g(&dp)).unwrap().sum_all().unwrap()
            + (n * g(&dn)).unwrap().sum_all().unwrap())
        .unwrap();
        let store = surrogate.backward().unwrap();
        let want: Vec<Vec<f32>> = a
            .named_vars(&[Space::Gd, Space::Gp, Space::Ld])
            .iter()
            .map(|(_, v)| flat(store.get(v.as_tensor()).unwrap()))
            .collect();
        assert_eq!(t.grads.len(), want.len());
        for (x, y) in t.grads.iter().zip(&want) {
            for (a, b) in x.iter().zip(y) {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} against {b}");
            }
        }
    }

    #[test]
    fn a_saved_model_scores_identically_and_bad_states_are_errors() {
        for v in [Variant::Ap, Variant::Ld, Variant::Gad] {
            let m = model(v);
            let state = m.state().unwrap();
            let back = Glrs::from_state(&m.cfg, &state).unwrap();
            let pairs: Vec<(u32, u32)> =
                (0..7).flat_map(|u| (0..11).map(move |i| (u, i))).collect();
            let (mut a, mut b) = (vec![0f32; pairs.len()], vec![0f32; pairs.len()]);
            m.score_pairs(&pairs, &mut a).unwrap();
            back.score_pairs(&pairs, &mut b).unwrap();
            assert_eq!(a, b, "{v:?}");
            assert_eq!(back.candidates(2, 2), m.candidates(2, 2));
            let mut broken = state.clone();
            broken.insert(
                "index.assignment".into(),
                Tensor::from_slice(&[9u32; 11], 11, &Device::Cpu).unwrap(),
            );
            assert!(Glrs::from_state(&m.cfg, &broken).is_err());
            let other = GlrsConfig {
                dim: 8,
                ..m.cfg.clone()
            };
            assert!(Glrs::from_state(&other, &state).is_err());
        }
        assert!(m_explains());
    }

    fn m_explains() -> bool {
        let m = model(Variant::Ap);
        let why = m.explain(1, 2).unwrap();
        match &why[0] {
            Reason::Values { values, .. } => {
                let s: f32 = values.iter().map(|v| v.1).sum();
                values.len() == 4 && (s - 1.0).abs() < 1e-5
            }
            _ => false,
        }
    }
}
