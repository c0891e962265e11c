//! Relation-wise optimisation (reda.txt eq. 10) driven by hinrec-nn's
//! trainer.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Tensor, D};
use hinrec_data::Interactions;
use hinrec_nn::loss::{bpr, l2};
use hinrec_nn::optim::{Adam, AdamConfig};
use hinrec_nn::trainer::{train as train_epochs, TrainStep, TrainerConfig};
use hinrec_sample::unseen_item;
use hinrec_train::{FitContext, FitSummary, Judge};
use rand::seq::SliceRandom;
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use crate::network::Reda;
use crate::params::{RedaConfig, RedaError, Result};

/// One training example of a user: the positive relation (i_t, j_t), a
/// context relation (i_c, j_c) of two other items the user has, and the
/// negative relation (i_t, n) with an item n the user never had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelationTriple {
    /// Positive pair.
    pub positive: (u32, u32),
    /// Context pair.
    pub context: (u32, u32),
    /// Negative pair.
    pub negative: (u32, u32),
}

/// One epoch's triples: `per_interaction` for each training interaction
/// (u, i) of a user with at least two training items, in shuffled order,
/// all drawn from `rng`.
pub fn sample_triples(
    train: &Interactions,
    per_interaction: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<RelationTriple> {
    let mut order: Vec<(u32, u32)> = train
        .pairs()
        .filter(|&(u, _)| train.user_degree(u) >= 2)
        .flat_map(|p| std::iter::repeat_n(p, per_interaction))
        .collect();
    order.shuffle(rng);
    let n_items = train.n_items() as u32;
    order
        .into_iter()
        .filter_map(|(u, i)| {
            let items = train.user_items(u);
            let other = |rng: &mut ChaCha8Rng, not: u32| loop {
                let j = items[rng.random_range(0..items.len())];
                if j != not {
                    return j;
                }
            };
            let j = other(rng, i);
            // Another pair of the user's items: different from the positive
            // one whenever the user has a third item.
            let mut context = (i, j);
            for _ in 0..8 {
                let a = items[rng.random_range(0..items.len())];
                let b = other(rng, a);
                context = (a, b);
                if items.len() < 3 || (a.min(b), a.max(b)) != (i.min(j), i.max(j)) {
                    break;
                }
            }
            let n = unseen_item(items, n_items, rng)?;
            Some(RelationTriple {
                positive: (i, j),
                context,
                negative: (i, n),
            })
        })
        .collect()
}

impl Reda {
    /// One optimisation step on `triples`: `-ln sigmoid(r_c.r_t - r_c.r_n)`
    /// averaged, plus `l2` times the squared norm of the rows used per
    /// triple. Returns the loss.
    fn step(
        &mut self,
        triples: &[RelationTriple],
        adam: &mut Adam,
        emb_cfg: &AdamConfig,
    ) -> Result<f64> {
        let b = triples.len();
        let pairs = triples
            .iter()
            .map(|t| t.positive)
            .chain(triples.iter().map(|t| t.context))
            .chain(triples.iter().map(|t| t.negative));
        let (left, right): (Vec<u32>, Vec<u32>) = pairs.unzip();
        // Each item's k embeddings once per batch: a leaf over the unique
        // rows, which alone see the gradient and the optimizer.
        let mut uniq: Vec<u32> = left.iter().chain(&right).copied().collect();
        uniq.sort_unstable();
        uniq.dedup();
        let local = |ids: &[u32]| -> Vec<u32> {
            ids.iter()
                .map(|i| uniq.binary_search(i).expect("id is in uniq") as u32)
                .collect()
        };
        let (left, right) = (local(&left), local(&right));
        let rows = self.items.gather(&uniq, DType::F32, &self.dev)?;
        let r = self.relations(rows.as_tensor(), &left, &right)?;
        let (rt, rc, rn) = (
            r.narrow(0, 0, b)?,
            r.narrow(0, b, b)?,
            r.narrow(0, 2 * b, b)?,
        );
        let pos = (&rc * &rt)?.sum(D::Minus1)?;
        let neg = (&rc * &rn)?.sum(D::Minus1)?;
        let mut loss = bpr(&pos, &neg)?;
        if self.cfg.l2 > 0.0 {
            loss = (loss + (l2(&[rows.as_tensor()])? * (self.cfg.l2 / b as f64))?)?;
        }
        let grads = loss.backward()?;
        adam.step(&grads)?;
        if let Some(g) = grads.get(rows.as_tensor()) {
            self.items.apply(&uniq, g, emb_cfg)?;
        }
        Ok(loss.to_scalar::<f32>()? as f64)
    }

    /// Trains on `ctx.split.train` with early stopping on `ctx.validation`;
    /// keeps the best epoch.
    pub fn fit(cfg: &RedaConfig, ctx: &mut FitContext<'_>) -> Result<(Self, FitSummary)> {
        let started = Instant::now();
        let train = &ctx.split.train;
        let model = Reda::init(train, cfg, ctx.seed)?;
        let adam_cfg = AdamConfig {
            lr: cfg.lr,
            ..AdamConfig::default()
        };
        let adam = Adam::new(model.dense_vars(), adam_cfg)?;
        let samples = train
            .pairs()
            .filter(|&(u, _)| train.user_degree(u) >= 2)
            .count()
            * cfg.triples_per_interaction;
        let mut run = Training {
            model,
            adam,
            adam_cfg,
            train,
            judge: ctx.judge().map_err(RedaError::Config)?,
            seed: ctx.seed,
            samples,
        };
        let trainer = TrainerConfig {
            epochs: cfg.epochs,
            patience: cfg.patience,
            checkpoints: ctx.checkpoints.clone(),
        };
        let mut summary = train_epochs(&mut run, &trainer, &mut *ctx.progress)?;
        summary.total_s = started.elapsed().as_secs_f64();
        summary.audit = run.judge.into_audit();
        Ok((run.model, summary))
    }
}

/// REDA with its optimizer and data, as the trainer drives it.
struct Training<'a> {
    model: Reda,
    adam: Adam,
    adam_cfg: AdamConfig,
    train: &'a Interactions,
    /// Validation, and the audit of [`FitContext::audit`].
    judge: Judge<'a>,
    seed: u64,
    samples: usize,
}

impl TrainStep for Training<'_> {
    type Error = RedaError;
    type Epoch = Vec<RelationTriple>;

    fn epoch_seed(&self) -> u64 {
        self.seed ^ 0x7e1a
    }

    fn epoch(&mut self, _epoch: usize, rng: &mut ChaCha8Rng) -> Result<Vec<RelationTriple>> {
        let per = self.model.cfg.triples_per_interaction;
        Ok(sample_triples(self.train, per, rng))
    }

    fn examples(&self, data: &Vec<RelationTriple>) -> usize {
        data.len()
    }

    fn batch_size(&self) -> usize {
        self.model.cfg.batch
    }

    fn step(&mut self, data: &Vec<RelationTriple>, batch: std::ops::Range<usize>) -> Result<f64> {
        self.model
            .step(&data[batch], &mut self.adam, &self.adam_cfg)
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.judge.score(&self.model).map_err(RedaError::Score)
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
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn triples_follow_the_definitions() {
        let train = Interactions::from_pairs(
            3,
            8,
            &[(0, 0), (0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (2, 6)],
        );
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let t = sample_triples(&train, 2, &mut rng);
        // User 2 has one item: no relation of its own.
        assert_eq!(t.len(), 12);
        for x in &t {
            let u = if train.contains(0, x.positive.0) {
                0
            } else {
                1
            };
            let has = |i| train.contains(u, i);
            assert!(has(x.positive.0) && has(x.positive.1) && x.positive.0 != x.positive.1);
            assert!(has(x.context.0) && has(x.context.1) && x.context.0 != x.context.1);
            assert_eq!(x.negative.0, x.positive.0);
            assert!(!has(x.negative.1));
            if u == 0 {
                let key = |p: (u32, u32)| (p.0.min(p.1), p.0.max(p.1));
                assert_ne!(key(x.context), key(x.positive), "user 0 has a third item");
            }
        }
        let mut again = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(sample_triples(&train, 2, &mut again), t, "seeded");
    }
}
