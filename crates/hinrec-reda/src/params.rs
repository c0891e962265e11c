//! REDA under the model contract of hinrec-train.

use std::path::Path;

use hinrec_nn::checkpoint;
use hinrec_train::{FitContext, Fitted, ModelError, ModelParams, Reason, TrainedModel};

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
        checkpoint::load_model(path, |state| Reda::from_state(self, state))
    }
}

impl TrainedModel for Reda {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        checkpoint::save_model(path, &self.state()?)
    }

    fn explain(&self, user: u32, item: u32) -> Result<Vec<Reason>, ModelError> {
        let e = self.explain_pair(user, item)?;
        let top = e.contributions.first().map(|c| c.0);
        let mut out = vec![Reason::Items {
            what: "the user's items j, each with its term z_u . r_ij / |R_u| of the score".into(),
            weights: e.contributions.into_iter().take(5).collect(),
        }];
        if top.is_some() {
            if !e.aspects.is_empty() {
                out.push(Reason::Values {
                    what: "weight attention over the aspect pairs of this item and the first item above".into(),
                    values: e.aspects,
                });
            }
            if !e.slots.is_empty() {
                out.push(Reason::Values {
                    what: "memory attention over the slots for this item and the first item above"
                        .into(),
                    values: e.slots.into_iter().take(3).collect(),
                });
            }
        }
        Ok(out)
    }
}
