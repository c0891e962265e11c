//! DURation's training (duration.txt sections 4.3 and 5.3): each step
//! draws B training rows of every item kind, and minimises eq. 8,
//! `L = C + αA + βT`: binary cross-entropy on the rows' labels (eq. 7),
//! the distributional variance of the kinds' mapped rows (eq. 1-4) and
//! each kind's covariance distance between raw and mapped rows (eq. 5-6).
//! Adam; epochs, early stopping and checkpoints from hinrec-nn's trainer.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use candle_core::{Tensor, D};
use hinrec_nn::alignment::{distributional_variance, median_gamma, topology};
use hinrec_nn::loss::{bce_with_logits, l2};
use hinrec_nn::optim::{Adam, AdamConfig};
use hinrec_nn::trainer::{train as train_epochs, TrainStep, TrainerConfig};
use hinrec_train::{FitContext, FitSummary, Judge};
use rand::seq::SliceRandom;
use rand::Rng as _;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Row, TrainingData};
use crate::network::Duration;
use crate::params::{DurationConfig, DurationError, Result};

/// Rows of a batch the median bandwidth is measured on.
const BANDWIDTH_ROWS: usize = 256;
/// Draws a sampled negative may take before the row is skipped.
const NEGATIVE_TRIES: usize = 64;

/// One step's losses, for tests and reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLosses {
    /// Eq. 7.
    pub classification: f64,
    /// Eq. 4 (0 for the DMF variant).
    pub alignment: f64,
    /// Eq. 6 (0 for the DMF variant).
    pub topology: f64,
    /// Eq. 8 with the L2 term.
    pub total: f64,
}

impl Duration {
    /// Builds the histories and raw rows from `ctx`'s training data and
    /// trains with early stopping on `ctx.validation`, keeping the best
    /// epoch.
    pub fn fit(cfg: &DurationConfig, ctx: &mut FitContext<'_>) -> Result<(Self, FitSummary)> {
        cfg.check()?;
        let started = Instant::now();
        let mut data = TrainingData::new(ctx)?;
        // The model owns the histories and kinds; training reads them there.
        let model = Duration::init(
            cfg,
            std::mem::take(&mut data.kinds),
            std::mem::take(&mut data.user_history),
            std::mem::take(&mut data.item_history),
            ctx.seed,
        )?;
        let adam_cfg = AdamConfig {
            lr: cfg.lr,
            ..AdamConfig::default()
        };
        let adam = Adam::new(
            model.named_vars().into_iter().map(|v| v.1).collect(),
            adam_cfg,
        )?;
        let mut run = Training {
            model,
            adam,
            adam_cfg,
            data,
            judge: ctx.judge().map_err(DurationError::Config)?,
            seed: ctx.seed,
            terms: ([0.0; 3], 0),
        };
        let trainer = TrainerConfig {
            epochs: cfg.epochs,
            patience: cfg.patience,
            checkpoints: ctx.checkpoints.clone(),
        };
        let mut summary = train_epochs(&mut run, &trainer, &mut *ctx.progress)?;
        run.model.refresh()?;
        summary.total_s = started.elapsed().as_secs_f64();
        summary.audit = run.judge.into_audit();
        Ok((run.model, summary))
    }

    /// One step of eq. 8 on `rows`, laid out kind by kind (`blocks[p]` the
    /// range of kind `p`'s rows); with `adam`, the update too.
    pub(crate) fn step_rows(
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
        let hu =
            (ub.bags.index_select(&idx(ru)?, 0)? - own(ub.leaf.as_tensor(), &ub.extra_at, uw)?)?;
        let hi =
            (ib.bags.index_select(&idx(ri)?, 0)? - own(ib.leaf.as_tensor(), &ib.extra_at, iw)?)?;
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
        let labels = Tensor::from_vec(rows.iter().map(|r| r.label).collect::<Vec<_>>(), n, &dev)?;
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

impl Duration {
    /// Eq. 8's terms on one step of `ctx`'s training rows (B rows of each
    /// kind, drawn with `seed`), without an update: the weights as they
    /// are, for tests and diagnostics.
    pub fn terms_of_one_step(&mut self, ctx: &FitContext<'_>, seed: u64) -> Result<StepLosses> {
        let data = TrainingData::new(ctx)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows = Vec::new();
        let mut blocks = Vec::new();
        for (kind, idx) in data.by_kind.iter().enumerate() {
            if idx.is_empty() {
                continue;
            }
            let mut idx = idx.clone();
            idx.shuffle(&mut rng);
            idx.truncate(self.cfg.batch);
            let from = rows.len();
            rows.extend(idx.iter().map(|&i| data.rows[i as usize]));
            blocks.push((kind, from..rows.len()));
        }
        self.step_rows(&rows, &blocks, None)
    }
}

/// DURation with its optimizer and data, as the trainer drives it.
struct Training<'a> {
    model: Duration,
    adam: Adam,
    adam_cfg: AdamConfig,
    data: TrainingData<'a>,
    judge: Judge<'a>,
    seed: u64,
    /// Sums of eq. 8's three terms over the epoch's steps, and the steps.
    terms: ([f64; 3], usize),
}

/// One epoch: the rows of every step, each step kind by kind.
struct Epoch {
    rows: Vec<Row>,
    /// Each step's blocks: (kind, range within the step).
    blocks: Vec<Vec<(usize, Range<usize>)>>,
    /// Each step's range in `rows`.
    steps: Vec<Range<usize>>,
}

impl Training<'_> {
    /// Section 4.3's sampling: per step, B rows of every kind (each kind's
    /// rows shuffled and cycled, so an epoch passes once over the largest
    /// kind); where the data has no observed negatives, each positive
    /// brings `negatives` unobserved items of its kind.
    fn epoch_rows(&self, rng: &mut ChaCha8Rng) -> Epoch {
        let cfg = &self.model.cfg;
        let data = &self.data;
        let b = cfg.batch;
        let largest = data.by_kind.iter().map(Vec::len).max().unwrap_or(0);
        let n_steps = largest.div_ceil(b);
        let mut orders: Vec<Vec<u32>> = data
            .by_kind
            .iter()
            .map(|rows| {
                let mut out = Vec::with_capacity(n_steps * b);
                while !rows.is_empty() && out.len() < n_steps * b {
                    let mut r = rows.clone();
                    r.shuffle(rng);
                    out.extend(r);
                }
                out
            })
            .collect();
        let mut epoch = Epoch {
            rows: Vec::new(),
            blocks: Vec::new(),
            steps: Vec::new(),
        };
        for s in 0..n_steps {
            let start = epoch.rows.len();
            let mut blocks = Vec::new();
            for (kind, order) in orders.iter_mut().enumerate() {
                if order.is_empty() {
                    continue;
                }
                let from = epoch.rows.len();
                for &k in &order[s * b..(s + 1) * b] {
                    let row = data.rows[k as usize];
                    epoch.rows.push(row);
                    if !data.observed_negatives {
                        for _ in 0..cfg.negatives {
                            if let Some(j) = self.negative(row.user, kind, rng) {
                                epoch.rows.push(Row {
                                    user: row.user,
                                    item: j,
                                    label: 0.0,
                                    weight: 0.0,
                                });
                            }
                        }
                    }
                }
                blocks.push((kind, from - start..epoch.rows.len() - start));
            }
            epoch.blocks.push(blocks);
            epoch.steps.push(start..epoch.rows.len());
        }
        epoch
    }

    /// A uniform item of `kind` the user has no training positive with.
    fn negative(&self, user: u32, kind: usize, rng: &mut ChaCha8Rng) -> Option<u32> {
        let items = &self.model.kinds[kind].items;
        let seen = self.data.positives.user_items(user);
        (0..NEGATIVE_TRIES)
            .map(|_| rng.random_range(items.clone()))
            .find(|j| seen.binary_search(j).is_err())
    }
}

impl TrainStep for Training<'_> {
    type Error = DurationError;
    type Epoch = Epoch;

    fn epoch_seed(&self) -> u64 {
        self.seed ^ 0xd0_a710
    }

    fn epoch(&mut self, _epoch: usize, rng: &mut ChaCha8Rng) -> Result<Epoch> {
        Ok(self.epoch_rows(rng))
    }

    /// One example per step: a step is a whole block of every kind.
    fn examples(&self, data: &Epoch) -> usize {
        data.steps.len()
    }

    fn batch_size(&self) -> usize {
        1
    }

    fn step(&mut self, data: &Epoch, range: Range<usize>) -> Result<f64> {
        let mut total = 0.0;
        for s in range.clone() {
            let rows = &data.rows[data.steps[s].clone()];
            let l = self.model.step_rows(
                rows,
                &data.blocks[s],
                Some((&mut self.adam, &self.adam_cfg)),
            )?;
            total += l.total;
            let t = &mut self.terms;
            t.0[0] += l.classification;
            t.0[1] += l.alignment;
            t.0[2] += l.topology;
            t.1 += 1;
        }
        Ok(total / range.len().max(1) as f64)
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.model.refresh()?;
        self.judge.score(&self.model).map_err(DurationError::Score)
    }

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut s = self.model.state()?;
        s.extend(self.adam.state("adam")?);
        Ok(s)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.model.load_state(state)?;
        self.adam.load_state("adam", state)?;
        Ok(())
    }

    /// Eq. 8's `C`, `A` and `T`, each the mean over the epoch's steps
    /// (before α and β).
    fn take_terms(&mut self) -> Vec<(String, f64)> {
        let (sums, n) = std::mem::replace(&mut self.terms, ([0.0; 3], 0));
        let n = n.max(1) as f64;
        let cfg = &self.model.cfg;
        let maps = cfg.maps_attributes();
        // A term with no weight is not computed: not reported either.
        let used = [true, maps && cfg.alpha > 0.0, maps && cfg.beta > 0.0];
        ["C", "A", "T"]
            .iter()
            .zip(sums)
            .zip(used)
            .filter(|(_, u)| *u)
            .map(|((k, v), _)| (k.to_string(), v / n))
            .collect()
    }

    fn samples_per_epoch(&self) -> usize {
        let largest = self.data.by_kind.iter().map(Vec::len).max().unwrap_or(0);
        largest.div_ceil(self.model.cfg.batch)
            * self.model.cfg.batch
            * self.data.by_kind.iter().filter(|k| !k.is_empty()).count()
    }
}
