//! Table 3's homogeneous ("Ho") setting as a baseline: one DURation per
//! item kind, each trained and early-stopped on its own kind's rows
//! alone, so no kind learns from another's interactions; an item is
//! scored by its kind's model. The paper prints no pooled AUC for this
//! setting: the parts' scores are not calibrated against each other, so
//! per-kind AUC is the figure to compare.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use candle_core::Tensor;
use hinrec_data::{EvalNegatives, LabelledSplit, Split};
use hinrec_eval::{check_len, check_pairs, ScoreError, Scorer};
use hinrec_nn::checkpoint;
use hinrec_train::{
    FitContext, FitSummary, Fitted, ModelError, ModelParams, Reason, TrainedModel, Validation,
    ValidationData,
};
use serde::{Deserialize, Serialize};

use crate::network::Duration;
use crate::params::{DurationConfig, DurationError, Result};

/// The parameters of every part (DURation's own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PerKindConfig(pub DurationConfig);

/// One DURation per item kind.
pub struct PerKind {
    parts: Vec<Duration>,
    ranges: Vec<Range<u32>>,
}

impl PerKind {
    /// Fits one part per item kind of `ctx` on that kind's labelled rows.
    pub fn fit(cfg: &DurationConfig, ctx: &mut FitContext<'_>) -> Result<(Self, FitSummary)> {
        let ranges: Vec<Range<u32>> = if ctx.item_kinds.is_empty() {
            std::iter::once(0..ctx.split.train.n_items() as u32).collect()
        } else {
            ctx.item_kinds.iter().map(|k| k.items.clone()).collect()
        };
        let mut parts = Vec::new();
        let mut summary = FitSummary {
            epochs: 0,
            best_epoch: 0,
            best_valid: None,
            train_s: 0.0,
            time_to_best_s: 0.0,
            total_s: 0.0,
            samples_per_s: 0.0,
            audit: Vec::new(),
        };
        for (p, range) in ranges.iter().enumerate() {
            let keep = |i: u32| range.contains(&i);
            let only = |s: &Split| Split {
                train: s.train.filter(|r| keep(r.item)),
                valid: s.valid.filter(|r| keep(r.item)),
                test: s.test.filter(|r| keep(r.item)),
            };
            let part_ls = ctx.labelled.map(|ls| LabelledSplit {
                rated: only(&ls.rated),
                rule: ls.rule,
            });
            let positives = only(ctx.split);
            // The validation of this kind's items alone.
            let rows: Vec<(u32, u32, bool)> = match ctx.validation.data {
                ValidationData::Labelled(all) => {
                    all.iter().copied().filter(|r| keep(r.1)).collect()
                }
                _ => Vec::new(),
            };
            let mut negatives = EvalNegatives::default();
            if let ValidationData::Sampled(all) = ctx.validation.data {
                for (pair, negs) in all.pairs.iter().zip(&all.negatives) {
                    if keep(pair.1) {
                        negatives.pairs.push(*pair);
                        negatives.negatives.push(negs.clone());
                    }
                }
            }
            let data = match ctx.validation.data {
                ValidationData::None => ValidationData::None,
                ValidationData::Labelled(_) => ValidationData::Labelled(&rows),
                ValidationData::Sampled(_) => ValidationData::Sampled(&negatives),
                ValidationData::Full { train, .. } => ValidationData::Full {
                    valid: &positives.valid,
                    train,
                },
            };
            let mut checkpoints = ctx.checkpoints.clone();
            checkpoints.dir = checkpoints.dir.map(|d| d.join(format!("kind-{p}")));
            let mut part_ctx = FitContext {
                labelled: part_ls.as_ref(),
                item_kinds: ctx.item_kinds,
                hin: ctx.hin,
                meta_paths: ctx.meta_paths,
                checkpoints,
                ..FitContext::new(
                    &positives,
                    Validation {
                        data,
                        metric: ctx.validation.metric.clone(),
                    },
                    ctx.seed.wrapping_add(p as u64),
                    &mut *ctx.progress,
                )
            };
            let (model, s) = Duration::fit(cfg, &mut part_ctx)?;
            summary.epochs += s.epochs;
            summary.best_epoch = summary.best_epoch.max(s.best_epoch);
            summary.train_s += s.train_s;
            summary.time_to_best_s += s.time_to_best_s;
            summary.total_s += s.total_s;
            summary.samples_per_s += s.samples_per_s / ranges.len() as f64;
            parts.push(model);
        }
        let model = PerKind { parts, ranges };
        summary.best_valid = ctx.validation.score(&model).map_err(DurationError::Score)?;
        Ok((model, summary))
    }

    /// The part scoring `item`.
    fn part_of(&self, item: u32) -> usize {
        self.ranges
            .iter()
            .position(|r| r.contains(&item))
            .unwrap_or(0)
    }

    /// Its parts, one per kind.
    pub fn parts(&self) -> &[Duration] {
        &self.parts
    }
}

impl Scorer for PerKind {
    fn n_items(&self) -> usize {
        self.parts.first().map_or(0, Scorer::n_items)
    }

    fn score_pairs(
        &self,
        pairs: &[(u32, u32)],
        out: &mut [f32],
    ) -> std::result::Result<(), ScoreError> {
        let n_users = self.parts.first().map_or(0, Duration::n_users);
        check_pairs(pairs, out, n_users, self.n_items())?;
        for (p, part) in self.parts.iter().enumerate() {
            let at: Vec<usize> = (0..pairs.len())
                .filter(|&k| self.part_of(pairs[k].1) == p)
                .collect();
            let mine: Vec<(u32, u32)> = at.iter().map(|&k| pairs[k]).collect();
            let mut scores = vec![0f32; mine.len()];
            part.score_pairs(&mine, &mut scores)?;
            for (k, s) in at.into_iter().zip(scores) {
                out[k] = s;
            }
        }
        Ok(())
    }

    fn score_users(&self, users: &[u32], out: &mut [f32]) -> std::result::Result<(), ScoreError> {
        let n = self.n_items();
        check_len("score_users", out.len(), users.len() * n)?;
        let mut buf = vec![0f32; out.len()];
        for (part, range) in self.parts.iter().zip(&self.ranges) {
            part.score_users(users, &mut buf)?;
            let r = range.start as usize..range.end as usize;
            for (o, b) in out.chunks_mut(n).zip(buf.chunks(n)) {
                o[r.clone()].copy_from_slice(&b[r.clone()]);
            }
        }
        Ok(())
    }
}

impl TrainedModel for PerKind {
    fn save(&self, path: &Path) -> std::result::Result<(), ModelError> {
        let mut all: HashMap<String, Tensor> = HashMap::new();
        for (p, part) in self.parts.iter().enumerate() {
            for (k, v) in part.saved()? {
                all.insert(format!("part.{p}.{k}"), v);
            }
        }
        checkpoint::save_model(path, &all)
    }

    /// The explanation of the part that scores the item.
    fn explain(&self, user: u32, item: u32) -> std::result::Result<Vec<Reason>, ModelError> {
        match self.parts.get(self.part_of(item)) {
            Some(part) => part.explain(user, item),
            None => Ok(Vec::new()),
        }
    }
}

impl ModelParams for PerKindConfig {
    type Model = PerKind;

    fn check(&self) -> Result<(), ModelError> {
        Ok(self.0.check()?)
    }

    fn needs_hin(&self) -> bool {
        true
    }

    fn max_epochs(&self) -> usize {
        self.0.epochs
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<PerKind>, ModelError> {
        let (model, summary) = PerKind::fit(&self.0, ctx)?;
        Ok(Fitted {
            model,
            summary: Some(summary),
        })
    }

    fn load(&self, path: &Path) -> Result<PerKind, ModelError> {
        checkpoint::load_model(path, |state| -> Result<PerKind> {
            let mut parts = Vec::new();
            loop {
                let prefix = format!("part.{}.", parts.len());
                let mine: HashMap<String, Tensor> = state
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix(&prefix).map(|s| (s.to_string(), v.clone()))
                    })
                    .collect();
                if mine.is_empty() {
                    break;
                }
                parts.push(Duration::from_state(&self.0, &mine)?);
            }
            if parts.is_empty() {
                return Err(DurationError::Data("the saved model has no part.0".into()));
            }
            let ranges = parts[0].kinds().iter().map(|k| k.items.clone()).collect();
            Ok(PerKind { parts, ranges })
        })
    }
}
