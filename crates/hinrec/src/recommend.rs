//! Top-k recommendation for one user.

use hinrec_data::Split;
use hinrec_eval::{ScoreError, Scorer};

/// The `k` best-scored items for `user` that are not among the user's
/// training or validation items, best first, with their scores.
pub fn top_k<S: Scorer + ?Sized>(
    model: &S,
    split: &Split,
    user: u32,
    k: usize,
) -> Result<Vec<(u32, f32)>, ScoreError> {
    let mut scores = vec![0f32; model.n_items()];
    model.score_users(&[user], &mut scores)?;
    let mut known = vec![false; scores.len()];
    for i in split.known_items(user) {
        known[i as usize] = true;
    }
    let mut items: Vec<(u32, f32)> = (0..scores.len() as u32)
        .filter(|&i| !known[i as usize])
        .map(|i| (i, scores[i as usize]))
        .collect();
    let by_score = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if items.len() > k {
        items.select_nth_unstable_by(k, by_score);
        items.truncate(k);
    }
    items.sort_unstable_by(by_score);
    Ok(items)
}

/// [`top_k`] among `candidates` only (a retrieval index's items for the
/// user, GLRS's Algorithm 1): only they are scored.
pub fn top_k_within<S: Scorer + ?Sized>(
    model: &S,
    split: &Split,
    user: u32,
    candidates: &[u32],
    k: usize,
) -> Result<Vec<(u32, f32)>, ScoreError> {
    let known: std::collections::HashSet<u32> = split.known_items(user).collect();
    let pairs: Vec<(u32, u32)> = candidates
        .iter()
        .filter(|i| !known.contains(i))
        .map(|&i| (user, i))
        .collect();
    let mut scores = vec![0f32; pairs.len()];
    model.score_pairs(&pairs, &mut scores)?;
    let mut items: Vec<(u32, f32)> = pairs.iter().map(|p| p.1).zip(scores).collect();
    let by_score = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    items.sort_unstable_by(by_score);
    items.truncate(k);
    Ok(items)
}
