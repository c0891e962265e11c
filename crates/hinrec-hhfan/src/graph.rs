//! The modality-aware heterogeneous information graph (M-HIG, hhfan.md
//! III.C) built from a dataset's HIN: users, items, every attribute type
//! linked to them, and one "content" type per dense item feature whose
//! nodes are that feature's k-means clusters (videos that look or sound
//! alike share a node; the node's feature is the centroid).

use hinrec_cluster::kmeans::{KMeans, KMeansConfig};
use hinrec_graph::Hin;
use hinrec_sample::walk::TypedGraph;

use crate::params::{HhfanError, Result};

/// What a node type is to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The users (type 0).
    User,
    /// The items (type 1).
    Item,
    /// An attribute type (demographics, genres, quantised content).
    Attribute,
}

/// One node type of the M-HIG.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeKind {
    /// Name (`user`, `genre`, `image`).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Nodes of this type.
    pub count: usize,
    /// Content feature width, 0 for nodes with an ID embedding only.
    pub feature_dim: usize,
    /// Content features, row-major (`count x feature_dim`).
    pub features: Vec<f32>,
}

/// The M-HIG: its node types (users, items, then attributes) and its
/// undirected typed graph over global ids.
#[derive(Debug, Clone)]
pub struct Mhig {
    /// Node types in global-id order.
    pub kinds: Vec<NodeKind>,
    /// The graph.
    pub graph: TypedGraph,
}

impl Mhig {
    /// The M-HIG of `hin` (built from training interactions only): the
    /// user type, its single item type, every other type that a relation
    /// links (to anything), and each dense feature of the item type
    /// quantised into `clusters` nodes with k-means (seeded by `seed`).
    pub fn build(hin: &Hin, clusters: usize, seed: u64) -> Result<Self> {
        let inter = hin
            .relations
            .first()
            .ok_or_else(|| HhfanError::Data("the HIN has no interactions".into()))?;
        let (user_t, item_t) = (inter.src, inter.dst);
        if hin
            .relations
            .iter()
            .skip(1)
            .any(|r| r.name.starts_with("interactions"))
        {
            return Err(HhfanError::Data(
                "HHFAN takes one item type; this dataset has several".into(),
            ));
        }
        // HIN type -> M-HIG type.
        let mut map = vec![usize::MAX; hin.types.len()];
        let mut kinds = Vec::new();
        for (t, role) in [(user_t, Role::User), (item_t, Role::Item)] {
            map[t] = kinds.len();
            kinds.push(kind(&hin.types[t].name, role, hin.types[t].count));
        }
        for r in hin.relations.iter().skip(1) {
            for t in [r.src, r.dst] {
                if map[t] == usize::MAX && r.matrix.nnz() > 0 {
                    map[t] = kinds.len();
                    kinds.push(kind(
                        &hin.types[t].name,
                        Role::Attribute,
                        hin.types[t].count,
                    ));
                }
            }
        }
        let mut edges: Vec<(usize, u32, usize, u32)> = Vec::new();
        for r in &hin.relations {
            for (a, row) in r.matrix.outer_iterator().enumerate() {
                for (b, _) in row.iter() {
                    edges.push((map[r.src], a as u32, map[r.dst], b as u32));
                }
            }
        }
        for f in hin.features.iter().filter(|f| f.node_type == item_t) {
            if clusters == 0 {
                return Err(HhfanError::Config(
                    "content_clusters must be positive to quantise item features".into(),
                ));
            }
            let n = hin.types[item_t].count;
            if f.dim == 0 || f.data.len() != n * f.dim {
                return Err(HhfanError::Data(format!(
                    "feature {}: {} values for {n} items",
                    f.name,
                    f.data.len()
                )));
            }
            let km = KMeans::fit(
                &f.data,
                f.dim,
                &KMeansConfig {
                    k: clusters.min(n),
                    max_iter: 50,
                    seed: seed ^ (kinds.len() as u64),
                },
            )
            .map_err(|e| HhfanError::Data(format!("feature {}: {e}", f.name)))?;
            let t = kinds.len();
            let mut k = kind(&f.name, Role::Attribute, km.k());
            k.feature_dim = f.dim;
            k.features = (0..km.k() as u32)
                .flat_map(|c| km.centroid(c).to_vec())
                .collect();
            kinds.push(k);
            for (item, &c) in km.assignment.iter().enumerate() {
                edges.push((map[item_t], item as u32, t, c));
            }
        }
        let counts: Vec<usize> = kinds.iter().map(|k| k.count).collect();
        let mut offsets = vec![0u32];
        for &c in &counts {
            offsets.push(offsets.last().copied().unwrap_or(0) + c as u32);
        }
        let global: Vec<(u32, u32)> = edges
            .iter()
            .map(|&(ta, a, tb, b)| (offsets[ta] + a, offsets[tb] + b))
            .collect();
        let graph =
            TypedGraph::new(&counts, &global).map_err(|e| HhfanError::Data(e.to_string()))?;
        Ok(Mhig { kinds, graph })
    }

    /// Users.
    pub fn n_users(&self) -> usize {
        self.kinds[0].count
    }

    /// Items.
    pub fn n_items(&self) -> usize {
        self.kinds[1].count
    }
}

fn kind(name: &str, role: Role, count: usize) -> NodeKind {
    NodeKind {
        name: name.into(),
        role,
        count,
        feature_dim: 0,
        features: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hinrec_graph::{Adjacency, NodeFeatures, NodeType};

    fn hin(features: bool) -> Hin {
        let ty = |name: &str, count| NodeType {
            name: name.into(),
            code: None,
            count,
        };
        Hin {
            types: vec![
                ty("user", 2),
                ty("item", 4),
                ty("genre", 2),
                ty("unused", 3),
            ],
            relations: vec![
                Adjacency::new("interactions", 0, 1, (2, 4), &[(0, 0), (0, 1), (1, 2)]),
                Adjacency::new("item_genre", 1, 2, (4, 2), &[(0, 0), (3, 1)]),
            ],
            features: if features {
                vec![NodeFeatures {
                    name: "image".into(),
                    node_type: 1,
                    dim: 1,
                    data: vec![0.0, 0.1, 5.0, 5.1],
                }]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn types_edges_and_quantised_content() {
        let m = Mhig::build(&hin(true), 2, 1).unwrap();
        let names: Vec<&str> = m.kinds.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["user", "item", "genre", "image"]);
        assert_eq!(m.kinds[3].role, Role::Attribute);
        // Items 0 and 1 share one image node, items 2 and 3 the other.
        let img = |item: u32| {
            let v = m.graph.global(1, item);
            let nb: Vec<u32> = m
                .graph
                .neighbors(v)
                .iter()
                .copied()
                .filter(|&x| m.graph.local(x).0 == 3)
                .collect();
            nb
        };
        assert_eq!(img(0), img(1));
        assert_eq!(img(2), img(3));
        assert_ne!(img(0), img(2));
        let c = m.graph.local(img(0)[0]).1 as usize;
        assert!((m.kinds[3].features[c] - 0.05).abs() < 1e-6);
        // 3 interactions + 2 genre links + 4 image links.
        assert_eq!(m.graph.n_edges(), 9);
        let plain = Mhig::build(&hin(false), 2, 1).unwrap();
        assert_eq!(plain.kinds.len(), 3);
        assert!(Mhig::build(&hin(true), 0, 1).is_err());
    }
}
