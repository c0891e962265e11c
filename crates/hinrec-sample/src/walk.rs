//! Random walk with restart over a typed graph, and HHFAN's neighbour
//! groups (hhfan.md III.D, after HetGNN): from every node, walk (going back
//! to the start with probability `restart` at each step) until `collect`
//! nodes are gathered under per-type quotas, then keep each type's `k_t`
//! most visited, ties to the smaller id, padded and masked.
//!
//! Every start node draws from its own stream (the seed, stream = node),
//! so the groups do not depend on the thread count.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Nodes of several types numbered globally: type `t` holds the ids
/// `offsets[t]..offsets[t + 1]`; undirected edges in CSR.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedGraph {
    offsets: Vec<u32>,
    indptr: Vec<usize>,
    indices: Vec<u32>,
}

/// A bad graph or walk setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkError(pub String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "random walk: {}", self.0)
    }
}

impl std::error::Error for WalkError {}

impl TypedGraph {
    /// A graph of `counts[t]` nodes of each type and the undirected `edges`
    /// between global ids (duplicates merged, self-loops dropped).
    pub fn new(counts: &[usize], edges: &[(u32, u32)]) -> Result<Self, WalkError> {
        let mut offsets = vec![0u32];
        for &c in counts {
            let next = (*offsets.last().unwrap_or(&0) as usize)
                .checked_add(c)
                .filter(|&n| n <= u32::MAX as usize)
                .ok_or_else(|| WalkError("more than 2^32 nodes".into()))?;
            offsets.push(next as u32);
        }
        let n = *offsets.last().unwrap_or(&0) as usize;
        let mut both: Vec<(u32, u32)> = Vec::with_capacity(edges.len() * 2);
        for &(a, b) in edges {
            if a as usize >= n || b as usize >= n {
                return Err(WalkError(format!("edge ({a}, {b}) outside the {n} nodes")));
            }
            if a != b {
                both.push((a, b));
                both.push((b, a));
            }
        }
        both.sort_unstable();
        both.dedup();
        let mut indptr = vec![0usize; n + 1];
        for &(a, _) in &both {
            indptr[a as usize + 1] += 1;
        }
        for v in 0..n {
            indptr[v + 1] += indptr[v];
        }
        let indices = both.into_iter().map(|e| e.1).collect();
        Ok(TypedGraph {
            offsets,
            indptr,
            indices,
        })
    }

    /// Nodes in all.
    pub fn n_nodes(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Node types.
    pub fn n_types(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The global id of node `local` of type `t`.
    pub fn global(&self, t: usize, local: u32) -> u32 {
        self.offsets[t] + local
    }

    /// The type of global node `v` and its id within the type.
    pub fn local(&self, v: u32) -> (usize, u32) {
        let t = self.offsets.partition_point(|&o| o <= v) - 1;
        (t, v - self.offsets[t])
    }

    /// The neighbours of global node `v`, ascending.
    pub fn neighbors(&self, v: u32) -> &[u32] {
        &self.indices[self.indptr[v as usize]..self.indptr[v as usize + 1]]
    }

    /// Nodes of type `t`.
    pub fn count(&self, t: usize) -> usize {
        (self.offsets[t + 1] - self.offsets[t]) as usize
    }

    /// The first global id of each type (and the node count last), the
    /// CSR row pointers and the neighbour ids: for exporting the graph.
    pub fn csr(&self) -> (&[u32], &[usize], &[u32]) {
        (&self.offsets, &self.indptr, &self.indices)
    }

    /// Undirected edges (each counted once).
    pub fn n_edges(&self) -> usize {
        self.indices.len() / 2
    }

    /// Nodes of type `target` met by a walk from `start` that restarts
    /// with probability `restart` at each step and always after `depth`
    /// steps, so every node met is within distance `depth` of `start`
    /// (HHFAN's training positives, III.F): `count` visits (repeats
    /// included) as local ids of `target`, fewer when `max_steps` run out
    /// first or none is reachable.
    pub fn walk_within<R: Rng>(
        &self,
        start: u32,
        (target, count): (usize, usize),
        depth: usize,
        restart: f64,
        max_steps: usize,
        rng: &mut R,
    ) -> Vec<u32> {
        let mut out = Vec::with_capacity(count);
        if self.neighbors(start).is_empty() || depth == 0 {
            return out;
        }
        let (mut at, mut d) = (start, 0);
        for _ in 0..max_steps {
            if out.len() >= count {
                break;
            }
            if d >= depth || (d > 0 && rng.random_bool(restart)) {
                (at, d) = (start, 0);
            }
            let nb = self.neighbors(at);
            if nb.is_empty() {
                (at, d) = (start, 0);
                continue;
            }
            at = nb[rng.random_range(0..nb.len())];
            d += 1;
            let (t, local) = self.local(at);
            if t == target && at != start {
                out.push(local);
            }
        }
        out
    }
}

/// How the walks run and what they keep.
#[derive(Debug, Clone, PartialEq)]
pub struct WalkConfig {
    /// Probability of going back to the start at each step (HetGNN: 0.5).
    pub restart: f64,
    /// Nodes collected per start node (HetGNN: about 100).
    pub collect: usize,
    /// At most this many collected nodes of each type.
    pub quotas: Vec<usize>,
    /// Neighbours kept per type (HetGNN: 10 / 10 / 3).
    pub keep: Vec<usize>,
    /// Steps per start node at most, as a multiple of `collect` (a small
    /// component may never fill its quotas).
    pub max_steps_per_node: usize,
    /// The walks' seed.
    pub seed: u64,
}

impl WalkConfig {
    fn check(&self, g: &TypedGraph) -> Result<(), WalkError> {
        if !(0.0..1.0).contains(&self.restart) {
            return Err(WalkError(format!(
                "restart {} is not in [0, 1)",
                self.restart
            )));
        }
        if self.quotas.len() != g.n_types() || self.keep.len() != g.n_types() {
            return Err(WalkError(format!(
                "{} quotas and {} kept counts for {} node types",
                self.quotas.len(),
                self.keep.len(),
                g.n_types()
            )));
        }
        if self.collect == 0 || self.max_steps_per_node == 0 {
            return Err(WalkError(
                "collect and max_steps_per_node must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Every node's neighbour groups: per type `t`, `keep[t]` slots of ids
/// within type `t`, most visited first, padded with 0 and masked.
#[derive(Debug, Clone, PartialEq)]
pub struct NeighborGroups {
    keep: Vec<usize>,
    starts: Vec<usize>,
    width: usize,
    ids: Vec<u32>,
    mask: Vec<f32>,
}

impl NeighborGroups {
    /// Walks from every node of `g` (in parallel; the result is the same on
    /// any thread count).
    pub fn sample(g: &TypedGraph, cfg: &WalkConfig) -> Result<Self, WalkError> {
        cfg.check(g)?;
        let mut starts = vec![0];
        for &k in &cfg.keep {
            starts.push(starts.last().unwrap_or(&0) + k);
        }
        let width = *starts.last().unwrap_or(&0);
        let rows: Vec<(Vec<u32>, Vec<f32>)> = (0..g.n_nodes() as u32)
            .into_par_iter()
            .map(|v| groups_of(g, cfg, v, &starts, width))
            .collect();
        let mut ids = Vec::with_capacity(rows.len() * width);
        let mut mask = Vec::with_capacity(rows.len() * width);
        for (i, m) in rows {
            ids.extend(i);
            mask.extend(m);
        }
        Ok(NeighborGroups {
            keep: cfg.keep.clone(),
            starts,
            width,
            ids,
            mask,
        })
    }

    /// Node `v`'s slots of type `t` (ids within the type).
    pub fn ids(&self, v: u32, t: usize) -> &[u32] {
        let at = v as usize * self.width + self.starts[t];
        &self.ids[at..at + self.keep[t]]
    }

    /// Node `v`'s mask of type `t` (1 for a real neighbour).
    pub fn mask(&self, v: u32, t: usize) -> &[f32] {
        let at = v as usize * self.width + self.starts[t];
        &self.mask[at..at + self.keep[t]]
    }

    /// Node `v`'s real neighbours of type `t`: they fill the first slots.
    pub fn len(&self, v: u32, t: usize) -> usize {
        self.mask(v, t).iter().take_while(|&&m| m > 0.0).count()
    }

    /// Slots per type.
    pub fn keep(&self) -> &[usize] {
        &self.keep
    }

    /// Nodes covered.
    pub fn n_nodes(&self) -> usize {
        self.ids.len() / self.width.max(1)
    }

    /// The slots' ids and mask, row-major (node, then type, then slot), for
    /// saving.
    pub fn parts(&self) -> (&[u32], &[f32]) {
        (&self.ids, &self.mask)
    }

    /// Groups from what [`NeighborGroups::parts`] returned; an error when
    /// the sizes disagree or a mask is not 1s then 0s.
    pub fn from_parts(keep: Vec<usize>, ids: Vec<u32>, mask: Vec<f32>) -> Result<Self, WalkError> {
        let mut starts = vec![0];
        for &k in &keep {
            starts.push(starts.last().unwrap_or(&0) + k);
        }
        let width = *starts.last().unwrap_or(&0);
        if ids.len() != mask.len() || (width > 0 && !ids.len().is_multiple_of(width)) {
            return Err(WalkError(format!(
                "{} ids and {} mask values for groups {width} wide",
                ids.len(),
                mask.len()
            )));
        }
        let g = NeighborGroups {
            keep,
            starts,
            width,
            ids,
            mask,
        };
        for v in 0..g.n_nodes() as u32 {
            for t in 0..g.keep.len() {
                let m = g.mask(v, t);
                let l = g.len(v, t);
                if m[l..].iter().any(|&x| x != 0.0) {
                    return Err(WalkError(format!("node {v}: type {t}'s mask has a gap")));
                }
            }
        }
        Ok(g)
    }
}

/// One start node's walk and its groups, row-major over types.
fn groups_of(
    g: &TypedGraph,
    cfg: &WalkConfig,
    v: u32,
    starts: &[usize],
    width: usize,
) -> (Vec<u32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(v as u64);
    let mut met: Vec<u32> = Vec::with_capacity(cfg.collect);
    let mut per_type = vec![0usize; g.n_types()];
    let mut collected = 0;
    let mut at = v;
    let max_steps = cfg.collect.saturating_mul(cfg.max_steps_per_node);
    if !g.neighbors(v).is_empty() {
        for _ in 0..max_steps {
            if collected >= cfg.collect {
                break;
            }
            let next = if at != v && rng.random_bool(cfg.restart) {
                v
            } else {
                let nb = g.neighbors(at);
                nb[rng.random_range(0..nb.len())]
            };
            at = next;
            if at == v {
                continue;
            }
            let (t, _) = g.local(at);
            if per_type[t] >= cfg.quotas[t] {
                continue;
            }
            per_type[t] += 1;
            collected += 1;
            met.push(at);
        }
    }
    // (node, visits): sorted, then counted in runs.
    met.sort_unstable();
    let mut visits: Vec<(u32, u32)> = Vec::new();
    for &node in &met {
        match visits.last_mut() {
            Some(x) if x.0 == node => x.1 += 1,
            _ => visits.push((node, 1)),
        }
    }
    // Most visited first, ties to the smaller id.
    visits.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut ids = vec![0u32; width];
    let mut mask = vec![0f32; width];
    let mut filled = vec![0usize; starts.len() - 1];
    for &(node, _) in &visits {
        let (t, local) = g.local(node);
        if filled[t] < cfg.keep[t] {
            let slot = starts[t] + filled[t];
            ids[slot] = local;
            mask[slot] = 1.0;
            filled[t] += 1;
        }
    }
    (ids, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users 0-2, items 3-6, one attribute 7: user 0 bought items 0 and 1,
    /// user 1 item 1, user 2 item 2; items 0 and 1 carry the attribute.
    fn graph() -> TypedGraph {
        TypedGraph::new(
            &[3, 4, 1],
            &[(0, 3), (0, 4), (1, 4), (2, 5), (3, 7), (4, 7), (0, 3)],
        )
        .unwrap()
    }

    fn cfg(seed: u64) -> WalkConfig {
        WalkConfig {
            restart: 0.5,
            collect: 40,
            quotas: vec![20, 20, 20],
            keep: vec![2, 2, 1],
            max_steps_per_node: 50,
            seed,
        }
    }

    #[test]
    fn the_graph_is_undirected_typed_and_merged() {
        let g = graph();
        assert_eq!(g.n_nodes(), 8);
        assert_eq!(g.neighbors(0), &[3, 4]);
        assert_eq!(g.neighbors(3), &[0, 7]);
        assert_eq!(g.local(7), (2, 0));
        assert_eq!(g.local(3), (1, 0));
        assert_eq!(g.global(1, 2), 5);
        assert!(g.neighbors(6).is_empty());
        assert!(TypedGraph::new(&[2], &[(0, 2)]).is_err());
    }

    #[test]
    fn groups_keep_the_most_visited_reachable_nodes_per_type() {
        let g = graph();
        let n = NeighborGroups::sample(&g, &cfg(1)).unwrap();
        // User 0 reaches items 0 and 1 (local 0 and 1), user 1 through
        // item 1, and the attribute; never user 2 or item 2.
        let mut items = n.ids(0, 1).to_vec();
        items.sort_unstable();
        assert_eq!(items, vec![0, 1]);
        assert_eq!(n.mask(0, 1), &[1.0, 1.0]);
        assert_eq!((n.ids(0, 0), n.mask(0, 0)), (&[1, 0][..], &[1.0, 0.0][..]));
        assert_eq!((n.ids(0, 2), n.mask(0, 2)), (&[0][..], &[1.0][..]));
        // User 2's component is user 2 and item 2 alone.
        assert_eq!(n.ids(2, 1)[0], 2);
        assert_eq!(n.mask(2, 1), &[1.0, 0.0]);
        assert_eq!(n.mask(2, 0), &[0.0, 0.0]);
        // An isolated node has no neighbours at all.
        assert!(n.mask(6, 0).iter().chain(n.mask(6, 1)).all(|&m| m == 0.0));
    }

    #[test]
    fn quotas_cap_a_type_and_results_do_not_depend_on_threads() {
        let g = graph();
        let mut c = cfg(3);
        c.quotas = vec![20, 20, 0];
        let n = NeighborGroups::sample(&g, &c).unwrap();
        assert_eq!(n.mask(0, 2), &[0.0]);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| NeighborGroups::sample(&g, &cfg(5)).unwrap());
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(|| NeighborGroups::sample(&g, &cfg(5)).unwrap());
        assert_eq!(one, two);
    }

    #[test]
    fn walks_within_a_depth_stay_within_that_distance() {
        let g = graph();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Depth 1 from user 0: its own items 0 and 1 only.
        let near = g.walk_within(0, (1, 50), 1, 0.5, 1000, &mut rng);
        assert_eq!(near.len(), 50);
        assert!(near.iter().all(|&i| i == 0 || i == 1));
        // Depth 3 also reaches nothing new here (item 1's users have no
        // other item), but never user 2's item 2.
        let far = g.walk_within(1, (1, 50), 3, 0.3, 1000, &mut rng);
        assert!(far.contains(&0) && far.contains(&1) && !far.contains(&2));
        assert!(g.walk_within(6, (1, 5), 3, 0.3, 100, &mut rng).is_empty());
    }

    #[test]
    fn groups_round_trip_through_their_parts() {
        let g = graph();
        let n = NeighborGroups::sample(&g, &cfg(2)).unwrap();
        let (ids, mask) = n.parts();
        let back =
            NeighborGroups::from_parts(n.keep().to_vec(), ids.to_vec(), mask.to_vec()).unwrap();
        assert_eq!(back, n);
        assert_eq!(n.len(0, 1), 2);
        let mut gap = mask.to_vec();
        gap[0] = 0.0;
        gap[1] = 1.0;
        assert!(NeighborGroups::from_parts(n.keep().to_vec(), ids.to_vec(), gap).is_err());
        assert!(NeighborGroups::from_parts(vec![2], vec![0; 3], vec![0.0; 3]).is_err());
    }

    #[test]
    fn bad_settings_are_errors() {
        let g = graph();
        for bad in [
            WalkConfig {
                restart: 1.0,
                ..cfg(1)
            },
            WalkConfig {
                keep: vec![1, 1],
                ..cfg(1)
            },
            WalkConfig {
                collect: 0,
                ..cfg(1)
            },
        ] {
            assert!(NeighborGroups::sample(&g, &bad).is_err());
        }
    }
}
