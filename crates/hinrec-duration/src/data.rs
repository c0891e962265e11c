//! What DURation reads from a fit's data: the labelled training rows, each
//! user's and item's sparse history (section 3.2's `Y_u*` and `Y_*i`, from
//! training rows only), the item kinds and their fixed raw attribute rows
//! (the `r` that `f_p` maps and the topology loss compares against).

use std::ops::Range;

use hinrec_data::Interactions;
use hinrec_graph::Hin;
use hinrec_train::FitContext;

use crate::params::{DurationError, Result};

/// One training row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// The user.
    pub user: u32,
    /// The item.
    pub item: u32,
    /// 1 for a positive, 0 for a negative.
    pub label: f32,
    /// Its weight in both histories (0 for a sampled negative, which is in
    /// neither): removed from them when the row itself is trained on, so
    /// a row never sees its own label.
    pub weight: f32,
}

/// Sparse histories in CSR form: each owner's (id, weight) entries, the
/// weights already divided by the square root of the owner's count, so a
/// bag is a plain weighted sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Start of each owner's entries (plus the end).
    pub offsets: Vec<usize>,
    /// The entries' ids.
    pub ids: Vec<u32>,
    /// The entries' weights.
    pub weights: Vec<f32>,
}

impl History {
    /// The histories of `n` owners from `(owner, id, weight)` entries.
    pub fn build(n: usize, entries: &[(u32, u32, f32)]) -> Self {
        let mut counts = vec![0usize; n + 1];
        for e in entries {
            counts[e.0 as usize + 1] += 1;
        }
        for k in 0..n {
            counts[k + 1] += counts[k];
        }
        let offsets = counts.clone();
        let mut next = counts;
        let mut ids = vec![0u32; entries.len()];
        let mut weights = vec![0f32; entries.len()];
        for &(o, id, w) in entries {
            let at = &mut next[o as usize];
            ids[*at] = id;
            weights[*at] = w;
            *at += 1;
        }
        for o in 0..n {
            let r = offsets[o]..offsets[o + 1];
            let scale = 1.0 / (r.len().max(1) as f32).sqrt();
            weights[r].iter_mut().for_each(|w| *w *= scale);
        }
        History {
            offsets,
            ids,
            weights,
        }
    }

    /// Number of owners.
    pub fn owners(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Owner `o`'s entries.
    pub fn of(&self, o: u32) -> (&[u32], &[f32]) {
        let r = self.offsets[o as usize]..self.offsets[o as usize + 1];
        (&self.ids[r.clone()], &self.weights[r])
    }

    /// The factor owner `o`'s weights were scaled by.
    pub fn scale(&self, o: u32) -> f32 {
        let n = self.offsets[o as usize + 1] - self.offsets[o as usize];
        1.0 / (n.max(1) as f32).sqrt()
    }
}

/// An item kind: its items and their raw attribute rows (standardised per
/// column within the kind, fixed during training).
#[derive(Debug, Clone, PartialEq)]
pub struct Kind {
    /// Its name (`book`).
    pub name: String,
    /// Its items in the combined item space.
    pub items: Range<u32>,
    /// Raw attribute width `d_p`.
    pub raw_dim: usize,
    /// `items.len() x raw_dim` values, row-major.
    pub raw: Vec<f32>,
}

impl Kind {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The raw rows of `items` (of this kind), row-major.
    pub fn raw_rows(&self, items: impl Iterator<Item = u32>) -> Vec<f32> {
        let mut out = Vec::new();
        for i in items {
            let at = (i - self.items.start) as usize * self.raw_dim;
            out.extend_from_slice(&self.raw[at..at + self.raw_dim]);
        }
        out
    }
}

/// Item statistics that make each kind's raw row where the data has no
/// attributes: log count, mean weight, share of positives, weight spread.
pub const STATISTICS: usize = 4;

/// Everything a fit trains on.
#[derive(Debug, Clone)]
pub struct TrainingData<'a> {
    /// The training rows (observed; sampled negatives are drawn per epoch).
    pub rows: Vec<Row>,
    /// The rows of each kind, by index into `rows`.
    pub by_kind: Vec<Vec<u32>>,
    /// Each user's training items.
    pub user_history: History,
    /// Each item's training users.
    pub item_history: History,
    /// The item kinds, in id order.
    pub kinds: Vec<Kind>,
    /// Each item's kind.
    pub item_kind: Vec<u16>,
    /// Whether the rows hold observed negatives; otherwise each epoch
    /// samples unobserved items as negatives.
    pub observed_negatives: bool,
    /// The positives of each user, sorted (what a sampled negative avoids).
    pub positives: &'a Interactions,
}

impl<'a> TrainingData<'a> {
    /// The training data of `ctx`: its labelled rows where the protocol is
    /// labelled, else its training positives; the kinds from
    /// `ctx.item_kinds` (one kind when empty); raw rows from the training
    /// statistics and the HIN's dense features of each item type.
    pub fn new(ctx: &FitContext<'a>) -> Result<Self> {
        let train = &ctx.split.train;
        let (n_users, n_items) = (train.n_users(), train.n_items());
        let (rows, observed_negatives): (Vec<Row>, bool) = match ctx.labelled {
            Some(ls) => {
                let rated = &ls.rated.train;
                let max = rated
                    .records()
                    .filter_map(|r| r.rating)
                    .fold(0f32, f32::max)
                    .max(f32::MIN_POSITIVE);
                let rows = rated
                    .records()
                    .map(|r| Row {
                        user: r.user,
                        item: r.item,
                        label: f32::from(u8::from(ls.rule.is_positive(&r))),
                        weight: r.rating.map_or(1.0, |x| x / max),
                    })
                    .collect();
                (rows, true)
            }
            None => (
                train
                    .pairs()
                    .map(|(user, item)| Row {
                        user,
                        item,
                        label: 1.0,
                        weight: 1.0,
                    })
                    .collect(),
                false,
            ),
        };
        if rows.is_empty() {
            return Err(DurationError::Data("no training rows".into()));
        }
        let ranges: Vec<(String, Range<u32>)> = if ctx.item_kinds.is_empty() {
            vec![("item".into(), 0..n_items as u32)]
        } else {
            ctx.item_kinds
                .iter()
                .map(|k| (k.name.clone(), k.items.clone()))
                .collect()
        };
        if ranges.last().map(|r| r.1.end as usize) != Some(n_items) {
            return Err(DurationError::Data(format!(
                "the item kinds end at {:?}, the data has {n_items} items",
                ranges.last().map(|r| r.1.end)
            )));
        }
        let mut item_kind = vec![0u16; n_items];
        for (k, (_, r)) in ranges.iter().enumerate() {
            for i in r.clone() {
                item_kind[i as usize] = k as u16;
            }
        }
        let mut by_kind = vec![Vec::new(); ranges.len()];
        for (k, r) in rows.iter().enumerate() {
            by_kind[item_kind[r.item as usize] as usize].push(k as u32);
        }
        let user_entries: Vec<(u32, u32, f32)> =
            rows.iter().map(|r| (r.user, r.item, r.weight)).collect();
        let item_entries: Vec<(u32, u32, f32)> =
            rows.iter().map(|r| (r.item, r.user, r.weight)).collect();
        let stats = item_statistics(&rows, n_items);
        let kinds = ranges
            .into_iter()
            .map(|(name, items)| {
                let features = ctx.hin.map(|h| {
                    let mut f = dense_features(h, &name, items.len());
                    f.extend(attribute_blocks(h, &name, items.len()));
                    f
                });
                raw_rows(name, items, &stats, features.unwrap_or_default())
            })
            .collect();
        Ok(TrainingData {
            by_kind,
            user_history: History::build(n_users, &user_entries),
            item_history: History::build(n_items, &item_entries),
            kinds,
            item_kind,
            observed_negatives,
            positives: train,
            rows,
        })
    }
}

/// Per item: count, mean weight, share of positive rows, weight spread.
fn item_statistics(rows: &[Row], n_items: usize) -> Vec<[f64; STATISTICS]> {
    let mut sum = vec![[0f64; 4]; n_items]; // n, sum w, sum w^2, positives
    for r in rows {
        let s = &mut sum[r.item as usize];
        let w = r.weight as f64;
        s[0] += 1.0;
        s[1] += w;
        s[2] += w * w;
        s[3] += r.label as f64;
    }
    sum.iter()
        .map(|s| {
            let n = s[0].max(1.0);
            let mean = s[1] / n;
            let var = (s[2] / n - mean * mean).max(0.0);
            [(1.0 + s[0]).ln(), mean, s[3] / n, var.sqrt()]
        })
        .collect()
}

/// The HIN's dense feature rows of the item type named `name` (its
/// `count` rows concatenated across features), empty where it has none.
fn dense_features(hin: &Hin, name: &str, count: usize) -> Vec<Vec<f32>> {
    let Some(t) = hin.types.iter().position(|t| t.name == name) else {
        return Vec::new();
    };
    hin.features
        .iter()
        .filter(|f| f.node_type == t && f.data.len() == count * f.dim)
        .map(|f| f.data.clone())
        .collect()
}

/// Attribute types up to this many values are one-hot (multi-hot) columns;
/// wider ones (10,805 authors) are projected.
pub const ONE_HOT_MAX: usize = 64;

/// Columns of a projected attribute type.
pub const PROJECTED: usize = 32;

/// The item type `name`'s attribute relations (every relation between it
/// and another type that is not a user type) as blocks of `count` rows:
/// multi-hot columns for a type of at most [`ONE_HOT_MAX`] values, else a
/// fixed random-sign projection of the multi-hot row to [`PROJECTED`]
/// columns (seeded by the relation's name, so the raw space is the same
/// for every model seed), each row divided by the square root of its
/// count of values.
fn attribute_blocks(hin: &Hin, name: &str, count: usize) -> Vec<Vec<f32>> {
    use rand::Rng as _;
    use rand::SeedableRng;
    let Some(t) = hin.types.iter().position(|x| x.name == name) else {
        return Vec::new();
    };
    let users: Vec<usize> = hin
        .relations
        .iter()
        .filter(|r| r.name.starts_with("interactions"))
        .map(|r| r.src)
        .collect();
    let mut out = Vec::new();
    for r in &hin.relations {
        let (m, other) = match (r.src == t, r.dst == t) {
            (true, false) => (&r.matrix, r.dst),
            (false, true) => (&r.transpose, r.src),
            _ => continue,
        };
        if r.name.starts_with("interactions") || users.contains(&other) || m.rows() != count {
            continue;
        }
        let values = hin.types[other].count;
        let (dim, signs) = if values <= ONE_HOT_MAX {
            (values, None)
        } else {
            let seed = r.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let signs: Vec<f32> = (0..values * PROJECTED)
                .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                .collect();
            (PROJECTED, Some(signs))
        };
        let mut block = vec![0f32; count * dim];
        for (row, vec) in m.outer_iterator().enumerate() {
            let n = vec.nnz();
            if n == 0 {
                continue;
            }
            let w = 1.0 / (n as f32).sqrt();
            let out_row = &mut block[row * dim..(row + 1) * dim];
            for (&v, _) in vec.indices().iter().zip(vec.data()) {
                let v = v as usize;
                match &signs {
                    None => out_row[v] += w,
                    Some(s) => out_row
                        .iter_mut()
                        .zip(&s[v * PROJECTED..(v + 1) * PROJECTED])
                        .for_each(|(o, s)| *o += w * s),
                }
            }
        }
        out.push(block);
    }
    out
}

/// A kind's raw rows: its items' statistics, then its dense features,
/// each column standardised within the kind.
fn raw_rows(
    name: String,
    items: Range<u32>,
    stats: &[[f64; STATISTICS]],
    features: Vec<Vec<f32>>,
) -> Kind {
    let n = items.len();
    let mut columns: Vec<Vec<f64>> = (0..STATISTICS)
        .map(|c| items.clone().map(|i| stats[i as usize][c]).collect())
        .collect();
    for f in &features {
        let dim = f.len() / n.max(1);
        for c in 0..dim {
            columns.push((0..n).map(|r| f[r * dim + c] as f64).collect());
        }
    }
    for col in &mut columns {
        let mean = col.iter().sum::<f64>() / n.max(1) as f64;
        let var = col.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
        let sd = if var > 1e-12 { var.sqrt() } else { 1.0 };
        col.iter_mut().for_each(|x| *x = (*x - mean) / sd);
    }
    let raw_dim = columns.len();
    let mut raw = vec![0f32; n * raw_dim];
    for (c, col) in columns.iter().enumerate() {
        for (r, v) in col.iter().enumerate() {
            raw[r * raw_dim + c] = *v as f32;
        }
    }
    Kind {
        name,
        items,
        raw_dim,
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_are_csr_with_scaled_weights() {
        let h = History::build(3, &[(2, 7, 1.0), (0, 5, 0.5), (2, 1, 0.25), (2, 9, 1.0)]);
        assert_eq!(h.offsets, vec![0, 1, 1, 4]);
        assert_eq!(h.of(0), (&[5u32][..], &[0.5f32][..]));
        assert_eq!(h.of(1).0.len(), 0);
        let s = 1.0 / 3f32.sqrt();
        assert_eq!(h.of(2).0, &[7, 1, 9]);
        assert_eq!(h.of(2).1, &[s, 0.25 * s, s]);
        assert_eq!(h.scale(2), s);
        assert_eq!(h.owners(), 3);
    }

    #[test]
    fn attribute_relations_become_multi_hot_or_projected_blocks() {
        use hinrec_graph::{Adjacency, NodeType};
        let ty = |name: &str, count| NodeType {
            name: name.into(),
            code: None,
            count,
        };
        let hin = Hin {
            types: vec![
                ty("user", 2),
                ty("book", 3),
                ty("year", 4),
                ty("author", 100),
            ],
            relations: vec![
                Adjacency::new("interactions", 0, 1, (2, 3), &[(0, 0), (1, 2)]),
                Adjacency::new("book_year", 1, 2, (3, 4), &[(0, 1), (1, 1), (1, 3)]),
                // Declared author -> book: read transposed.
                Adjacency::new("author_book", 3, 1, (100, 3), &[(7, 0), (7, 1), (9, 1)]),
            ],
            features: Vec::new(),
        };
        let blocks = attribute_blocks(&hin, "book", 3);
        assert_eq!(blocks.len(), 2);
        let h = 1.0 / 2f32.sqrt();
        // Years: multi-hot, each row over the root of its count.
        assert_eq!(
            blocks[0],
            vec![0.0, 1.0, 0.0, 0.0, 0.0, h, 0.0, h, 0.0, 0.0, 0.0, 0.0]
        );
        // Authors: 100 values, projected to PROJECTED signed columns.
        let a = &blocks[1];
        assert_eq!(a.len(), 3 * PROJECTED);
        assert!(a[..PROJECTED].iter().all(|v| v.abs() == 1.0));
        assert!(a[2 * PROJECTED..].iter().all(|&v| v == 0.0));
        // Book 1 = (author 7 + author 9) / sqrt 2, book 0 = author 7.
        let nine: Vec<f32> = (0..PROJECTED)
            .map(|c| (a[PROJECTED + c] - h * a[c]) / h)
            .collect();
        assert!(nine.iter().all(|v| (v.abs() - 1.0).abs() < 1e-5));
        assert_eq!(attribute_blocks(&hin, "book", 3), blocks);
        // The user type's only relation is the interactions.
        assert!(attribute_blocks(&hin, "user", 2).is_empty());
        assert!(attribute_blocks(&hin, "none", 3).is_empty());
    }

    #[test]
    fn raw_rows_are_standardised_statistics() {
        let rows = [
            Row {
                user: 0,
                item: 0,
                label: 1.0,
                weight: 1.0,
            },
            Row {
                user: 1,
                item: 0,
                label: 0.0,
                weight: 0.4,
            },
            Row {
                user: 0,
                item: 1,
                label: 1.0,
                weight: 0.8,
            },
        ];
        let stats = item_statistics(&rows, 3);
        // Item 0: two rows, mean 0.7, one positive of two, spread 0.3.
        assert!((stats[0][0] - 3f64.ln()).abs() < 1e-12);
        assert!((stats[0][1] - 0.7).abs() < 1e-6);
        assert_eq!(stats[0][2], 0.5);
        assert!((stats[0][3] - 0.3).abs() < 1e-6);
        let k = raw_rows("book".into(), 0..2, &stats, vec![vec![1.0, 3.0]]);
        assert_eq!((k.raw_dim, k.len()), (5, 2));
        // Two items: every non-constant column becomes -1 and 1.
        assert_eq!(&k.raw[..5], &[1.0, -1.0, -1.0, 1.0, -1.0]);
        assert_eq!(
            k.raw_rows([1u32].into_iter()),
            vec![-1.0, 1.0, 1.0, -1.0, 1.0]
        );
    }
}
