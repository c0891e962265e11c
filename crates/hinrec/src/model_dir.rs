//! A trained model on disk: weights (safetensors), the run's config, and the
//! split and negatives it used (original ids), so evaluation and
//! recommendation re-create exactly what training saw.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hinrec_data::{Dataset, EvalNegatives, Interactions, Split};
use serde::{Deserialize, Serialize};

use hinrec_train::{FitSummary, TrainedModel};

use crate::experiment::{ExperimentConfig, Prepared};
use crate::registry::{self, ModelEntry};

/// What `config.toml` in a model directory holds.
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

const WEIGHTS: &str = "model.safetensors";
const CONFIG: &str = "config.toml";

/// Fails unless `dir` can become a model directory: absent, an empty
/// folder, or (with `force`) a folder to replace; its parent is created
/// and must be writable. Run before training, so a long fit never ends in
/// an unwritable path.
pub fn check_target(dir: &Path, force: bool) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)
        .with_context(|| format!("--out {}: creating {}", dir.display(), parent.display()))?;
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
    let probe = parent.join(format!(".hinrec-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| format!("{} is not writable", parent.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes a model directory: everything goes into a folder beside `dir`,
/// which then replaces `dir` by renames, so `dir` is at every moment
/// either the old complete directory or the new one.
pub fn save(
    dir: &Path,
    info: &RunInfo,
    model: &dyn TrainedModel,
    ds: &Dataset,
    prepared: &Prepared,
    summary: Option<&FitSummary>,
) -> Result<()> {
    let name = dir
        .file_name()
        .with_context(|| format!("--out {} has no folder name", dir.display()))?
        .to_string_lossy()
        .to_string();
    let beside = |what: &str| dir.with_file_name(format!(".{name}.{what}-{}", std::process::id()));
    let tmp = beside("new");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    write_dir(&tmp, info, model, ds, prepared)?;
    if let Some(s) = summary {
        let p = tmp.join("train.json");
        std::fs::write(&p, serde_json::to_string_pretty(s)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let old = beside("old");
    let had_old = dir.exists();
    if had_old {
        std::fs::rename(dir, &old).with_context(|| format!("moving {} aside", dir.display()))?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("renaming into {}", dir.display()))?;
    if had_old {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

fn write_dir(
    dir: &Path,
    info: &RunInfo,
    model: &dyn TrainedModel,
    ds: &Dataset,
    prepared: &Prepared,
) -> Result<()> {
    let split_dir = dir.join("split");
    std::fs::create_dir_all(&split_dir)
        .with_context(|| format!("creating {}", split_dir.display()))?;
    model.save(&dir.join(WEIGHTS))?;
    let text = toml::to_string_pretty(info)?;
    std::fs::write(dir.join(CONFIG), text).with_context(|| format!("writing {}", dir.display()))?;
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
        let p = split_dir.join(name);
        std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
    }
    let item = |i: u32| ds.item_original(i);
    prepared
        .test_negatives
        .write(&split_dir.join("test.negative"), ds.users(), &item)?;
    prepared
        .valid_negatives
        .write(&split_dir.join("valid.negative"), ds.users(), &item)?;
    Ok(())
}

/// A model directory read back.
pub struct Loaded {
    /// Its config.
    pub info: RunInfo,
    /// Its registry entry.
    pub entry: &'static ModelEntry,
    /// The model.
    pub model: Box<dyn TrainedModel>,
    /// The dataset (for id maps).
    pub dataset: Dataset,
    /// The split and negatives training used.
    pub prepared: Prepared,
}

/// Reads a model directory written by [`save`].
pub fn load(dir: &Path) -> Result<Loaded> {
    let cfg_path = dir.join(CONFIG);
    if !cfg_path.is_file() {
        bail!("{} is not a model directory (no {CONFIG})", dir.display());
    }
    let text = std::fs::read_to_string(&cfg_path)?;
    let info: RunInfo = toml::from_str(&text).with_context(|| format!("{}", cfg_path.display()))?;
    let entry =
        registry::model(&info.model).map_err(|e| anyhow::anyhow!("{}: {e}", cfg_path.display()))?;
    // The parameters exactly as trained: no preset or default on top.
    let mut params = (entry.defaults)();
    params
        .set(&info.params)
        .and_then(|()| params.check())
        .with_context(|| format!("{}", cfg_path.display()))?;
    let model = params.load(&dir.join(WEIGHTS))?;
    let dataset =
        hinrec_data::registry::load(&info.data, info.data_root.as_deref()).with_context(|| {
            format!(
                "re-loading dataset {:?} named in {}",
                info.data,
                cfg_path.display()
            )
        })?;
    let split_dir = dir.join("split");
    let read = |name: &str| read_pairs(&split_dir.join(name), &dataset);
    let split = Split {
        train: read("train.tsv")?,
        valid: read("valid.tsv")?,
        test: read("test.tsv")?,
    };
    let item_id = |s: &str| dataset.item_id(s);
    let test_negatives =
        EvalNegatives::read(&split_dir.join("test.negative"), dataset.users(), &item_id)?;
    let valid_negatives =
        EvalNegatives::read(&split_dir.join("valid.negative"), dataset.users(), &item_id)?;
    let prepared = Prepared {
        dataset: info.dataset.clone(),
        split_label: info.split.clone(),
        split,
        valid_negatives,
        test_negatives,
        meta_paths: dataset.manifest.metapaths.clone(),
    };
    Ok(Loaded {
        info,
        entry,
        model,
        dataset,
        prepared,
    })
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
        let (u, i) = line
            .split_once('\t')
            .with_context(|| format!("{}:{}: expected user<TAB>item", path.display(), n + 1))?;
        let u = ds
            .users()
            .get(u)
            .with_context(|| format!("{}:{}: unknown user {u:?}", path.display(), n + 1))?;
        let i = ds
            .item_id(i)
            .with_context(|| format!("{}:{}: unknown item {i:?}", path.display(), n + 1))?;
        pairs.push((u, i));
    }
    Ok(Interactions::from_pairs(ds.n_users(), ds.n_items(), &pairs))
}
