//! HHFAN's parameters (hhfan.md III and IV.C, HetGNN's sampler defaults
//! where the paper is silent), their checks, and HHFAN under the model
//! contract of hinrec-train.

use std::path::Path;

use hinrec_eval::ScoreError;
use hinrec_nn::checkpoint;
use hinrec_train::{FitContext, Fitted, ModelError, ModelParams};
use serde::{Deserialize, Serialize};

use crate::network::Hhfan;

/// Errors of HHFAN.
#[derive(Debug, thiserror::Error)]
pub enum HhfanError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A configuration value is unusable.
    #[error("invalid HHFAN configuration: {0}")]
    Config(String),
    /// The data cannot serve the configuration.
    #[error("{0}")]
    Data(String),
    /// Validation scoring failed.
    #[error("validation: {0}")]
    Score(ScoreError),
}

pub(crate) type Result<T, E = HhfanError> = std::result::Result<T, E>;

/// The model and its ablations (hhfan.md IV.E). Serialised as the suffix
/// of its registry name (`l` for `hhfan-l`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// LSTM aggregation, attribute self-attention, neighbour attention.
    Full,
    /// HHFAN-l: the mean of a group instead of its LSTM.
    L,
    /// HHFAN-a: attribute groups summed without self-attention.
    A,
    /// HHFAN-n: the three group embeddings averaged without attention.
    N,
}

impl Variant {
    /// Table name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Full => "hhfan",
            Variant::L => "hhfan-l",
            Variant::A => "hhfan-a",
            Variant::N => "hhfan-n",
        }
    }
}

/// Hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HhfanConfig {
    /// Embedding width d (the paper reports 200; 64 on two cores).
    pub dim: usize,
    /// Restart probability of the neighbour walks (HetGNN: 0.5).
    pub restart: f64,
    /// Nodes collected per walk start (HetGNN: about 100).
    pub collect: usize,
    /// Most collected users / items / nodes of each attribute type per
    /// start, so every type is sampled.
    pub quota_user: usize,
    /// See `quota_user`.
    pub quota_item: usize,
    /// See `quota_user`.
    pub quota_attribute: usize,
    /// Neighbours kept per group: users, items, each attribute type
    /// (HetGNN: 10 / 10 / 3).
    pub keep_user: usize,
    /// See `keep_user`.
    pub keep_item: usize,
    /// See `keep_user`.
    pub keep_attribute: usize,
    /// k-means clusters per dense item feature (TikTok's image and audio).
    pub content_clusters: usize,
    /// Training positives: items met within this distance of the user by
    /// a restarting walk (III.F's τ; 1 is the user's own items).
    pub tau: usize,
    /// Positives drawn per user and epoch (III.F's |A'(u)|).
    pub positives_per_user: usize,
    /// Uniform negatives per positive (III.F's M).
    pub negatives: usize,
    /// Weight of L2 on the rows and aggregated embeddings of a batch (eq.
    /// 10's λ), per triple.
    pub reg: f64,
    /// Standard deviation of the N(0, σ) init (the paper: 0.1).
    pub init_std: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Triples per batch.
    pub batch: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Nodes embedded per call when scoring.
    pub eval_batch: usize,
    /// Add the node's own transformed feature `f(v)` as a fourth
    /// candidate of eq. 6 (HetGNN's combination; the paper's eq. 6 has the
    /// three group embeddings only).
    pub include_self: bool,
    /// Full model or ablation.
    pub variant: Variant,
}

impl Default for HhfanConfig {
    fn default() -> Self {
        HhfanConfig {
            dim: 64,
            restart: 0.5,
            collect: 100,
            quota_user: 40,
            quota_item: 40,
            quota_attribute: 10,
            keep_user: 10,
            keep_item: 10,
            keep_attribute: 3,
            content_clusters: 64,
            tau: 1,
            positives_per_user: 40,
            negatives: 1,
            reg: 1e-3,
            init_std: 0.1,
            lr: 0.01,
            batch: 4096,
            epochs: 100,
            patience: 5,
            eval_batch: 2048,
            include_self: true,
            variant: Variant::Full,
        }
    }
}

impl HhfanConfig {
    /// Checks every value before any work.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("dim", self.dim),
            ("collect", self.collect),
            ("keep_user", self.keep_user),
            ("keep_item", self.keep_item),
            ("tau", self.tau),
            ("positives_per_user", self.positives_per_user),
            ("negatives", self.negatives),
            ("batch", self.batch),
            ("eval_batch", self.eval_batch),
            ("patience", self.patience),
        ];
        if let Some((name, _)) = positive.iter().find(|p| p.1 == 0) {
            return Err(HhfanError::Config(format!("{name} must be positive")));
        }
        if !self.dim.is_multiple_of(2) {
            return Err(HhfanError::Config(format!(
                "dim must be even (a bidirectional LSTM of dim / 2 per direction), got {}",
                self.dim
            )));
        }
        if !(0.0..1.0).contains(&self.restart) {
            return Err(HhfanError::Config(format!(
                "restart must be in [0, 1) (got {})",
                self.restart
            )));
        }
        let finite = [("reg", self.reg), ("init_std", self.init_std)];
        if let Some((name, v)) = finite.iter().find(|p| !(p.1.is_finite() && p.1 >= 0.0)) {
            return Err(HhfanError::Config(format!(
                "{name} must be a finite number >= 0 (got {v})"
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(HhfanError::Config(format!(
                "lr must be positive (got {})",
                self.lr
            )));
        }
        Ok(())
    }
}

impl From<HhfanError> for ModelError {
    fn from(e: HhfanError) -> Self {
        match e {
            HhfanError::Config(m) => ModelError::Params(m),
            HhfanError::Data(m) => ModelError::Data(m),
            HhfanError::Score(s) => ModelError::Score(s),
            other => ModelError::other(other),
        }
    }
}

impl ModelParams for HhfanConfig {
    type Model = Hhfan;

    fn check(&self) -> Result<(), ModelError> {
        Ok(HhfanConfig::check(self)?)
    }

    fn check_data(&self, ctx: &FitContext<'_>) -> Result<(), ModelError> {
        if ctx.hin.is_none() {
            return Err(ModelError::Data("HHFAN needs the dataset's HIN".into()));
        }
        Ok(())
    }

    fn needs_hin(&self) -> bool {
        true
    }

    fn max_epochs(&self) -> usize {
        self.epochs
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<Hhfan>, ModelError> {
        let (model, summary) = Hhfan::fit(self, ctx)?;
        Ok(Fitted {
            model,
            summary: Some(summary),
        })
    }

    fn load(&self, path: &Path) -> Result<Hhfan, ModelError> {
        checkpoint::load_model(path, |state| Hhfan::from_state(self, state))
    }
}
