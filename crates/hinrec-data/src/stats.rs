//! Entity and relation counts of a dataset, as `hinrec stats` prints them.

use std::fmt;

use serde::Serialize;

use crate::dataset::Dataset;

/// Counts of one relation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RelationStats {
    /// Relation name.
    pub name: String,
    /// `src-dst` entity names.
    pub types: String,
    /// Lines read.
    pub rows: usize,
    /// Distinct edges.
    pub edges: usize,
    /// Distinct sources with an edge.
    pub sources: usize,
    /// Distinct destinations with an edge.
    pub targets: usize,
    /// Lines naming a user or item without interactions.
    pub dropped: usize,
}

/// Counts of a dataset.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatasetStats {
    /// Dataset name.
    pub name: String,
    /// Users (with at least one interaction, or the declared count).
    pub users: usize,
    /// Items per item type, `(type, count)`.
    pub items: Vec<(String, usize)>,
    /// Non-blank interaction lines read.
    pub interaction_rows: usize,
    /// Distinct (user, item) pairs.
    pub interactions: usize,
    /// Interactions per item type, `(type, pairs, users)`.
    pub per_item_type: Vec<(String, usize, usize)>,
    /// `interactions / (users * items)`.
    pub density: f64,
    /// `(train, valid, test)` sizes of a given split.
    pub given_split: Option<(usize, usize, usize)>,
    /// Stored negatives: `(test pairs, negatives per pair)`.
    pub negatives: Option<(usize, usize)>,
    /// Other entity types, `(type, count)`.
    pub other_entities: Vec<(String, usize)>,
    /// Relations.
    pub relations: Vec<RelationStats>,
    /// Dense features, `(name, rows, cols)`.
    pub features: Vec<(String, usize, usize)>,
}

impl DatasetStats {
    /// Counts `ds`.
    pub fn of(ds: &Dataset) -> Self {
        let x = &ds.interactions;
        let items: Vec<(String, usize)> = ds
            .item_entities
            .iter()
            .map(|&e| (ds.entities[e].name.clone(), ds.entities[e].ids.len()))
            .collect();
        let per_item_type = ds
            .item_entities
            .iter()
            .enumerate()
            .map(|(d, &e)| {
                let (lo, hi) = (ds.item_offsets[d], ds.item_offsets[d + 1]);
                let mut users = vec![false; x.n_users()];
                let mut pairs = 0;
                for i in lo..hi {
                    for &u in x.item_users(i) {
                        users[u as usize] = true;
                        pairs += 1;
                    }
                }
                (
                    ds.entities[e].name.clone(),
                    pairs,
                    users.iter().filter(|&&b| b).count(),
                )
            })
            .collect();
        let n_items: usize = items.iter().map(|i| i.1).sum();
        let relations = ds
            .relations
            .iter()
            .map(|r| {
                let mut s: Vec<u32> = r.edges.iter().map(|e| e.0).collect();
                let mut t: Vec<u32> = r.edges.iter().map(|e| e.1).collect();
                s.sort_unstable();
                s.dedup();
                t.sort_unstable();
                t.dedup();
                RelationStats {
                    name: r.name.clone(),
                    types: format!("{}-{}", ds.entities[r.src].name, ds.entities[r.dst].name),
                    rows: r.rows,
                    edges: r.edges.len(),
                    sources: s.len(),
                    targets: t.len(),
                    dropped: r.dropped,
                }
            })
            .collect();
        let interaction_entities: Vec<usize> = std::iter::once(ds.user_entity)
            .chain(ds.item_entities.iter().copied())
            .collect();
        DatasetStats {
            name: ds.name.clone(),
            users: ds.users().len(),
            items,
            interaction_rows: ds.interaction_rows,
            interactions: x.nnz(),
            per_item_type,
            density: x.nnz() as f64 / (ds.users().len().max(1) * n_items.max(1)) as f64,
            given_split: ds
                .given_split
                .as_ref()
                .map(|s| (s.train.nnz(), s.valid.nnz(), s.test.nnz())),
            negatives: ds.given_negatives.as_ref().map(|n| (n.len(), n.per_pair())),
            other_entities: ds
                .entities
                .iter()
                .enumerate()
                .filter(|(e, _)| !interaction_entities.contains(e))
                .map(|(_, e)| (e.name.clone(), e.ids.len()))
                .collect(),
            relations,
            features: ds
                .features
                .iter()
                .map(|f| (f.name.clone(), f.matrix.rows, f.matrix.cols))
                .collect(),
        }
    }
}

impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "dataset       {}", self.name)?;
        writeln!(f, "users         {}", self.users)?;
        for (name, n) in &self.items {
            writeln!(f, "items         {n} ({name})")?;
        }
        writeln!(f, "rows read     {}", self.interaction_rows)?;
        writeln!(f, "interactions  {} (distinct pairs)", self.interactions)?;
        if self.per_item_type.len() > 1 {
            for (name, pairs, users) in &self.per_item_type {
                writeln!(f, "  {name:<11} {pairs} pairs by {users} users")?;
            }
        }
        writeln!(f, "density       {:.5}", self.density)?;
        if let Some((tr, va, te)) = self.given_split {
            writeln!(f, "given split   train {tr}, valid {va}, test {te}")?;
        }
        if let Some((n, k)) = self.negatives {
            writeln!(f, "negatives     {n} test pairs x {k}")?;
        }
        for (name, n) in &self.other_entities {
            writeln!(f, "entity        {name}: {n}")?;
        }
        if !self.relations.is_empty() {
            writeln!(
                f,
                "{:<22} {:<20} {:>9} {:>9} {:>8} {:>8} {:>8}",
                "relation", "types", "rows", "edges", "sources", "targets", "dropped"
            )?;
            for r in &self.relations {
                writeln!(
                    f,
                    "{:<22} {:<20} {:>9} {:>9} {:>8} {:>8} {:>8}",
                    r.name, r.types, r.rows, r.edges, r.sources, r.targets, r.dropped
                )?;
            }
        }
        for (name, r, c) in &self.features {
            writeln!(f, "features      {name}: {r} x {c}")?;
        }
        Ok(())
    }
}
