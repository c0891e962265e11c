//! Classic baselines for hinrec: [`MostPop`], [`ItemKnn`] and [`BprMf`].
//!
//! They prove the whole pipeline (data, split, negatives, protocols) against
//! published numbers, and every later model is compared with them. Each one
//! implements [`hinrec_eval::Scorer`] and saves to safetensors.
//!
//! ```
//! use hinrec_baselines::{BprConfig, BprMf, MostPop, Validation};
//! use hinrec_data::{synthetic, EvalNegatives, SplitRule};
//!
//! let ds = synthetic::generate(&synthetic::SyntheticConfig::default())?;
//! let split = SplitRule::LeaveOneOutLatest
//!     .apply(&ds.interactions, 0)?
//!     .carve_validation(SplitRule::LeaveOneOutLatest, 0)?;
//! let all = [&split.train, &split.valid, &split.test];
//! let test_negs = EvalNegatives::sample(&split.test, &all, 100, 0)?;
//! let valid_negs = EvalNegatives::sample(&split.valid, &all[..2], 100, 1)?;
//! let config = BprConfig { epochs: 30, ..BprConfig::default() };
//! let (bpr, _) = BprMf::fit(&split.train, &config, &Validation::sampled(&valid_negs), 0, |_| {})?;
//! let pop = MostPop::fit(&split.train);
//! let hr = |m: &dyn hinrec_eval::Scorer| {
//!     hinrec_eval::sampled(m, &test_negs, &[10]).unwrap().get("HR@10").unwrap()
//! };
//! assert!(hr(&bpr) > hr(&pop));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bpr;
pub mod error;
pub mod io;
pub mod itemknn;
pub mod mostpop;
pub mod params;

pub use bpr::{BprConfig, BprMf};
pub use error::{BaselineError, Result};
pub use hinrec_train::{EpochReport, Validation};
pub use itemknn::{Direction, ItemKnn, ItemKnnConfig};
pub use mostpop::MostPop;
pub use params::MostPopParams;
