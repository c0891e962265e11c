//! REDA's parameters (reda.txt's experimental settings), their checks,
//! and REDA under the model contract of hinrec-train.

use std::path::Path;

use hinrec_eval::ScoreError;
use hinrec_nn::checkpoint;
use hinrec_train::{FitContext, Fitted, ModelError, ModelParams};
use serde::{Deserialize, Serialize};

use crate::network::Reda;

/// Errors of REDA.
#[derive(Debug, thiserror::Error)]
pub enum RedaError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A configuration value is unusable.
    #[error("invalid REDA configuration: {0}")]
    Config(String),
    /// Validation scoring failed.
    #[error("validation: {0}")]
    Score(ScoreError),
}

pub(crate) type Result<T, E = RedaError> = std::result::Result<T, E>;

/// The model and its ablations (reda.txt Figure 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// k embeddings per item, memory attention and weight attention.
    Full,
    /// No pair-wise interaction layer: one embedding per item (k = 1), so
    /// one interacted vector per pair.
    Npil,
    /// No memory attention: each interacted vector is its own relation.
    Nmal,
}

impl Variant {
    /// Table name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Full => "reda",
            Variant::Npil => "reda-npil",
            Variant::Nmal => "reda-nmal",
        }
    }
}

/// Hyper-parameters (defaults from reda.txt's experimental settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedaConfig {
    /// Embedding size d.
    pub dim: usize,
    /// Embeddings per item, k (forced to 1 by [`Variant::Npil`]).
    pub aspects: usize,
    /// Memory slots, m.
    pub memory_slots: usize,
    /// Hidden size of the weight attention, s.
    pub hidden: usize,
    /// Adam learning rate: 0.01, chosen on validation on reda-lastfm
    /// over 0.001 (reda.txt's), 0.003 and 0.01 (docs/reda.md).
    pub lr: f64,
    /// Relation triples (positive, context, negative) per batch.
    pub batch: usize,
    /// Triples drawn per training interaction in one epoch (an epoch is
    /// then this many passes; validation runs once per epoch).
    pub triples_per_interaction: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Full model or ablation.
    pub variant: Variant,
    /// Item pairs summed into a user's embedding z_u (eq. 9): all pairs of
    /// the user's training items when there are at most this many, else
    /// this many sampled without replacement (seeded).
    pub user_pairs: usize,
    /// Training items j a score averages over (eq. 11): all when 0, else at
    /// most this many, sampled once per user (seeded).
    pub score_items: usize,
    /// Standard deviation of the initial item embeddings.
    pub init_std: f64,
    /// L2 weight on the embedding rows a batch uses (per triple).
    pub l2: f64,
    /// Item pairs per candle call when summing z_u.
    pub eval_pairs: usize,
}

impl Default for RedaConfig {
    fn default() -> Self {
        RedaConfig {
            dim: 128,
            aspects: 3,
            memory_slots: 20,
            hidden: 10,
            lr: 0.01,
            batch: 2000,
            triples_per_interaction: 4,
            epochs: 30,
            patience: 3,
            variant: Variant::Full,
            user_pairs: 500,
            score_items: 0,
            init_std: 0.1,
            l2: 0.0,
            eval_pairs: 8192,
        }
    }
}

impl RedaConfig {
    /// Embeddings per item after the variant's rule.
    pub fn effective_aspects(&self) -> usize {
        if self.variant == Variant::Npil {
            1
        } else {
            self.aspects
        }
    }

    /// Checks every value before any work.
    pub fn check(&self) -> Result<()> {
        if self.patience == 0 {
            return Err(RedaError::Config("patience must be positive".into()));
        }
        if self.dim == 0 || self.aspects == 0 || self.memory_slots == 0 || self.hidden == 0 {
            return Err(RedaError::Config(
                "dim, aspects, memory_slots and hidden must be positive".into(),
            ));
        }
        if self.batch == 0
            || self.eval_pairs == 0
            || self.user_pairs == 0
            || self.triples_per_interaction == 0
        {
            return Err(RedaError::Config(
                "batch, triples_per_interaction, eval_pairs and user_pairs must be positive".into(),
            ));
        }
        let finite = self.lr.is_finite() && self.init_std.is_finite() && self.l2.is_finite();
        if !(finite && self.lr > 0.0 && self.init_std > 0.0 && self.l2 >= 0.0) {
            return Err(RedaError::Config(
                "lr and init_std must be positive and l2 non-negative".into(),
            ));
        }
        Ok(())
    }
}

impl From<RedaError> for ModelError {
    fn from(e: RedaError) -> Self {
        match e {
            RedaError::Config(m) => ModelError::Params(m),
            RedaError::Score(s) => ModelError::Score(s),
            other => ModelError::other(other),
        }
    }
}

impl ModelParams for RedaConfig {
    type Model = Reda;

    fn check(&self) -> Result<(), ModelError> {
        Ok(RedaConfig::check(self)?)
    }

    fn max_epochs(&self) -> usize {
        self.epochs
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<Reda>, ModelError> {
        let (model, summary) = Reda::fit(self, ctx)?;
        Ok(Fitted {
            model,
            summary: Some(summary),
        })
    }

    fn load(&self, path: &Path) -> Result<Reda, ModelError> {
        checkpoint::load_model(path, |state| Reda::from_state(self, state))
    }
}
