//! Hyper-parameter search on the validation split (never the test split).

use anyhow::Result;
use rayon::prelude::*;
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

/// Fits every configuration of [`grid`] (in parallel: each fit is
/// single-threaded) and returns the one best on validation, its fitted model,
/// and all trials in grid order. Ties go to the earlier configuration.
pub fn tune(
    kind: ModelKind,
    prepared: &Prepared,
    base: &ExperimentConfig,
    seed: u64,
) -> Result<(ExperimentConfig, Fitted, Vec<Trial>)> {
    let results: Vec<(String, ExperimentConfig, Fitted, f64)> = grid(kind, base)
        .into_par_iter()
        .map(|(label, cfg)| {
            let fitted = fit(kind, prepared, &cfg, seed, &mut |_| {})?;
            let valid = match fitted.summary.as_ref().and_then(|s| s.best_valid) {
                Some(v) => v,
                None => validation(prepared, &cfg)
                    .score(fitted.scorer())
                    .unwrap_or(f64::NAN),
            };
            Ok((label, cfg, fitted, valid))
        })
        .collect::<Result<_>>()?;
    let trials = results
        .iter()
        .map(|(label, _, _, valid)| Trial {
            label: label.clone(),
            valid: *valid,
        })
        .collect();
    let best = results
        .into_iter()
        .reduce(|a, b| if b.3 > a.3 { b } else { a })
        .expect("every grid has a configuration");
    Ok((best.1, best.2, trials))
}
