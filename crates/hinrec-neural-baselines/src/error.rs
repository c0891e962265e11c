//! Errors of the neural baselines.

use hinrec_eval::ScoreError;

/// Why a neural baseline could not be configured, trained or scored.
#[derive(Debug, thiserror::Error)]
pub enum NeuralError {
    /// A configuration value is unusable.
    #[error("{0}")]
    Config(String),
    /// A tensor operation (checkpoints, Adam) failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Validation scoring failed.
    #[error("validation: {0}")]
    Score(ScoreError),
}

/// The crate's result.
pub type Result<T, E = NeuralError> = std::result::Result<T, E>;
