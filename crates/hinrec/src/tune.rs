//! Hyper-parameter search on the validation split (never the test split).

use anyhow::Result;
use hinrec_graph::Hin;
use hinrec_train::AnyParams;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::experiment::{ExperimentConfig, Prepared};
use crate::models::fit_quiet;
use crate::registry::parse_toml;

/// One tried configuration and its validation value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    /// What was changed, e.g. `lr=0.05 reg=0.01`.
    pub label: String,
    /// Validation metric of its best epoch.
    pub valid: f64,
}

/// A grid point: its label, the parameters it chooses, and those its trial
/// trains (with the search's epoch cap).
type GridPoint = (String, Box<dyn AnyParams>, Box<dyn AnyParams>);

/// A grid point's TOML as a one-line label (`dim=64 lr=0.01`).
pub fn label(point: &str) -> String {
    let l: Vec<String> = point
        .lines()
        .map(|l| l.replace(' ', ""))
        .filter(|l| !l.is_empty())
        .collect();
    if l.is_empty() {
        "-".into()
    } else {
        l.join(" ")
    }
}

/// Fits `base` with each point of `grid` applied (and `trial` overrides,
/// e.g. an epoch cap, during the search) with `seed`, and returns the
/// point best on validation (its parameters without `trial`) and every
/// trial in grid order; ties go to the earlier point. Models without
/// candle are fitted in parallel, each fit on one thread; candle models
/// one after the other. An empty grid returns `base` and no trials.
pub fn tune(
    base: &dyn AnyParams,
    grid: &[String],
    trial: &str,
    prepared: &Prepared,
    hin: Option<&Hin>,
    cfg: &ExperimentConfig,
    seed: u64,
) -> Result<(Box<dyn AnyParams>, Vec<Trial>)> {
    if grid.is_empty() {
        return Ok((base.clone_box(), Vec::new()));
    }
    let trial = parse_toml(trial)?;
    let points: Vec<GridPoint> = grid
        .iter()
        .map(|g| {
            let mut chosen = base.clone_box();
            chosen.set(&parse_toml(g)?)?;
            chosen.check()?;
            let mut trained = chosen.clone_box();
            trained.set(&trial)?;
            Ok((label(g), chosen, trained))
        })
        .collect::<Result<_>>()?;
    let score = |p: &GridPoint| -> Result<f64> {
        let fitted = fit_quiet(p.2.as_ref(), prepared, hin, cfg, seed)?;
        let valid = match fitted.summary.as_ref().and_then(|s| s.best_valid) {
            Some(v) => v,
            None => cfg
                .validation(prepared)
                .score(fitted.model.as_ref())
                .map_err(anyhow::Error::from_boxed)?
                .unwrap_or(f64::NAN),
        };
        Ok(valid)
    };
    let valids: Vec<f64> = if base.uses_candle() {
        points.iter().map(score).collect::<Result<_>>()?
    } else {
        points.par_iter().map(score).collect::<Result<_>>()?
    };
    let trials: Vec<Trial> = points
        .iter()
        .zip(&valids)
        .map(|((label, _, _), &valid)| Trial {
            label: label.clone(),
            valid,
        })
        .collect();
    let mut best = 0;
    for (k, &v) in valids.iter().enumerate() {
        if v > valids[best] {
            best = k;
        }
    }
    let chosen = points.into_iter().nth(best).map(|p| p.1);
    Ok((chosen.unwrap_or_else(|| base.clone_box()), trials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_one_line() {
        assert_eq!(label("dim = 64\nlr = 0.01"), "dim=64 lr=0.01");
        assert_eq!(label(""), "-");
    }
}
