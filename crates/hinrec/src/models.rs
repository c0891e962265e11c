//! Training any registered model on prepared data: parameters from the
//! registry, config and command line; the validation, HIN and meta-paths
//! the model asks for; checks before any work.

use anyhow::Result;
use hinrec_data::EvalNegatives;
use hinrec_graph::Hin;
use hinrec_train::{AnyParams, CheckpointPolicy, FitContext, Fitted, Progress, TrainedModel};

use crate::experiment::{ExperimentConfig, Prepared};
use crate::registry::ModelEntry;

/// Parameters of `entry` for `cfg` (its table) and `sets` (`--set`
/// overrides), checked.
pub fn params(
    entry: &ModelEntry,
    cfg: &ExperimentConfig,
    sets: &toml::Table,
) -> Result<Box<dyn AnyParams>> {
    Ok(entry.params(cfg.models.get(entry.table), sets)?)
}

/// What a fit needs beside the parameters and the prepared data.
pub struct FitRun<'a> {
    /// The HIN, where the parameters need it ([`AnyParams::needs_hin`]).
    pub hin: Option<&'a Hin>,
    /// Seed of the model.
    pub seed: u64,
    /// Checkpoints.
    pub checkpoints: CheckpointPolicy,
    /// Progress.
    pub progress: &'a mut dyn Progress,
    /// Scored after every epoch, only reported ([`FitContext::audit`]).
    pub audit: Option<&'a EvalNegatives>,
}

/// Checks `params` against the data, then trains on `prepared` with early
/// stopping on the validation `cfg` asks for.
pub fn fit(
    params: &dyn AnyParams,
    prepared: &Prepared,
    cfg: &ExperimentConfig,
    run: FitRun<'_>,
) -> Result<Fitted<Box<dyn TrainedModel>>> {
    let mut ctx = FitContext {
        split: &prepared.split,
        validation: cfg.validation(prepared),
        hin: run.hin,
        meta_paths: &prepared.meta_paths,
        seed: run.seed,
        checkpoints: run.checkpoints,
        progress: run.progress,
        audit: run.audit,
        labelled: prepared.labelled.as_ref(),
        item_kinds: &prepared.item_kinds,
    };
    params.check_data(&ctx)?;
    Ok(params.fit(&mut ctx)?)
}

/// The parameters as a fit on `prepared` uses them (the dataset's
/// meta-paths filled in where the parameters name none).
pub fn resolved(params: &dyn AnyParams, prepared: &Prepared) -> Box<dyn AnyParams> {
    let mut silent = hinrec_train::Silent;
    let none = hinrec_train::Validation::none();
    let ctx = FitContext {
        meta_paths: &prepared.meta_paths,
        ..FitContext::new(&prepared.split, none, 0, &mut silent)
    };
    params.resolved(&ctx)
}

/// [`fit`] without checkpoints or progress.
pub fn fit_quiet(
    params: &dyn AnyParams,
    prepared: &Prepared,
    hin: Option<&Hin>,
    cfg: &ExperimentConfig,
    seed: u64,
) -> Result<Fitted<Box<dyn TrainedModel>>> {
    fit(
        params,
        prepared,
        cfg,
        FitRun {
            hin,
            seed,
            checkpoints: CheckpointPolicy::default(),
            progress: &mut hinrec_train::Silent,
            audit: None,
        },
    )
}
