//! Stored evaluation negatives: for each test pair, N items the user never
//! interacted with, in the `test.negative` format (`(user,item)\tneg\tneg...`,
//! original ids), so every model of a table ranks the same candidates.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, Result};
use crate::ids::IdMap;
use crate::interactions::Interactions;
use crate::text;

/// `n` distinct items user `u` has in none of `known`, uniformly.
fn draw_unseen(
    u: u32,
    n_items: usize,
    known: &[&Interactions],
    n: usize,
    rng: &mut ChaCha8Rng,
    seen: &mut Vec<bool>,
) -> Result<Vec<u32>> {
    let taken: usize = known.iter().map(|k| k.user_degree(u)).sum();
    if n_items.saturating_sub(taken) < n {
        return Err(DataError::User {
            user: u.to_string(),
            message: format!(
                "{} unseen item(s), too few for {n} negatives (lower `negatives`)",
                n_items.saturating_sub(taken)
            ),
        });
    }
    // A flag per item drawn (the same draws as a linear search, in O(1):
    // 1000 pooled negatives per user made the search quadratic).
    seen.resize(n_items, false);
    let mut negs = Vec::with_capacity(n);
    while negs.len() < n {
        let j = rng.random_range(0..n_items as u32);
        if known.iter().any(|k| k.contains(u, j)) || seen[j as usize] {
            continue;
        }
        seen[j as usize] = true;
        negs.push(j);
    }
    for &j in &negs {
        seen[j as usize] = false;
    }
    Ok(negs)
}

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
        Self::sample_for(test.pairs(), test.n_items(), known, n, seed)
    }

    /// One list of `n` distinct negatives per user of `test` (HHFAN's
    /// pooled protocol: a user's test items all rank against the same
    /// list), avoiding every item the user has in `known`. Entry `k` is
    /// keyed by `(user, the user's first test item)`; a protocol reads the
    /// user's other test items from `test`. Deterministic for a seed.
    pub fn sample_per_user(
        test: &Interactions,
        known: &[&Interactions],
        n: usize,
        seed: u64,
    ) -> Result<Self> {
        let firsts =
            (0..test.n_users() as u32).filter_map(|u| test.user_items(u).first().map(|&i| (u, i)));
        Self::sample_for(firsts, test.n_items(), known, n, seed)
    }

    /// `n` negatives for each of `pairs`, in order, from one stream.
    fn sample_for(
        pairs: impl Iterator<Item = (u32, u32)>,
        n_items: usize,
        known: &[&Interactions],
        n: usize,
        seed: u64,
    ) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = EvalNegatives::default();
        let mut seen = Vec::new();
        for (u, i) in pairs {
            out.pairs.push((u, i));
            out.negatives
                .push(draw_unseen(u, n_items, known, n, &mut rng, &mut seen)?);
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

    /// Writes the `test.negative` format with the data's own ids.
    pub fn write(&self, path: &Path, ids: &dyn Ids) -> Result<()> {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| DataError::io(path, e))?,
        );
        for ((u, i), negs) in self.pairs.iter().zip(&self.negatives) {
            let mut line = format!("({},{})", ids.user_name(*u), ids.item_name(*i));
            for &j in negs {
                line.push('\t');
                line.push_str(&ids.item_name(j));
            }
            line.push('\n');
            f.write_all(line.as_bytes())
                .map_err(|e| DataError::io(path, e))?;
        }
        f.flush().map_err(|e| DataError::io(path, e))
    }

    /// Reads the `test.negative` format (`(user,item)\tneg\tneg...`).
    ///
    /// Every line must hold the same number of distinct negatives, and the
    /// file must end with a line break (a file cut short mid-line is
    /// refused). With `against = Some(check)`, each line's pair must be a
    /// pair of `check.test`, every such pair must have exactly one line,
    /// and no negative may be an item the user has in `check.known`.
    /// Errors give the file, the line and the file's own ids.
    pub fn read(path: &Path, ids: &dyn Ids, against: Option<&Against<'_>>) -> Result<Self> {
        let (bytes, _) = text::read_file(path)?;
        let text = text::decode(&bytes, false).map_err(|m| DataError::file(path, m))?;
        Self::parse(path, &text, ids, against)
    }

    /// [`EvalNegatives::read`] of bytes in memory; `origin` names them.
    pub fn parse(
        origin: &Path,
        bytes: &[u8],
        ids: &dyn Ids,
        against: Option<&Against<'_>>,
    ) -> Result<Self> {
        let path = origin;
        let mut out = EvalNegatives::default();
        let mut first: Option<(usize, usize)> = None;
        let mut line_of: HashMap<(u32, u32), usize> = HashMap::new();
        let (_, ends_with_newline) = text::lines_of(path, bytes, |line_no, line| {
            let err = |m: String| DataError::parse(path, line_no, m);
            let mut fields = Vec::with_capacity(128);
            text::split_fields(line, "\t", &mut fields);
            let head = fields[0];
            let bad_head = || {
                err(format!(
                    "expected \"(user,item)\", found {}",
                    text::show(head)
                ))
            };
            let inner = head
                .strip_prefix('(')
                .and_then(|h| h.strip_suffix(')'))
                .ok_or_else(bad_head)?;
            let (us, is) = inner.split_once(',').ok_or_else(bad_head)?;
            let (us, is) = (us.trim(), is.trim());
            let u = ids
                .user_id(us)
                .ok_or_else(|| err(format!("unknown user id {}", text::show(us))))?;
            let i = ids
                .item_id(is)
                .ok_or_else(|| err(format!("unknown item id {}", text::show(is))))?;
            let mut negs = Vec::with_capacity(fields.len() - 1);
            for s in fields[1..].iter().filter(|s| !s.is_empty()) {
                let j = ids
                    .item_id(s)
                    .ok_or_else(|| err(format!("unknown item id {}", text::show(s))))?;
                if j == i || negs.contains(&j) {
                    return Err(err(format!(
                        "item {} appears twice on the line",
                        text::show(s)
                    )));
                }
                negs.push(j);
            }
            match first {
                _ if negs.is_empty() => return Err(err("no negative items on the line".into())),
                None => first = Some((line_no, negs.len())),
                Some((l, n)) if n != negs.len() => {
                    return Err(err(format!(
                        "{} negative(s), line {l} has {n}: every line must have the same number",
                        negs.len()
                    )))
                }
                Some(_) => {}
            }
            if let Some(prev) = line_of.insert((u, i), line_no) {
                return Err(err(format!("pair ({us},{is}) is on line {prev} too")));
            }
            if let Some(a) = against {
                if !a.test.contains(u, i) {
                    return Err(err(format!(
                        "pair ({us},{is}) is not a pair of the {} split",
                        a.name
                    )));
                }
                if let Some(&j) = negs
                    .iter()
                    .find(|&&j| a.known.iter().any(|k| k.contains(u, j)))
                {
                    return Err(err(format!(
                        "negative item {} is an item of user {us} (in training, validation or test data)",
                        ids.item_name(j)
                    )));
                }
            }
            out.pairs.push((u, i));
            out.negatives.push(negs);
            Ok(())
        })?;
        if !ends_with_newline {
            return Err(DataError::file(
                path,
                "the last line has no line break: the file looks cut short \
                 (end it with a newline if it is complete)",
            ));
        }
        if let Some(a) = against {
            if let Some((u, i)) = a.test.pairs().find(|p| !line_of.contains_key(p)) {
                return Err(DataError::file(
                    path,
                    format!(
                        "pair ({},{}) of the {} split has no line ({} lines for {} pairs)",
                        ids.user_name(u),
                        ids.item_name(i),
                        a.name,
                        out.len(),
                        a.test.nnz()
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// Negatives per pair (every pair has the same number).
    pub fn per_pair(&self) -> usize {
        self.negatives.first().map_or(0, Vec::len)
    }
}

/// What stored negatives must agree with ([`EvalNegatives::read`]).
#[derive(Debug, Clone, Copy)]
pub struct Against<'a> {
    /// The split's name in messages (`test`, `validation`).
    pub name: &'a str,
    /// The held-out pairs: each needs exactly one line.
    pub test: &'a Interactions,
    /// Every interaction of the users a negative must avoid.
    pub known: &'a [&'a Interactions],
}

/// The way between internal ids and the ids in a dataset's files.
pub trait Ids {
    /// A user's internal id.
    fn user_id(&self, original: &str) -> Option<u32>;
    /// An item's internal id.
    fn item_id(&self, original: &str) -> Option<u32>;
    /// A user's id in the files.
    fn user_name(&self, user: u32) -> String;
    /// An item's id in the files.
    fn item_name(&self, item: u32) -> String;
}

/// [`Ids`] of one user and one item [`IdMap`].
#[derive(Debug, Clone, Copy)]
pub struct PlainIds<'a> {
    /// Users.
    pub users: &'a IdMap,
    /// Items.
    pub items: &'a IdMap,
}

impl Ids for PlainIds<'_> {
    fn user_id(&self, original: &str) -> Option<u32> {
        self.users.get(original)
    }
    fn item_id(&self, original: &str) -> Option<u32> {
        self.items.get(original)
    }
    fn user_name(&self, user: u32) -> String {
        self.users.original(user).to_string()
    }
    fn item_name(&self, item: u32) -> String {
        self.items.original(item).to_string()
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
        for ns in &negs.negatives {
            let mut s = ns.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 10);
        }
        let (users, items) = (IdMap::contiguous(2, 1), IdMap::contiguous(30, 1));
        let ids = PlainIds {
            users: &users,
            items: &items,
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test.negative");
        negs.write(&p, &ids).unwrap();
        let against = Against {
            name: "test",
            test: &test,
            known: &[&train, &test],
        };
        let back = EvalNegatives::read(&p, &ids, Some(&against)).unwrap();
        assert_eq!(back, negs);
        assert!(std::fs::read_to_string(&p).unwrap().starts_with("(1,6)\t"));
    }

    /// The error reading `text` as a negatives file of users 1-2 and items
    /// 1-9, checked against test pairs (1,2) and (2,3) with training items
    /// (1,4) and (2,5).
    fn read_err(text: &str) -> String {
        let (users, items) = (IdMap::contiguous(2, 1), IdMap::contiguous(9, 1));
        let ids = PlainIds {
            users: &users,
            items: &items,
        };
        let test = Interactions::from_pairs(2, 9, &[(0, 1), (1, 2)]);
        let train = Interactions::from_pairs(2, 9, &[(0, 3), (1, 4)]);
        let against = Against {
            name: "test",
            test: &test,
            known: &[&train, &test],
        };
        match EvalNegatives::parse(Path::new("n"), text.as_bytes(), &ids, Some(&against)) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_lines_are_errors_with_the_line_and_the_files_ids() {
        assert_eq!(read_err("(1,2)\t6\t7\n(2,3)\t6\t7\n"), "");
        let cases = [
            ("(1,2)\t6\n1,2\t3\n", "n:2: expected \"(user,item)\""),
            ("(1,2)\t19\n", "n:1: unknown item id \"19\""),
            // A line cut short: one candidate where the first has two.
            (
                "(1,2)\t6\t7\n(2,3)\t6\n",
                "n:2: 1 negative(s), line 1 has 2",
            ),
            // The last line cut mid-id.
            (
                "(1,2)\t6\t7\n(2,3)\t6\t7",
                "the last line has no line break",
            ),
            (
                "(1,2)\t6\t6\n(2,3)\t6\t7\n",
                "n:1: item \"6\" appears twice",
            ),
            (
                "(1,2)\t6\t7\n(1,2)\t6\t7\n",
                "n:2: pair (1,2) is on line 1 too",
            ),
            (
                "(1,2)\t6\t7\n(2,6)\t8\t7\n",
                "n:2: pair (2,6) is not a pair of the test split",
            ),
            (
                "(1,2)\t6\t4\n(2,3)\t6\t7\n",
                "n:1: negative item 4 is an item of user 1",
            ),
            (
                "(1,2)\t6\t7\n",
                "n: pair (2,3) of the test split has no line",
            ),
        ];
        for (text, want) in cases {
            let e = read_err(text);
            assert!(e.contains(want), "{text:?}: {e:?} lacks {want:?}");
        }
    }

    #[test]
    fn too_few_items_is_an_error() {
        let test = Interactions::from_pairs(1, 3, &[(0, 0)]);
        assert!(EvalNegatives::sample(&test, &[&test], 5, 0).is_err());
    }
}
