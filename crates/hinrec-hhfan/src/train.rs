//! HHFAN's training (III.F): each epoch, per user, items met by a walk
//! within distance τ as positives (indirect items count) and M uniform
//! negatives each; BPR with L2 (eq. 10), Adam, driven by hinrec-nn's
//! trainer.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::Tensor;
use hinrec_data::Interactions;
use hinrec_nn::optim::{Adam, AdamConfig};
use hinrec_nn::trainer::{train as train_epochs, TrainStep, TrainerConfig};
use hinrec_sample::unseen_item;
use hinrec_sample::walk::{NeighborGroups, TypedGraph, WalkConfig};
use hinrec_train::{FitContext, FitSummary, Judge};
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::graph::{Mhig, Role};
use crate::network::Hhfan;
use crate::params::{HhfanConfig, HhfanError, Result};

/// Steps a positives walk may take per positive asked for.
const STEPS_PER_POSITIVE: usize = 50;

impl Hhfan {
    /// The walk settings of `cfg` for the node types of `mhig`.
    pub fn walk_config(cfg: &HhfanConfig, mhig: &Mhig, seed: u64) -> WalkConfig {
        let (quotas, keep) = mhig
            .kinds
            .iter()
            .map(|k| match k.role {
                Role::User => (cfg.quota_user, cfg.keep_user),
                Role::Item => (cfg.quota_item, cfg.keep_item),
                Role::Attribute => (cfg.quota_attribute, cfg.keep_attribute),
            })
            .unzip();
        WalkConfig {
            restart: cfg.restart,
            collect: cfg.collect,
            quotas,
            keep,
            max_steps_per_node: 10,
            seed: seed ^ 0x0077_a1c5,
        }
    }

    /// Builds the M-HIG of `ctx.hin` (training interactions only), samples
    /// every node's neighbour groups, and trains with early stopping on
    /// `ctx.validation`, keeping the best epoch.
    pub fn fit(cfg: &HhfanConfig, ctx: &mut FitContext<'_>) -> Result<(Self, FitSummary)> {
        cfg.check()?;
        let hin = ctx
            .hin
            .ok_or_else(|| HhfanError::Data("HHFAN needs the dataset's HIN".into()))?;
        let train = &ctx.split.train;
        let started = Instant::now();
        let mhig = Mhig::build(hin, cfg.content_clusters, ctx.seed)?;
        if mhig.n_users() != train.n_users() || mhig.n_items() != train.n_items() {
            return Err(HhfanError::Data(format!(
                "the HIN has {} users x {} items, the training data {} x {}",
                mhig.n_users(),
                mhig.n_items(),
                train.n_users(),
                train.n_items()
            )));
        }
        let groups = NeighborGroups::sample(&mhig.graph, &Self::walk_config(cfg, &mhig, ctx.seed))
            .map_err(|e| HhfanError::Config(e.to_string()))?;
        let model = Hhfan::init(cfg, mhig.kinds.clone(), groups, ctx.seed)?;
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
            graph: mhig.graph,
            train,
            judge: ctx.judge().map_err(HhfanError::Config)?,
            seed: ctx.seed,
        };
        let trainer = TrainerConfig {
            epochs: cfg.epochs,
            patience: cfg.patience,
            checkpoints: ctx.checkpoints.clone(),
        };
        let mut summary = train_epochs(&mut run, &trainer, &mut *ctx.progress)?;
        run.model.refresh()?;
        // The graph, the walks and the final embeddings count too.
        summary.total_s = started.elapsed().as_secs_f64();
        summary.audit = run.judge.into_audit();
        Ok((run.model, summary))
    }
}

/// HHFAN with its optimizer and data, as the trainer drives it.
struct Training<'a> {
    model: Hhfan,
    adam: Adam,
    adam_cfg: AdamConfig,
    graph: TypedGraph,
    train: &'a Interactions,
    judge: Judge<'a>,
    seed: u64,
}

/// One epoch's triples.
struct Epoch {
    users: Vec<u32>,
    pos: Vec<u32>,
    neg: Vec<u32>,
}

impl Training<'_> {
    /// III.F's triples: per user (in parallel, one stream each, so the
    /// thread count does not matter) walk positives within τ, M negatives
    /// each; then shuffled.
    fn triples(&self, rng: &mut ChaCha8Rng) -> Epoch {
        let cfg = &self.model.cfg;
        let seed = rng.next_u64();
        let n_items = self.train.n_items() as u32;
        let per_user: Vec<Vec<(u32, u32, u32)>> = (0..self.train.n_users() as u32)
            .into_par_iter()
            .map(|u| {
                let mut r = ChaCha8Rng::seed_from_u64(seed);
                r.set_stream(u as u64);
                let seen = self.train.user_items(u);
                if seen.is_empty() {
                    return Vec::new();
                }
                let positives = self.graph.walk_within(
                    self.model.user_node(u),
                    (1, cfg.positives_per_user),
                    cfg.tau,
                    cfg.restart,
                    cfg.positives_per_user * STEPS_PER_POSITIVE,
                    &mut r,
                );
                let mut out = Vec::with_capacity(positives.len() * cfg.negatives);
                for i in positives {
                    for _ in 0..cfg.negatives {
                        if let Some(j) = unseen_item(seen, n_items, &mut r) {
                            out.push((u, i, j));
                        }
                    }
                }
                out
            })
            .collect();
        let mut all: Vec<(u32, u32, u32)> = per_user.into_iter().flatten().collect();
        all.shuffle(rng);
        Epoch {
            users: all.iter().map(|t| t.0).collect(),
            pos: all.iter().map(|t| t.1).collect(),
            neg: all.iter().map(|t| t.2).collect(),
        }
    }
}

impl TrainStep for Training<'_> {
    type Error = HhfanError;
    type Epoch = Epoch;

    fn epoch_seed(&self) -> u64 {
        self.seed ^ 0x44fa_0e90
    }

    fn epoch(&mut self, _epoch: usize, rng: &mut ChaCha8Rng) -> Result<Epoch> {
        Ok(self.triples(rng))
    }

    fn examples(&self, data: &Epoch) -> usize {
        data.users.len()
    }

    fn batch_size(&self) -> usize {
        self.model.cfg.batch
    }

    fn step(&mut self, data: &Epoch, range: std::ops::Range<usize>) -> Result<f64> {
        let batch = (
            &data.users[range.clone()],
            &data.pos[range.clone()],
            &data.neg[range],
        );
        self.model.step_rows(batch, &mut self.adam, &self.adam_cfg)
    }

    fn validate(&mut self) -> Result<Option<f64>> {
        self.model.refresh()?;
        self.judge.score(&self.model).map_err(HhfanError::Score)
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
        self.train.n_users() * self.model.cfg.positives_per_user * self.model.cfg.negatives
    }
}
