//! Stored evaluation negatives: for each test pair, N items the user never
//! interacted with, in the `test.negative` format (`(user,item)\tneg\tneg...`,
//! original ids), so every model of a table ranks the same candidates.

use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};
use crate::ids::IdMap;
use crate::interactions::Interactions;
use crate::text;

/// Test pairs with their sampled negative items (internal ids).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EvalNegatives {
    /// (user, positive item) pairs.
    pub pairs: Vec<(u32, u32)>,
    /// `negatives[k]` belongs to `pairs[k]`.
    pub negatives: Vec<Vec<u32>>,
}

impl EvalNegatives {
    /// Samples `n` distinct negatives uniformly for every pair of `test`,
    /// avoiding every item the user has in any of `known` (pass train,
    /// validation and test). Deterministic for a seed.
    pub fn sample(
        test: &Interactions,
        known: &[&Interactions],
        n: usize,
        seed: u64,
    ) -> Result<Self> {
        let n_items = test.n_items();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = EvalNegatives::default();
        let mut seen = Vec::new();
        for (u, i) in test.pairs() {
            let taken: usize = known.iter().map(|k| k.user_degree(u)).sum();
            if n_items.saturating_sub(taken) < n {
                return Err(DataError::Invalid(format!(
                    "user {u} has too few unseen items for {n} negatives"
                )));
            }
            seen.clear();
            let mut negs = Vec::with_capacity(n);
            while negs.len() < n {
                let j = rng.random_range(0..n_items as u32);
                if known.iter().any(|k| k.contains(u, j)) || seen.contains(&j) {
                    continue;
                }
                seen.push(j);
                negs.push(j);
            }
            out.pairs.push((u, i));
            out.negatives.push(negs);
        }
        Ok(out)
    }

    /// Every (user, item) pair a sampled evaluation scores: each held-out
    /// pair followed by its user's negatives.
    pub fn candidate_pairs(&self) -> Vec<(u32, u32)> {
        self.pairs
            .iter()
            .zip(&self.negatives)
            .flat_map(|(&(u, i), n)| std::iter::once((u, i)).chain(n.iter().map(move |&j| (u, j))))
            .collect()
    }

    /// At most `n` of the pairs with their negatives, drawn without
    /// replacement for a seed and kept in their original order (all of them
    /// when `n` is at least [`EvalNegatives::len`]). For a cheaper
    /// validation metric on large datasets.
    pub fn subsample(&self, n: usize, seed: u64) -> Self {
        if n >= self.len() {
            return self.clone();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut keep = rand::seq::index::sample(&mut rng, self.len(), n).into_vec();
        keep.sort_unstable();
        EvalNegatives {
            pairs: keep.iter().map(|&k| self.pairs[k]).collect(),
            negatives: keep.iter().map(|&k| self.negatives[k].clone()).collect(),
        }
    }

    /// Number of test pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Writes the `test.negative` format with original ids.
    pub fn write(
        &self,
        path: &Path,
        users: &IdMap,
        item_name: &dyn Fn(u32) -> String,
    ) -> Result<()> {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| DataError::io(path, e))?,
        );
        for ((u, i), negs) in self.pairs.iter().zip(&self.negatives) {
            let mut line = format!("({},{})", users.original(*u), item_name(*i));
            for &j in negs {
                line.push('\t');
                line.push_str(&item_name(j));
            }
            line.push('\n');
            f.write_all(line.as_bytes())
                .map_err(|e| DataError::io(path, e))?;
        }
        f.flush().map_err(|e| DataError::io(path, e))
    }

    /// Reads the `test.negative` format; ids are resolved with `users` and
    /// `item_id`, and any unknown id is an error naming the line.
    pub fn read(path: &Path, users: &IdMap, item_id: &dyn Fn(&str) -> Option<u32>) -> Result<Self> {
        let mut out = EvalNegatives::default();
        text::for_each_line(path, |line_no, line| {
            let mut fields = Vec::with_capacity(128);
            text::split_fields(line, "\t", &mut fields);
            let head = fields[0];
            let inner = head
                .strip_prefix('(')
                .and_then(|h| h.strip_suffix(')'))
                .ok_or_else(|| {
                    DataError::parse(
                        path,
                        line_no,
                        format!("expected \"(user,item)\", found {head:?}"),
                    )
                })?;
            let (us, is) = inner.split_once(',').ok_or_else(|| {
                DataError::parse(
                    path,
                    line_no,
                    format!("expected \"(user,item)\", found {head:?}"),
                )
            })?;
            let u = users.get(us.trim()).ok_or_else(|| {
                DataError::parse(path, line_no, format!("unknown user id {us:?}"))
            })?;
            let lookup = |s: &str| {
                item_id(s).ok_or_else(|| {
                    DataError::parse(path, line_no, format!("unknown item id {s:?}"))
                })
            };
            let i = lookup(is.trim())?;
            let negs = fields[1..]
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| lookup(s))
                .collect::<Result<Vec<_>>>()?;
            if negs.is_empty() {
                return Err(DataError::parse(
                    path,
                    line_no,
                    "no negative items on the line",
                ));
            }
            out.pairs.push((u, i));
            out.negatives.push(negs);
            Ok(())
        })?;
        Ok(out)
    }

    /// Checks that the pairs are exactly the pairs of `test` and that no
    /// negative is an item of the user in `known`.
    pub fn validate(&self, test: &Interactions, known: &[&Interactions]) -> Result<()> {
        let mut want: Vec<(u32, u32)> = test.pairs().collect();
        let mut have = self.pairs.clone();
        want.sort_unstable();
        have.sort_unstable();
        if want != have {
            return Err(DataError::Invalid(format!(
                "stored negatives cover {} test pairs, the test set has {}",
                have.len(),
                want.len()
            )));
        }
        for (&(u, _), negs) in self.pairs.iter().zip(&self.negatives) {
            if let Some(j) = negs
                .iter()
                .find(|&&j| known.iter().any(|k| k.contains(u, j)))
            {
                return Err(DataError::Invalid(format!(
                    "negative item {j} of user {u} is one of the user's items"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsample_keeps_distinct_pairs_in_order_with_their_negatives() {
        let all = EvalNegatives {
            pairs: (0..10).map(|u| (u, u + 100)).collect(),
            negatives: (0..10).map(|u| vec![u + 200, u + 300]).collect(),
        };
        let sub = all.subsample(4, 9);
        assert_eq!(sub, all.subsample(4, 9));
        assert_eq!(sub.len(), 4);
        assert!(sub.pairs.windows(2).all(|w| w[0].0 < w[1].0));
        for (p, n) in sub.pairs.iter().zip(&sub.negatives) {
            assert_eq!(n, &vec![p.0 + 200, p.0 + 300]);
        }
        assert_eq!(all.subsample(10, 9), all);
        assert_eq!(all.subsample(0, 9).len(), 0);
    }

    #[test]
    fn sample_avoids_known_items_and_round_trips_through_the_file() {
        let train = Interactions::from_pairs(2, 30, &[(0, 0), (0, 1), (1, 2)]);
        let test = Interactions::from_pairs(2, 30, &[(0, 5), (1, 7)]);
        let negs = EvalNegatives::sample(&test, &[&train, &test], 10, 3).unwrap();
        assert_eq!(
            negs,
            EvalNegatives::sample(&test, &[&train, &test], 10, 3).unwrap()
        );
        negs.validate(&test, &[&train, &test]).unwrap();
        for ns in &negs.negatives {
            let mut s = ns.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 10);
        }
        let users = IdMap::contiguous(2, 1);
        let items = IdMap::contiguous(30, 1);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test.negative");
        negs.write(&p, &users, &|i| items.original(i).to_string())
            .unwrap();
        let back = EvalNegatives::read(&p, &users, &|s| items.get(s)).unwrap();
        assert_eq!(back, negs);
        assert!(std::fs::read_to_string(&p).unwrap().starts_with("(1,6)\t"));
    }

    #[test]
    fn too_few_items_and_bad_lines_are_errors() {
        let test = Interactions::from_pairs(1, 3, &[(0, 0)]);
        assert!(EvalNegatives::sample(&test, &[&test], 5, 0).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n");
        let users = IdMap::contiguous(2, 1);
        let items = IdMap::contiguous(3, 1);
        std::fs::write(&p, "(1,2)\t3\n1,2\t3\n").unwrap();
        let e = EvalNegatives::read(&p, &users, &|s| items.get(s)).unwrap_err();
        assert!(e.to_string().contains(":2: expected"), "{e}");
        std::fs::write(&p, "(1,2)\t9\n").unwrap();
        let e = EvalNegatives::read(&p, &users, &|s| items.get(s)).unwrap_err();
        assert!(e.to_string().contains(":1: unknown item id \"9\""), "{e}");
    }
}
