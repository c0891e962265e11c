//! The baselines under the model contract of hinrec-train: their
//! parameters check and fit on a [`FitContext`], their models save whole.

use std::path::Path;

use hinrec_train::{FitContext, Fitted, ModelError, ModelParams, TrainedModel};
use serde::{Deserialize, Serialize};

use crate::{BaselineError, BprConfig, BprMf, ItemKnn, ItemKnnConfig, MostPop};

impl From<BaselineError> for ModelError {
    fn from(e: BaselineError) -> Self {
        match e {
            BaselineError::Config(m) => ModelError::Params(m),
            BaselineError::Io { path, error } => ModelError::file(&path, error),
            BaselineError::Format { path, message } => ModelError::file(&path, message),
            other => ModelError::other(other),
        }
    }
}

/// MostPop has no parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MostPopParams {}

impl ModelParams for MostPopParams {
    type Model = MostPop;

    fn check(&self) -> Result<(), ModelError> {
        Ok(())
    }

    fn uses_candle(&self) -> bool {
        false
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<MostPop>, ModelError> {
        Ok(Fitted {
            model: MostPop::fit(&ctx.split.train),
            summary: None,
        })
    }

    fn load(&self, path: &Path) -> Result<MostPop, ModelError> {
        Ok(MostPop::load(path)?)
    }
}

impl TrainedModel for MostPop {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        Ok(MostPop::save(self, path)?)
    }
}

impl ModelParams for ItemKnnConfig {
    type Model = ItemKnn;

    fn check(&self) -> Result<(), ModelError> {
        if self.k == 0 || !self.shrink.is_finite() || self.shrink < 0.0 {
            return Err(ModelError::Params(format!(
                "ItemKNN needs k > 0 and shrink >= 0 (got k = {}, shrink = {})",
                self.k, self.shrink
            )));
        }
        Ok(())
    }

    fn uses_candle(&self) -> bool {
        false
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<ItemKnn>, ModelError> {
        Ok(Fitted {
            model: ItemKnn::fit(&ctx.split.train, self)?,
            summary: None,
        })
    }

    fn load(&self, path: &Path) -> Result<ItemKnn, ModelError> {
        Ok(ItemKnn::load(path)?)
    }
}

impl TrainedModel for ItemKnn {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        Ok(ItemKnn::save(self, path)?)
    }
}

impl ModelParams for BprConfig {
    type Model = BprMf;

    fn check(&self) -> Result<(), ModelError> {
        let ok = self.lr.is_finite()
            && self.lr > 0.0
            && self.reg >= 0.0
            && self.init_std >= 0.0
            && self.dim > 0
            && self.patience > 0;
        if !ok {
            return Err(ModelError::Params(format!(
                "BPR needs dim > 0, lr > 0, reg >= 0, init_std >= 0 and patience > 0 (got {self:?})"
            )));
        }
        Ok(())
    }

    fn max_epochs(&self) -> usize {
        self.epochs
    }

    fn uses_candle(&self) -> bool {
        false
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<BprMf>, ModelError> {
        let progress = &mut *ctx.progress;
        let (model, summary) =
            BprMf::fit(&ctx.split.train, self, &ctx.validation, ctx.seed, |r| {
                progress.epoch(r)
            })?;
        Ok(Fitted {
            model,
            summary: Some(summary),
        })
    }

    fn load(&self, path: &Path) -> Result<BprMf, ModelError> {
        let m = BprMf::load(path)?;
        if m.dim() != self.dim {
            return Err(ModelError::file(
                path,
                format!(
                    "factors have dimension {}, the parameters say dim = {}",
                    m.dim(),
                    self.dim
                ),
            ));
        }
        Ok(m)
    }
}

impl TrainedModel for BprMf {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        Ok(BprMf::save(self, path)?)
    }
}
