//! Hyper-parameter search on the validation split (never the test split).

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::experiment::{ExperimentConfig, Prepared};
use crate::models::{fit, validation, Fitted, ModelKind};

/// One tried configuration and its validation value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    /// What was changed, e.g. `lr=0.05 reg=0.01`.
    pub label: String,
    /// Validation metric of its best epoch.
    pub valid: f64,
}

/// The configurations tried for `kind`: the paper grids where a paper gives
/// one, else a small grid around the usual defaults.
pub fn grid(kind: ModelKind, base: &ExperimentConfig) -> Vec<(String, ExperimentConfig)> {
    let mut out = Vec::new();
    match kind {
        ModelKind::MostPop => out.push(("-".into(), base.clone())),
        ModelKind::ItemKnn => {
            for k in [20, 50, 100, 200, 400] {
                let mut c = base.clone();
                c.itemknn.k = k;
                out.push((format!("k={k}"), c));
            }
        }
        ModelKind::Bpr => {
            for dim in [64, 128] {
                for lr in [0.01, 0.03, 0.1] {
                    for reg in [0.003, 0.01, 0.03] {
                        let mut c = base.clone();
                        c.bpr.dim = dim;
                        c.bpr.lr = lr;
                        c.bpr.reg = reg;
                        out.push((format!("dim={dim} lr={lr} reg={reg}"), c));
                    }
                }
            }
        }
    }
    out
}

/// Fits every configuration of [`grid`] and returns the one best on
/// validation, refitted state included, with all trials.
pub fn tune(
    kind: ModelKind,
    prepared: &Prepared,
    base: &ExperimentConfig,
    seed: u64,
) -> Result<(ExperimentConfig, Fitted, Vec<Trial>)> {
    let mut best: Option<(f64, ExperimentConfig, Fitted)> = None;
    let mut trials = Vec::new();
    for (label, cfg) in grid(kind, base) {
        let fitted = fit(kind, prepared, &cfg, seed, &mut |_| {})?;
        let valid = match fitted.summary.as_ref().and_then(|s| s.best_valid) {
            Some(v) => v,
            None => validation(prepared, &cfg).score(fitted.scorer()).unwrap_or(f64::NAN),
        };
        trials.push(Trial {
            label: label.clone(),
            valid,
        });
        if best.as_ref().is_none_or(|b| valid > b.0) {
            best = Some((valid, cfg, fitted));
        }
    }
    let (_, cfg, fitted) = best.expect("every grid has a configuration");
    Ok((cfg, fitted, trials))
}
