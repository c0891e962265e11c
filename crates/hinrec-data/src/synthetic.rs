//! A seeded synthetic heterogeneous dataset: latent user and item groups,
//! attributes correlated with the groups, interactions drawn from group
//! preference plus popularity, and timestamps.
//!
//! It is the built-in default for the demo and the tests: small, instant, and
//! with enough structure that a collaborative model must beat popularity.

use std::io::Write;
use std::path::Path;

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Exp;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, Entity, Relation};
use crate::error::{DataError, Result};
use crate::ids::IdMap;
use crate::interactions::{Interactions, Record};
use crate::manifest::{Columns, EntitySpec, InteractionFile, Manifest, RelationSpec};

/// Sizes and strengths of the generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Number of users.
    pub n_users: usize,
    /// Number of items.
    pub n_items: usize,
    /// Number of latent groups shared by users and items.
    pub n_groups: usize,
    /// Mean interactions per user (each user has at least 5).
    pub mean_interactions: f64,
    /// Probability that an interaction comes from the user's own group.
    pub group_affinity: f64,
    /// Zipf exponent of item popularity.
    pub popularity_exponent: f64,
    /// Number of user attribute values (an "age" group).
    pub n_user_attributes: usize,
    /// Number of item attribute values (a "genre").
    pub n_item_attributes: usize,
    /// Probability that an attribute follows the group rather than chance.
    pub attribute_fidelity: f64,
    /// Friends per user (user-user relation).
    pub friends_per_user: usize,
    /// Whether interactions carry timestamps.
    pub timestamps: bool,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            n_users: 600,
            n_items: 500,
            n_groups: 8,
            mean_interactions: 30.0,
            group_affinity: 0.7,
            popularity_exponent: 0.8,
            n_user_attributes: 6,
            n_item_attributes: 12,
            attribute_fidelity: 0.8,
            friends_per_user: 4,
            timestamps: true,
            seed: 42,
        }
    }
}

/// Names of the generated files, used by [`write_folder`] and the manifest.
const FILES: [&str; 4] = [
    "user_item.tsv",
    "user_age.tsv",
    "item_genre.tsv",
    "user_user.tsv",
];

/// Generates the dataset in memory.
pub fn generate(cfg: &SyntheticConfig) -> Result<Dataset> {
    if cfg.n_users == 0 || cfg.n_items < 10 || cfg.n_groups == 0 {
        return Err(DataError::Invalid(
            "synthetic data needs users, at least 10 items and a group".into(),
        ));
    }
    if cfg.n_user_attributes == 0 || cfg.n_item_attributes == 0 {
        return Err(DataError::Invalid(
            "attribute counts must be positive".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let g = cfg.n_groups;
    let user_group: Vec<usize> = (0..cfg.n_users).map(|_| rng.random_range(0..g)).collect();
    let item_group: Vec<usize> = (0..cfg.n_items).map(|_| rng.random_range(0..g)).collect();
    let mut rank: Vec<usize> = (0..cfg.n_items).collect();
    rank.shuffle(&mut rng);
    let pop: Vec<f64> = rank
        .iter()
        .map(|&r| ((r + 1) as f64).powf(-cfg.popularity_exponent))
        .collect();
    let all = WeightedIndex::new(&pop).map_err(|e| DataError::Invalid(e.to_string()))?;
    let by_group: Vec<(Vec<usize>, Option<WeightedIndex<f64>>)> = (0..g)
        .map(|k| {
            let members: Vec<usize> = (0..cfg.n_items).filter(|&i| item_group[i] == k).collect();
            let dist = WeightedIndex::new(members.iter().map(|&i| pop[i])).ok();
            (members, dist)
        })
        .collect();
    let len = Exp::new(1.0 / (cfg.mean_interactions - 5.0).max(1.0))
        .map_err(|e| DataError::Invalid(e.to_string()))?;
    let max_per_user = cfg.n_items / 2;
    let mut records = Vec::new();
    for u in 0..cfg.n_users {
        let n = (5 + len.sample(&mut rng) as usize).min(max_per_user);
        let mut chosen = Vec::with_capacity(n);
        let mut time = 1_000_000_000 + rng.random_range(0..1_000_000i64);
        while chosen.len() < n {
            let (members, dist) = &by_group[user_group[u]];
            let item = match dist {
                Some(d) if rng.random_bool(cfg.group_affinity) => members[d.sample(&mut rng)],
                _ => all.sample(&mut rng),
            };
            if chosen.contains(&item) {
                continue;
            }
            chosen.push(item);
            time += rng.random_range(60..86_400i64);
            let liked = item_group[item] == user_group[u];
            let rating = if liked {
                rng.random_range(3..=5)
            } else {
                rng.random_range(1..=4)
            };
            records.push(Record {
                user: u as u32,
                item: item as u32,
                rating: Some(rating as f32),
                timestamp: cfg.timestamps.then_some(time),
            });
        }
    }
    let follow = |rng: &mut ChaCha8Rng, group: usize, n_values: usize| {
        if rng.random_bool(cfg.attribute_fidelity) {
            (group % n_values) as u32
        } else {
            rng.random_range(0..n_values as u32)
        }
    };
    let user_age: Vec<(u32, u32)> = (0..cfg.n_users)
        .map(|u| {
            (
                u as u32,
                follow(&mut rng, user_group[u], cfg.n_user_attributes),
            )
        })
        .collect();
    let mut item_genre = Vec::new();
    for (i, &grp) in item_group.iter().enumerate() {
        item_genre.push((i as u32, follow(&mut rng, grp, cfg.n_item_attributes)));
        if rng.random_bool(0.3) {
            item_genre.push((i as u32, rng.random_range(0..cfg.n_item_attributes as u32)));
        }
    }
    let mut user_user = Vec::new();
    for u in 0..cfg.n_users {
        for _ in 0..cfg.friends_per_user {
            let v = if rng.random_bool(cfg.attribute_fidelity) {
                // Someone of the same group, found by a bounded search.
                (0..20)
                    .map(|_| rng.random_range(0..cfg.n_users))
                    .find(|&v| user_group[v] == user_group[u] && v != u)
            } else {
                Some(rng.random_range(0..cfg.n_users)).filter(|&v| v != u)
            };
            if let Some(v) = v {
                user_user.push((u as u32, v as u32));
            }
        }
    }
    let rows = records.len();
    let interactions = Interactions::from_records(cfg.n_users, cfg.n_items, records);
    let relation = |name: &str, src: usize, dst: usize, mut edges: Vec<(u32, u32)>| {
        let rows = edges.len();
        edges.sort_unstable();
        let mut out = Relation {
            name: name.into(),
            src,
            dst,
            rows,
            edges: Vec::new(),
            weights: Vec::new(),
            dropped: 0,
        };
        // Repeated lines become weights, as the file loader counts them.
        for e in edges {
            if out.edges.last() == Some(&e) {
                *out.weights.last_mut().expect("pushed together") += 1.0;
            } else {
                out.edges.push(e);
                out.weights.push(1.0);
            }
        }
        out
    };
    let manifest = manifest(cfg);
    let ds = Dataset {
        name: manifest.name.clone(),
        root: Path::new(".").to_path_buf(),
        entities: vec![
            entity("user", "U", IdMap::contiguous(cfg.n_users, 1)),
            entity("item", "I", IdMap::contiguous(cfg.n_items, 1)),
            entity("age", "A", IdMap::contiguous(cfg.n_user_attributes, 1)),
            entity("genre", "G", IdMap::contiguous(cfg.n_item_attributes, 1)),
        ],
        user_entity: 0,
        item_entities: vec![1],
        item_offsets: vec![0, cfg.n_items as u32],
        interactions,
        interaction_rows: rows,
        given_split: None,
        given_negatives: None,
        relations: vec![
            relation("user_age", 0, 2, user_age),
            relation("item_genre", 1, 3, item_genre),
            relation("user_user", 0, 0, user_user),
        ],
        features: Vec::new(),
        sources: Vec::new(),
        manifest,
    };
    Ok(ds)
}

fn entity(name: &str, code: &str, ids: IdMap) -> Entity {
    Entity {
        name: name.into(),
        code: Some(code.into()),
        ids,
    }
}

/// The manifest that [`write_folder`] writes beside the data.
pub fn manifest(cfg: &SyntheticConfig) -> Manifest {
    let ent = |name: &str, code: &str, count| EntitySpec {
        name: name.into(),
        code: Some(code.into()),
        count: Some(count),
        ids: Default::default(),
        id_base: None,
    };
    let rel = |name: &str, file: &str, src: &str, dst: &str| RelationSpec {
        name: name.into(),
        file: file.into(),
        src: src.into(),
        dst: dst.into(),
        columns: Default::default(),
        separator: None,
        multi_separator: None,
        extract: None,
    };
    Manifest {
        name: "synthetic".into(),
        description: "hinrec's seeded synthetic HIN (latent groups, attributes, popularity)".into(),
        separator: "\t".into(),
        id_base: 1,
        user: "user".into(),
        item: "item".into(),
        columns: Columns {
            user: 0,
            item: 1,
            rating: Some(2),
            timestamp: Some(3),
        },
        entities: vec![
            ent("user", "U", cfg.n_users),
            ent("item", "I", cfg.n_items),
            ent("age", "A", cfg.n_user_attributes),
            ent("genre", "G", cfg.n_item_attributes),
        ],
        interactions: vec![InteractionFile {
            file: FILES[0].into(),
            format: Default::default(),
            separator: None,
            item: None,
            columns: None,
            user_group: None,
        }],
        split: None,
        implicit: None,
        relations: vec![
            rel("user_age", FILES[1], "user", "age"),
            rel("item_genre", FILES[2], "item", "genre"),
            rel("user_user", FILES[3], "user", "user"),
        ],
        features: Vec::new(),
        metapaths: ["UIUI", "UAUI", "UIGI", "UUI"].map(String::from).to_vec(),
    }
}

/// Writes a generated dataset as TSV files plus `manifest.toml` into `dir`,
/// in the same form as a user's own data.
pub fn write_folder(ds: &Dataset, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let write = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .and_then(|mut f| f.write_all(body.as_bytes()))
            .map_err(|e| DataError::io(&p, e))
    };
    let mut body = String::new();
    for r in ds.interactions.records() {
        body.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            ds.users().original(r.user),
            ds.item_original(r.item),
            r.rating.unwrap_or(1.0),
            r.timestamp.unwrap_or(0)
        ));
    }
    write(FILES[0], body)?;
    for (k, rel) in ds.relations.iter().enumerate() {
        let (s, d) = (&ds.entities[rel.src].ids, &ds.entities[rel.dst].ids);
        let mut body = String::new();
        for (&(a, b), &w) in rel.edges.iter().zip(&rel.weights) {
            for _ in 0..w as usize {
                body.push_str(&format!("{}\t{}\n", s.original(a), d.original(b)));
            }
        }
        write(FILES[k + 1], body)?;
    }
    // Not `to_string_pretty`: it spreads `metapaths` over several lines,
    // and a user edits that line.
    let text =
        toml::to_string(&ds.manifest).map_err(|e| DataError::Invalid(format!("manifest: {e}")))?;
    write(
        "manifest.toml",
        format!("# Generated by hinrec (synthetic data).\n{text}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_sized_as_asked() {
        let cfg = SyntheticConfig {
            n_users: 50,
            n_items: 40,
            ..Default::default()
        };
        let a = generate(&cfg).unwrap();
        let b = generate(&cfg).unwrap();
        assert_eq!(a.interactions, b.interactions);
        assert_eq!(a.n_users(), 50);
        assert_eq!(a.n_items(), 40);
        assert!((0..50).all(|u| a.interactions.user_degree(u) >= 5));
        let c = generate(&SyntheticConfig { seed: 7, ..cfg }).unwrap();
        assert_ne!(a.interactions, c.interactions);
    }

    #[test]
    fn written_folder_loads_back_identically() {
        let cfg = SyntheticConfig {
            n_users: 30,
            n_items: 25,
            ..Default::default()
        };
        let a = generate(&cfg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_folder(&a, dir.path()).unwrap();
        let b = Dataset::load_manifest(&dir.path().join("manifest.toml")).unwrap();
        assert_eq!(b.interactions, a.interactions);
        for (x, y) in a.relations.iter().zip(&b.relations) {
            assert_eq!(x.edges, y.edges, "{}", x.name);
        }
    }
}
