//! Preparing a dataset for a protocol: the split, the validation set carved
//! from training data, and the stored negatives every model is compared on.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hinrec_data::{
    sampled_labels, Dataset, EvalNegatives, LabelRule, LabelledSplit, Split, SplitRule,
};
use hinrec_eval::{full_ranking, labelled_auc, sampled, EvalReport, ItemKind, Metrics, Scorer};
use hinrec_graph::Hin;
use hinrec_train::{Validation, ValidationData};
use serde::{Deserialize, Serialize};

/// Everything that decides how a model is trained and evaluated: the
/// protocol's keys at the top of a config file, and one table per model
/// (`[bpr]`, `[lgrec]`, ...; the registry names them) whose keys override
/// that model's defaults.
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
    /// Validate on the sampled protocol (`true`) or full ranking.
    pub sampled_validation: bool,
    /// Validation pairs whose metric picks the epoch, a sample drawn with
    /// the data seed (0: all); for datasets where scoring every validation
    /// user is most of an epoch.
    pub valid_users: usize,
    /// Stored negatives per user for HHFAN's pooled protocol (each user's
    /// test items all ranked against one list of this many unobserved
    /// items; 0: no pooled lists).
    pub pooled_negatives: usize,
    /// DURation's labelled protocol: every observed rating is kept, a
    /// rating above this is a positive and any other a negative; models
    /// validate and test on the ROC AUC of those labels (`metric = "AUC"`).
    /// Absent: the manifest's implicit rule (positives only).
    pub positive_above: Option<f32>,
    /// DURation's cold start (Table 5), labelled protocol only: a seeded
    /// share of the test users keep at most a few training rows, and the
    /// test AUC is measured on their rows.
    pub cold_start: Option<ColdStart>,
    /// The labelled protocol on binary data (DURation on douban-hin): each
    /// validation and test positive gets this many stored negatives, items
    /// of its own kind the user never interacted with, drawn with the data
    /// seed; models validate and test on the ROC AUC (`metric = "AUC"`).
    /// 0: off.
    pub labelled_negatives: usize,
    /// Each model table of the file (`[lgrec]` ...), by name.
    #[serde(skip)]
    pub models: BTreeMap<String, toml::Table>,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            split: None,
            valid_split: None,
            negatives: 100,
            data_seed: 0,
            metric: "NDCG@10".into(),
            sampled_validation: true,
            valid_users: 0,
            pooled_negatives: 0,
            positive_above: None,
            cold_start: None,
            labelled_negatives: 0,
            models: BTreeMap::new(),
        }
    }
}

impl ExperimentConfig {
    /// Reads a TOML config file.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    /// Parses a config: the protocol's keys, then the model tables the
    /// registry knows; anything else is an error that names it.
    pub fn parse(text: &str) -> Result<Self> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.to_string().trim()))?;
        let mut models = BTreeMap::new();
        for name in crate::registry::tables() {
            match table.remove(name) {
                Some(toml::Value::Table(t)) => {
                    models.insert(name.to_string(), t);
                }
                Some(_) => bail!("[{name}] must be a table of that model's parameters"),
                None => {}
            }
        }
        let mut cfg: ExperimentConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!(
                        "{} (model tables: {})",
                        e.to_string().trim(),
                        crate::registry::tables().join(", ")
                    )
                })?;
        cfg.models = models;
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks the protocol's settings before any work.
    pub fn check(&self) -> Result<()> {
        hinrec_train::metric_cutoff(&self.metric).map_err(anyhow::Error::msg)?;
        if let Some(t) = self.positive_above {
            if !t.is_finite() {
                bail!("positive_above must be a finite rating, got {t}");
            }
            if self.metric != "AUC" {
                bail!(
                    "a labelled protocol (positive_above) validates on metric = \"AUC\", not {:?}",
                    self.metric
                );
            }
            if self.labelled_negatives > 0 {
                bail!("labelled_negatives is for binary data: with positive_above the negatives are the observed low ratings");
            }
        } else if self.cold_start.is_some() {
            bail!("cold_start needs the labelled protocol (positive_above)");
        } else if self.labelled_negatives > 0 && self.metric != "AUC" {
            bail!(
                "the labelled protocol (labelled_negatives) validates on metric = \"AUC\", not {:?}",
                self.metric
            );
        }
        if let Some(c) = self.cold_start {
            if !(0.0..=1.0).contains(&c.share) || c.keep == 0 {
                bail!(
                    "cold_start: share must be in [0, 1] and keep at least 1 (got {} and {})",
                    c.share,
                    c.keep
                );
            }
        }
        if self.negatives == 0 {
            bail!("negatives must be positive");
        }
        for (key, rule) in [("split", &self.split), ("valid_split", &self.valid_split)] {
            if let Some(r) = rule {
                r.check().context(key)?;
            }
        }
        Ok(())
    }

    /// The validation of `prepared` this config asks for.
    pub fn validation<'a>(&self, prepared: &'a Prepared) -> Validation<'a> {
        let s = &prepared.split;
        Validation {
            data: if prepared.is_labelled() {
                ValidationData::Labelled(&prepared.valid_rows)
            } else if self.sampled_validation {
                ValidationData::Sampled(&prepared.valid_negatives)
            } else {
                ValidationData::Full {
                    valid: &s.valid,
                    train: &s.train,
                }
            },
            metric: self.metric.clone(),
        }
    }
}

/// DURation's cold-start users (Table 5: "we only reserve up to three
/// samples of these users each in the training set").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdStart {
    /// Share of the users with test rows made cold, drawn with the data
    /// seed.
    pub share: f64,
    /// Training rows each of them keeps at most.
    pub keep: usize,
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
    /// The dataset's meta-paths (its manifest's `metapaths`).
    pub meta_paths: Vec<String>,
    /// One list of unobserved items per test user (HHFAN's pooled
    /// protocol), where the config asks for it.
    pub pooled_negatives: Option<EvalNegatives>,
    /// Every rated row and its label, under the labelled protocol
    /// (`positive_above`); `split` then holds each part's positives.
    pub labelled: Option<LabelledSplit>,
    /// Labelled validation rows (user, item, label).
    pub valid_rows: Vec<(u32, u32, bool)>,
    /// Labelled test rows: every test row, or the cold-start users' only.
    pub test_rows: Vec<(u32, u32, bool)>,
    /// The cold-start users, sorted (empty without `cold_start`).
    pub cold_users: Vec<u32>,
    /// The dataset's item kinds in id order (empty with one kind).
    pub item_kinds: Vec<ItemKind>,
}

impl Prepared {
    /// Splits `ds` as `cfg` says and samples the negatives.
    pub fn new(ds: &Dataset, cfg: &ExperimentConfig) -> Result<Self> {
        let data = match cfg.positive_above {
            Some(_) => ds.interactions.clone(),
            None => ds.implicit(),
        };
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
        // The labelled protocol keeps every rated row; the ranking
        // protocols and the baselines see each part's positives.
        let (labelled, cold_users) = match cfg.positive_above {
            Some(positive_above) => {
                let rule = LabelRule { positive_above };
                let ls = LabelledSplit::new(split.clone(), rule)
                    .with_context(|| format!("the labelled protocol on {}", ds.name))?;
                let (ls, cold) = match cfg.cold_start {
                    Some(c) => ls.cold_start(c.share, c.keep, cfg.data_seed.wrapping_add(5))?,
                    None => (ls, Vec::new()),
                };
                split = ls.positives();
                (Some(ls), cold)
            }
            None => (None, Vec::new()),
        };
        let (valid_rows, test_rows) = match &labelled {
            Some(ls) => {
                let test = ls.rule.labelled(&ls.rated.test);
                let test = if cfg.cold_start.is_some() {
                    test.into_iter()
                        .filter(|r| cold_users.binary_search(&r.0).is_ok())
                        .collect()
                } else {
                    test
                };
                (ls.rule.labelled(&ls.rated.valid), test)
            }
            None => (Vec::new(), Vec::new()),
        };
        let known = labelled.as_ref().map_or(&split, |ls| &ls.rated);
        let all = [&known.train, &known.valid, &known.test];
        let kinds: Vec<ItemKind> = item_kinds(ds);
        let (valid_rows, test_rows) = if cfg.labelled_negatives > 0 {
            let ranges: Vec<_> = kinds.iter().map(|k| k.items.clone()).collect();
            let draw = |part: &hinrec_data::Interactions, seed: u64, what: &str| {
                sampled_labels(part, &all, &ranges, cfg.labelled_negatives, seed)
                    .with_context(|| format!("sampling the labelled {what} negatives"))
            };
            (
                draw(&split.valid, cfg.data_seed.wrapping_add(6), "validation")?,
                draw(&split.test, cfg.data_seed.wrapping_add(7), "test")?,
            )
        } else {
            (valid_rows, test_rows)
        };
        let test_negatives = match (&cfg.split, &ds.given_negatives) {
            (None, Some(n)) => n.clone(),
            _ => EvalNegatives::sample(
                &split.test,
                &all,
                cfg.negatives,
                cfg.data_seed.wrapping_add(2),
            )
            .map_err(|e| e.with_names(ds))
            .context("sampling the test negatives")?,
        };
        let mut valid_negatives = EvalNegatives::sample(
            &split.valid,
            &all[..2],
            cfg.negatives,
            cfg.data_seed.wrapping_add(3),
        )
        .map_err(|e| e.with_names(ds))
        .context("sampling the validation negatives")?;
        if cfg.valid_users > 0 {
            valid_negatives = valid_negatives.subsample(cfg.valid_users, cfg.data_seed);
        }
        let pooled_negatives = if cfg.pooled_negatives > 0 {
            Some(
                EvalNegatives::sample_per_user(
                    &split.test,
                    &all,
                    cfg.pooled_negatives,
                    cfg.data_seed.wrapping_add(4),
                )
                .map_err(|e| e.with_names(ds))
                .context("sampling the pooled negatives")?,
            )
        } else {
            None
        };
        Ok(Prepared {
            dataset: ds.name.clone(),
            split_label: label,
            split,
            valid_negatives,
            test_negatives,
            meta_paths: ds.manifest.metapaths.clone(),
            pooled_negatives,
            labelled,
            valid_rows,
            test_rows,
            cold_users,
            item_kinds: kinds,
        })
    }

    /// Whether models validate and test on labelled rows (observed ratings
    /// or sampled negatives) rather than by ranking.
    pub fn is_labelled(&self) -> bool {
        self.labelled.is_some() || !self.valid_rows.is_empty() || !self.test_rows.is_empty()
    }

    /// The typed HIN of `ds` with this split's training interactions (never
    /// validation or test ones).
    pub fn hin(&self, ds: &Dataset) -> Hin {
        Hin::from_dataset(ds, &self.split.train)
    }

    /// Sampled protocol on the test pairs.
    pub fn evaluate_sampled<S: Scorer + ?Sized>(
        &self,
        model: &S,
        name: &str,
        seed: u64,
        ks: &[usize],
    ) -> Result<EvalReport> {
        let t = Instant::now();
        let metrics =
            sampled(model, &self.test_negatives, ks).map_err(anyhow::Error::from_boxed)?;
        Ok(self.report(name, "sampled", seed, ks, metrics, t))
    }

    /// Full ranking of the test items (training and validation excluded).
    pub fn evaluate_full<S: Scorer + ?Sized>(
        &self,
        model: &S,
        name: &str,
        seed: u64,
        ks: &[usize],
    ) -> Result<EvalReport> {
        let t = Instant::now();
        let s = &self.split;
        let metrics = full_ranking(model, &s.test, &[&s.train, &s.valid], ks)
            .map_err(anyhow::Error::from_boxed)?;
        Ok(self.report(name, "full", seed, ks, metrics, t))
    }

    /// HHFAN's pooled protocol: each test user's items ranked against its
    /// stored list (`pooled_negatives` in the config); Precision, Recall,
    /// NDCG at `ks` and the per-user AUC (eq. 12).
    pub fn evaluate_pooled<S: Scorer + ?Sized>(
        &self,
        model: &S,
        name: &str,
        seed: u64,
        ks: &[usize],
    ) -> Result<EvalReport> {
        let t = Instant::now();
        let Some(lists) = &self.pooled_negatives else {
            bail!("the pooled protocol needs pooled_negatives > 0 in the config (HHFAN: 1000)");
        };
        let metrics = hinrec_eval::pooled(model, &self.split.test, lists, ks)
            .map_err(anyhow::Error::from_boxed)?;
        Ok(self.report(name, "pooled", seed, ks, metrics, t))
    }

    /// Full ranking within the model's retrieval candidates (GLRS's
    /// probed clusters, Algorithm 1): items outside them never rank, a
    /// test item outside them is a miss. Adds `CandidateRecall` (the share
    /// of each user's test items among the candidates) and `Scanned` (the
    /// share of items scored per user), averaged over test users.
    pub fn evaluate_pruned(
        &self,
        model: &dyn hinrec_train::TrainedModel,
        name: &str,
        seed: u64,
        ks: &[usize],
    ) -> Result<EvalReport> {
        let t = Instant::now();
        let s = &self.split;
        if model.candidates(0).is_none() {
            bail!("{name} has no retrieval index: evaluate it with --protocol full");
        }
        let cands = |u: u32| model.candidates(u);
        let metrics =
            hinrec_eval::pruned_ranking(model, &cands, &s.test, &[&s.train, &s.valid], ks)
                .map_err(anyhow::Error::from_boxed)?;
        Ok(self.report(name, "pruned", seed, ks, metrics, t))
    }

    /// Per-user AUC over all unseen items (HHFAN eq. 12) and the global AUC
    /// over the stored labeled pairs (DURation), as `AUC` and `GAUC`.
    pub fn evaluate_auc<S: Scorer + ?Sized>(
        &self,
        model: &S,
        name: &str,
        seed: u64,
    ) -> Result<EvalReport> {
        let t = Instant::now();
        let s = &self.split;
        let mut metrics = full_ranking(model, &s.test, &[&s.train, &s.valid], &[])
            .map_err(anyhow::Error::from_boxed)?;
        let gauc = hinrec_eval::global_auc(model, &self.test_negatives)
            .map_err(anyhow::Error::from_boxed)?;
        metrics.values.insert("GAUC".into(), gauc);
        Ok(self.report(name, "auc", seed, &[], metrics, t))
    }

    /// DURation's labelled protocol: the ROC AUC of the test rows' labels
    /// (`AUC`), and per item kind (`AUC:book`).
    pub fn evaluate_labelled<S: Scorer + ?Sized>(
        &self,
        model: &S,
        name: &str,
        seed: u64,
    ) -> Result<EvalReport> {
        let t = Instant::now();
        if self.test_rows.is_empty() {
            bail!("no labelled test rows: the labelled protocol needs positive_above in the config (DURation: 3)");
        }
        let metrics = labelled_auc(model, &self.test_rows, &self.item_kinds)
            .map_err(anyhow::Error::from_boxed)?;
        Ok(self.report(name, "labelled", seed, &[], metrics, t))
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

/// The item kinds of `ds` in id order, or none where it has one.
pub fn item_kinds(ds: &Dataset) -> Vec<ItemKind> {
    if ds.item_entities.len() < 2 {
        return Vec::new();
    }
    ds.item_entities
        .iter()
        .enumerate()
        .map(|(k, &e)| ItemKind {
            name: ds.entities[e].name.clone(),
            items: ds.item_offsets[k]..ds.item_offsets[k + 1],
        })
        .collect()
}
