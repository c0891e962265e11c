//! Preparing a dataset for a protocol: the split, the validation set carved
//! from training data, and the stored negatives every model is compared on.

use std::time::Instant;

use anyhow::{Context, Result};
use hinrec_data::{Dataset, EvalNegatives, Split, SplitRule};
use hinrec_eval::{full_ranking, sampled, EvalReport, Metrics, Scorer};
use serde::{Deserialize, Serialize};

use hinrec_baselines::{BprConfig, ItemKnnConfig};

/// Everything that decides how a model is trained and evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentConfig {
    /// How to split; absent: the dataset's given split if it has one, else
    /// leave-one-out (latest when there are timestamps, random otherwise).
    pub split: Option<SplitRule>,
    /// How to carve validation data from training data; absent: the given
    /// validation set if any, else leave-one-out like `split`.
    pub valid_split: Option<SplitRule>,
    /// Negatives per test (and validation) pair for the sampled protocol.
    pub negatives: usize,
    /// Seed of the split and the negatives, kept fixed across model seeds so
    /// every model ranks the same candidates.
    pub data_seed: u64,
    /// Validation metric for early stopping and tuning.
    pub metric: String,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Validate on the sampled protocol (`true`) or full ranking.
    pub sampled_validation: bool,
    /// BPR-MF hyper-parameters.
    pub bpr: BprConfig,
    /// ItemKNN hyper-parameters.
    pub itemknn: ItemKnnConfig,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            split: None,
            valid_split: None,
            negatives: 100,
            data_seed: 0,
            metric: "NDCG@10".into(),
            patience: 20,
            sampled_validation: true,
            bpr: BprConfig::default(),
            itemknn: ItemKnnConfig::default(),
        }
    }
}

impl ExperimentConfig {
    /// Reads a TOML config file.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("config {}", path.display()))
    }
}

/// A dataset ready for training and evaluation.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Dataset name.
    pub dataset: String,
    /// Label of the split (`given`, `loo-latest`, ...).
    pub split_label: String,
    /// Train, validation and test sets.
    pub split: Split,
    /// Negatives of the validation pairs (avoid training and validation
    /// items; the test set is never looked at).
    pub valid_negatives: EvalNegatives,
    /// Negatives of the test pairs (given, or sampled avoiding every known
    /// interaction).
    pub test_negatives: EvalNegatives,
}

impl Prepared {
    /// Splits `ds` as `cfg` says and samples the negatives.
    pub fn new(ds: &Dataset, cfg: &ExperimentConfig) -> Result<Self> {
        let data = ds.implicit();
        let loo = if data.has_timestamps() {
            SplitRule::LeaveOneOutLatest
        } else {
            SplitRule::LeaveOneOutRandom
        };
        let (mut split, label) = match (&cfg.split, &ds.given_split) {
            (None, Some(given)) => (given.clone(), "given".to_string()),
            (rule, _) => {
                let rule = rule.unwrap_or(loo);
                (rule.apply(&data, cfg.data_seed)?, rule.label())
            }
        };
        let valid_rule = cfg.valid_split.unwrap_or(match cfg.split {
            Some(r @ (SplitRule::UserRatio { .. } | SplitRule::UserCount { .. })) => r,
            _ => loo,
        });
        let label = if split.valid.is_empty() {
            split = split.carve_validation(valid_rule, cfg.data_seed.wrapping_add(1))?;
            format!("{label}+valid:{}", valid_rule.label())
        } else {
            label
        };
        let all = [&split.train, &split.valid, &split.test];
        let test_negatives = match (&cfg.split, &ds.given_negatives) {
            (None, Some(n)) => n.clone(),
            _ => EvalNegatives::sample(
                &split.test,
                &all,
                cfg.negatives,
                cfg.data_seed.wrapping_add(2),
            )?,
        };
        let valid_negatives = EvalNegatives::sample(
            &split.valid,
            &all[..2],
            cfg.negatives,
            cfg.data_seed.wrapping_add(3),
        )?;
        Ok(Prepared {
            dataset: ds.name.clone(),
            split_label: label,
            split,
            valid_negatives,
            test_negatives,
        })
    }

    /// Sampled protocol on the test pairs.
    pub fn evaluate_sampled<S: Scorer + Sync + ?Sized>(
        &self,
        model: &S,
        name: &str,
        seed: u64,
        ks: &[usize],
    ) -> EvalReport {
        let t = Instant::now();
        let metrics = sampled(model, &self.test_negatives, ks);
        self.report(name, "sampled", seed, ks, metrics, t)
    }

    /// Full ranking of the test items (training and validation excluded).
    pub fn evaluate_full<S: Scorer + Sync + ?Sized>(
        &self,
        model: &S,
        name: &str,
        seed: u64,
        ks: &[usize],
    ) -> EvalReport {
        let t = Instant::now();
        let s = &self.split;
        let metrics = full_ranking(model, &s.test, &[&s.train, &s.valid], ks);
        self.report(name, "full", seed, ks, metrics, t)
    }

    /// Per-user AUC over all unseen items (HHFAN eq. 12) and the global AUC
    /// over the stored labeled pairs (DURation), as `AUC` and `GAUC`.
    pub fn evaluate_auc<S: Scorer + Sync + ?Sized>(
        &self,
        model: &S,
        name: &str,
        seed: u64,
    ) -> EvalReport {
        let t = Instant::now();
        let s = &self.split;
        let mut metrics = full_ranking(model, &s.test, &[&s.train, &s.valid], &[]);
        metrics.values.insert(
            "GAUC".into(),
            hinrec_eval::global_auc(model, &self.test_negatives),
        );
        self.report(name, "auc", seed, &[], metrics, t)
    }

    fn report(
        &self,
        name: &str,
        protocol: &str,
        seed: u64,
        ks: &[usize],
        metrics: Metrics,
        t: Instant,
    ) -> EvalReport {
        EvalReport {
            model: name.into(),
            dataset: self.dataset.clone(),
            split: self.split_label.clone(),
            protocol: protocol.into(),
            ks: ks.to_vec(),
            seed,
            metrics,
            wall_s: t.elapsed().as_secs_f64(),
        }
    }
}
