//! Shared inputs of hinrec's criterion benchmarks (`cargo bench -p
//! hinrec-benches`): a synthetic dataset the size of MovieLens-100K, so the
//! benchmarks run anywhere without the real data.

use hinrec::data::synthetic::{generate, SyntheticConfig};
use hinrec::data::Dataset;
use hinrec::experiment::{ExperimentConfig, Prepared};

/// 943 users, 1,682 items, about 100 interactions per user.
pub fn ml100k_sized_dataset() -> Dataset {
    let cfg = SyntheticConfig {
        n_users: 943,
        n_items: 1682,
        n_groups: 12,
        mean_interactions: 106.0,
        seed: 11,
        ..SyntheticConfig::default()
    };
    generate(&cfg).expect("valid synthetic config")
}

/// [`ml100k_sized_dataset`] prepared with leave-one-out and 100 stored
/// negatives.
pub fn ml100k_sized() -> Prepared {
    Prepared::new(&ml100k_sized_dataset(), &ExperimentConfig::default())
        .expect("synthetic data splits")
}
