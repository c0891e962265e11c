//! Errors of the baselines.

use std::path::PathBuf;

/// Errors raised while fitting, saving or loading a baseline.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (in the message, not chained again).
        error: std::io::Error,
    },
    /// A safetensors file is malformed or lacks a tensor.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A data error.
    #[error(transparent)]
    Data(#[from] hinrec_data::DataError),
}

/// Result alias of this crate.
pub type Result<T, E = BaselineError> = std::result::Result<T, E>;
