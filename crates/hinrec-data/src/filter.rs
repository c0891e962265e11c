//! Filters: a rating threshold and the iterated k-core.

use crate::interactions::Interactions;

/// Keeps interactions rated at least `min` (interactions without a rating
/// are kept: they are implicit already).
pub fn min_rating(data: &Interactions, min: f32) -> Interactions {
    data.filter(|r| r.rating.is_none_or(|x| x >= min))
}

/// Keeps the users with at least `min` interactions (one pass; items are
/// left alone). Ids keep their meaning.
pub fn min_user_interactions(data: &Interactions, min: usize) -> Interactions {
    if min <= 1 {
        return data.clone();
    }
    let keep: Vec<bool> = (0..data.n_users() as u32)
        .map(|u| data.user_degree(u) >= min)
        .collect();
    data.filter(|r| keep[r.user as usize])
}

/// Repeatedly drops users with fewer than `min_user` interactions and items
/// with fewer than `min_item`, until every remaining user and item meets its
/// bound. Ids keep their meaning; dropped users and items end with none.
pub fn k_core(data: &Interactions, min_user: usize, min_item: usize) -> Interactions {
    let mut cur = data.clone();
    loop {
        let user_ok: Vec<bool> = (0..cur.n_users() as u32)
            .map(|u| cur.user_degree(u) >= min_user)
            .collect();
        let item_ok: Vec<bool> = (0..cur.n_items() as u32)
            .map(|i| cur.item_degree(i) >= min_item)
            .collect();
        let next = cur.filter(|r| user_ok[r.user as usize] && item_ok[r.item as usize]);
        if next.nnz() == cur.nnz() {
            return next;
        }
        cur = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interactions::Record;

    #[test]
    fn threshold_keeps_ratings_at_or_above() {
        let recs = [(0, 0, 5.0), (0, 1, 3.0), (1, 0, 4.0)]
            .iter()
            .map(|&(u, i, r)| Record {
                user: u,
                item: i,
                rating: Some(r),
                timestamp: None,
            })
            .collect();
        let x = Interactions::from_records(2, 2, recs);
        let y = min_rating(&x, 4.0);
        assert_eq!(y.pairs().collect::<Vec<_>>(), vec![(0, 0), (1, 0)]);
    }

    #[test]
    fn user_filter_is_one_pass() {
        // User 0 has 3 items, user 1 has 2, user 2 has 1: min 2 keeps users
        // 0 and 1, and item 2 (now held by user 0 only) stays.
        let x = Interactions::from_pairs(3, 3, &[(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 1)]);
        let y = min_user_interactions(&x, 2);
        assert_eq!(y.nnz(), 5);
        assert_eq!(y.user_degree(2), 0);
        assert_eq!(y.n_users(), 3, "ids keep their meaning");
        assert_eq!(min_user_interactions(&x, 0).nnz(), 6);
    }

    #[test]
    fn k_core_iterates_to_a_fixed_point() {
        // Item 2 has one user; dropping it leaves user 2 with one item, so
        // user 2 drops in the next round; items 0 and 1 keep two users.
        let x = Interactions::from_pairs(3, 3, &[(0, 0), (1, 0), (0, 1), (2, 1), (2, 2), (1, 1)]);
        let y = k_core(&x, 2, 2);
        assert_eq!(
            y.pairs().collect::<Vec<_>>(),
            vec![(0, 0), (0, 1), (1, 0), (1, 1)]
        );
        let z = k_core(&x, 3, 3);
        assert!(z.is_empty());
    }
}
