//! Fuzz entry points of hinrec's loaders: each takes arbitrary bytes and
//! must return (an `Err` inside is fine) without panicking.
//!
//! The cargo-fuzz targets in `fuzz/` call these functions under libFuzzer;
//! this crate's tests call them on seeded mutations of valid inputs for a
//! fixed number of cases, so CI runs a bounded version of every target.
//!
//! ```
//! // A truncated NPY header is an error, never a panic.
//! hinrec_fuzz::npy(b"\x93NUMPY\x01\x00\xff\xff{'descr'");
//! let mut rng = hinrec_fuzz::rng(1);
//! let input = hinrec_fuzz::mutate(&mut rng, b"name = \"x\"\n");
//! hinrec_fuzz::manifest(&input);
//! ```

use std::path::{Path, PathBuf};

use hinrec::data::{self, Against, Dataset, EvalNegatives, Manifest};
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::model_dir::{self, RunInfo};
use hinrec::models::{fit_quiet, params, resolved};
use hinrec::registry::{self, parse_toml};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A manifest's text.
pub fn manifest(bytes: &[u8]) {
    let _ = Manifest::parse(&String::from_utf8_lossy(bytes), Path::new("fuzz.toml"));
}

/// gzip bytes decoded and read as delimited lines.
pub fn gzip(bytes: &[u8]) {
    if let Ok(text) = data::text::decode(bytes, true) {
        let _ = data::text::lines_of(Path::new("fuzz.gz"), &text, |_, line| {
            let mut fields = Vec::new();
            data::text::split_fields(line, "\t", &mut fields);
            Ok(())
        });
    }
}

/// An NPY file's bytes.
pub fn npy(bytes: &[u8]) {
    let _ = data::npy::parse_npy(bytes);
}

/// The manifests [`delimited`] loads its bytes under: its first byte picks
/// one (rows with rating and time, whitespace adjacency, one line per
/// user, `::` rows with a multi-valued relation, token ids).
pub const DELIMITED_MANIFESTS: [&str; 5] = [
    r#"name = "rows"
id_base = 1
user = "user"
item = "item"
columns = { user = 0, item = 1, rating = 2, timestamp = 3 }
[[entities]]
name = "user"
[[entities]]
name = "item"
count = 50
[[interactions]]
file = "data.txt"
"#,
    r#"name = "adjacency"
separator = " "
user = "user"
item = "item"
[[entities]]
name = "user"
[[entities]]
name = "item"
[split]
train = { file = "data.txt", format = "adjacency" }
test = { file = "test.txt", format = "adjacency" }
"#,
    r#"name = "lines"
user = "user"
item = "item"
[[entities]]
name = "user"
count = 4
[[entities]]
name = "item"
[[interactions]]
file = "all.txt"
[split]
test = { file = "data.txt", format = "line-list", separator = "," }
"#,
    r#"name = "colons"
id_base = 1
user = "user"
item = "item"
separator = "::"
[[entities]]
name = "user"
[[entities]]
name = "item"
[[entities]]
name = "genre"
ids = "tokens"
[[interactions]]
file = "all.txt"
separator = "\t"
[[relations]]
name = "item_genre"
file = "data.txt"
src = "item"
dst = "genre"
columns = { src = 0, dst = 2 }
multi_separator = "|"
"#,
    r#"name = "tokens"
user = "user"
item = "item"
separator = ","
[[entities]]
name = "user"
ids = "tokens"
[[entities]]
name = "item"
ids = "tokens"
[[interactions]]
file = "data.txt"
"#,
];

/// Files beside `data.txt` that some of [`DELIMITED_MANIFESTS`] read.
const OTHER_FILES: [(&str, &str); 2] = [
    ("test.txt", "1 2\n"),
    ("all.txt", "0\t1\n1\t2\n2\t3\n3\t4\n"),
];

/// A delimited data file: byte 0 picks one of [`DELIMITED_MANIFESTS`], the
/// rest is `data.txt`; the dataset is loaded from a folder under `work`.
pub fn delimited(work: &Path, bytes: &[u8]) {
    let Some((&pick, body)) = bytes.split_first() else {
        return;
    };
    let dir = work.join("delimited");
    let _ = std::fs::create_dir_all(&dir);
    let manifest = DELIMITED_MANIFESTS[pick as usize % DELIMITED_MANIFESTS.len()];
    let all = if pick as usize % DELIMITED_MANIFESTS.len() == 3 {
        "1\t1\n2\t2\n"
    } else {
        OTHER_FILES[1].1
    };
    let writes = [
        ("manifest.toml", manifest.as_bytes()),
        ("data.txt", body),
        (OTHER_FILES[0].0, OTHER_FILES[0].1.as_bytes()),
        ("all.txt", all.as_bytes()),
    ];
    for (name, b) in writes {
        if std::fs::write(dir.join(name), b).is_err() {
            return;
        }
    }
    if let Ok(ds) = Dataset::load_manifest(&dir.join("manifest.toml")) {
        let _ = data::stats::DatasetStats::of(&ds);
        let _ = data::DataFingerprint::of(&ds);
    }
}

/// The dataset [`negatives`] checks its bytes against: 3 users, 8 items,
/// test pairs (1,1) (2,2) (3,3), training items 4-6 of users 1-3.
pub struct NegativesTarget {
    ds: Dataset,
}

impl NegativesTarget {
    /// Writes and loads the small dataset under `work`.
    pub fn new(work: &Path) -> Self {
        let dir = work.join("negatives");
        std::fs::create_dir_all(&dir).expect("a work folder");
        std::fs::write(
            dir.join("train.rating"),
            "1\t4\t5\t1\n2\t5\t5\t1\n3\t6\t5\t1\n1\t7\t5\t1\n2\t8\t5\t1\n",
        )
        .expect("writable");
        std::fs::write(
            dir.join("test.rating"),
            "1\t1\t5\t2\n2\t2\t5\t2\n3\t3\t5\t2\n",
        )
        .expect("writable");
        let ds = data::registry::load(dir.to_str().expect("a UTF-8 path"), None)
            .expect("the negatives target's dataset loads");
        NegativesTarget { ds }
    }

    /// A valid file for this dataset (a seed for mutations).
    pub const VALID: &'static str = "(1,1)\t2\t3\n(2,2)\t1\t3\n(3,3)\t1\t2\n";

    /// Stored negatives' bytes, checked against the test split.
    pub fn run(&self, bytes: &[u8]) {
        let split = self.ds.given_split.as_ref().expect("a given split");
        let known = [&split.train, &split.valid, &split.test];
        let against = Against {
            name: "test",
            test: &split.test,
            known: &known,
        };
        let _ = EvalNegatives::parse(Path::new("fuzz.negative"), bytes, &self.ds, Some(&against));
        let _ = EvalNegatives::parse(Path::new("fuzz.negative"), bytes, &self.ds, None);
    }
}

/// Trained model directories that [`ModelDirTarget::run`] edits and loads:
/// every registered model on a small synthetic dataset written as files.
pub struct ModelDirTarget {
    work: PathBuf,
    dirs: Vec<PathBuf>,
}

/// Small settings per model table, so the target trains in seconds.
fn tiny(table: &str) -> &'static str {
    match table {
        "bpr" => "epochs = 2\ndim = 8",
        "lgrec" => {
            "epochs = 1\ndim = 8\nbpr_epochs = 2\nk_user = 5\nk_item = 5\nmeta_paths = [\"UIUI\", \"UAUI\"]"
        }
        "reda" => "epochs = 1\ndim = 8\nbatch = 256",
        _ => "",
    }
}

impl ModelDirTarget {
    /// Writes the dataset and trains one directory per registered model
    /// under `work`.
    pub fn new(work: &Path) -> Self {
        let data_dir = work.join("data");
        let cfg = data::synthetic::SyntheticConfig {
            n_users: 60,
            n_items: 50,
            ..data::synthetic::SyntheticConfig::default()
        };
        let generated = data::synthetic::generate(&cfg).expect("synthetic data");
        data::synthetic::write_folder(&generated, &data_dir).expect("writable work folder");
        let spec = data_dir.to_str().expect("a UTF-8 path").to_string();
        let ds = data::registry::load(&spec, None).expect("the written data loads");
        let exp = ExperimentConfig {
            negatives: 20,
            ..ExperimentConfig::default()
        };
        let prepared = Prepared::new(&ds, &exp).expect("a split");
        let hin = prepared.hin(&ds);
        let mut dirs = Vec::new();
        for entry in registry::MODELS {
            let mut sets = parse_toml(entry.demo).expect("demo settings");
            sets.extend(parse_toml(tiny(entry.table)).expect("tiny settings"));
            let p = params(entry, &exp, &sets).expect("valid settings");
            let fitted = fit_quiet(p.as_ref(), &prepared, Some(&hin), &exp, 1).expect("a fit");
            let info = RunInfo {
                model: entry.name.into(),
                seed: 1,
                data: spec.clone(),
                data_root: None,
                dataset: ds.name.clone(),
                split: prepared.split_label.clone(),
                config: exp.clone(),
                params: resolved(p.as_ref(), &prepared)
                    .to_toml()
                    .expect("parameters as TOML"),
            };
            let out = work.join(format!("model-{}", entry.name));
            model_dir::save(&out, &info, fitted.model.as_ref(), &ds, &prepared, None)
                .expect("a saved model");
            dirs.push(out);
        }
        ModelDirTarget {
            work: work.to_path_buf(),
            dirs,
        }
    }

    /// Edits a copy of one model directory as `bytes` say, then loads it
    /// and, where it loads, evaluates, recommends and explains.
    ///
    /// Byte 0 picks the model; byte 1's bit 0 re-writes SHA256SUMS after
    /// the edits and bit 1 also re-records the weights' tensor shapes (so
    /// edits reach the parsers and the models' own checks, not only the
    /// checksum); then edits of 4 bytes plus data: file index, offset (two
    /// bytes, scaled to the file), length, and that many bytes written
    /// there.
    pub fn run(&self, bytes: &[u8]) {
        let [pick, flags, edits @ ..] = bytes else {
            return;
        };
        let src = &self.dirs[*pick as usize % self.dirs.len()];
        let dir = self.work.join("edited");
        let _ = std::fs::remove_dir_all(&dir);
        if hinrec::paths::copy_dir(src, &dir).is_err() {
            return;
        }
        let Ok(files) = model_dir::files(&dir) else {
            return;
        };
        let mut rest = edits;
        while let [f, o1, o2, len, tail @ ..] = rest {
            let n = (*len as usize).min(tail.len());
            let (patch, after) = tail.split_at(n);
            rest = after;
            let path = dir.join(&files[*f as usize % files.len()]);
            let Ok(mut content) = std::fs::read(&path) else {
                continue;
            };
            let at = (u16::from_le_bytes([*o1, *o2]) as usize * (content.len() + 1)) >> 16;
            let end = (at + patch.len()).min(content.len());
            content.splice(at..end, patch.iter().copied());
            let _ = std::fs::write(&path, content);
        }
        if flags & 2 != 0 {
            rerecord_tensors(&dir);
        }
        if flags & 1 != 0 {
            let _ = model_dir::write_sums(&dir);
        }
        let Ok(loaded) = model_dir::load(&dir) else {
            return;
        };
        let p = &loaded.prepared;
        let model = loaded.model.as_ref();
        let _ = p.evaluate_sampled(model, "fuzz", 1, &[5]);
        let _ = p.evaluate_full(model, "fuzz", 1, &[5]);
        if let Ok(top) = hinrec::recommend::top_k(model, &p.split, 0, 3) {
            for (i, _) in top {
                let _ = model.explain(0, i);
            }
        }
    }
}

/// Re-writes provenance.toml's tensor list from the weights file as it is.
fn rerecord_tensors(dir: &Path) {
    let prov = dir.join("provenance.toml");
    let Ok(text) = std::fs::read_to_string(&prov) else {
        return;
    };
    let (Ok(mut p), Ok(tensors)) = (
        toml::from_str::<model_dir::Provenance>(&text),
        model_dir::tensors_of(&dir.join("model.safetensors")),
    ) else {
        return;
    };
    p.tensors = tensors;
    if let Ok(t) = toml::to_string_pretty(&p) {
        let _ = std::fs::write(prov, t);
    }
}

/// The seeded generator of the bounded runs.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A random mutation of `seed`: byte flips, inserted and deleted runs,
/// a truncation, interesting values (0, 0xff, digits, separators,
/// multi-byte UTF-8), or now and then random bytes.
pub fn mutate(rng: &mut ChaCha8Rng, seed: &[u8]) -> Vec<u8> {
    const INTERESTING: [&[u8]; 12] = [
        b"\x00",
        b"\xff",
        b"\t",
        b"\n",
        b",",
        b"-1",
        b"4294967296",
        b"99999999999999999999",
        "\u{e9}".as_bytes(),
        b"\xEF\xBB\xBF",
        b"(",
        b"'",
    ];
    if rng.random_ratio(1, 20) {
        let n = rng.random_range(0..64);
        return (0..n).map(|_| rng.random()).collect();
    }
    let mut out = seed.to_vec();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=out.len());
        match rng.random_range(0..6) {
            0 if !out.is_empty() => {
                let i = rng.random_range(0..out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                out.splice(at..at, v.iter().copied());
            }
            2 => {
                let end = (at + rng.random_range(0..8)).min(out.len());
                out.drain(at..end);
            }
            3 => out.truncate(at),
            4 if !out.is_empty() => {
                // Repeat a slice of itself (a duplicated line, field, member).
                let a = rng.random_range(0..out.len());
                let b = (a + rng.random_range(1..32)).min(out.len());
                let piece = out[a..b].to_vec();
                out.splice(at..at, piece);
            }
            _ => {
                let v: u8 = rng.random();
                out.insert(at, v);
            }
        }
    }
    out
}

impl ModelDirTarget {
    /// The trained directories, one per registered model.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Loads a copy of model directory `k` whose tensor `name` had every
    /// element replaced by `value`'s bytes (4 bytes, repeated), with
    /// SHA256SUMS re-written: a structurally valid file with hostile
    /// contents. Returns whether it loaded; scoring must not panic.
    pub fn poison(&self, k: usize, name: &str, value: [u8; 4]) -> bool {
        let dir = self.work.join("poisoned");
        let _ = std::fs::remove_dir_all(&dir);
        if hinrec::paths::copy_dir(&self.dirs[k], &dir).is_err() {
            return false;
        }
        let path = dir.join("model.safetensors");
        let Ok(bytes) = std::fs::read(&path) else {
            return false;
        };
        let Ok(st) = safetensors::SafeTensors::deserialize(&bytes) else {
            return false;
        };
        let mut tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| {
                let mut data = v.data().to_vec();
                if n == name && v.dtype().bitsize() == 32 {
                    for c in data.chunks_exact_mut(4) {
                        c.copy_from_slice(&value);
                    }
                }
                (n, v.dtype(), v.shape().to_vec(), data)
            })
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .filter_map(|(n, d, s, b)| {
                safetensors::tensor::TensorView::new(*d, s.clone(), b)
                    .ok()
                    .map(|v| (n.clone(), v))
            })
            .collect();
        let Ok(out) = safetensors::serialize(views, None) else {
            return false;
        };
        if std::fs::write(&path, out).is_err() {
            return false;
        }
        let _ = model_dir::write_sums(&dir);
        let Ok(loaded) = model_dir::load(&dir) else {
            return false;
        };
        let p = &loaded.prepared;
        let model = loaded.model.as_ref();
        let _ = p.evaluate_sampled(model, "poison", 1, &[5]);
        let _ = p.evaluate_full(model, "poison", 1, &[5]);
        if let Ok(top) = hinrec::recommend::top_k(model, &p.split, 0, 3) {
            for (i, _) in top {
                let _ = model.explain(0, i);
            }
        }
        true
    }

    /// The names of the tensors of directory `k`.
    pub fn tensor_names(&self, k: usize) -> Vec<String> {
        let Ok(bytes) = std::fs::read(self.dirs[k].join("model.safetensors")) else {
            return Vec::new();
        };
        safetensors::SafeTensors::deserialize(&bytes)
            .map(|st| st.names().into_iter().map(String::from).collect())
            .unwrap_or_default()
    }
}
