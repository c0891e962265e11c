//! Finding a dataset from what a user types: a shipped name, a manifest
//! file, a folder, or `synthetic`.

use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use crate::manifest::Manifest;
use crate::synthetic::{generate, SyntheticConfig};

/// A dataset whose manifest ships with hinrec; the data itself never does.
#[derive(Debug, Clone, Copy)]
pub struct Shipped {
    /// Name users type (`lgrec-ml100k`).
    pub name: &'static str,
    /// Folder under the data root.
    pub folder: &'static str,
    /// The manifest text.
    pub manifest: &'static str,
}

/// The manifests for the folders of `../shared/datasets`.
pub const SHIPPED: &[Shipped] = &[
    shipped(
        "movielens",
        "hin/movielens",
        include_str!("../manifests/movielens.toml"),
    ),
    shipped(
        "lastfm",
        "hin/lastfm",
        include_str!("../manifests/lastfm.toml"),
    ),
    shipped(
        "reda-lastfm",
        "hin/lastfm",
        include_str!("../manifests/reda-lastfm.toml"),
    ),
    shipped("yelp", "hin/yelp", include_str!("../manifests/yelp.toml")),
    shipped(
        "lgrec-ml100k",
        "lgrec-ml100k",
        include_str!("../manifests/lgrec-ml100k.toml"),
    ),
    shipped(
        "glrs-yelp-madison",
        "glrs-yelp-madison",
        include_str!("../manifests/glrs-yelp-madison.toml"),
    ),
    shipped("ml1m", "ml1m", include_str!("../manifests/ml1m.toml")),
    shipped(
        "tiktok-mmssl",
        "tiktok-mmssl",
        include_str!("../manifests/tiktok-mmssl.toml"),
    ),
    shipped(
        "douban-dtcdr",
        "douban-dtcdr",
        include_str!("../manifests/douban-dtcdr.toml"),
    ),
    shipped(
        "douban-hin",
        "douban-hin",
        include_str!("../manifests/douban-hin.toml"),
    ),
    shipped(
        "douban-hin-book",
        "douban-hin/book",
        include_str!("../manifests/douban-hin-book.toml"),
    ),
    shipped(
        "douban-hin-movie",
        "douban-hin/movie",
        include_str!("../manifests/douban-hin-movie.toml"),
    ),
];

const fn shipped(name: &'static str, folder: &'static str, manifest: &'static str) -> Shipped {
    Shipped {
        name,
        folder,
        manifest,
    }
}

/// The default data root: `../shared/datasets` when it exists.
pub fn default_data_root() -> Option<PathBuf> {
    let p = PathBuf::from("../shared/datasets");
    p.is_dir().then_some(p)
}

/// The name of the built-in synthetic dataset.
pub const SYNTHETIC: &str = "synthetic";

/// Loads what `spec` names:
/// - `synthetic`: the built-in generator with its default sizes;
/// - a path to a manifest `.toml`;
/// - a folder holding `manifest.toml`, or in LGRec's layout
///   (`train.rating`, `test.rating`, optional `test.negative`);
/// - a shipped name from [`SHIPPED`], resolved under `data_root`.
pub fn load(spec: &str, data_root: Option<&Path>) -> Result<Dataset> {
    if spec == SYNTHETIC {
        return generate(&SyntheticConfig::default());
    }
    let path = Path::new(spec);
    if path.is_file() {
        return Dataset::load_manifest(path);
    }
    if path.is_dir() {
        let m = path.join("manifest.toml");
        if m.is_file() {
            return Dataset::load_manifest(&m);
        }
        if path.join("train.rating").is_file() && path.join("test.rating").is_file() {
            return Dataset::load(lgrec_layout(path)?, path);
        }
        if let Some(s) = SHIPPED.iter().find(|s| path.ends_with(s.folder)) {
            return Dataset::load(Manifest::parse(s.manifest, Path::new(s.name))?, path);
        }
        return Err(DataError::Invalid(format!(
            "{}: no manifest.toml and no recognised layout (train.rating + test.rating)",
            path.display()
        )));
    }
    let Some(s) = SHIPPED.iter().find(|s| s.name == spec) else {
        let names: Vec<&str> = SHIPPED.iter().map(|s| s.name).collect();
        return Err(DataError::Invalid(format!(
            "{spec:?} is not a file, a folder, \"synthetic\" or a shipped dataset ({})",
            names.join(", ")
        )));
    };
    let root = data_root.map(Path::to_path_buf).or_else(default_data_root).ok_or_else(|| {
        DataError::Invalid(format!(
            "dataset {spec:?} needs a data root: pass --data-root DIR (../shared/datasets is absent)"
        ))
    })?;
    let folder = root.join(s.folder);
    if !folder.is_dir() {
        return Err(DataError::Invalid(format!(
            "dataset {spec:?}: folder {} does not exist",
            folder.display()
        )));
    }
    Dataset::load(Manifest::parse(s.manifest, Path::new(s.name))?, &folder)
}

fn lgrec_layout(dir: &Path) -> Result<Manifest> {
    let negatives = if dir.join("test.negative").is_file() {
        "negatives = \"test.negative\"\n"
    } else {
        ""
    };
    let name = dir
        .file_name()
        .map_or("dataset".into(), |n| n.to_string_lossy().into_owned());
    let text = format!(
        r#"name = "{name}"
user = "user"
item = "item"
columns = {{ user = 0, item = 1, rating = 2, timestamp = 3 }}
[[entities]]
name = "user"
code = "U"
[[entities]]
name = "item"
code = "I"
[split]
train = {{ file = "train.rating" }}
test = {{ file = "test.rating" }}
{negatives}"#
    );
    Manifest::parse(&text, &dir.join("(LGRec layout)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_manifest_parses() {
        for s in SHIPPED {
            let m = Manifest::parse(s.manifest, Path::new(s.name)).unwrap();
            assert_eq!(m.name, s.name);
        }
    }

    #[test]
    fn unknown_names_list_the_choices() {
        let e = load("no-such-data", Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(e.to_string().contains("lgrec-ml100k"), "{e}");
    }
}
