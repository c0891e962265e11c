//! LGRec's parameters (lgrec.txt section 2.3), their checks, and LGRec
//! under the model contract of hinrec-train.

use std::path::Path;

use hinrec_eval::ScoreError;
use hinrec_nn::checkpoint;
use hinrec_train::{FitContext, Fitted, ModelError, ModelParams};
use serde::{Deserialize, Serialize};

use crate::network::Lgrec;

/// Errors of LGRec.
#[derive(Debug, thiserror::Error)]
pub enum LgrecError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A meta-path could not be resolved.
    #[error(transparent)]
    Graph(#[from] hinrec_graph::GraphError),
    /// Pretraining the neighbour-ranking BPR-MF failed.
    #[error(transparent)]
    Baseline(#[from] hinrec_baselines::BaselineError),
    /// A configuration value is unusable.
    #[error("invalid LGRec configuration: {0}")]
    Config(String),
    /// The data cannot serve the configuration (no meta-paths, no HIN).
    #[error("{0}")]
    Data(String),
    /// Validation scoring failed.
    #[error("validation: {0}")]
    Score(ScoreError),
}

pub(crate) type Result<T, E = LgrecError> = std::result::Result<T, E>;

/// The model and its ablations (lgrec.txt Table 2).
/// Serialised as the suffix of its registry name (`noatt` for
/// `lgrec-noatt`): one spelling per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Co-attention and global relation.
    Full,
    /// Plain mean over neighbours instead of co-attention.
    NoAtt,
    /// No relation vector and no multi-label loss.
    NoGlo,
}

impl Variant {
    /// Table name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Full => "lgrec",
            Variant::NoAtt => "lgrec-noatt",
            Variant::NoGlo => "lgrec-noglo",
        }
    }
}

/// Hyper-parameters (defaults from lgrec.txt section 2.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LgrecConfig {
    /// Embedding size d.
    pub dim: usize,
    /// Neighbours per user, K1.
    pub k_user: usize,
    /// Neighbours per item, K2.
    pub k_item: usize,
    /// Weight of the multi-label loss.
    pub alpha: f64,
    /// Weight of L2 on the embedding rows a batch uses (per triple).
    pub beta: f64,
    /// Hinge margin.
    pub margin: f64,
    /// Adam learning rate.
    pub lr: f64,
    /// Triples per batch.
    pub batch: usize,
    /// Maximum epochs.
    pub epochs: usize,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Meta-paths whose labels the relation predicts, by entity codes
    /// (`UMUM`); empty: the dataset's own (its manifest's `metapaths`).
    pub meta_paths: Vec<String>,
    /// Full model or ablation.
    pub variant: Variant,
    /// Pairs scored per candle call when evaluating.
    pub eval_batch: usize,
    /// Epochs of the BPR-MF that ranks neighbours.
    pub bpr_epochs: usize,
    /// Mask a pair's own edge out of its neighbour lists (see
    /// docs/lgrec.md; only training positives have one).
    pub hide_own_edge: bool,
    /// A ReLU after the relation MLP's output layer, as in the authors'
    /// released code (the paper's eq. 6 leaves the output linear).
    pub relation_relu: bool,
}

impl Default for LgrecConfig {
    fn default() -> Self {
        LgrecConfig {
            dim: 128,
            k_user: 100,
            k_item: 100,
            alpha: 0.1,
            beta: 0.001,
            margin: 1.0,
            lr: 0.001,
            batch: 256,
            epochs: 30,
            patience: 3,
            meta_paths: Vec::new(),
            variant: Variant::Full,
            eval_batch: 1024,
            bpr_epochs: 60,
            hide_own_edge: true,
            relation_relu: false,
        }
    }
}

impl LgrecConfig {
    /// Checks every value before any work.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("dim", self.dim),
            ("k_user", self.k_user),
            ("k_item", self.k_item),
            ("batch", self.batch),
            ("eval_batch", self.eval_batch),
            ("patience", self.patience),
        ];
        if let Some((name, _)) = positive.iter().find(|p| p.1 == 0) {
            return Err(LgrecError::Config(format!("{name} must be positive")));
        }
        let finite = [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("margin", self.margin),
        ];
        if let Some((name, v)) = finite.iter().find(|p| !(p.1.is_finite() && p.1 >= 0.0)) {
            return Err(LgrecError::Config(format!(
                "{name} must be a finite number >= 0 (got {v})"
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(LgrecError::Config(format!(
                "lr must be positive (got {})",
                self.lr
            )));
        }
        Ok(())
    }
}

impl From<LgrecError> for ModelError {
    fn from(e: LgrecError) -> Self {
        match e {
            LgrecError::Config(m) => ModelError::Params(m),
            LgrecError::Data(m) => ModelError::Data(m),
            LgrecError::Graph(g) => ModelError::Data(g.to_string()),
            LgrecError::Score(s) => ModelError::Score(s),
            other => ModelError::other(other),
        }
    }
}

impl ModelParams for LgrecConfig {
    type Model = Lgrec;

    fn check(&self) -> Result<(), ModelError> {
        Ok(LgrecConfig::check(self)?)
    }

    fn check_data(&self, ctx: &FitContext<'_>) -> Result<(), ModelError> {
        Ok(Lgrec::check_data(self, ctx)?)
    }

    fn needs_hin(&self) -> bool {
        self.variant != Variant::NoGlo
    }

    fn max_epochs(&self) -> usize {
        self.epochs
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<Lgrec>, ModelError> {
        let (model, summary) = Lgrec::fit(self, ctx)?;
        Ok(Fitted {
            model,
            summary: Some(summary),
        })
    }

    fn resolved(&self, ctx: &FitContext<'_>) -> Self {
        LgrecConfig {
            meta_paths: Lgrec::meta_paths(self, ctx).to_vec(),
            ..self.clone()
        }
    }

    fn load(&self, path: &Path) -> Result<Lgrec, ModelError> {
        checkpoint::load_model(path, |state| Lgrec::from_state(self, state))
    }
}
