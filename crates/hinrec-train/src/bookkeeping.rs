//! What every epoch loop shares (the baselines' and the neural models'):
//! validation for early stopping, the per-epoch report and its bookkeeping.

use hinrec_data::{EvalNegatives, Interactions};
use hinrec_eval::metrics::AT_K_NAMES;
use hinrec_eval::{full_ranking, labelled_auc, sampled, ScoreError, Scorer};
use serde::{Deserialize, Serialize};

/// How to score a model on validation data during training.
#[derive(Debug, Clone, Copy)]
pub enum ValidationData<'a> {
    /// No validation: train for the configured number of epochs.
    None,
    /// Validation pairs against stored negatives.
    Sampled(&'a EvalNegatives),
    /// Validation items ranked among all items except training ones.
    Full {
        /// Validation interactions.
        valid: &'a Interactions,
        /// Training interactions (excluded from candidates).
        train: &'a Interactions,
    },
    /// Labelled validation rows (user, item, label), scored by their ROC
    /// AUC (DURation); the metric must be `AUC`.
    Labelled(&'a [(u32, u32, bool)]),
}

/// Validation used for early stopping: the data and the metric (how long
/// to wait for an improvement is each model's `patience`).
#[derive(Debug, Clone)]
pub struct Validation<'a> {
    /// The data.
    pub data: ValidationData<'a>,
    /// Metric to maximise (`NDCG@10`, `HR@10`, ...).
    pub metric: String,
}

/// The cut-off of a validation metric such as `NDCG@10` (`None` for `AUC`,
/// which has none), or an error that names the metrics there are.
pub fn metric_cutoff(metric: &str) -> Result<Option<usize>, String> {
    if metric == "AUC" {
        return Ok(None);
    }
    let bad = || {
        format!(
            "unknown validation metric {metric:?}: use AUC or one of {} with a cut-off, e.g. NDCG@10",
            AT_K_NAMES.join(", ")
        )
    };
    let (name, k) = metric.split_once('@').ok_or_else(bad)?;
    let k: usize = k.parse().map_err(|_| bad())?;
    if k == 0 || !AT_K_NAMES.contains(&name) {
        return Err(bad());
    }
    Ok(Some(k))
}

impl<'a> Validation<'a> {
    /// No validation.
    pub fn none() -> Self {
        Validation {
            data: ValidationData::None,
            metric: "NDCG@10".into(),
        }
    }

    /// Sampled validation on NDCG@10.
    pub fn sampled(negatives: &'a EvalNegatives) -> Self {
        Validation {
            data: ValidationData::Sampled(negatives),
            metric: "NDCG@10".into(),
        }
    }

    /// Full-ranking validation on NDCG@10.
    pub fn full(valid: &'a Interactions, train: &'a Interactions) -> Self {
        Validation {
            data: ValidationData::Full { valid, train },
            metric: "NDCG@10".into(),
        }
    }

    /// The validation metric of `model`, or `None` without validation data.
    pub fn score<S: Scorer + ?Sized>(&self, model: &S) -> Result<Option<f64>, ScoreError> {
        let ks: Vec<usize> = metric_cutoff(&self.metric)?.into_iter().collect();
        let m = match self.data {
            ValidationData::None => return Ok(None),
            ValidationData::Sampled(n) if n.is_empty() => return Ok(None),
            ValidationData::Sampled(n) => sampled(model, n, &ks)?,
            ValidationData::Full { valid, train } => full_ranking(model, valid, &[train], &ks)?,
            ValidationData::Labelled([]) => return Ok(None),
            ValidationData::Labelled(rows) => {
                if self.metric != "AUC" {
                    return Err(
                        format!("labelled validation measures AUC, not {}", self.metric).into(),
                    );
                }
                labelled_auc(model, rows, &[])?
            }
        };
        Ok(m.get(&self.metric))
    }
}

/// What a trainer scores after each epoch: the validation metric that
/// chooses the epoch, and the audit set, whose metrics (at the validation
/// metric's cut-off) are only kept for [`FitSummary::audit`].
#[derive(Debug, Clone)]
pub struct Judge<'a> {
    validation: Validation<'a>,
    audit: Option<&'a EvalNegatives>,
    ks: Vec<usize>,
    audited: Vec<hinrec_eval::Metrics>,
}

impl<'a> Judge<'a> {
    /// A judge of `validation` and, given one, the `audit` set; an unknown
    /// metric name is an error.
    pub fn new(
        validation: Validation<'a>,
        audit: Option<&'a EvalNegatives>,
    ) -> Result<Self, String> {
        let ks = metric_cutoff(&validation.metric)?.into_iter().collect();
        Ok(Judge {
            validation,
            audit,
            ks,
            audited: Vec::new(),
        })
    }

    /// Scores the audit set (if any), then returns the validation metric
    /// of `model`.
    pub fn score<S: Scorer + ?Sized>(&mut self, model: &S) -> Result<Option<f64>, ScoreError> {
        if let Some(audit) = self.audit {
            self.audited.push(sampled(model, audit, &self.ks)?);
        }
        self.validation.score(model)
    }

    /// The audit's metrics, one per epoch scored.
    pub fn into_audit(self) -> Vec<hinrec_eval::Metrics> {
        self.audited
    }
}

/// One epoch as a progress display shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Positive samples processed per second of training.
    pub samples_per_s: f64,
    /// Validation metric after the epoch.
    pub valid: Option<f64>,
    /// Best validation metric so far.
    pub best: Option<f64>,
    /// Seconds since training started.
    pub elapsed_s: f64,
    /// The mean of each term of the loss over the epoch's batches, where
    /// the model reports them (DURation: `C`, `A`, `T` of eq. 8).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<(String, f64)>,
}

/// How a fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// Epochs run.
    pub epochs: usize,
    /// Epoch whose parameters were kept.
    pub best_epoch: usize,
    /// Its validation metric.
    pub best_valid: Option<f64>,
    /// Seconds of training (without validation).
    pub train_s: f64,
    /// Seconds from the start until the best epoch ended (validation included).
    pub time_to_best_s: f64,
    /// Total seconds.
    pub total_s: f64,
    /// Positive samples per second of training.
    pub samples_per_s: f64,
    /// The audit set's metrics after each epoch of this call, where the
    /// fit was given one ([`crate::FitContext::audit`]); reported only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<hinrec_eval::Metrics>,
}

/// Tracks the best validation value and when to stop.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    patience: usize,
    best: Option<f64>,
    best_epoch: usize,
    bad: usize,
}

impl EarlyStopping {
    /// A tracker with `patience` epochs.
    pub fn new(patience: usize) -> Self {
        EarlyStopping {
            patience,
            best: None,
            best_epoch: 0,
            bad: 0,
        }
    }

    /// Records `value` of `epoch`; returns whether it is the best so far.
    pub fn record(&mut self, epoch: usize, value: f64) -> bool {
        if self.best.is_none_or(|b| value > b) {
            self.best = Some(value);
            self.best_epoch = epoch;
            self.bad = 0;
            true
        } else {
            self.bad += 1;
            false
        }
    }

    /// Whether patience ran out.
    pub fn should_stop(&self) -> bool {
        self.bad >= self.patience
    }

    /// Best value so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Epoch of the best value.
    pub fn best_epoch(&self) -> usize {
        self.best_epoch
    }
}

/// The bookkeeping every epoch loop shares: early stopping, timings, the
/// per-epoch report and the final summary.
#[derive(Debug, Clone)]
pub struct EpochTracker {
    stop: EarlyStopping,
    start: std::time::Instant,
    samples_per_epoch: usize,
    train_s: f64,
    time_to_best: f64,
    epochs: usize,
}

impl EpochTracker {
    /// Starts the clock; `samples_per_epoch` positive samples per epoch.
    pub fn new(patience: usize, samples_per_epoch: usize) -> Self {
        EpochTracker {
            stop: EarlyStopping::new(patience),
            start: std::time::Instant::now(),
            samples_per_epoch,
            train_s: 0.0,
            time_to_best: 0.0,
            epochs: 0,
        }
    }

    /// Records an epoch that trained for `train_s` seconds and scored
    /// `valid`; returns its report and whether the caller should keep these
    /// parameters (always, without validation).
    pub fn record(
        &mut self,
        epoch: usize,
        loss: f64,
        train_s: f64,
        valid: Option<f64>,
    ) -> (EpochReport, bool) {
        self.train_s += train_s;
        self.epochs = epoch;
        let improved = valid.is_none_or(|v| self.stop.record(epoch, v));
        if improved {
            self.time_to_best = self.start.elapsed().as_secs_f64();
        }
        let report = EpochReport {
            epoch,
            loss,
            samples_per_s: self.samples_per_epoch as f64 / train_s.max(1e-9),
            valid,
            best: self.stop.best(),
            elapsed_s: self.start.elapsed().as_secs_f64(),
            terms: Vec::new(),
        };
        (report, improved)
    }

    /// Whether patience ran out.
    pub fn should_stop(&self) -> bool {
        self.stop.should_stop()
    }

    /// Everything needed to resume: best value (NaN if none), its epoch,
    /// epochs without improvement, training seconds, seconds to the best
    /// epoch, epochs done and seconds elapsed.
    pub fn state(&self) -> [f64; 7] {
        [
            self.stop.best.unwrap_or(f64::NAN),
            self.stop.best_epoch as f64,
            self.stop.bad as f64,
            self.train_s,
            self.time_to_best,
            self.epochs as f64,
            self.start.elapsed().as_secs_f64(),
        ]
    }

    /// A tracker continuing from [`EpochTracker::state`]; its clock goes on
    /// from the elapsed time saved.
    pub fn resume(patience: usize, samples_per_epoch: usize, state: [f64; 7]) -> Self {
        let [best, best_epoch, bad, train_s, time_to_best, epochs, elapsed] = state;
        let now = std::time::Instant::now();
        EpochTracker {
            stop: EarlyStopping {
                patience,
                best: (!best.is_nan()).then_some(best),
                best_epoch: best_epoch as usize,
                bad: bad as usize,
            },
            start: now
                .checked_sub(std::time::Duration::from_secs_f64(elapsed.max(0.0)))
                .unwrap_or(now),
            samples_per_epoch,
            train_s,
            time_to_best,
            epochs: epochs as usize,
        }
    }

    /// Epochs recorded so far.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// How the fit went.
    pub fn summary(&self) -> FitSummary {
        FitSummary {
            epochs: self.epochs,
            best_epoch: if self.stop.best().is_some() {
                self.stop.best_epoch()
            } else {
                self.epochs
            },
            best_valid: self.stop.best(),
            train_s: self.train_s,
            time_to_best_s: self.time_to_best,
            total_s: self.start.elapsed().as_secs_f64(),
            samples_per_s: (self.samples_per_epoch * self.epochs) as f64 / self.train_s.max(1e-9),
            audit: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_checked() {
        assert_eq!(metric_cutoff("NDCG@10"), Ok(Some(10)));
        assert_eq!(metric_cutoff("HR@5"), Ok(Some(5)));
        assert_eq!(metric_cutoff("AUC"), Ok(None));
        for bad in ["HR@ten", "NDCG", "ndcg@10", "HR@0", "AUC@3", "auc"] {
            assert!(metric_cutoff(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labelled_validation_is_the_rows_auc() {
        struct ByItem;
        impl Scorer for ByItem {
            fn n_items(&self) -> usize {
                3
            }
            fn score_pairs(&self, pairs: &[(u32, u32)], out: &mut [f32]) -> Result<(), ScoreError> {
                for (o, p) in out.iter_mut().zip(pairs) {
                    *o = p.1 as f32;
                }
                Ok(())
            }
        }
        // Scores are item ids. Positives 2 and 1 above negative 0: 1.
        // Then negatives 2 and 0 around positive 1: one half.
        let rows = [(0, 2, true), (0, 0, false), (1, 1, true)];
        let mut v = Validation {
            data: ValidationData::Labelled(&rows),
            metric: "AUC".into(),
        };
        assert_eq!(v.score(&ByItem).unwrap(), Some(1.0));
        let rows = [(0, 2, false), (0, 0, false), (1, 1, true)];
        v.data = ValidationData::Labelled(&rows);
        assert_eq!(v.score(&ByItem).unwrap(), Some(0.5));
        v.metric = "NDCG@10".into();
        assert!(v.score(&ByItem).is_err());
        v.data = ValidationData::Labelled(&[]);
        assert_eq!(v.score(&ByItem).unwrap(), None);
    }

    #[test]
    fn early_stopping_counts_epochs_without_improvement() {
        let mut s = EarlyStopping::new(2);
        assert!(s.record(1, 0.5));
        assert!(!s.record(2, 0.5));
        assert!(!s.should_stop());
        assert!(!s.record(3, 0.4));
        assert!(s.should_stop());
        assert_eq!((s.best(), s.best_epoch()), (Some(0.5), 1));
    }

    #[test]
    fn resumed_tracker_stops_where_the_original_would() {
        let mut a = EpochTracker::new(2, 10);
        a.record(1, 0.5, 1.0, Some(0.3));
        a.record(2, 0.4, 1.0, Some(0.2));
        let mut b = EpochTracker::resume(2, 10, a.state());
        assert_eq!(b.epochs(), 2);
        for t in [&mut a, &mut b] {
            let (r, keep) = t.record(3, 0.3, 1.0, Some(0.1));
            assert!(!keep);
            assert_eq!(r.best, Some(0.3));
            assert!(t.should_stop());
        }
        assert_eq!(a.summary().best_epoch, b.summary().best_epoch);
    }

    #[test]
    fn tracker_keeps_the_best_epoch_and_counts_samples() {
        let mut t = EpochTracker::new(1, 100);
        let (r, keep) = t.record(1, 0.7, 0.5, Some(0.2));
        assert!(keep);
        assert_eq!((r.samples_per_s, r.best), (200.0, Some(0.2)));
        let (_, keep) = t.record(2, 0.6, 0.5, Some(0.1));
        assert!(!keep && t.should_stop());
        let s = t.summary();
        assert_eq!((s.epochs, s.best_epoch, s.best_valid), (2, 1, Some(0.2)));
        assert_eq!(s.samples_per_s, 200.0);
    }
}
