//! REDA under the model contract of hinrec-train.

use std::path::Path;

use hinrec_nn::checkpoint;
use hinrec_train::{FitContext, Fitted, ModelError, ModelParams, TrainedModel};

use crate::model::{Reda, RedaConfig, RedaError};

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
        let state = checkpoint::load(path).map_err(|e| ModelError::file(path, e))?;
        Reda::from_state(self, &state).map_err(|e| ModelError::file(path, e))
    }
}

impl TrainedModel for Reda {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        let state = self.state()?;
        checkpoint::save(path, &state).map_err(|e| ModelError::file(path, e))
    }
}
