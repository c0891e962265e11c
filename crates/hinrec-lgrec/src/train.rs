//! LGRec's training (eq. 10-11): triples of a training pair and an item
//! the user never had, the hinge loss plus the weighted multi-label and L2
//! terms, one Adam step per batch, driven by hinrec-nn's trainer.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Tensor};
use hinrec_data::Interactions;
use hinrec_graph::{MetaPath, PairLabeler, RowRule};
use hinrec_nn::loss::{bce_with_logits, hinge, l2};
use hinrec_nn::optim::{Adam, AdamConfig};
use hinrec_nn::trainer::{train as train_epochs, TrainStep, TrainerConfig};
use hinrec_sample::unseen_item;
use hinrec_train::{FitContext, FitSummary, Judge};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::network::Lgrec;
use crate::params::{LgrecConfig, LgrecError, Result, Variant};

impl Lgrec {
    /// One optimisation step on a batch of triples. Returns the loss.
    fn step(&mut self, batch: &Batch<'_>, adam: &mut Adam, emb_cfg: &AdamConfig) -> Result<f64> {
        let Batch {
            users,
            pos,
            neg,
            labels,
            n_paths,
        } = *batch;
        let b = users.len();
        let (uniq_i, loc_i) = local_ids(
            users
                .iter()
                .flat_map(|&u| self.user_nb.neighbors(u).iter().copied()),
            self.items.rows(),
        );
        let both: Vec<u32> = pos.iter().chain(neg).copied().collect();
        let (uniq_u, loc_u) = local_ids(
            both.iter()
                .flat_map(|&v| self.item_nb.neighbors(v).iter().copied()),
            self.users.rows(),
        );
        let ei = self.items.gather(&uniq_i, DType::F32, &self.dev)?;
        let eu = self.users.gather(&uniq_u, DType::F32, &self.dev)?;
        let sides = self.sides(ei.as_tensor().clone(), eu.as_tensor().clone())?;
        let pair_users: Vec<u32> = users.iter().chain(users).copied().collect();
        let (dist, z) = self.forward(&sides, &pair_users, &both, Some(&loc_i), Some(&loc_u))?;
        let mut loss = hinge(
            &dist.narrow(0, 0, b)?,
            &dist.narrow(0, b, b)?,
            self.cfg.margin,
        )?;
        if let Some(z) = z {
            let logits = self.out.forward(&z)?;
            let y = Tensor::from_vec(labels.to_vec(), (2 * b, n_paths), &self.dev)?;
            // Eq. 11: alpha (l_mc(y+) + l_mc(y-)), each a sum over meta-paths.
            loss = (loss
                + (bce_with_logits(&logits, &y)? * (self.cfg.alpha * 2.0 * n_paths as f64))?)?;
        }
        let reg = (l2(&[ei.as_tensor(), eu.as_tensor()])? * (self.cfg.beta / b as f64))?;
        loss = (loss + reg)?;
        let grads = loss.backward()?;
        adam.step(&grads)?;
        if let Some(g) = grads.get(ei.as_tensor()) {
            self.items.apply(&uniq_i, g, emb_cfg)?;
        }
        if let Some(g) = grads.get(eu.as_tensor()) {
            self.users.apply(&uniq_u, g, emb_cfg)?;
        }
        Ok(loss.to_scalar::<f32>()? as f64)
    }

    /// The meta-paths a fit on `ctx` uses: the configuration's, else the
    /// dataset's.
    pub fn meta_paths<'c>(cfg: &'c LgrecConfig, ctx: &'c FitContext<'_>) -> &'c [String] {
        if cfg.meta_paths.is_empty() {
            ctx.meta_paths
        } else {
            &cfg.meta_paths
        }
    }

    /// Checks `cfg` against the data of `ctx` before any work: the HIN is
    /// there when the variant needs it, and it has every meta-path.
    pub fn check_data(cfg: &LgrecConfig, ctx: &FitContext<'_>) -> Result<()> {
        if cfg.variant == Variant::NoGlo {
            return Ok(());
        }
        let paths = Self::meta_paths(cfg, ctx);
        if paths.is_empty() {
            return Err(LgrecError::Data(format!(
                "{} needs meta-paths: name them in the dataset's manifest (metapaths = [\"UIUI\", ...]) or in [lgrec] meta_paths",
                cfg.variant.name()
            )));
        }
        let hin = ctx.hin.ok_or_else(|| {
            LgrecError::Data(format!("{} needs the dataset's HIN", cfg.variant.name()))
        })?;
        for p in paths {
            MetaPath::parse(hin, p)?;
        }
        Ok(())
    }

    /// Trains on `ctx.split.train` with early stopping on `ctx.validation`
    /// and keeps the best epoch. Given `ctx.audit`, also evaluates it
    /// (sampled, at the validation metric's cut-off) after every epoch into
    /// the summary's `audit`, one entry per epoch trained in this call:
    /// only reported, the epoch is still chosen on validation and the
    /// training path is the same. It measures how optimistic choosing the
    /// epoch on the test set (as the authors' released code does) would be.
    pub fn fit(cfg: &LgrecConfig, ctx: &mut FitContext<'_>) -> Result<(Self, FitSummary)> {
        cfg.check()?;
        Self::check_data(cfg, ctx)?;
        let train = &ctx.split.train;
        let paths: Vec<&str> = Self::meta_paths(cfg, ctx)
            .iter()
            .map(String::as_str)
            .collect();
        let labeler = match (cfg.variant, ctx.hin) {
            (Variant::NoGlo, _) | (_, None) => None,
            (_, Some(hin)) => Some(PairLabeler::new(hin, &paths, RowRule::AboveRowMean)?),
        };
        let started = Instant::now();
        let mut model = Self::init(train, paths.len(), cfg, ctx.seed)?;
        // The model knows the meta-paths its labels stand for.
        model.cfg.meta_paths = paths.iter().map(|p| p.to_string()).collect();
        let adam_cfg = AdamConfig {
            lr: cfg.lr,
            ..AdamConfig::default()
        };
        let adam = Adam::new(model.dense_vars(), adam_cfg)?;
        let mut run = Training {
            model,
            adam,
            adam_cfg,
            train,
            labeler,
            n_paths: paths.len().max(1),
            judge: ctx.judge().map_err(LgrecError::Config)?,
            seed: ctx.seed,
        };
        let trainer = TrainerConfig {
            epochs: cfg.epochs,
            patience: cfg.patience,
            checkpoints: ctx.checkpoints.clone(),
        };
        let mut summary = train_epochs(&mut run, &trainer, &mut *ctx.progress)?;
        // The neighbour-ranking BPR-MF and the labeler count too.
        summary.total_s = started.elapsed().as_secs_f64();
        summary.audit = run.judge.into_audit();
        Ok((run.model, summary))
    }
}

/// Triples `(users[k], pos[k], neg[k])` with the meta-path labels of the
/// positive then the negative pairs (`n_paths` per pair, row-major).
#[derive(Clone, Copy)]
struct Batch<'a> {
    users: &'a [u32],
    pos: &'a [u32],
    neg: &'a [u32],
    labels: &'a [f32],
    n_paths: usize,
}

/// Unique ids (sorted) and a dense map from id to its position.
fn local_ids(ids: impl Iterator<Item = u32>, n: usize) -> (Vec<u32>, Vec<u32>) {
    let mut seen = vec![u32::MAX; n];
    let mut uniq: Vec<u32> = Vec::new();
    for i in ids {
        if seen[i as usize] == u32::MAX {
            seen[i as usize] = 0;
            uniq.push(i);
        }
    }
    uniq.sort_unstable();
    for (k, &i) in uniq.iter().enumerate() {
        seen[i as usize] = k as u32;
    }
    (uniq, seen)
}

/// LGRec with its optimizer and data, as the trainer drives it.
struct Training<'a> {
    model: Lgrec,
    adam: Adam,
    adam_cfg: AdamConfig,
    train: &'a Interactions,
    labeler: Option<PairLabeler<'a>>,
    n_paths: usize,
    /// Validation, and the audit of [`Lgrec::fit`].
    judge: Judge<'a>,
    seed: u64,
}

/// One epoch of LGRec's triples: the training pairs shuffled, a negative
/// item per pair, and (with the global part) the meta-path labels of the
/// positive then the negative pairs, `n_paths` per pair.
struct Epoch {
    order: Vec<(u32, u32)>,
    negs: Vec<u32>,
    labels: Vec<f32>,
}

impl TrainStep for Training<'_> {
    type Error = LgrecError;
    type Epoch = Epoch;

    fn epoch_seed(&self) -> u64 {
        self.seed ^ 0x1_6ec0
    }

    fn epoch(&mut self, _epoch: usize, rng: &mut ChaCha8Rng) -> Result<Epoch> {
        let n_items = self.train.n_items() as u32;
        let mut order: Vec<(u32, u32)> = self.train.pairs().collect();
        order.shuffle(rng);
        let negs: Vec<u32> = order
            .iter()
            .map(|&(u, _)| unseen_item(self.train.user_items(u), n_items, rng).unwrap_or(0))
            .collect();
        // Labels of the whole epoch at once: each user's path prefix is
        // then computed once per epoch instead of once per batch.
        let labels = match &self.labeler {
            Some(l) => {
                let pairs: Vec<(u32, u32)> = order
                    .iter()
                    .copied()
                    .chain(order.iter().zip(&negs).map(|(&(u, _), &j)| (u, j)))
                    .collect();
                l.labels(&pairs)?
            }
            None => Vec::new(),
        };
        Ok(Epoch {
            order,
            negs,
            labels,
        })
    }

    fn examples(&self, data: &Epoch) -> usize {
        data.order.len()
    }

    fn batch_size(&self) -> usize {
        self.model.cfg.batch
    }

    fn step(&mut self, data: &Epoch, range: std::ops::Range<usize>) -> Result<f64> {
        let n_paths = self.n_paths;
        let chunk = &data.order[range.clone()];
        let users: Vec<u32> = chunk.iter().map(|p| p.0).collect();
        let pos: Vec<u32> = chunk.iter().map(|p| p.1).collect();
        let labels = if data.labels.is_empty() {
            Vec::new()
        } else {
            let half = data.order.len() * n_paths;
            let (lo, hi) = (range.start * n_paths, range.end * n_paths);
            let mut v = data.labels[lo..hi].to_vec();
            v.extend_from_slice(&data.labels[half + lo..half + hi]);
            v
        };
        let batch = Batch {
            users: &users,
            pos: &pos,
            neg: &data.negs[range],
            labels: &labels,
            n_paths,
        };
        self.model.step(&batch, &mut self.adam, &self.adam_cfg)
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.judge.score(&self.model).map_err(LgrecError::Score)
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

    fn samples_per_epoch(&self) -> usize {
        self.train.nnz()
    }
}
