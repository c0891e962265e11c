//! User-item interactions as compressed sparse rows, both ways.

/// One user-item interaction in internal ids.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record {
    /// Internal user id.
    pub user: u32,
    /// Internal item id.
    pub item: u32,
    /// Explicit rating, when the file has one.
    pub rating: Option<f32>,
    /// Unix time, when the file has one.
    pub timestamp: Option<i64>,
}

impl Record {
    /// A bare implicit interaction.
    pub fn pair(user: u32, item: u32) -> Self {
        Record {
            user,
            item,
            rating: None,
            timestamp: None,
        }
    }
}

/// Interactions of `n_users` users with `n_items` items, stored as CSR by
/// user (items sorted) and by item (users sorted).
///
/// Duplicated (user, item) pairs are merged into one: the occurrence with the
/// latest timestamp wins (ties and files without timestamps: the later one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interactions {
    n_users: usize,
    n_items: usize,
    user_ptr: Vec<usize>,
    user_items: Vec<u32>,
    ratings: Option<Vec<f32>>,
    timestamps: Option<Vec<i64>>,
    item_ptr: Vec<usize>,
    item_users: Vec<u32>,
}

impl Interactions {
    /// Builds the CSR structures from records; ids must be below the sizes.
    ///
    /// # Panics
    /// If a record's id is out of range: loaders validate ids before this.
    pub fn from_records(n_users: usize, n_items: usize, mut records: Vec<Record>) -> Self {
        // Stable sort keeps file order among equal keys, so "later wins" holds.
        records.sort_by_key(|r| (r.user, r.item));
        let mut merged: Vec<Record> = Vec::with_capacity(records.len());
        for r in records {
            assert!(
                (r.user as usize) < n_users && (r.item as usize) < n_items,
                "record out of range"
            );
            match merged.last_mut() {
                Some(last) if last.user == r.user && last.item == r.item => {
                    if r.timestamp.unwrap_or(i64::MIN) >= last.timestamp.unwrap_or(i64::MIN) {
                        *last = r;
                    }
                }
                _ => merged.push(r),
            }
        }
        let has_rating = merged.iter().any(|r| r.rating.is_some());
        let has_time = merged.iter().any(|r| r.timestamp.is_some());
        let mut user_ptr = vec![0usize; n_users + 1];
        for r in &merged {
            user_ptr[r.user as usize + 1] += 1;
        }
        for u in 0..n_users {
            user_ptr[u + 1] += user_ptr[u];
        }
        let user_items: Vec<u32> = merged.iter().map(|r| r.item).collect();
        let ratings = has_rating.then(|| {
            merged
                .iter()
                .map(|r| r.rating.unwrap_or(f32::NAN))
                .collect()
        });
        let timestamps =
            has_time.then(|| merged.iter().map(|r| r.timestamp.unwrap_or(0)).collect());
        let mut item_ptr = vec![0usize; n_items + 1];
        for r in &merged {
            item_ptr[r.item as usize + 1] += 1;
        }
        for i in 0..n_items {
            item_ptr[i + 1] += item_ptr[i];
        }
        let mut fill = item_ptr.clone();
        let mut item_users = vec![0u32; merged.len()];
        // Records are sorted by user, so each item's users come out sorted.
        for r in &merged {
            let slot = &mut fill[r.item as usize];
            item_users[*slot] = r.user;
            *slot += 1;
        }
        Interactions {
            n_users,
            n_items,
            user_ptr,
            user_items,
            ratings,
            timestamps,
            item_ptr,
            item_users,
        }
    }

    /// Builds from bare pairs.
    pub fn from_pairs(n_users: usize, n_items: usize, pairs: &[(u32, u32)]) -> Self {
        let records = pairs.iter().map(|&(u, i)| Record::pair(u, i)).collect();
        Self::from_records(n_users, n_items, records)
    }

    /// An empty set over the same id spaces.
    pub fn empty(n_users: usize, n_items: usize) -> Self {
        Self::from_records(n_users, n_items, Vec::new())
    }

    /// Number of users (the id space, not only those with interactions).
    pub fn n_users(&self) -> usize {
        self.n_users
    }

    /// Number of items (the id space).
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Number of distinct (user, item) pairs.
    pub fn nnz(&self) -> usize {
        self.user_items.len()
    }

    /// Whether there is no interaction at all.
    pub fn is_empty(&self) -> bool {
        self.user_items.is_empty()
    }

    /// Items of `user`, sorted.
    pub fn user_items(&self, user: u32) -> &[u32] {
        let u = user as usize;
        &self.user_items[self.user_ptr[u]..self.user_ptr[u + 1]]
    }

    /// Users of `item`, sorted.
    pub fn item_users(&self, item: u32) -> &[u32] {
        let i = item as usize;
        &self.item_users[self.item_ptr[i]..self.item_ptr[i + 1]]
    }

    /// Number of items of `user`.
    pub fn user_degree(&self, user: u32) -> usize {
        self.user_items(user).len()
    }

    /// Number of users of `item`.
    pub fn item_degree(&self, item: u32) -> usize {
        self.item_users(item).len()
    }

    /// Whether `user` interacted with `item`.
    pub fn contains(&self, user: u32, item: u32) -> bool {
        self.user_items(user).binary_search(&item).is_ok()
    }

    /// The user-major row pointer (length `n_users + 1`).
    pub fn user_ptr(&self) -> &[usize] {
        &self.user_ptr
    }

    /// The user-major column indices (items).
    pub fn user_indices(&self) -> &[u32] {
        &self.user_items
    }

    /// The item-major row pointer (length `n_items + 1`).
    pub fn item_ptr(&self) -> &[usize] {
        &self.item_ptr
    }

    /// The item-major column indices (users).
    pub fn item_indices(&self) -> &[u32] {
        &self.item_users
    }

    /// Whether ratings are stored.
    pub fn has_ratings(&self) -> bool {
        self.ratings.is_some()
    }

    /// Whether timestamps are stored.
    pub fn has_timestamps(&self) -> bool {
        self.timestamps.is_some()
    }

    /// The interactions of `n` of the users with any, drawn without
    /// replacement with `seed` (all of them when fewer): full ranking on a
    /// sample of test users where scoring every user is too costly.
    pub fn sample_users(&self, n: usize, seed: u64) -> Interactions {
        use rand::seq::IndexedRandom;
        use rand::SeedableRng;
        let users: Vec<u32> = (0..self.n_users as u32)
            .filter(|&u| self.user_degree(u) > 0)
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let keep: std::collections::HashSet<u32> =
            users.choose_multiple(&mut rng, n).copied().collect();
        let pairs: Vec<(u32, u32)> = self.pairs().filter(|(u, _)| keep.contains(u)).collect();
        Interactions::from_pairs(self.n_users, self.n_items, &pairs)
    }

    /// Number of users with at least one interaction.
    pub fn active_users(&self) -> usize {
        (0..self.n_users as u32)
            .filter(|&u| self.user_degree(u) > 0)
            .count()
    }

    /// Number of items with at least one interaction.
    pub fn active_items(&self) -> usize {
        (0..self.n_items as u32)
            .filter(|&i| self.item_degree(i) > 0)
            .count()
    }

    /// All interactions of `user` as records.
    pub fn user_records(&self, user: u32) -> impl Iterator<Item = Record> + '_ {
        let u = user as usize;
        (self.user_ptr[u]..self.user_ptr[u + 1]).map(move |k| self.record_at(user, k))
    }

    /// All interactions, user-major.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        (0..self.n_users as u32).flat_map(move |u| self.user_records(u))
    }

    /// All (user, item) pairs, user-major.
    pub fn pairs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.n_users as u32).flat_map(move |u| self.user_items(u).iter().map(move |&i| (u, i)))
    }

    fn record_at(&self, user: u32, k: usize) -> Record {
        Record {
            user,
            item: self.user_items[k],
            rating: self.ratings.as_ref().map(|r| r[k]),
            timestamp: self.timestamps.as_ref().map(|t| t[k]),
        }
    }

    /// Keeps the interactions for which `keep` is true.
    pub fn filter(&self, mut keep: impl FnMut(&Record) -> bool) -> Self {
        let records = self.records().filter(|r| keep(r)).collect();
        Self::from_records(self.n_users, self.n_items, records)
    }

    /// Union with another set over the same id spaces.
    pub fn union(&self, other: &Interactions) -> Self {
        assert_eq!((self.n_users, self.n_items), (other.n_users, other.n_items));
        let records = self.records().chain(other.records()).collect();
        Self::from_records(self.n_users, self.n_items, records)
    }

    /// Number of interactions of every item (its popularity).
    pub fn item_counts(&self) -> Vec<u32> {
        (0..self.n_items as u32)
            .map(|i| self.item_degree(i) as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_sample_keeps_whole_users_and_is_seeded() {
        let x = Interactions::from_pairs(5, 4, &[(0, 1), (0, 2), (1, 1), (3, 0), (4, 3)]);
        let s = x.sample_users(2, 9);
        assert_eq!(s.active_users(), 2);
        assert!((0..5).all(|u| s.user_degree(u) == 0 || s.user_degree(u) == x.user_degree(u)));
        assert_eq!(s, x.sample_users(2, 9));
        assert_eq!(x.sample_users(10, 9), x);
    }

    fn rec(u: u32, i: u32, r: f32, t: i64) -> Record {
        Record {
            user: u,
            item: i,
            rating: Some(r),
            timestamp: Some(t),
        }
    }

    #[test]
    fn csr_both_ways_and_duplicates_merged_latest_wins() {
        let x = Interactions::from_records(
            3,
            4,
            vec![
                rec(1, 3, 5.0, 10),
                rec(0, 2, 1.0, 5),
                rec(1, 0, 2.0, 7),
                rec(1, 3, 2.0, 20),
                rec(1, 3, 4.0, 15),
            ],
        );
        assert_eq!(x.nnz(), 3);
        assert_eq!(x.user_items(1), &[0, 3]);
        assert_eq!(x.user_items(2), &[] as &[u32]);
        assert_eq!(x.item_users(3), &[1]);
        assert_eq!(x.item_users(0), &[1]);
        assert!(x.contains(0, 2) && !x.contains(0, 3));
        let r: Vec<Record> = x.user_records(1).collect();
        assert_eq!(r[1], rec(1, 3, 2.0, 20));
        assert_eq!(x.active_users(), 2);
        assert_eq!(x.active_items(), 3);
        assert_eq!(x.item_counts(), vec![1, 0, 1, 1]);
    }

    #[test]
    fn filter_and_union_round_trip() {
        let x = Interactions::from_pairs(2, 3, &[(0, 0), (0, 1), (1, 2)]);
        let a = x.filter(|r| r.item != 1);
        let b = x.filter(|r| r.item == 1);
        assert_eq!(a.nnz() + b.nnz(), 3);
        assert_eq!(a.union(&b), x);
    }
}
