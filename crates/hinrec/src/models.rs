//! Every model by name: fit, score, save and load.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Result};
use hinrec_baselines::training::{FitSummary, Validation, ValidationData};
use hinrec_baselines::{BprMf, EpochReport, ItemKnn, MostPop};
use hinrec_eval::Scorer;
use serde::{Deserialize, Serialize};

use crate::experiment::{ExperimentConfig, Prepared};

/// The models hinrec can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Item popularity.
    MostPop,
    /// Item-based k-nearest neighbours.
    ItemKnn,
    /// Matrix factorisation with the BPR loss.
    Bpr,
}

impl ModelKind {
    /// All models, in table order.
    pub const ALL: [ModelKind; 3] = [ModelKind::MostPop, ModelKind::ItemKnn, ModelKind::Bpr];

    /// The name used on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::MostPop => "mostpop",
            ModelKind::ItemKnn => "itemknn",
            ModelKind::Bpr => "bpr",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.to_ascii_lowercase().replace(['_', '-'], "");
        Ok(match s.as_str() {
            "mostpop" | "pop" => ModelKind::MostPop,
            "itemknn" | "knn" => ModelKind::ItemKnn,
            "bpr" | "bprmf" => ModelKind::Bpr,
            _ => bail!("unknown model {s:?}: choose one of mostpop, itemknn, bpr"),
        })
    }
}

/// A trained model of any kind.
#[derive(Debug, Clone)]
pub enum Trained {
    /// MostPop.
    MostPop(MostPop),
    /// ItemKNN.
    ItemKnn(ItemKnn),
    /// BPR-MF.
    Bpr(BprMf),
}

/// A trained model with how its training went.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The model.
    pub model: Trained,
    /// Training summary (none for models without epochs).
    pub summary: Option<FitSummary>,
}

impl Fitted {
    /// The model as a scorer.
    pub fn scorer(&self) -> &(dyn Scorer + Sync) {
        self.model.scorer()
    }
}

impl Trained {
    /// The model as a scorer.
    pub fn scorer(&self) -> &(dyn Scorer + Sync) {
        match self {
            Trained::MostPop(m) => m,
            Trained::ItemKnn(m) => m,
            Trained::Bpr(m) => m,
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ModelKind {
        match self {
            Trained::MostPop(_) => ModelKind::MostPop,
            Trained::ItemKnn(_) => ModelKind::ItemKnn,
            Trained::Bpr(_) => ModelKind::Bpr,
        }
    }

    /// Saves the weights to safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        match self {
            Trained::MostPop(m) => m.save(path)?,
            Trained::ItemKnn(m) => m.save(path)?,
            Trained::Bpr(m) => m.save(path)?,
        }
        Ok(())
    }

    /// Loads weights saved by [`Trained::save`].
    pub fn load(kind: ModelKind, path: &Path) -> Result<Self> {
        Ok(match kind {
            ModelKind::MostPop => Trained::MostPop(MostPop::load(path)?),
            ModelKind::ItemKnn => Trained::ItemKnn(ItemKnn::load(path)?),
            ModelKind::Bpr => Trained::Bpr(BprMf::load(path)?),
        })
    }
}

/// The validation that `cfg` asks for on `prepared`.
pub fn validation<'a>(prepared: &'a Prepared, cfg: &ExperimentConfig) -> Validation<'a> {
    let s = &prepared.split;
    Validation {
        data: if cfg.sampled_validation {
            ValidationData::Sampled(&prepared.valid_negatives)
        } else {
            ValidationData::Full {
                valid: &s.valid,
                train: &s.train,
            }
        },
        metric: cfg.metric.clone(),
        patience: cfg.patience,
    }
}

/// Trains `kind` on the training split with early stopping on validation.
pub fn fit(
    kind: ModelKind,
    prepared: &Prepared,
    cfg: &ExperimentConfig,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochReport),
) -> Result<Fitted> {
    let train = &prepared.split.train;
    Ok(match kind {
        ModelKind::MostPop => Fitted {
            model: Trained::MostPop(MostPop::fit(train)),
            summary: None,
        },
        ModelKind::ItemKnn => Fitted {
            model: Trained::ItemKnn(ItemKnn::fit(train, &cfg.itemknn)?),
            summary: None,
        },
        ModelKind::Bpr => {
            let (m, s) = BprMf::fit(train, &cfg.bpr, &validation(prepared, cfg), seed, on_epoch)?;
            Fitted {
                model: Trained::Bpr(m),
                summary: Some(s),
            }
        }
    })
}
