//! Dense 0-based internal ids and the way back to the ids of the file.

use std::collections::HashMap;

/// A bijection between a file's ids (kept as text) and dense `0..len` ids.
///
/// Internal ids follow the sorted order of the original ids (numerically when
/// every id is an integer), so they do not depend on the order of lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdMap {
    originals: Vec<String>,
    index: HashMap<String, u32>,
}

impl IdMap {
    /// Builds the map from any collection of original ids (duplicates allowed).
    pub fn from_originals<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = ids.into_iter().map(Into::into).collect();
        let numeric = v.iter().all(|s| s.parse::<i64>().is_ok());
        if numeric {
            let mut n: Vec<i64> = v.iter().filter_map(|s| s.parse().ok()).collect();
            n.sort_unstable();
            n.dedup();
            v = n.into_iter().map(|x| x.to_string()).collect();
        } else {
            v.sort();
            v.dedup();
        }
        let index = v
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as u32))
            .collect();
        IdMap {
            originals: v,
            index,
        }
    }

    /// `0..n` mapped to themselves plus `base` (the ids of generated data).
    pub fn contiguous(n: usize, base: i64) -> Self {
        Self::from_originals((0..n as i64).map(|i| (i + base).to_string()))
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.originals.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// The internal id of an original id.
    pub fn get(&self, original: &str) -> Option<u32> {
        self.index.get(original).copied().or_else(|| {
            // "007" and "7" are the same numeric id.
            let n: i64 = original.parse().ok()?;
            self.index.get(&n.to_string()).copied()
        })
    }

    /// The original id of an internal id.
    pub fn original(&self, id: u32) -> &str {
        &self.originals[id as usize]
    }

    /// All original ids in internal order.
    pub fn originals(&self) -> &[String] {
        &self.originals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_sort_numerically_and_round_trip() {
        let m = IdMap::from_originals(["10", "2", "2", "33"]);
        assert_eq!(m.len(), 3);
        assert_eq!(m.get("2"), Some(0));
        assert_eq!(m.get("10"), Some(1));
        assert_eq!(m.get("33"), Some(2));
        assert_eq!(m.get("033"), Some(2));
        assert_eq!(m.original(1), "10");
        assert_eq!(m.get("4"), None);
    }

    #[test]
    fn text_ids_sort_lexicographically() {
        let m = IdMap::from_originals(["b", "a", "book:3"]);
        assert_eq!(m.originals(), ["a", "b", "book:3"]);
    }
}
