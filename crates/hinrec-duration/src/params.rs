//! DURation's parameters (duration.txt sections 3-5), their checks, and
//! DURation under the model contract of hinrec-train.

use std::path::Path;

use hinrec_eval::ScoreError;
use hinrec_nn::checkpoint;
use hinrec_train::{FitContext, Fitted, ModelError, ModelParams};
use serde::{Deserialize, Serialize};

use crate::network::Duration;

/// Errors of DURation.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A configuration value is unusable.
    #[error("invalid DURation configuration: {0}")]
    Config(String),
    /// The data cannot serve the configuration.
    #[error("{0}")]
    Data(String),
    /// Validation scoring failed.
    #[error("validation: {0}")]
    Score(ScoreError),
}

pub(crate) type Result<T, E = DurationError> = std::result::Result<T, E>;

/// The model and the baselines built from its parts (Table 3's DeepMF-style
/// two towers). Serialised as the suffix of its registry name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Both towers over histories, the item tower also over `f_p(r)`.
    Full,
    /// The towers over histories only: no `f_p`, so no alignment or
    /// topology loss (a DeepMF-style two-tower model).
    Dmf,
}

/// Hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DurationConfig {
    /// Width of the towers and of the unified space (section 5.3: 64 of
    /// 32 / 64 / 128).
    pub dim: usize,
    /// Weight α of the alignment loss A (eq. 8). At a batch of 1024 rows
    /// per kind on douban-dtcdr, C is about 0.45 and A 0.02 falling to
    /// 0.007 in the first epochs, so α = 10 makes them comparable
    /// (docs/duration.md); the grid searches 1 / 10 / 100 on validation.
    pub alpha: f64,
    /// Weight β of the topology loss T (eq. 8): T is about 340 falling to
    /// 7 there, so β = 1e-3 (the paper's value too); the grid searches
    /// 1e-4 / 1e-3 / 1e-2.
    pub beta: f64,
    /// The RBF kernel's λ (section 4.1); 0 sets it each step to one over
    /// the median squared distance between the batch's mapped rows.
    pub gamma: f64,
    /// Training rows per item kind per step (section 4.3's B; 5.3: 1024).
    pub batch: usize,
    /// Adam learning rate (5.3: 0.001).
    pub lr: f64,
    /// Weight of L2 on the batch's rows and the towers' weights.
    pub reg: f64,
    /// Standard deviation of the history tables' N(0, σ) init.
    pub init_std: f64,
    /// Sampled unobserved items (of the row's kind) per positive, where the
    /// data has no observed negatives (binary interactions).
    pub negatives: usize,
    /// Maximum epochs (5.3: 100); an epoch passes once over the largest
    /// kind's training rows.
    pub epochs: usize,
    /// Epochs without validation improvement before stopping (5.3: 5).
    pub patience: usize,
    /// The model or a baseline made of its parts.
    pub variant: Variant,
}

impl Default for DurationConfig {
    fn default() -> Self {
        DurationConfig {
            dim: 64,
            alpha: 10.0,
            beta: 1e-3,
            gamma: 0.0,
            batch: 1024,
            lr: 1e-3,
            reg: 0.0,
            init_std: 0.1,
            negatives: 1,
            epochs: 100,
            patience: 5,
            variant: Variant::Full,
        }
    }
}

impl DurationConfig {
    /// Checks every value before any work.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("dim", self.dim),
            ("batch", self.batch),
            ("patience", self.patience),
            ("negatives", self.negatives),
        ];
        if let Some((name, _)) = positive.iter().find(|p| p.1 == 0) {
            return Err(DurationError::Config(format!("{name} must be positive")));
        }
        if self.batch < 2 {
            return Err(DurationError::Config(
                "batch must be at least 2 (the topology loss compares rows)".into(),
            ));
        }
        let non_negative = [
            ("alpha", self.alpha),
            ("beta", self.beta),
            ("gamma", self.gamma),
            ("reg", self.reg),
            ("init_std", self.init_std),
        ];
        if let Some((name, v)) = non_negative
            .iter()
            .find(|p| !(p.1.is_finite() && p.1 >= 0.0))
        {
            return Err(DurationError::Config(format!(
                "{name} must be a finite number >= 0 (got {v})"
            )));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(DurationError::Config(format!(
                "lr must be positive (got {})",
                self.lr
            )));
        }
        Ok(())
    }

    /// Whether the item tower maps attributes (`f_p`), so A and T apply.
    pub fn maps_attributes(&self) -> bool {
        self.variant == Variant::Full
    }
}

impl From<DurationError> for ModelError {
    fn from(e: DurationError) -> Self {
        match e {
            DurationError::Config(m) => ModelError::Params(m),
            DurationError::Data(m) => ModelError::Data(m),
            DurationError::Score(s) => ModelError::Score(s),
            other => ModelError::other(other),
        }
    }
}

impl ModelParams for DurationConfig {
    type Model = Duration;

    fn check(&self) -> Result<(), ModelError> {
        Ok(DurationConfig::check(self)?)
    }

    fn needs_hin(&self) -> bool {
        // Item attributes (dense features of the item types) come from it.
        true
    }

    fn max_epochs(&self) -> usize {
        self.epochs
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<Duration>, ModelError> {
        let (model, summary) = Duration::fit(self, ctx)?;
        Ok(Fitted {
            model,
            summary: Some(summary),
        })
    }

    fn load(&self, path: &Path) -> Result<Duration, ModelError> {
        checkpoint::load_model(path, |state| Duration::from_state(self, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        assert!(DurationConfig::default().check().is_ok());
        let bad = [
            DurationConfig {
                dim: 0,
                ..Default::default()
            },
            DurationConfig {
                batch: 1,
                ..Default::default()
            },
            DurationConfig {
                alpha: -1.0,
                ..Default::default()
            },
            DurationConfig {
                beta: f64::NAN,
                ..Default::default()
            },
            DurationConfig {
                lr: 0.0,
                ..Default::default()
            },
        ];
        let names = ["dim", "batch", "alpha", "beta", "lr"];
        for (c, name) in bad.iter().zip(names) {
            let e = c.check().unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }
}
