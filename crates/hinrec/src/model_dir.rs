//! A trained model on disk: weights (safetensors), the run's config, what
//! it was trained on, the split and negatives it used (original ids), and
//! a checksum of every file, so evaluation and recommendation re-create
//! exactly what training saw or refuse with an error that says what
//! differs.
//!
//! The directory is written whole beside its target and then swapped in
//! (one `renameat2(RENAME_EXCHANGE)` on Linux), under a lock, so at every
//! moment the target is either the previous complete directory or the new
//! one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hinrec_data::{Against, DataFingerprint, Dataset, EvalNegatives, Interactions, Split};
use serde::{Deserialize, Serialize};

use hinrec_train::{FitSummary, TrainedModel};

use crate::experiment::{ExperimentConfig, Prepared};
use crate::registry::{self, ModelEntry};

/// What `config.toml` in a model directory holds: what was asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInfo {
    /// The registry name of the model.
    pub model: String,
    /// Model seed.
    pub seed: u64,
    /// How the dataset was named (`lgrec-ml100k`, a path, `synthetic`).
    pub data: String,
    /// Data root used to resolve a shipped name.
    pub data_root: Option<PathBuf>,
    /// Dataset name.
    pub dataset: String,
    /// Split label.
    pub split: String,
    /// The protocol's configuration.
    pub config: ExperimentConfig,
    /// Every parameter of the model as trained.
    pub params: toml::Table,
}

/// What `provenance.toml` holds: what the model was trained on and what
/// its weights file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The dataset: counts, hashes of the files read and of the content.
    pub trained_on: DataFingerprint,
    /// Every tensor of `model.safetensors`: dtype and shape.
    pub tensors: BTreeMap<String, TensorInfo>,
}

/// A tensor's dtype and shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorInfo {
    /// `F32`, `U32`, ...
    pub dtype: String,
    /// Dimensions.
    pub shape: Vec<usize>,
}

/// What `train.json` holds: how training ended, the same bytes for the
/// same run (wall-clock figures go to `timing.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOutcome {
    /// Epochs run.
    pub epochs: usize,
    /// Epoch whose parameters were kept.
    pub best_epoch: usize,
    /// Its validation metric.
    pub best_valid: Option<f64>,
}

const WEIGHTS: &str = "model.safetensors";
const CONFIG: &str = "config.toml";
const PROVENANCE: &str = "provenance.toml";
const SUMS: &str = "SHA256SUMS";
const TRAIN: &str = "train.json";
/// Not in SHA256SUMS: it differs between two runs of the same training.
const TIMING: &str = "timing.json";

/// The hidden names beside `dir` that writing it uses.
struct Beside {
    parent: PathBuf,
    name: String,
}

impl Beside {
    fn of(dir: &Path) -> Result<Self> {
        let name = dir
            .file_name()
            .with_context(|| format!("--out {} has no folder name", dir.display()))?
            .to_string_lossy()
            .to_string();
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Beside { parent, name })
    }

    fn path(&self, what: &str) -> PathBuf {
        self.parent.join(format!(".{}.{what}", self.name))
    }

    /// Folders a crashed write left: `.NAME.new-PID` and `.NAME.old-PID`.
    fn leftovers(&self, kind: &str) -> Vec<PathBuf> {
        let prefix = format!(".{}.{kind}-", self.name);
        let Ok(rd) = std::fs::read_dir(&self.parent) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }
}

/// The lock a `train` holds on its `--out` from the first check to the
/// last rename; dropped, it is released (and the kernel releases it when
/// the process dies).
pub struct OutLock {
    _file: File,
}

/// Takes the lock on `dir` (a file `.NAME.lock` beside it), or fails
/// naming the run that holds it. Under the lock, leftovers of a crashed
/// write are cleaned: a `.NAME.new-*` folder is removed, and a
/// `.NAME.old-*` folder (a previous directory moved aside by a write that
/// died before the swap) is renamed back when `dir` is missing.
pub fn lock(dir: &Path) -> Result<OutLock> {
    let b = Beside::of(dir)?;
    std::fs::create_dir_all(&b.parent)
        .with_context(|| format!("--out {}: creating {}", dir.display(), b.parent.display()))?;
    let path = b.path("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| {
            format!(
                "--out {}: creating the lock {}",
                dir.display(),
                path.display()
            )
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "--out {}: another hinrec train is writing it (it holds {}); wait for it or pick another --out",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    for stale in b.leftovers("new") {
        std::fs::remove_dir_all(&stale)
            .with_context(|| format!("removing the unfinished {}", stale.display()))?;
    }
    for old in b.leftovers("old") {
        if !dir.exists() {
            std::fs::rename(&old, dir)
                .with_context(|| format!("restoring {} to {}", old.display(), dir.display()))?;
            eprintln!(
                "restored {} from {} (a write was interrupted while replacing it)",
                dir.display(),
                old.display()
            );
        } else {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
    }
    Ok(OutLock { _file: file })
}

/// Fails unless `dir` can become a model directory: absent, an empty
/// folder, or (with `force`) a folder to replace; its parent is created
/// and must be writable. Run before training, so a long fit never ends in
/// an unwritable path.
pub fn check_target(dir: &Path, force: bool) -> Result<()> {
    let b = Beside::of(dir)?;
    std::fs::create_dir_all(&b.parent)
        .with_context(|| format!("--out {}: creating {}", dir.display(), b.parent.display()))?;
    if dir.exists() {
        if !dir.is_dir() {
            bail!("--out {} is a file, not a folder", dir.display());
        }
        let non_empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some();
        if non_empty && !force {
            bail!(
                "--out {} is not empty: pass --force to replace it (the old directory stays until the new one is complete)",
                dir.display()
            );
        }
    }
    crate::paths::check_writable(&b.parent).with_context(|| format!("--out {}", dir.display()))
}

/// Writes a model directory: everything goes into a folder beside `dir`,
/// which then replaces `dir` in one step, so `dir` is at every moment
/// either the old complete directory or the new one. The caller holds
/// [`lock`] on `dir`.
pub fn save(
    dir: &Path,
    info: &RunInfo,
    model: &dyn TrainedModel,
    ds: &Dataset,
    prepared: &Prepared,
    summary: Option<&FitSummary>,
) -> Result<()> {
    let b = Beside::of(dir)?;
    let tmp = b.path(&format!("new-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    write_dir(&tmp, info, model, ds, prepared, summary)?;
    replace(&tmp, dir, &b)
}

/// Puts the complete folder `new` at `dir`: a plain rename when `dir` does
/// not exist; else an atomic exchange (Linux), or on other systems `dir`
/// moved aside, `new` renamed in, the old one removed ([`lock`] restores
/// it if a crash falls between the two renames).
fn replace(new: &Path, dir: &Path, b: &Beside) -> Result<()> {
    if !dir.exists() {
        return std::fs::rename(new, dir)
            .with_context(|| format!("renaming {} to {}", new.display(), dir.display()));
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        if renameat_with(CWD, new, CWD, dir, RenameFlags::EXCHANGE).is_ok() {
            // `new` now holds the previous directory.
            return std::fs::remove_dir_all(new)
                .with_context(|| format!("removing the previous directory at {}", new.display()));
        }
    }
    let old = b.path(&format!("old-{}", std::process::id()));
    std::fs::rename(dir, &old).with_context(|| format!("moving {} aside", dir.display()))?;
    std::fs::rename(new, dir).with_context(|| format!("renaming into {}", dir.display()))?;
    std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn write_dir(
    dir: &Path,
    info: &RunInfo,
    model: &dyn TrainedModel,
    ds: &Dataset,
    prepared: &Prepared,
    summary: Option<&FitSummary>,
) -> Result<()> {
    let split_dir = dir.join("split");
    std::fs::create_dir_all(&split_dir)
        .with_context(|| format!("creating {}", split_dir.display()))?;
    let weights = dir.join(WEIGHTS);
    model.save(&weights)?;
    let provenance = Provenance {
        trained_on: DataFingerprint::of(ds),
        tensors: tensors_of(&weights)?,
    };
    write_file(&dir.join(CONFIG), toml::to_string_pretty(info)?.as_bytes())?;
    write_file(
        &dir.join(PROVENANCE),
        toml::to_string_pretty(&provenance)?.as_bytes(),
    )?;
    let s = &prepared.split;
    for (name, part) in [
        ("train.tsv", &s.train),
        ("valid.tsv", &s.valid),
        ("test.tsv", &s.test),
    ] {
        let mut body = String::new();
        for (u, i) in part.pairs() {
            let _ = writeln!(body, "{}\t{}", ds.users().original(u), ds.item_original(i));
        }
        write_file(&split_dir.join(name), body.as_bytes())?;
    }
    prepared
        .test_negatives
        .write(&split_dir.join("test.negative"), ds)?;
    prepared
        .valid_negatives
        .write(&split_dir.join("valid.negative"), ds)?;
    if let Some(p) = &prepared.pooled_negatives {
        p.write(&split_dir.join(POOLED), ds)?;
    }
    if !prepared.test_rows.is_empty() {
        let mut body = String::new();
        for &(u, i, l) in &prepared.test_rows {
            let _ = writeln!(
                body,
                "{}\t{}\t{}",
                ds.users().original(u),
                ds.item_original(i),
                u8::from(l)
            );
        }
        write_file(&split_dir.join(LABELLED), body.as_bytes())?;
    }
    if let Some(s) = summary {
        let outcome = TrainOutcome {
            epochs: s.epochs,
            best_epoch: s.best_epoch,
            best_valid: s.best_valid,
        };
        write_file(
            &dir.join(TRAIN),
            serde_json::to_string_pretty(&outcome)?.as_bytes(),
        )?;
        write_file(
            &dir.join(TIMING),
            serde_json::to_string_pretty(s)?.as_bytes(),
        )?;
    }
    write_sums(dir)
}

/// The dtype and shape of every tensor in a safetensors file, as
/// provenance.toml records them.
pub fn tensors_of(path: &Path) -> Result<BTreeMap<String, TensorInfo>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let info = TensorInfo {
                dtype: format!("{:?}", view.dtype()),
                shape: view.shape().to_vec(),
            };
            (name, info)
        })
        .collect())
}

/// Every file under `dir`, relative, `/`-separated, sorted.
pub fn files(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, sub: &Path, out: &mut Vec<String>) -> Result<()> {
        let here = root.join(sub);
        for e in std::fs::read_dir(&here).with_context(|| format!("reading {}", here.display()))? {
            let e = e?;
            let rel = sub.join(e.file_name());
            if e.file_type()?.is_dir() {
                walk(root, &rel, out)?;
            } else {
                let s = rel
                    .to_str()
                    .with_context(|| format!("{}: a file name that is not UTF-8", rel.display()))?
                    .replace('\\', "/");
                out.push(s);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out)?;
    out.sort();
    Ok(out)
}

/// The files SHA256SUMS covers: all but itself and timing.json.
fn files_to_sum(dir: &Path) -> Result<Vec<String>> {
    let mut out = files(dir)?;
    out.retain(|f| f != SUMS && f != TIMING);
    Ok(out)
}

/// Writes SHA256SUMS (`sha256sum -c` reads it) over every file but itself
/// and timing.json: the last step of [`save`]; tests and fuzzers call it
/// after editing a directory, to reach the checks behind the checksums.
pub fn write_sums(dir: &Path) -> Result<()> {
    let mut body = String::new();
    for f in files_to_sum(dir)? {
        let (_, d) = hinrec_data::text::read_file(&dir.join(&f))?;
        let _ = writeln!(body, "{}  {f}", d.sha256);
    }
    write_file(&dir.join(SUMS), body.as_bytes())
}

/// Checks every file of `dir` against SHA256SUMS: a changed, missing or
/// extra file is an error that names it.
fn verify_sums(dir: &Path) -> Result<()> {
    let path = dir.join(SUMS);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{}: no readable {SUMS} (not a complete model directory, or written by an older hinrec: retrain it)",
            dir.display()
        )
    })?;
    let mut listed = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some((sum, file)) = line.split_once("  ") else {
            bail!(
                "{}:{}: expected \"<sha256>  <file>\"",
                path.display(),
                n + 1
            );
        };
        let (_, d) = hinrec_data::text::read_file(&dir.join(file))
            .with_context(|| format!("{} lists {file}", path.display()))?;
        if d.sha256 != sum {
            bail!(
                "{}: checksum differs from {SUMS} (the file is corrupt or was changed after training)",
                dir.join(file).display()
            );
        }
        listed.push(file.to_string());
    }
    listed.sort();
    let present = files_to_sum(dir)?;
    if let Some(extra) = present.iter().find(|f| !listed.contains(f)) {
        bail!(
            "{}: not listed in {SUMS} (a file added after training)",
            dir.join(extra).display()
        );
    }
    for need in [CONFIG, PROVENANCE, WEIGHTS] {
        if !listed.iter().any(|f| f == need) {
            bail!("{}: {SUMS} does not list {need}", dir.display());
        }
    }
    Ok(())
}

/// A model directory read back.
pub struct Loaded {
    /// Its config.
    pub info: RunInfo,
    /// What it was trained on.
    pub provenance: Provenance,
    /// Its registry entry.
    pub entry: &'static ModelEntry,
    /// The model.
    pub model: Box<dyn TrainedModel>,
    /// The dataset (for id maps).
    pub dataset: Dataset,
    /// The split and negatives training used.
    pub prepared: Prepared,
}

/// A model directory's files checked, before any model or data is read.
pub struct Verified {
    /// Its config.
    pub info: RunInfo,
    /// What it was trained on.
    pub provenance: Provenance,
    /// Its registry entry.
    pub entry: &'static ModelEntry,
    /// The weights file, its tensors as the provenance records them.
    pub weights: PathBuf,
}

/// Reads a model directory written by [`save`] as far as its own files
/// go: checksums, the config, the provenance and the weights' tensor
/// shapes against it, and the model's registry entry. For tools that load
/// the weights themselves; [`load`] goes on to the model and the data.
pub fn read_verified(dir: &Path) -> Result<Verified> {
    if !dir.is_dir() {
        let moved = Beside::of(dir)
            .map(|b| b.leftovers("old"))
            .unwrap_or_default();
        if let Some(old) = moved.first() {
            bail!(
                "{} does not exist; {} holds the previous directory (a write was interrupted): rename it back",
                dir.display(),
                old.display()
            );
        }
        bail!(
            "{} is not a model directory (no such folder)",
            dir.display()
        );
    }
    if !dir.join(CONFIG).is_file() {
        bail!("{} is not a model directory (no {CONFIG})", dir.display());
    }
    verify_sums(dir)?;
    let cfg_path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("reading {}", cfg_path.display()))?;
    let info: RunInfo = toml::from_str(&text).with_context(|| format!("{}", cfg_path.display()))?;
    let prov_path = dir.join(PROVENANCE);
    let text = std::fs::read_to_string(&prov_path)
        .with_context(|| format!("reading {}", prov_path.display()))?;
    let provenance: Provenance =
        toml::from_str(&text).with_context(|| format!("{}", prov_path.display()))?;
    let weights = dir.join(WEIGHTS);
    let tensors = tensors_of(&weights)?;
    if tensors != provenance.tensors {
        bail!(
            "{}: the tensors differ from {}: {}",
            weights.display(),
            prov_path.display(),
            tensor_differences(&provenance.tensors, &tensors).join("; ")
        );
    }
    let entry =
        registry::model(&info.model).map_err(|e| anyhow::anyhow!("{}: {e}", cfg_path.display()))?;
    Ok(Verified {
        info,
        provenance,
        entry,
        weights,
    })
}

/// Reads a model directory written by [`save`]: checksums, then the
/// config, the weights against the recorded tensor shapes and the
/// parameters, the dataset against what training read, and the split
/// and negatives against the dataset. Any mismatch is an error that says
/// what differs.
pub fn load(dir: &Path) -> Result<Loaded> {
    let Verified {
        info,
        provenance,
        entry,
        weights,
    } = read_verified(dir)?;
    let cfg_path = dir.join(CONFIG);
    // The parameters exactly as trained: no preset or default on top.
    let mut params = (entry.defaults)();
    params
        .set(&info.params)
        .and_then(|()| params.check())
        .with_context(|| format!("{}", cfg_path.display()))?;
    let model = params.load(&weights)?;
    let dataset =
        hinrec_data::registry::load(&info.data, info.data_root.as_deref()).with_context(|| {
            format!(
                "re-loading dataset {:?} named in {}",
                info.data,
                cfg_path.display()
            )
        })?;
    let now = DataFingerprint::of(&dataset);
    let differ = provenance.trained_on.differences(&now);
    if !differ.is_empty() {
        bail!(
            "{} was trained on other data than {:?} holds now:\n  {}\nretrain the model on the data as it is, or restore the data it was trained on",
            dir.display(),
            info.data,
            differ.join("\n  ")
        );
    }
    if model.n_items() != dataset.n_items() {
        bail!(
            "{}: the model scores {} items, dataset {:?} has {}",
            weights.display(),
            model.n_items(),
            info.data,
            dataset.n_items()
        );
    }
    let split_dir = dir.join("split");
    let read = |name: &str| read_pairs(&split_dir.join(name), &dataset);
    let split = Split {
        train: read("train.tsv")?,
        valid: read("valid.tsv")?,
        test: read("test.tsv")?,
    };
    let test_negatives = read_negatives(&split_dir.join("test.negative"), &dataset, &split, true)?;
    let valid_negatives =
        read_negatives(&split_dir.join("valid.negative"), &dataset, &split, false)?;
    let pooled_path = split_dir.join(POOLED);
    let pooled_negatives = if pooled_path.exists() {
        Some(read_pooled(&pooled_path, &dataset, &split)?)
    } else {
        None
    };
    let labelled_path = split_dir.join(LABELLED);
    let test_rows = if labelled_path.exists() {
        read_labelled(&labelled_path, &dataset)?
    } else {
        Vec::new()
    };
    let prepared = Prepared {
        dataset: info.dataset.clone(),
        split_label: info.split.clone(),
        split,
        valid_negatives,
        test_negatives,
        meta_paths: dataset.manifest.metapaths.clone(),
        pooled_negatives,
        // A model directory keeps the positives' split and, under the
        // labelled protocol, the labelled test rows (what it evaluates).
        labelled: None,
        valid_rows: Vec::new(),
        test_rows,
        cold_users: Vec::new(),
        item_kinds: crate::experiment::item_kinds(&dataset),
    };
    Ok(Loaded {
        info,
        provenance,
        entry,
        model,
        dataset,
        prepared,
    })
}

fn tensor_differences(
    then: &BTreeMap<String, TensorInfo>,
    now: &BTreeMap<String, TensorInfo>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, t) in then {
        match now.get(name) {
            None => out.push(format!("{name} is missing")),
            Some(n) if n != t => out.push(format!(
                "{name} is {} {:?}, recorded {} {:?}",
                n.dtype, n.shape, t.dtype, t.shape
            )),
            Some(_) => {}
        }
    }
    for name in now.keys().filter(|n| !then.contains_key(*n)) {
        out.push(format!("{name} is not recorded"));
    }
    out
}

/// Stored negatives of `split`'s test pairs (`test`) or validation pairs,
/// checked against the split: each line's pair is a held-out pair, each
/// held-out pair has one line, no negative is an item the user has.
pub fn read_negatives(
    path: &Path,
    ds: &Dataset,
    split: &Split,
    test: bool,
) -> Result<EvalNegatives> {
    let all = [&split.train, &split.valid, &split.test];
    let against = if test {
        Against {
            name: "test",
            test: &split.test,
            known: &all,
        }
    } else {
        Against {
            name: "validation",
            test: &split.valid,
            known: &all[..2],
        }
    };
    Ok(EvalNegatives::read(path, ds, Some(&against))?)
}

/// The pooled lists' file in a model directory's `split/`.
const POOLED: &str = "test.pooled";
/// The labelled test rows of a model trained under the labelled protocol.
const LABELLED: &str = "test.labelled";

/// A model directory's pooled lists: one line per test user, keyed by a
/// test pair of that user, no negative the user knows.
fn read_pooled(path: &Path, ds: &Dataset, split: &Split) -> Result<EvalNegatives> {
    use hinrec_data::negatives::Ids;
    let lists = EvalNegatives::read(path, ds, None)?;
    let mut seen = std::collections::HashSet::new();
    for (k, (&(u, i), negs)) in lists.pairs.iter().zip(&lists.negatives).enumerate() {
        let at = || format!("{} line {}", path.display(), k + 1);
        if !split.test.contains(u, i) {
            bail!(
                "{}: ({}, {}) is not a test pair",
                at(),
                ds.user_name(u),
                ds.item_name(i)
            );
        }
        if !seen.insert(u) {
            bail!("{}: user {} has a second list", at(), ds.user_name(u));
        }
        let known = [&split.train, &split.valid, &split.test];
        if let Some(&j) = negs
            .iter()
            .find(|&&j| known.iter().any(|x| x.contains(u, j)))
        {
            bail!("{}: item {} is one the user has", at(), ds.item_name(j));
        }
    }
    Ok(lists)
}

/// The labelled test rows `user<TAB>item<TAB>label` (label 0 or 1).
fn read_labelled(path: &Path, ds: &Dataset) -> Result<Vec<(u32, u32, bool)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let show = hinrec_data::text::show;
    let mut rows = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{}:{}", path.display(), n + 1);
        let mut f = line.split('\t');
        let (Some(u), Some(i), Some(l), None) = (f.next(), f.next(), f.next(), f.next()) else {
            bail!("{}: expected user<TAB>item<TAB>label", at());
        };
        let u = ds
            .users()
            .get(u)
            .with_context(|| format!("{}: unknown user {}", at(), show(u)))?;
        let i = ds
            .item_id(i)
            .with_context(|| format!("{}: unknown item {}", at(), show(i)))?;
        let l = match l.trim() {
            "1" => true,
            "0" => false,
            other => bail!("{}: label {} is not 0 or 1", at(), show(other)),
        };
        rows.push((u, i, l));
    }
    Ok(rows)
}

fn read_pairs(path: &Path, ds: &Dataset) -> Result<Interactions> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut pairs = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let show = hinrec_data::text::show;
        let (u, i) = line
            .split_once('\t')
            .with_context(|| format!("{}:{}: expected user<TAB>item", path.display(), n + 1))?;
        let u = ds
            .users()
            .get(u)
            .with_context(|| format!("{}:{}: unknown user {}", path.display(), n + 1, show(u)))?;
        let i = ds
            .item_id(i)
            .with_context(|| format!("{}:{}: unknown item {}", path.display(), n + 1, show(i)))?;
        pairs.push((u, i));
    }
    Ok(Interactions::from_pairs(ds.n_users(), ds.n_items(), &pairs))
}
