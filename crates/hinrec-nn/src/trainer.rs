//! One training loop for every neural model: epochs, the epoch's seeded
//! random stream, batching, progress, early stopping on a validation
//! metric, the best epoch's weights kept, and checkpoints that resume
//! exactly.
//!
//! A model implements [`TrainStep`] (burn-train's shape): the examples of
//! one epoch drawn from the random stream [`train`] hands it, one
//! optimisation step on a batch of them, a validation score, and its whole
//! state (weights and optimizer moments) as named tensors. [`train`] seeds
//! each epoch's stream from the model's seed and the epoch number alone,
//! cuts the epoch into batches, writes `best.safetensors` whenever
//! validation improves and `last.safetensors` (state plus the loop's own
//! bookkeeping) after every epoch, both atomically; with `resume` it
//! continues from `last.safetensors` and reaches the same weights as an
//! uninterrupted run. No model writes its own epoch or batch loop.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use candle_core::{Device, Tensor};
use hinrec_train::{CheckpointPolicy, EpochTracker, FitSummary, Progress};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint;

/// What [`train`] drives.
pub trait TrainStep {
    /// The model's error; checkpoint errors arrive as candle errors.
    type Error: From<candle_core::Error>;
    /// One epoch's examples in training order (and whatever the model
    /// computes for all of them at once, such as labels).
    type Epoch;

    /// The seed of the epochs' random streams (the model's seed mixed with
    /// a constant of its own); epoch `e` draws from stream `e`.
    fn epoch_seed(&self) -> u64;

    /// Draws epoch `epoch`'s examples from `rng` (shuffled, with their
    /// sampled negatives).
    fn epoch(&mut self, epoch: usize, rng: &mut ChaCha8Rng) -> Result<Self::Epoch, Self::Error>;

    /// Number of examples in `data`.
    fn examples(&self, data: &Self::Epoch) -> usize;

    /// Examples per batch.
    fn batch_size(&self) -> usize;

    /// One optimisation step on the examples `batch` of `data`; returns
    /// the batch's loss.
    fn step(&mut self, data: &Self::Epoch, batch: Range<usize>) -> Result<f64, Self::Error>;

    /// The validation metric (higher is better), or `None` without
    /// validation data.
    fn validate(&mut self) -> Result<Option<f64>, Self::Error>;

    /// A snapshot of the weights and optimizer state: later training must
    /// not change the tensors it returns.
    fn state(&self) -> Result<HashMap<String, Tensor>, Self::Error>;

    /// Restores what [`TrainStep::state`] returned.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), Self::Error>;

    /// Training samples per epoch (for throughput).
    fn samples_per_epoch(&self) -> usize;
}

/// One epoch: its seeded stream, its examples, their batches; returns the
/// mean batch loss.
fn run_epoch<M: TrainStep>(
    model: &mut M,
    epoch: usize,
    progress: &mut dyn Progress,
) -> Result<f64, M::Error> {
    let mut rng = ChaCha8Rng::seed_from_u64(model.epoch_seed());
    rng.set_stream(epoch as u64);
    let data = model.epoch(epoch, &mut rng)?;
    let (n, b) = (model.examples(&data), model.batch_size().max(1));
    let total = n.div_ceil(b);
    let mut loss_sum = 0.0;
    for c in 0..total {
        loss_sum += model.step(&data, c * b..((c + 1) * b).min(n))?;
        progress.batch(c + 1, total);
    }
    Ok(loss_sum / total.max(1) as f64)
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
pub fn train<M: TrainStep>(
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
        let loss = run_epoch(model, epoch, progress)?;
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

    /// Gradient descent on `(w - target)^2` over batches of targets drawn
    /// around 3 from the epoch's stream; validation prefers `w` near 3.
    struct Toy {
        w: f64,
        m: f64,
    }

    impl TrainStep for Toy {
        type Error = candle_core::Error;
        type Epoch = Vec<f64>;

        fn epoch_seed(&self) -> u64 {
            7
        }

        fn epoch(&mut self, epoch: usize, rng: &mut ChaCha8Rng) -> candle_core::Result<Vec<f64>> {
            use rand::Rng;
            let shift = (epoch as f64 * 1.7).sin();
            Ok((0..10)
                .map(|_| 3.0 + shift + rng.random_range(-0.5..0.5))
                .collect())
        }

        fn examples(&self, data: &Vec<f64>) -> usize {
            data.len()
        }

        fn batch_size(&self) -> usize {
            3
        }

        fn step(&mut self, data: &Vec<f64>, batch: Range<usize>) -> candle_core::Result<f64> {
            let target = data[batch].iter().sum::<f64>() / 3.0;
            let g = 2.0 * (self.w - target);
            self.m = 0.5 * self.m + g;
            self.w -= 0.1 * self.m;
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
            10
        }
    }

    #[test]
    fn epochs_are_cut_into_batches_with_a_last_short_one() {
        let mut batches = Vec::new();
        let mut toy = Toy { w: 0.0, m: 0.0 };
        let mut progress = Callbacks(
            |d, t| batches.push((d, t)),
            |_: &hinrec_train::EpochReport| {},
        );
        run_epoch(&mut toy, 1, &mut progress).unwrap();
        assert_eq!(batches, vec![(1, 4), (2, 4), (3, 4), (4, 4)]);
        // The stream depends on the epoch alone.
        let (mut a, mut b) = (Toy { w: 0.0, m: 0.0 }, Toy { w: 0.0, m: 0.0 });
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        rng.set_stream(2);
        assert_eq!(a.epoch(2, &mut rng).unwrap(), {
            let mut r = ChaCha8Rng::seed_from_u64(7);
            r.set_stream(2);
            b.epoch(2, &mut r).unwrap()
        });
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
