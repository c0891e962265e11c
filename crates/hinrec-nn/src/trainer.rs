//! One epoch loop for every neural model: early stopping on a validation
//! metric, the best epoch's weights kept, and checkpoints that resume
//! exactly.
//!
//! A model implements [`EpochModel`]: one epoch of mini-batches whose random
//! choices depend only on the seed and the epoch number, a validation score,
//! and its whole state (weights and optimizer moments) as named tensors.
//! [`train`] then writes `last.safetensors` (state plus the loop's own
//! bookkeeping) after every epoch and `best.safetensors` whenever validation
//! improves, both atomically; with `resume` it continues from
//! `last.safetensors` and reaches the same weights as an uninterrupted run.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use hinrec_train::{CheckpointPolicy, EpochTracker, FitSummary, Progress};

use crate::checkpoint;

/// What [`train`] drives.
pub trait EpochModel {
    /// The model's error; checkpoint errors arrive as candle errors.
    type Error: From<candle_core::Error>;

    /// Trains epoch `epoch` (1-based). Its shuffling and sampling must be
    /// seeded by the model's seed and `epoch` alone, so a resumed run
    /// repeats them. Reports each batch to `progress` and returns the mean
    /// loss.
    fn train_epoch(
        &mut self,
        epoch: usize,
        progress: &mut dyn Progress,
    ) -> Result<f64, Self::Error>;

    /// The validation metric (higher is better), or `None` without
    /// validation data.
    fn validate(&mut self) -> Result<Option<f64>, Self::Error>;

    /// A snapshot of the weights and optimizer state: later training must
    /// not change the tensors it returns.
    fn state(&self) -> Result<HashMap<String, Tensor>, Self::Error>;

    /// Restores what [`EpochModel::state`] returned.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), Self::Error>;

    /// Training samples per epoch (for throughput).
    fn samples_per_epoch(&self) -> usize;
}

/// How long to train and where checkpoints go.
#[derive(Debug, Clone, Default)]
pub struct TrainerConfig {
    /// Maximum epochs.
    pub epochs: usize,
    /// Epochs without validation improvement before stopping.
    pub patience: usize,
    /// Folder for `last.safetensors` and `best.safetensors` (none keeps
    /// the best state in memory only), and whether to continue from
    /// `last.safetensors` there.
    pub checkpoints: CheckpointPolicy,
}

/// Key of the loop's bookkeeping inside a checkpoint.
const TRACKER_KEY: &str = "trainer.tracker";

/// Trains `model` until the epoch limit or early stop, leaves it with the
/// best epoch's state and returns the summary; batches and epochs are
/// reported to `progress`.
pub fn train<M: EpochModel>(
    model: &mut M,
    cfg: &TrainerConfig,
    progress: &mut dyn Progress,
) -> Result<FitSummary, M::Error> {
    let dir = cfg.checkpoints.dir.as_ref();
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(candle_core::Error::from)?;
    }
    let last = dir.map(|d| d.join("last.safetensors"));
    let best_path = dir.map(|d| d.join("best.safetensors"));
    let mut tracker = EpochTracker::new(cfg.patience, model.samples_per_epoch());
    let mut best: Option<HashMap<String, Tensor>> = None;
    if let (true, Some(last)) = (cfg.checkpoints.resume, &last) {
        if last.exists() {
            let mut state = checkpoint::load(last)?;
            let t = state
                .remove(TRACKER_KEY)
                .ok_or_else(|| {
                    candle_core::Error::Msg(format!("{} lacks {TRACKER_KEY}", last.display()))
                })?
                .to_vec1::<f64>()?;
            let t: [f64; 7] = t.try_into().map_err(|_| {
                candle_core::Error::Msg(format!("{}: bad {TRACKER_KEY}", last.display()))
            })?;
            model.load_state(&state)?;
            tracker = EpochTracker::resume(cfg.patience, model.samples_per_epoch(), t);
            if let Some(p) = best_path.as_ref().filter(|p| p.exists()) {
                best = Some(checkpoint::load(p)?);
            }
        }
    }
    while tracker.epochs() < cfg.epochs && !tracker.should_stop() {
        let epoch = tracker.epochs() + 1;
        let t = Instant::now();
        let loss = model.train_epoch(epoch, progress)?;
        let train_s = t.elapsed().as_secs_f64();
        let valid = model.validate()?;
        let (report, keep) = tracker.record(epoch, loss, train_s, valid);
        if keep || last.is_some() {
            let state = model.state()?;
            // `best` before `last`: a crash between the two leaves a `last`
            // whose best epoch is on disk; the newer `best` is written
            // again, identically, when the resumed run repeats the epoch.
            if keep {
                if let Some(p) = &best_path {
                    checkpoint::save(p, &state)?;
                }
            }
            if let Some(p) = &last {
                let mut with_tracker = state.clone();
                with_tracker.insert(
                    TRACKER_KEY.into(),
                    Tensor::new(&tracker.state(), &Device::Cpu)?,
                );
                checkpoint::save(p, &with_tracker)?;
            }
            if keep {
                best = Some(state);
            }
        }
        progress.epoch(&report);
    }
    if let Some(b) = &best {
        model.load_state(b)?;
    }
    Ok(tracker.summary())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hinrec_train::{Callbacks, Silent};

    /// Gradient descent on `(w - target_e)^2` where the target of epoch `e`
    /// is a deterministic function of `e`; validation prefers `w` near 3.
    struct Toy {
        w: f64,
        m: f64,
    }

    impl EpochModel for Toy {
        type Error = candle_core::Error;

        fn train_epoch(
            &mut self,
            epoch: usize,
            progress: &mut dyn Progress,
        ) -> candle_core::Result<f64> {
            let target = 3.0 + (epoch as f64 * 1.7).sin();
            for b in 0..4 {
                let g = 2.0 * (self.w - target);
                self.m = 0.5 * self.m + g;
                self.w -= 0.1 * self.m;
                progress.batch(b + 1, 4);
            }
            Ok((self.w - target).powi(2))
        }

        fn validate(&mut self) -> candle_core::Result<Option<f64>> {
            Ok(Some(-(self.w - 3.0).abs()))
        }

        fn state(&self) -> candle_core::Result<HashMap<String, Tensor>> {
            Ok(HashMap::from([(
                "w".to_string(),
                Tensor::new(&[self.w, self.m], &Device::Cpu)?,
            )]))
        }

        fn load_state(&mut self, s: &HashMap<String, Tensor>) -> candle_core::Result<()> {
            let v = s["w"].to_vec1::<f64>()?;
            (self.w, self.m) = (v[0], v[1]);
            Ok(())
        }

        fn samples_per_epoch(&self) -> usize {
            4
        }
    }

    #[test]
    fn resumed_run_matches_an_uninterrupted_one() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |epochs, resume| TrainerConfig {
            epochs,
            patience: 100,
            checkpoints: CheckpointPolicy {
                dir: Some(dir.path().to_path_buf()),
                resume,
            },
        };
        let mut whole = Toy { w: 0.0, m: 0.0 };
        let s_whole = train(
            &mut whole,
            &TrainerConfig {
                checkpoints: CheckpointPolicy::default(),
                ..cfg(6, false)
            },
            &mut Silent,
        )
        .unwrap();
        let mut first = Toy { w: 0.0, m: 0.0 };
        train(&mut first, &cfg(3, false), &mut Silent).unwrap();
        let mut resumed = Toy { w: 99.0, m: 99.0 };
        let mut epochs_run = Vec::new();
        let mut progress = Callbacks(
            |_, _| {},
            |r: &hinrec_train::EpochReport| epochs_run.push(r.epoch),
        );
        let s_resumed = train(&mut resumed, &cfg(6, true), &mut progress).unwrap();
        assert_eq!(epochs_run, vec![4, 5, 6], "resume starts after epoch 3");
        assert_eq!((resumed.w, resumed.m), (whole.w, whole.m));
        assert_eq!(s_resumed.best_epoch, s_whole.best_epoch);
        assert_eq!(s_resumed.best_valid, s_whole.best_valid);
    }

    #[test]
    fn early_stop_keeps_the_best_epoch() {
        let mut toy = Toy { w: 0.0, m: 0.0 };
        let mut valids = Vec::new();
        let s = train(
            &mut toy,
            &TrainerConfig {
                epochs: 30,
                patience: 2,
                ..TrainerConfig::default()
            },
            &mut Callbacks(
                |_, _| {},
                |r: &hinrec_train::EpochReport| valids.push(r.valid.unwrap()),
            ),
        )
        .unwrap();
        assert!(s.epochs < 30, "patience 2 stops early");
        let best = valids.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(s.best_valid, Some(best));
        assert_eq!(-(toy.w - 3.0).abs(), best, "the best state is restored");
    }
}
