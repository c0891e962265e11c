//! The one contract every model goes through: parameters that check
//! themselves and fit on a [`FitContext`], and a [`TrainedModel`] that
//! scores batches, saves itself whole and, where it can, explains.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use hinrec_data::{EvalNegatives, LabelledSplit, Split};
use hinrec_eval::{ItemKind, ScoreError, Scorer};
use hinrec_graph::Hin;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bookkeeping::{EpochReport, FitSummary, Judge, Validation};

/// Why a model could not be checked, trained, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A parameter value is unusable.
    #[error("invalid parameters: {0}")]
    Params(String),
    /// The data cannot serve this model (no meta-paths, an unknown entity
    /// code, ...).
    #[error("{0}")]
    Data(String),
    /// A saved model or checkpoint could not be read or written.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Scoring failed.
    #[error("scoring failed: {0}")]
    Score(ScoreError),
    /// Anything else a model reports (a tensor operation, ...).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl ModelError {
    /// Wraps a model crate's own error.
    pub fn other<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        ModelError::Other(Box::new(e))
    }

    /// A file error.
    pub fn file(path: &Path, message: impl ToString) -> Self {
        ModelError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

impl From<ScoreError> for ModelError {
    fn from(e: ScoreError) -> Self {
        ModelError::Score(e)
    }
}

/// Where checkpoints go and whether to continue from them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointPolicy {
    /// Folder for the trainer's checkpoints; none keeps the best state in
    /// memory only.
    pub dir: Option<PathBuf>,
    /// Continue from the last checkpoint there when it exists.
    pub resume: bool,
    /// What the run was started with (its model, data, seed and every
    /// parameter, as text): written into every checkpoint, and a resume
    /// from a checkpoint with another tag is an error.
    pub tag: String,
}

/// What a long fit tells its caller.
pub trait Progress {
    /// `done` of `total` batches of the current epoch.
    fn batch(&mut self, _done: usize, _total: usize) {}
    /// An epoch ended.
    fn epoch(&mut self, _report: &EpochReport) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// Progress from two closures: per batch and per epoch.
pub struct Callbacks<B, E>(pub B, pub E);

impl<B: FnMut(usize, usize), E: FnMut(&EpochReport)> Progress for Callbacks<B, E> {
    fn batch(&mut self, done: usize, total: usize) {
        (self.0)(done, total)
    }
    fn epoch(&mut self, report: &EpochReport) {
        (self.1)(report)
    }
}

/// Everything a fit gets besides its parameters.
pub struct FitContext<'a> {
    /// Train, validation and test interactions; a fit reads `train` and the
    /// validation through [`FitContext::validation`], never `test`.
    pub split: &'a Split,
    /// How epochs and hyper-parameters are judged.
    pub validation: Validation<'a>,
    /// The typed HIN built from the training interactions, where the
    /// parameters ask for it ([`ModelParams::needs_hin`]).
    pub hin: Option<&'a Hin>,
    /// The dataset's meta-paths (its manifest's `metapaths`), for models
    /// whose parameters name none.
    pub meta_paths: &'a [String],
    /// Seed of every random choice of the model.
    pub seed: u64,
    /// Checkpoints.
    pub checkpoints: CheckpointPolicy,
    /// Progress.
    pub progress: &'a mut dyn Progress,
    /// Pairs scored after every epoch and only reported in
    /// [`FitSummary::audit`] (never used to choose anything): to measure
    /// how optimistic choosing the epoch on the test set would be.
    pub audit: Option<&'a EvalNegatives>,
    /// Every rated row of the split with its label, where the protocol is
    /// labelled (DURation's: low ratings are observed negatives); `split`
    /// then holds each part's positives.
    pub labelled: Option<&'a LabelledSplit>,
    /// The item kinds of the combined item space (`book`, `music`), in id
    /// order; empty where the dataset has one kind.
    pub item_kinds: &'a [ItemKind],
}

impl<'a> FitContext<'a> {
    /// The [`Judge`] of this fit's epochs: its validation and audit (an
    /// unknown metric name is an error that says which there are).
    pub fn judge(&self) -> Result<Judge<'a>, String> {
        Judge::new(self.validation.clone(), self.audit)
    }

    /// A context with no HIN, no dataset meta-paths, no checkpoints, no
    /// audit, no labels and no item kinds; set those fields where a fit
    /// needs them.
    pub fn new(
        split: &'a Split,
        validation: Validation<'a>,
        seed: u64,
        progress: &'a mut dyn Progress,
    ) -> Self {
        FitContext {
            split,
            validation,
            hin: None,
            meta_paths: &[],
            seed,
            checkpoints: CheckpointPolicy::default(),
            progress,
            audit: None,
            labelled: None,
            item_kinds: &[],
        }
    }
}

/// A trained model and how its training went.
pub struct Fitted<M> {
    /// The model.
    pub model: M,
    /// The training summary (none for models without epochs).
    pub summary: Option<FitSummary>,
}

/// One reason a model gives for a score ([`TrainedModel::explain`]); ids
/// are the model's internal ones, which a caller maps back to the data's.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Items of the user and how much each weighs in the score.
    Items {
        /// What the weights are.
        what: String,
        /// `(item, weight)`, largest first.
        weights: Vec<(u32, f32)>,
    },
    /// Users of the item and how much each weighs in the score.
    Users {
        /// What the weights are.
        what: String,
        /// `(user, weight)`, largest first.
        weights: Vec<(u32, f32)>,
    },
    /// Items near the pair in a graph (an item's random-walk neighbours),
    /// not necessarily the user's, and how much each weighs.
    RelatedItems {
        /// What the weights are.
        what: String,
        /// `(item, weight)`, largest first.
        weights: Vec<(u32, f32)>,
    },
    /// Named values (meta-path label probabilities, attention over
    /// aspects, ...).
    Values {
        /// What the values are.
        what: String,
        /// `(name, value)`.
        values: Vec<(String, f32)>,
    },
}

/// A trained model: what every protocol, `hinrec evaluate` and `hinrec
/// recommend` use.
pub trait TrainedModel: Scorer + Send + Sync {
    /// Writes the model's whole state to `path` (safetensors, tensors named
    /// after the layers): with the parameters it was trained with, that is
    /// all [`ModelParams::load`] needs.
    fn save(&self, path: &Path) -> Result<(), ModelError>;

    /// Why `item` is scored as it is for `user`, where the model can say
    /// (nothing by default).
    fn explain(&self, _user: u32, _item: u32) -> Result<Vec<Reason>, ModelError> {
        Ok(Vec::new())
    }

    /// The items a retrieval index proposes for `user` (GLRS's probed
    /// clusters), where the model has one; `None` ranks every item.
    fn candidates(&self, _user: u32) -> Option<Vec<u32>> {
        None
    }
}

/// A model's parameters. Their `Default` holds the model's defaults (the
/// paper's settings), a TOML table overrides them field by field.
pub trait ModelParams:
    Clone + Default + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The trained model.
    type Model: TrainedModel + 'static;

    /// Checks every value before any work.
    fn check(&self) -> Result<(), ModelError>;

    /// Checks the parameters against the data (meta-paths against the HIN,
    /// ...) before any training.
    fn check_data(&self, _ctx: &FitContext<'_>) -> Result<(), ModelError> {
        Ok(())
    }

    /// Whether the fit needs [`FitContext::hin`].
    fn needs_hin(&self) -> bool {
        false
    }

    /// The most epochs a fit runs (0 for models without epochs).
    fn max_epochs(&self) -> usize {
        0
    }

    /// Whether the fit runs candle ops (then it must not run inside a rayon
    /// loop: several fits go one after the other).
    fn uses_candle(&self) -> bool {
        true
    }

    /// Trains on `ctx`.
    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<Self::Model>, ModelError>;

    /// The parameters as a fit on `ctx` uses them (defaults taken from the
    /// data filled in), for the record a model directory keeps.
    fn resolved(&self, _ctx: &FitContext<'_>) -> Self {
        self.clone()
    }

    /// Reads a model that [`TrainedModel::save`] wrote with these
    /// parameters.
    fn load(&self, path: &Path) -> Result<Self::Model, ModelError>;
}

/// [`ModelParams`] behind a pointer, for the registry: the same methods,
/// with TOML in and out.
pub trait AnyParams: Debug + Send + Sync {
    /// [`ModelParams::check`].
    fn check(&self) -> Result<(), ModelError>;
    /// [`ModelParams::check_data`].
    fn check_data(&self, ctx: &FitContext<'_>) -> Result<(), ModelError>;
    /// [`ModelParams::needs_hin`].
    fn needs_hin(&self) -> bool;
    /// [`ModelParams::max_epochs`].
    fn max_epochs(&self) -> usize;
    /// [`ModelParams::uses_candle`].
    fn uses_candle(&self) -> bool;
    /// [`ModelParams::fit`].
    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<Box<dyn TrainedModel>>, ModelError>;
    /// [`ModelParams::load`].
    fn load(&self, path: &Path) -> Result<Box<dyn TrainedModel>, ModelError>;
    /// [`ModelParams::resolved`].
    fn resolved(&self, ctx: &FitContext<'_>) -> Box<dyn AnyParams>;
    /// Every parameter as a TOML table.
    fn to_toml(&self) -> Result<toml::Table, ModelError>;
    /// Overrides the parameters a table names; an unknown key or a value of
    /// the wrong type is an error that names it.
    fn set(&mut self, table: &toml::Table) -> Result<(), ModelError>;
    /// A copy.
    fn clone_box(&self) -> Box<dyn AnyParams>;
}

impl<P: ModelParams> AnyParams for P {
    fn check(&self) -> Result<(), ModelError> {
        ModelParams::check(self)
    }
    fn check_data(&self, ctx: &FitContext<'_>) -> Result<(), ModelError> {
        ModelParams::check_data(self, ctx)
    }
    fn needs_hin(&self) -> bool {
        ModelParams::needs_hin(self)
    }
    fn max_epochs(&self) -> usize {
        ModelParams::max_epochs(self)
    }
    fn uses_candle(&self) -> bool {
        ModelParams::uses_candle(self)
    }
    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<Box<dyn TrainedModel>>, ModelError> {
        let f = ModelParams::fit(self, ctx)?;
        Ok(Fitted {
            model: Box::new(f.model),
            summary: f.summary,
        })
    }
    fn load(&self, path: &Path) -> Result<Box<dyn TrainedModel>, ModelError> {
        Ok(Box::new(ModelParams::load(self, path)?))
    }
    fn resolved(&self, ctx: &FitContext<'_>) -> Box<dyn AnyParams> {
        Box::new(ModelParams::resolved(self, ctx))
    }
    fn to_toml(&self) -> Result<toml::Table, ModelError> {
        toml::Table::try_from(self).map_err(|e| ModelError::Params(e.to_string()))
    }
    fn set(&mut self, table: &toml::Table) -> Result<(), ModelError> {
        let mut all = self.to_toml()?;
        for (k, v) in table {
            all.insert(k.clone(), v.clone());
        }
        *self = P::deserialize(toml::Value::Table(all))
            .map_err(|e| ModelError::Params(e.to_string().trim().to_string()))?;
        Ok(())
    }
    fn clone_box(&self) -> Box<dyn AnyParams> {
        Box::new(self.clone())
    }
}

impl Clone for Box<dyn AnyParams> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}
