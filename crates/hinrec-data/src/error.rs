//! The one error type of this crate: every failure names its file, and its
//! line where there is one.

use std::path::{Path, PathBuf};

/// Errors raised while reading, validating or transforming data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of a data file is malformed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A file holds no data.
    #[error("{path}: file is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A manifest is invalid.
    #[error("manifest {path}: {message}")]
    Manifest {
        /// The manifest file (or a dataset name for built-in ones).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A request that cannot be satisfied by the data (a split of an empty
    /// set, too few items to sample negatives from, ...).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A [`DataError::Parse`] for `path` at 1-based `line`.
    pub fn parse(path: &Path, line: usize, message: impl Into<String>) -> Self {
        DataError::Parse {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// A [`DataError::Manifest`] for `path`.
    pub fn manifest(path: &Path, message: impl Into<String>) -> Self {
        DataError::Manifest {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
