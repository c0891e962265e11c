//! Averaged metrics and the report that carries them with their context.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::metrics::{UserMetrics, AT_K_NAMES};

/// Metric means over users (or test pairs), keyed `HR@10`, `NDCG@10`, `AUC`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Values by name.
    pub values: BTreeMap<String, f64>,
    /// Number of users (or pairs) averaged.
    pub count: usize,
}

impl Metrics {
    /// Averages per-user values in order (so the sum does not depend on
    /// thread scheduling).
    pub fn average(per_user: &[UserMetrics], ks: &[usize]) -> Self {
        let n = per_user.len();
        let mut values = BTreeMap::new();
        let denom = n.max(1) as f64;
        for (ki, k) in ks.iter().enumerate() {
            for (mi, name) in AT_K_NAMES.iter().enumerate() {
                let s: f64 = per_user.iter().map(|m| m.at_k[ki][mi]).sum();
                values.insert(format!("{name}@{k}"), s / denom);
            }
        }
        let auc: f64 = per_user.iter().map(|m| m.auc).sum();
        values.insert("AUC".into(), auc / denom);
        Metrics { values, count: n }
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A value by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// Each metric's maximum over `per_epoch`, taken separately (the LGRec
    /// authors' released code reports the best test HR@10 and, from a
    /// possibly different epoch, the best test NDCG@10).
    pub fn max_over(per_epoch: &[Metrics]) -> Metrics {
        let mut max = Metrics {
            count: per_epoch.first().map_or(0, |m| m.count),
            ..Metrics::default()
        };
        for m in per_epoch {
            for (name, &v) in &m.values {
                let e = max.values.entry(name.clone()).or_insert(v);
                *e = e.max(v);
            }
        }
        max
    }
}

/// An evaluation result with everything needed to re-run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Model name.
    pub model: String,
    /// Dataset name.
    pub dataset: String,
    /// Split label.
    pub split: String,
    /// `sampled`, `full` or `auc`.
    pub protocol: String,
    /// Cutoffs.
    pub ks: Vec<usize>,
    /// Seed of the run.
    pub seed: u64,
    /// The values.
    pub metrics: Metrics,
    /// Seconds the evaluation took.
    pub wall_s: f64,
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model {} | dataset {} | split {} | protocol {} | seed {} | {} evaluated | {:.3}s",
            self.model,
            self.dataset,
            self.split,
            self.protocol,
            self.seed,
            self.metrics.count,
            self.wall_s
        )?;
        write!(f, "{:>5}", "K")?;
        for name in AT_K_NAMES {
            write!(f, " {name:>9}")?;
        }
        writeln!(f)?;
        for k in &self.ks {
            write!(f, "{k:>5}")?;
            for name in AT_K_NAMES {
                let v = self.metrics.get(&format!("{name}@{k}")).unwrap_or(f64::NAN);
                write!(f, " {v:>9.4}")?;
            }
            writeln!(f)?;
        }
        if let Some(auc) = self.metrics.get("AUC") {
            writeln!(f, "AUC {auc:.4}")?;
        }
        if let Some(auc) = self.metrics.get("GAUC") {
            writeln!(f, "global AUC {auc:.4}")?;
        }
        Ok(())
    }
}

/// Mean and sample standard deviation of each metric over runs (seeds).
pub fn mean_std(runs: &[&Metrics]) -> BTreeMap<String, (f64, f64)> {
    let mut out = BTreeMap::new();
    let Some(first) = runs.first() else {
        return out;
    };
    for name in first.values.keys() {
        let xs: Vec<f64> = runs.iter().filter_map(|m| m.get(name)).collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = if xs.len() > 1 {
            xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        out.insert(name.clone(), (mean, var.sqrt()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_over_epochs_takes_each_metric_separately() {
        let m = |hr: f64, ndcg: f64| Metrics {
            values: [("HR@10".to_string(), hr), ("NDCG@10".to_string(), ndcg)].into(),
            count: 7,
        };
        let max = Metrics::max_over(&[m(0.5, 0.30), m(0.7, 0.20), m(0.6, 0.35)]);
        assert_eq!(max, m(0.7, 0.35));
        assert_eq!(Metrics::max_over(&[]), Metrics::default());
    }

    #[test]
    fn mean_and_sample_std() {
        let mk = |x: f64| Metrics {
            values: [("HR@10".to_string(), x)].into(),
            count: 1,
        };
        let (a, b, c) = (mk(0.6), mk(0.7), mk(0.8));
        let s = mean_std(&[&a, &b, &c]);
        let (m, sd) = s["HR@10"];
        assert!((m - 0.7).abs() < 1e-12);
        assert!((sd - 0.1).abs() < 1e-12);
    }
}
