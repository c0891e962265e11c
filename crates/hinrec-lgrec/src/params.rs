//! LGRec under the model contract of hinrec-train.

use std::path::Path;

use hinrec_nn::checkpoint;
use hinrec_train::{FitContext, Fitted, ModelError, ModelParams, Reason, TrainedModel};

use crate::model::{Lgrec, LgrecConfig, LgrecError, Variant};

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

impl TrainedModel for Lgrec {
    fn save(&self, path: &Path) -> Result<(), ModelError> {
        checkpoint::save_model(path, &self.state()?)
    }

    fn explain(&self, user: u32, item: u32) -> Result<Vec<Reason>, ModelError> {
        let e = self.explain_pair(user, item)?;
        let how = match self.config().variant {
            Variant::NoAtt => "mean",
            _ => "co-attention",
        };
        let mut out = vec![
            Reason::Items {
                what: format!("the user's neighbour items, {how} weight in x_u"),
                weights: e.items.into_iter().take(5).collect(),
            },
            Reason::Users {
                what: format!("the item's neighbour users, {how} weight in y_v"),
                weights: e.users.into_iter().take(5).collect(),
            },
        ];
        if !e.labels.is_empty() {
            out.push(Reason::Values {
                what: "meta-path label probability of the pair's relation".into(),
                values: e.labels,
            });
        }
        Ok(out)
    }
}
