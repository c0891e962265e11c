//! DURation's training (duration.txt sections 4.3 and 5.3): each step
//! draws B training rows of every item kind, and minimises eq. 8,
//! `L = C + αA + βT`: binary cross-entropy on the rows' labels (eq. 7),
//! the distributional variance of the kinds' mapped rows (eq. 1-4) and
//! each kind's covariance distance between raw and mapped rows (eq. 5-6).
//! Adam; epochs, early stopping and checkpoints from hinrec-nn's trainer.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use candle_core::Tensor;
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
use crate::step::StepScratch;

/// Rows of a batch the median bandwidth is measured on.
pub(crate) const BANDWIDTH_ROWS: usize = 256;
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
            scratch: StepScratch::default(),
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
        self.step_fused(&rows, &blocks, None, &mut StepScratch::default())
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
    /// The step's buffers, kept between steps.
    scratch: StepScratch,
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
            let l = self.model.step_fused(
                rows,
                &data.blocks[s],
                Some((&mut self.adam, &self.adam_cfg)),
                &mut self.scratch,
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
