//! Observed ratings as binary labels (DURation's protocol): a rating above
//! a threshold is a positive, any other observed rating a negative, so the
//! negatives are items the user rated low, never unobserved ones.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::interactions::{Interactions, Record};
use crate::split::Split;

/// Which observed ratings are positives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelRule {
    /// A rating above this is positive (DURation: 3, so 4 and 5 stars).
    pub positive_above: f32,
}

impl LabelRule {
    /// Whether `r` is a positive; a row without a rating is one (an
    /// implicit interaction).
    pub fn is_positive(&self, r: &Record) -> bool {
        r.rating.is_none_or(|x| x > self.positive_above)
    }

    /// The positives of `data`.
    pub fn positives(&self, data: &Interactions) -> Interactions {
        data.filter(|r| self.is_positive(r))
    }

    /// Every row of `data` with its label, user-major.
    pub fn labelled(&self, data: &Interactions) -> Vec<(u32, u32, bool)> {
        data.records()
            .map(|r| (r.user, r.item, self.is_positive(&r)))
            .collect()
    }
}

/// A split of every observed rating, and the rule that labels them. The
/// implicit view of it (the positives of each part) is what ranking
/// models and baselines train on.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledSplit {
    /// Every rated row, negatives included.
    pub rated: Split,
    /// The labels.
    pub rule: LabelRule,
}

impl LabelledSplit {
    /// Labels `rated`; an error if its rows carry no ratings (every row
    /// would be positive, and AUC needs negatives).
    pub fn new(rated: Split, rule: LabelRule) -> Result<Self> {
        if !rated.train.has_ratings() {
            return Err(DataError::Invalid(
                "a labelled protocol needs rated interactions (a rating column in the manifest)"
                    .into(),
            ));
        }
        Ok(LabelledSplit { rated, rule })
    }

    /// The positives of each part.
    pub fn positives(&self) -> Split {
        Split {
            train: self.rule.positives(&self.rated.train),
            valid: self.rule.positives(&self.rated.valid),
            test: self.rule.positives(&self.rated.test),
        }
    }

    /// DURation's cold start (Table 5): a seeded `share` of the users with
    /// test rows keep at most `keep` of their training rows (chosen at
    /// random; the rest are dropped, not moved). Returns the new split and
    /// the chosen users, sorted.
    pub fn cold_start(&self, share: f64, keep: usize, seed: u64) -> Result<(Self, Vec<u32>)> {
        if !(0.0..=1.0).contains(&share) || !share.is_finite() {
            return Err(DataError::Invalid(format!(
                "cold-start share {share} is not in [0, 1]"
            )));
        }
        let test = &self.rated.test;
        let mut users: Vec<u32> = (0..test.n_users() as u32)
            .filter(|&u| test.user_degree(u) > 0)
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc01d);
        users.shuffle(&mut rng);
        users.truncate((share * users.len() as f64).round() as usize);
        users.sort_unstable();
        let train = &self.rated.train;
        let mut records = Vec::with_capacity(train.nnz());
        for u in 0..train.n_users() as u32 {
            let mut recs: Vec<Record> = train.user_records(u).collect();
            if users.binary_search(&u).is_ok() && recs.len() > keep {
                recs.shuffle(&mut rng);
                recs.truncate(keep);
            }
            records.extend(recs);
        }
        let rated = Split {
            train: Interactions::from_records(train.n_users(), train.n_items(), records),
            ..self.rated.clone()
        };
        Ok((
            LabelledSplit {
                rated,
                rule: self.rule,
            },
            users,
        ))
    }
}

/// Labelled rows for binary data (DURation on douban-hin): each positive of
/// `part`, then `per_positive` items of the same kind (the range of
/// `kinds` that holds it; one kind when `kinds` is empty) that the user has
/// in none of `known`, as negatives. Deterministic for a seed. A user who
/// has every item of a kind gets no negatives there, and an error says so
/// when no positive got one.
pub fn sampled_labels(
    part: &Interactions,
    known: &[&Interactions],
    kinds: &[std::ops::Range<u32>],
    per_positive: usize,
    seed: u64,
) -> Result<Vec<(u32, u32, bool)>> {
    use rand::Rng;
    let whole = 0..part.n_items() as u32;
    let kinds = if kinds.is_empty() {
        std::slice::from_ref(&whole)
    } else {
        kinds
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(part.nnz() * (1 + per_positive));
    let mut negatives = 0usize;
    let mut held_items: Vec<u32> = Vec::new();
    for user in 0..part.n_users() as u32 {
        let items = part.user_items(user);
        if items.is_empty() {
            continue;
        }
        // Once per user: how many distinct items of each kind it holds.
        held_items.clear();
        for k in known {
            held_items.extend_from_slice(k.user_items(user));
        }
        held_items.sort_unstable();
        held_items.dedup();
        let held: Vec<usize> = kinds
            .iter()
            .map(|r| held_items.iter().filter(|i| r.contains(i)).count())
            .collect();
        let seen = |i: u32| held_items.binary_search(&i).is_ok();
        for &item in items {
            out.push((user, item, true));
            let Some(k) = kinds.iter().position(|r| r.contains(&item)) else {
                return Err(DataError::Invalid(format!(
                    "item {item} is in none of the item kinds"
                )));
            };
            if held[k] >= kinds[k].len() {
                continue;
            }
            for _ in 0..per_positive {
                let neg = loop {
                    let i = rng.random_range(kinds[k].clone());
                    if !seen(i) {
                        break i;
                    }
                };
                out.push((user, neg, false));
                negatives += 1;
            }
        }
    }
    if negatives == 0 && per_positive > 0 && !part.is_empty() {
        return Err(DataError::Invalid(
            "no sampled negatives: every user holds every item of its positives' kinds".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rated(rows: &[(u32, u32, f32)]) -> Interactions {
        let records = rows
            .iter()
            .map(|&(user, item, r)| Record {
                user,
                item,
                rating: Some(r),
                timestamp: None,
            })
            .collect();
        Interactions::from_records(3, 4, records)
    }

    #[test]
    fn sampled_labels_take_unseen_items_of_the_positives_kind() {
        let test = Interactions::from_pairs(2, 6, &[(0, 1), (1, 4)]);
        let train = Interactions::from_pairs(2, 6, &[(0, 0), (1, 3), (1, 5)]);
        let kinds = [0..3, 3..6];
        let rows = sampled_labels(&test, &[&train, &test], &kinds, 3, 7).unwrap();
        // User 0 has items 0 and 1 of kind 0: item 2 is its only negative.
        // User 1 holds all of kind 1: no negatives.
        assert_eq!(
            rows,
            vec![
                (0, 1, true),
                (0, 2, false),
                (0, 2, false),
                (0, 2, false),
                (1, 4, true)
            ]
        );
        assert_eq!(
            sampled_labels(&test, &[&train, &test], &kinds, 3, 7).unwrap(),
            rows
        );
        let full = Interactions::from_pairs(1, 2, &[(0, 0), (0, 1)]);
        assert!(sampled_labels(&full, &[&full], &[], 1, 7).is_err());
        // One kind: anything the user has not seen.
        let one = sampled_labels(&test, &[&train, &test], &[], 50, 1).unwrap();
        assert!(one
            .iter()
            .filter(|r| !r.2 && r.0 == 1)
            .all(|r| [0, 1, 2].contains(&r.1)));
        assert_eq!(one.iter().filter(|r| !r.2).count(), 100);
    }

    #[test]
    fn ratings_above_the_threshold_are_positive() {
        let rule = LabelRule {
            positive_above: 3.0,
        };
        let data = rated(&[(0, 0, 5.0), (0, 1, 3.0), (1, 2, 4.0), (2, 3, 1.0)]);
        assert_eq!(
            rule.labelled(&data),
            vec![(0, 0, true), (0, 1, false), (1, 2, true), (2, 3, false)]
        );
        assert_eq!(
            rule.positives(&data).pairs().collect::<Vec<_>>(),
            vec![(0, 0), (1, 2)]
        );
        let implicit = Interactions::from_pairs(1, 1, &[(0, 0)]);
        assert!(rule.is_positive(&implicit.records().next().unwrap()));
        let split = Split {
            train: implicit.clone(),
            valid: implicit.clone(),
            test: implicit,
        };
        assert!(LabelledSplit::new(split, rule).is_err());
    }

    #[test]
    fn cold_start_keeps_at_most_k_training_rows_of_the_chosen_users() {
        let rule = LabelRule {
            positive_above: 3.0,
        };
        let train = rated(&[
            (0, 0, 5.0),
            (0, 1, 2.0),
            (0, 2, 4.0),
            (1, 0, 5.0),
            (1, 1, 5.0),
            (2, 3, 5.0),
        ]);
        let test = rated(&[(0, 3, 5.0), (1, 3, 1.0)]);
        let split = Split {
            train,
            valid: Interactions::empty(3, 4),
            test,
        };
        let s = LabelledSplit::new(split, rule).unwrap();
        let (cold, users) = s.cold_start(1.0, 1, 7).unwrap();
        // Users 0 and 1 have test rows; user 2 has none and keeps its row.
        assert_eq!(users, vec![0, 1]);
        assert_eq!(cold.rated.train.user_degree(0), 1);
        assert_eq!(cold.rated.train.user_degree(1), 1);
        assert_eq!(cold.rated.train.user_degree(2), 1);
        assert_eq!(cold.rated.test, s.rated.test);
        let (same, _) = s.cold_start(1.0, 1, 7).unwrap();
        assert_eq!(same, cold);
        let (none, users) = s.cold_start(0.0, 1, 7).unwrap();
        assert!(users.is_empty());
        assert_eq!(none, s);
        assert!(s.cold_start(1.5, 1, 7).is_err());
    }
}
