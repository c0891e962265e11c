//! Errors of graph construction and meta-paths.

/// Errors raised while building a HIN or evaluating a meta-path.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A meta-path names a code no entity type has.
    #[error("meta-path {path:?}: no entity type has code {code:?} (codes: {known})")]
    UnknownCode {
        /// The meta-path.
        path: String,
        /// The code that was not found.
        code: String,
        /// The codes the dataset defines.
        known: String,
    },
    /// Two consecutive types of a meta-path have no relation between them.
    #[error("meta-path {path:?}: no relation links {from} and {to}")]
    NoRelation {
        /// The meta-path.
        path: String,
        /// First type.
        from: String,
        /// Second type.
        to: String,
    },
    /// A meta-path is malformed (too short, bad characters).
    #[error("meta-path {0:?}: {1}")]
    BadPath(String, String),
    /// A pair names an id outside its entity type.
    #[error("pair ({0}, {1}) is out of range for this meta-path")]
    PairOutOfRange(u32, u32),
}

/// Result alias of this crate.
pub type Result<T, E = GraphError> = std::result::Result<T, E>;
