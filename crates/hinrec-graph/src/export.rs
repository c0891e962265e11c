//! Handing a network to petgraph for graph algorithms.

use petgraph::graph::{NodeIndex, UnGraph};

use crate::hin::Hin;

/// A node: its type index and its id within the type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node {
    /// Index into [`Hin::types`].
    pub node_type: usize,
    /// Internal id within the type.
    pub id: u32,
}

/// The network as an undirected petgraph graph; edge weights are relation
/// indices into [`Hin::relations`]. Node `(t, i)` has index
/// `offset[t] + i`, with offsets in type order.
pub fn to_petgraph(hin: &Hin) -> UnGraph<Node, usize> {
    let n: usize = hin.types.iter().map(|t| t.count).sum();
    let mut g = UnGraph::with_capacity(n, hin.nnz());
    let mut offset = Vec::with_capacity(hin.types.len());
    for (t, ty) in hin.types.iter().enumerate() {
        offset.push(g.node_count());
        for id in 0..ty.count as u32 {
            g.add_node(Node { node_type: t, id });
        }
    }
    for (k, r) in hin.relations.iter().enumerate() {
        for (_, (a, b)) in r.matrix.iter() {
            g.add_edge(
                NodeIndex::new(offset[r.src] + a as usize),
                NodeIndex::new(offset[r.dst] + b as usize),
                k,
            );
        }
    }
    g
}
