//! NeuMF and LightGCN under the model contract of hinrec-train.

use std::path::Path;

use hinrec_train::{FitContext, Fitted, ModelError, ModelParams, TrainedModel};

use crate::error::NeuralError;
use crate::factors::Factors;
use crate::lightgcn::{self, LightGcnConfig};
use crate::neumf::{self, NeuMf, NeuMfConfig};

/// Where LightGCN keeps its layer means in a saved model.
const LAYER_MEAN: &str = "layer_mean";

impl From<NeuralError> for ModelError {
    fn from(e: NeuralError) -> Self {
        match e {
            NeuralError::Config(m) => ModelError::Params(m),
            NeuralError::Score(s) => ModelError::Score(s),
            other => ModelError::other(other),
        }
    }
}

impl ModelParams for LightGcnConfig {
    type Model = Factors;

    fn check(&self) -> Result<(), ModelError> {
        Ok(LightGcnConfig::check(self)?)
    }

    fn max_epochs(&self) -> usize {
        self.epochs
    }

    fn uses_candle(&self) -> bool {
        false
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<Factors>, ModelError> {
        let (model, summary) = lightgcn::fit(self, ctx)?;
        Ok(Fitted {
            model,
            summary: Some(summary),
        })
    }

    fn load(&self, path: &Path) -> Result<Factors, ModelError> {
        Factors::load(path, LAYER_MEAN, self.dim)
    }
}

impl TrainedModel for Factors {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        Factors::save(self, path, LAYER_MEAN)
    }
}

impl ModelParams for NeuMfConfig {
    type Model = NeuMf;

    fn check(&self) -> Result<(), ModelError> {
        Ok(NeuMfConfig::check(self)?)
    }

    fn max_epochs(&self) -> usize {
        self.epochs
    }

    fn uses_candle(&self) -> bool {
        false
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<NeuMf>, ModelError> {
        let (model, summary) = neumf::fit(self, ctx)?;
        Ok(Fitted {
            model,
            summary: Some(summary),
        })
    }

    fn load(&self, path: &Path) -> Result<NeuMf, ModelError> {
        NeuMf::load(path, self)
    }
}

impl TrainedModel for NeuMf {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        NeuMf::save(self, path)
    }
}
