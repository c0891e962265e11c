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
//! cuts the epoch into batches, and after every epoch writes one checkpoint
//! folder `epoch-N` holding `last.safetensors` (state plus the loop's own
//! bookkeeping), `best.safetensors` (the best epoch's state so far) and
//! `run.toml` (the run's tag): the folder is written under a temporary
//! name and renamed, so last and best move together; older folders are
//! removed after. With `resume` it continues from the newest complete
//! folder whose tag matches and reaches the same weights as an
//! uninterrupted run. No model writes its own epoch or batch loop.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
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

    /// The mean of each named term of the loss over the epoch just run,
    /// and a fresh start for the next (none by default).
    fn take_terms(&mut self) -> Vec<(String, f64)> {
        Vec::new()
    }
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
    /// Folder for the `epoch-N` checkpoint folders (none keeps the best
    /// state in memory only), whether to continue from the newest, and the
    /// run's tag.
    pub checkpoints: CheckpointPolicy,
}

/// The checkpoint folder of epoch `e`.
fn epoch_dir(dir: &Path, e: usize) -> PathBuf {
    dir.join(format!("epoch-{e:05}"))
}

/// The complete checkpoint folders in `dir`, newest first.
fn checkpoints_in(dir: &Path) -> std::io::Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let e = name
            .to_str()
            .and_then(|n| n.strip_prefix("epoch-"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(e) = e {
            out.push((e, entry.path()));
        }
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok(out)
}

/// Writes epoch `e`'s checkpoint folder: `last` and `best` (a hard link
/// to the previous folder's when the best did not change) and the tag,
/// under a temporary name renamed into place; then removes older folders
/// and any leftover temporary one.
fn write_checkpoint(
    dir: &Path,
    e: usize,
    last: &HashMap<String, Tensor>,
    best: Option<&HashMap<String, Tensor>>,
    tag: &str,
) -> candle_core::Result<()> {
    let io = |what: &str, p: &Path, err: std::io::Error| {
        candle_core::Error::Msg(format!("{what} {}: {err}", p.display()))
    };
    let tmp = dir.join(format!("epoch-{e:05}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|x| io("removing", &tmp, x))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|x| io("creating", &tmp, x))?;
    checkpoint::save(&tmp.join(LAST), last)?;
    let previous = checkpoints_in(dir)
        .map_err(|x| io("reading", dir, x))?
        .into_iter()
        .find(|(p, _)| *p < e);
    match (best, &previous) {
        (Some(b), _) => checkpoint::save(&tmp.join(BEST), b)?,
        (None, Some((_, prev))) if prev.join(BEST).exists() => {
            let (from, to) = (prev.join(BEST), tmp.join(BEST));
            if std::fs::hard_link(&from, &to).is_err() {
                std::fs::copy(&from, &to).map_err(|x| io("copying", &from, x))?;
            }
        }
        (None, _) => {}
    }
    let run = tmp.join(RUN);
    std::fs::write(&run, tag).map_err(|x| io("writing", &run, x))?;
    let target = epoch_dir(dir, e);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|x| io("removing", &target, x))?;
    }
    std::fs::rename(&tmp, &target).map_err(|x| io("renaming", &tmp, x))?;
    for (old, path) in checkpoints_in(dir).map_err(|x| io("reading", dir, x))? {
        if old != e {
            std::fs::remove_dir_all(&path).map_err(|x| io("removing", &path, x))?;
        }
    }
    Ok(())
}

/// The newest checkpoint in `dir`: its last state (tracker removed), the
/// tracker, and its best state; an error when its tag is not `tag`.
type Resumed = (
    HashMap<String, Tensor>,
    [f64; 7],
    Option<HashMap<String, Tensor>>,
);

fn read_checkpoint(dir: &Path, tag: &str) -> candle_core::Result<Option<Resumed>> {
    let found = checkpoints_in(dir)
        .map_err(|x| candle_core::Error::Msg(format!("reading {}: {x}", dir.display())))?;
    let Some((_, newest)) = found.into_iter().next() else {
        return Ok(None);
    };
    let run = newest.join(RUN);
    let saved = std::fs::read_to_string(&run).unwrap_or_default();
    if saved != tag {
        return Err(candle_core::Error::Msg(format!(
            "{} was written by a run with other settings (model, data, seed or parameters): \
             resume with the settings it was started with, or start over without resuming",
            run.display()
        )));
    }
    let last_path = newest.join(LAST);
    let mut state = checkpoint::load(&last_path)?;
    let t = state
        .remove(TRACKER_KEY)
        .ok_or_else(|| {
            candle_core::Error::Msg(format!("{} lacks {TRACKER_KEY}", last_path.display()))
        })?
        .to_vec1::<f64>()?;
    let t: [f64; 7] = t.try_into().map_err(|_| {
        candle_core::Error::Msg(format!("{}: bad {TRACKER_KEY}", last_path.display()))
    })?;
    let best_path = newest.join(BEST);
    let best = if best_path.exists() {
        Some(checkpoint::load(&best_path)?)
    } else {
        None
    };
    Ok(Some((state, t, best)))
}

const LAST: &str = "last.safetensors";
const BEST: &str = "best.safetensors";
const RUN: &str = "run.toml";

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
    let tag = &cfg.checkpoints.tag;
    let mut tracker = EpochTracker::new(cfg.patience, model.samples_per_epoch());
    let mut best: Option<HashMap<String, Tensor>> = None;
    if let (true, Some(d)) = (cfg.checkpoints.resume, dir) {
        if let Some((state, t, b)) = read_checkpoint(d, tag)? {
            model.load_state(&state)?;
            tracker = EpochTracker::resume(cfg.patience, model.samples_per_epoch(), t);
            best = b;
        }
    }
    while tracker.epochs() < cfg.epochs && !tracker.should_stop() {
        let epoch = tracker.epochs() + 1;
        let t = Instant::now();
        let loss = run_epoch(model, epoch, progress)?;
        let train_s = t.elapsed().as_secs_f64();
        let valid = model.validate()?;
        let (mut report, keep) = tracker.record(epoch, loss, train_s, valid);
        report.terms = model.take_terms();
        if keep || dir.is_some() {
            let state = model.state()?;
            if let Some(d) = dir {
                let mut with_tracker = state.clone();
                with_tracker.insert(
                    TRACKER_KEY.into(),
                    Tensor::new(&tracker.state(), &Device::Cpu)?,
                );
                write_checkpoint(d, epoch, &with_tracker, keep.then_some(&state), tag)?;
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
                tag: "toy".into(),
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
    fn one_complete_checkpoint_folder_with_last_best_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |tag: &str, resume| TrainerConfig {
            epochs: 4,
            patience: 100,
            checkpoints: CheckpointPolicy {
                dir: Some(dir.path().to_path_buf()),
                resume,
                tag: tag.into(),
            },
        };
        let mut toy = Toy { w: 0.0, m: 0.0 };
        train(&mut toy, &cfg("a", false), &mut Silent).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["epoch-00004"], "older folders are removed");
        let newest = dir.path().join("epoch-00004");
        for f in [LAST, BEST, RUN] {
            assert!(newest.join(f).is_file(), "{f} missing");
        }
        // A resume with another tag (other parameters) is refused.
        let mut other = Toy { w: 0.0, m: 0.0 };
        let e = train(&mut other, &cfg("b", true), &mut Silent).unwrap_err();
        assert!(e.to_string().contains("other settings"), "{e}");
        // A leftover temporary folder of a crashed write is ignored.
        std::fs::create_dir(dir.path().join("epoch-00005.tmp")).unwrap();
        let mut again = Toy { w: 0.0, m: 0.0 };
        train(&mut again, &cfg("a", true), &mut Silent).unwrap();
        assert_eq!((again.w, again.m), (toy.w, toy.m));
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
