//! What a dataset was when a model was trained on it: counts, the hash of
//! every file read, and a hash of the loaded content, so a model directory
//! can refuse data that changed since.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dataset::{Dataset, SourceFile};

/// A dataset's identity as a model directory records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFingerprint {
    /// The manifest's name.
    pub dataset: String,
    /// Users.
    pub users: usize,
    /// Items (all item types).
    pub items: usize,
    /// Distinct user-item interactions.
    pub interactions: usize,
    /// SHA-256 of the manifest as parsed (its canonical TOML), so a
    /// re-formatted manifest matches and a changed setting does not.
    pub manifest_sha256: String,
    /// SHA-256 of the loaded content: every interaction (ids, rating,
    /// time) and every relation edge, in internal ids.
    pub content_sha256: String,
    /// Every file read, with its size and SHA-256.
    pub files: Vec<SourceFile>,
}

impl DataFingerprint {
    /// The fingerprint of `ds`.
    pub fn of(ds: &Dataset) -> Self {
        let manifest = toml::to_string(&ds.manifest).unwrap_or_default();
        let mut h = Sha256::new();
        h.update((ds.n_users() as u64).to_le_bytes());
        h.update((ds.n_items() as u64).to_le_bytes());
        for r in ds.interactions.records() {
            h.update(r.user.to_le_bytes());
            h.update(r.item.to_le_bytes());
            h.update(r.rating.map_or(u32::MAX, f32::to_bits).to_le_bytes());
            h.update(r.timestamp.unwrap_or(i64::MIN).to_le_bytes());
        }
        for rel in &ds.relations {
            h.update(rel.name.as_bytes());
            h.update((rel.edges.len() as u64).to_le_bytes());
            for (&(a, b), w) in rel.edges.iter().zip(&rel.weights) {
                h.update(a.to_le_bytes());
                h.update(b.to_le_bytes());
                h.update(w.to_bits().to_le_bytes());
            }
        }
        for f in &ds.features {
            h.update(f.name.as_bytes());
            for v in &f.matrix.data {
                h.update(v.to_bits().to_le_bytes());
            }
        }
        DataFingerprint {
            dataset: ds.name.clone(),
            users: ds.n_users(),
            items: ds.n_items(),
            interactions: ds.interactions.nnz(),
            manifest_sha256: crate::text::sha256_hex(manifest.as_bytes()),
            content_sha256: crate::text::hex(&h.finalize()),
            files: ds.sources.clone(),
        }
    }

    /// What differs from `now`, one line each (empty when nothing does).
    pub fn differences(&self, now: &DataFingerprint) -> Vec<String> {
        let mut out = Vec::new();
        let mut differ = |what: &str, then: String, now: String| {
            if then != now {
                out.push(format!("{what}: {then} at training, {now} now"));
            }
        };
        differ("dataset", self.dataset.clone(), now.dataset.clone());
        differ("users", self.users.to_string(), now.users.to_string());
        differ("items", self.items.to_string(), now.items.to_string());
        differ(
            "interactions",
            self.interactions.to_string(),
            now.interactions.to_string(),
        );
        let short = |s: &str| s.chars().take(12).collect::<String>();
        differ(
            "manifest (sha256)",
            short(&self.manifest_sha256),
            short(&now.manifest_sha256),
        );
        for f in &self.files {
            match now.files.iter().find(|n| n.file == f.file) {
                None => out.push(format!("{}: read at training, not now", f.file)),
                Some(n) if n.digest != f.digest => out.push(format!(
                    "{}: changed since training ({} bytes, sha256 {} then; {} bytes, sha256 {} now)",
                    f.file,
                    f.digest.bytes,
                    short(&f.digest.sha256),
                    n.digest.bytes,
                    short(&n.digest.sha256)
                )),
                Some(_) => {}
            }
        }
        for n in &now.files {
            if !self.files.iter().any(|f| f.file == n.file) {
                out.push(format!("{}: read now, not at training", n.file));
            }
        }
        if out.is_empty() && self.content_sha256 != now.content_sha256 {
            out.push(format!(
                "loaded content (sha256): {} at training, {} now (same files: the loader or the generator changed)",
                short(&self.content_sha256),
                short(&now.content_sha256)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{generate, SyntheticConfig};

    #[test]
    fn same_data_same_fingerprint_and_a_change_is_named() {
        let ds = generate(&SyntheticConfig::default()).unwrap();
        let a = DataFingerprint::of(&ds);
        assert_eq!(a, DataFingerprint::of(&ds));
        assert!(a.differences(&a).is_empty());
        let other = generate(&SyntheticConfig {
            seed: 99,
            ..SyntheticConfig::default()
        })
        .unwrap();
        let b = DataFingerprint::of(&other);
        let d = a.differences(&b);
        assert!(
            d.iter()
                .any(|l| l.starts_with("loaded content") || l.starts_with("interactions")),
            "{d:?}"
        );
    }
}
