//! A typed heterogeneous information network: entity types and one sparse
//! adjacency matrix (CSR, with its transpose) per relation.

use hinrec_data::{Dataset, Interactions};
use sprs::CsMatI;

/// The sparse matrix type of this crate: CSR, `f32` values, `u32` column
/// indices (half the memory of `usize` on products with 10^8 entries).
pub type SpMat = CsMatI<f32, u32, usize>;

/// An entity type of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeType {
    /// Name (`user`, `movie`).
    pub name: String,
    /// Meta-path code (`U`, `Ca`).
    pub code: Option<String>,
    /// Number of nodes.
    pub count: usize,
}

/// A relation between two types as a binary sparse matrix and its transpose.
#[derive(Debug, Clone, PartialEq)]
pub struct Adjacency {
    /// Relation name (`interactions` for user-item).
    pub name: String,
    /// Source type index.
    pub src: usize,
    /// Destination type index.
    pub dst: usize,
    /// `src x dst`, 1 where an edge exists.
    pub matrix: SpMat,
    /// `dst x src`.
    pub transpose: SpMat,
}

/// Dense content features of one node type (row `k` for node `k`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFeatures {
    /// Feature name (`image`).
    pub name: String,
    /// Node type index.
    pub node_type: usize,
    /// Columns per row.
    pub dim: usize,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// A typed heterogeneous network.
#[derive(Debug, Clone, PartialEq)]
pub struct Hin {
    /// Entity types.
    pub types: Vec<NodeType>,
    /// Relations, user-item interactions first.
    pub relations: Vec<Adjacency>,
    /// The dataset's dense features (HHFAN's content nodes).
    pub features: Vec<NodeFeatures>,
}

/// A binary CSR matrix from edges (duplicates merged).
pub fn binary_csr(rows: usize, cols: usize, edges: &mut Vec<(u32, u32)>) -> SpMat {
    edges.sort_unstable();
    edges.dedup();
    let mut indptr = vec![0usize; rows + 1];
    for &(r, _) in edges.iter() {
        indptr[r as usize + 1] += 1;
    }
    for r in 0..rows {
        indptr[r + 1] += indptr[r];
    }
    let indices: Vec<u32> = edges.iter().map(|e| e.1).collect();
    let data = vec![1f32; indices.len()];
    SpMat::new((rows, cols), indptr, indices, data)
}

impl Adjacency {
    /// Builds a relation from edges in local ids of its two types.
    pub fn new(
        name: &str,
        src: usize,
        dst: usize,
        shape: (usize, usize),
        edges: &[(u32, u32)],
    ) -> Self {
        let mut e = edges.to_vec();
        let matrix = binary_csr(shape.0, shape.1, &mut e);
        let mut t: Vec<(u32, u32)> = e.iter().map(|&(a, b)| (b, a)).collect();
        let transpose = binary_csr(shape.1, shape.0, &mut t);
        Adjacency {
            name: name.into(),
            src,
            dst,
            matrix,
            transpose,
        }
    }
}

impl Hin {
    /// The network of `ds`: every entity type, one relation per item type
    /// from `interactions` (pass the training split so that no test
    /// interaction reaches a meta-path), and every side relation.
    pub fn from_dataset(ds: &Dataset, interactions: &Interactions) -> Self {
        let types: Vec<NodeType> = ds
            .entities
            .iter()
            .map(|e| NodeType {
                name: e.name.clone(),
                code: e.code.clone(),
                count: e.ids.len(),
            })
            .collect();
        let offset = |e: usize| {
            ds.item_entities
                .iter()
                .position(|&x| x == e)
                .map_or(0, |d| ds.item_offsets[d])
        };
        let mut relations = Vec::new();
        for (d, &e) in ds.item_entities.iter().enumerate() {
            let (lo, hi) = (ds.item_offsets[d], ds.item_offsets[d + 1]);
            let edges: Vec<(u32, u32)> = interactions
                .pairs()
                .filter(|&(_, i)| i >= lo && i < hi)
                .map(|(u, i)| (u, i - lo))
                .collect();
            let name = if ds.item_entities.len() == 1 {
                "interactions".to_string()
            } else {
                format!("interactions_{}", types[e].name)
            };
            let shape = (types[ds.user_entity].count, types[e].count);
            relations.push(Adjacency::new(&name, ds.user_entity, e, shape, &edges));
        }
        for r in &ds.relations {
            let (so, dof) = (offset(r.src), offset(r.dst));
            let edges: Vec<(u32, u32)> = r.edges.iter().map(|&(a, b)| (a - so, b - dof)).collect();
            let shape = (types[r.src].count, types[r.dst].count);
            relations.push(Adjacency::new(&r.name, r.src, r.dst, shape, &edges));
        }
        let features = ds
            .features
            .iter()
            .map(|f| NodeFeatures {
                name: f.name.clone(),
                node_type: f.entity,
                dim: f.matrix.cols,
                data: f.matrix.data.clone(),
            })
            .collect();
        Hin {
            types,
            relations,
            features,
        }
    }

    /// Type index by meta-path code.
    pub fn type_by_code(&self, code: &str) -> Option<usize> {
        self.types
            .iter()
            .position(|t| t.code.as_deref() == Some(code))
    }

    /// The matrix from type `a` to type `b`: the first relation declared
    /// between them, read forwards or transposed. A relation of a type with
    /// itself is read as declared.
    pub fn between(&self, a: usize, b: usize) -> Option<&SpMat> {
        self.relations.iter().find_map(|r| {
            if r.src == a && r.dst == b {
                Some(&r.matrix)
            } else if r.src == b && r.dst == a {
                Some(&r.transpose)
            } else {
                None
            }
        })
    }

    /// Total number of edges.
    pub fn nnz(&self) -> usize {
        self.relations.iter().map(|r| r.matrix.nnz()).sum()
    }
}
