//! The one error type of this crate: every failure names its file, and its
//! line where there is one.

use std::path::{Path, PathBuf};

/// Errors raised while reading, validating or transforming data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened or read.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (shown in the message, so not chained as
        /// a source: a report prints it once).
        error: std::io::Error,
    },
    /// A whole file is malformed (not gzip, not NPY, truncated, ...).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
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
    /// Something about one user, named by its internal id until
    /// [`DataError::with_names`] gives it the data's own.
    #[error("user {user}: {message}")]
    User {
        /// The user (internal id, or the data's id after `with_names`).
        user: String,
        /// What is wrong.
        message: String,
    },
    /// A request that cannot be satisfied by the data (a split of an empty
    /// set, too few items to sample negatives from, ...).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// An [`DataError::Io`] for `path`.
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    /// A [`DataError::File`] for `path`.
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        DataError::File {
            path: path.to_path_buf(),
            message: message.into(),
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

impl DataError {
    /// The error with internal user ids replaced by the data's own.
    pub fn with_names(self, ids: &dyn crate::negatives::Ids) -> Self {
        match self {
            DataError::User { user, message } => {
                let name = user
                    .parse::<u32>()
                    .map(|u| ids.user_name(u))
                    .unwrap_or(user);
                DataError::User {
                    user: name,
                    message,
                }
            }
            other => other,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
