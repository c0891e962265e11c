//! Every model hinrec trains, baselines and paper models alike: one static
//! list. The command line (`hinrec train`, `models`, `demo`) and `cargo
//! xtask reproduce` read it; adding a model is a crate plus one entry here.

use hinrec_train::{AnyParams, ModelError};

/// How a paper experiment ranks all items besides the sampled protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullRanking {
    /// Every test user, where users x items is at most this many pairs.
    UpTo(usize),
    /// This many test users sampled with the data seed (scoring is costly).
    SampledUsers(usize),
}

/// One experiment of a paper's tables (or a baseline's row beside them):
/// the dataset, the model's settings there, what is searched on
/// validation, and what is reported.
#[derive(Debug, Clone, Copy)]
pub struct Experiment {
    /// The dataset, as `--data` names it.
    pub dataset: &'static str,
    /// The experiment's name in records, tables and `cargo xtask reproduce
    /// --datasets` where one dataset has several protocols (`ml1m@0.6`);
    /// empty: the dataset's name.
    pub label: &'static str,
    /// TOML overrides of the model's parameters on this dataset.
    pub settings: &'static str,
    /// Points searched on validation with the first seed, each a TOML
    /// override (empty: none).
    pub grid: fn() -> Vec<String>,
    /// Overrides during grid trials (an epoch cap), TOML.
    pub grid_settings: &'static str,
    /// Validation users whose metric picks the epoch (0: all).
    pub valid_users: usize,
    /// Cut-offs of the sampled protocol.
    pub ks: &'static [usize],
    /// Full ranking.
    pub full: FullRanking,
    /// The protocol's keys over [`crate::experiment::ExperimentConfig`]'s
    /// defaults, TOML (`split`, `valid_split`, `metric`, ...; empty: the
    /// defaults).
    pub protocol: &'static str,
    /// Cut-offs of the full ranking, and of the pruned ranking where the
    /// model has a retrieval index.
    pub full_ks: &'static [usize],
}

impl Experiment {
    /// The name its records and tables carry: the label, else the dataset.
    pub fn name(&self) -> &'static str {
        if self.label.is_empty() {
            self.dataset
        } else {
            self.label
        }
    }
}

/// A model of the registry.
pub struct ModelEntry {
    /// The name on the command line and in tables (`lgrec-noatt`).
    pub name: &'static str,
    /// The TOML table of its parameters in a config file (`lgrec`); the
    /// variants of a model share it.
    pub table: &'static str,
    /// Where it comes from (a paper in shared/papers, or `baseline`).
    pub paper: &'static str,
    /// One line on what it is.
    pub about: &'static str,
    /// TOML that makes this entry's variant, applied after the config
    /// table (empty for a model's main entry).
    pub preset: &'static str,
    /// Its default parameters.
    pub defaults: fn() -> Box<dyn AnyParams>,
    /// TOML overrides for `hinrec demo` (small settings for the synthetic
    /// HIN on two cores).
    pub demo: &'static str,
    /// The experiments `cargo xtask reproduce` runs.
    pub experiments: &'static [Experiment],
}

impl std::fmt::Debug for ModelEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelEntry")
            .field("name", &self.name)
            .finish()
    }
}

impl ModelEntry {
    /// Its parameters: the defaults, then the config file's table, then
    /// the variant's preset, then `--set` overrides, each checked.
    pub fn params(
        &self,
        table: Option<&toml::Table>,
        sets: &toml::Table,
    ) -> Result<Box<dyn AnyParams>, ModelError> {
        let mut p = (self.defaults)();
        let at = |what: &str, e: ModelError| {
            let e = match e {
                ModelError::Params(m) => m,
                other => other.to_string(),
            };
            ModelError::Params(format!("{} {what}: {e}", self.name))
        };
        if let Some(t) = table {
            p.set(t)
                .map_err(|e| at(&format!("[{}] table", self.table), e))?;
        }
        p.set(&parse_toml(self.preset)?)
            .map_err(|e| at("preset", e))?;
        p.set(sets).map_err(|e| at("--set", e))?;
        p.check().map_err(|e| at("parameters", e))?;
        Ok(p)
    }
}

/// A TOML snippet as a table.
pub fn parse_toml(text: &str) -> Result<toml::Table, ModelError> {
    text.parse::<toml::Table>()
        .map_err(|e| ModelError::Params(format!("{text:?}: {}", e.message())))
}

/// `--set KEY=VALUE` flags as one TOML table (a value that is not TOML is
/// taken as a string).
pub fn parse_sets(sets: &[String]) -> Result<toml::Table, ModelError> {
    let mut out = toml::Table::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| ModelError::Params(format!("--set {s:?}: expected KEY=VALUE")))?;
        let (k, v) = (k.trim(), v.trim());
        let value = match parse_toml(&format!("v = {v}")) {
            Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(v.into())),
            Err(_) => toml::Value::String(v.into()),
        };
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

fn params<P: hinrec_train::ModelParams>() -> Box<dyn AnyParams> {
    Box::new(P::default())
}

fn no_grid() -> Vec<String> {
    Vec::new()
}

/// ItemKNN's neighbours per item, which side keeps them (its own rows or
/// RecBole's columns) and the cosine's shrinkage.
fn itemknn_grid() -> Vec<String> {
    let mut out = Vec::new();
    for direction in ["source", "target"] {
        for k in [20, 50, 100, 200, 400, 800, 1600, 3200, 6400] {
            for shrink in [0, 10] {
                out.push(format!(
                    "k = {k}\ndirection = \"{direction}\"\nshrink = {shrink}.0"
                ));
            }
        }
    }
    out
}

fn bpr_grid() -> Vec<String> {
    let mut out = Vec::new();
    for dim in [64, 128] {
        for lr in [0.01, 0.03, 0.1] {
            for reg in [0.003, 0.01, 0.03] {
                out.push(format!("dim = {dim}\nlr = {lr}\nreg = {reg}"));
            }
        }
    }
    out
}

/// NeuMF's learning rate and sampled negatives per pair (the paper tries
/// 1 to 10).
fn neumf_grid() -> Vec<String> {
    let mut out = Vec::new();
    for lr in [0.0005, 0.001] {
        for negatives in [2, 4, 8] {
            out.push(format!("lr = {lr}\nnegatives = {negatives}"));
        }
    }
    out
}

/// LightGCN's layers (RecBole's 2, the paper's 3) and learning rate.
fn lightgcn_grid() -> Vec<String> {
    let mut out = Vec::new();
    for layers in [2, 3] {
        for lr in [0.005, 0.01] {
            out.push(format!("layers = {layers}\nlr = {lr}"));
        }
    }
    out
}

const CUTOFFS_5_10_15: &[usize] = &[5, 10, 15];
const CUTOFF_10: &[usize] = &[10];
/// LGRec's full ranking sends every pair through co-attention: seconds on
/// Movielens, hours on LastFM and Yelp.
const LGREC_FULL: FullRanking = FullRanking::UpTo(5_000_000);

const fn baseline(dataset: &'static str, grid: fn() -> Vec<String>) -> Experiment {
    Experiment {
        dataset,
        label: "",
        settings: "",
        grid,
        grid_settings: "",
        valid_users: 0,
        ks: CUTOFFS_5_10_15,
        full: FullRanking::UpTo(usize::MAX),
        protocol: "",
        full_ks: CUTOFF_10,
    }
}

const fn lgrec(dataset: &'static str, settings: &'static str, valid_users: usize) -> Experiment {
    Experiment {
        dataset,
        label: "",
        settings,
        grid: no_grid,
        grid_settings: "",
        valid_users,
        ks: CUTOFF_10,
        full: LGREC_FULL,
        protocol: "",
        full_ks: CUTOFF_10,
    }
}

const BASELINE_DATASETS: [&str; 4] = ["lgrec-ml100k", "lastfm", "yelp", "reda-lastfm"];

/// GLRS's protocols (glrs.txt section 4.1): Yelp Madison's given split (3
/// test items per user), one training item per user carved for
/// validation; MovieLens-100K with a seeded half of each user's
/// interactions as test and a tenth of the rest for validation; both
/// ranked in full at 15, the epoch chosen on validation Recall@15.
const GLRS_MADISON: &str = "valid_split = { kind = \"user-count\", count = 1 }\nmetric = \"Recall@15\"\nsampled_validation = false";
const GLRS_MOVIELENS: &str = "split = { kind = \"user-ratio\", train = 0.5 }\nvalid_split = { kind = \"user-ratio\", train = 0.9 }\nmetric = \"Recall@15\"\nsampled_validation = false";
const CUTOFF_15: &[usize] = &[15];

/// An experiment on one of GLRS's protocols.
const fn on_glrs(
    dataset: &'static str,
    protocol: &'static str,
    grid: fn() -> Vec<String>,
) -> Experiment {
    Experiment {
        dataset,
        label: "",
        settings: "",
        grid,
        grid_settings: "",
        valid_users: 0,
        ks: CUTOFF_10,
        full: FullRanking::UpTo(usize::MAX),
        protocol,
        full_ks: CUTOFF_15,
    }
}

/// HHFAN's protocols (hhfan.md IV.C): ml1m with a seeded 80 % of each
/// user's interactions for training (a tenth of them carved for
/// validation), TikTok's given train/valid/test; each test user's items
/// ranked against 1000 stored unobserved items (pooled), and in full at
/// 10 and 20. Epochs are chosen on the sampled validation NDCG@10.
const HHFAN_ML1M: &str = "split = { kind = \"user-ratio\", train = 0.8 }\nvalid_split = { kind = \"user-ratio\", train = 0.9 }\npooled_negatives = 1000";
/// Tables III and IV: the same with 60 % and 40 % for training.
const HHFAN_ML1M_60: &str = "split = { kind = \"user-ratio\", train = 0.6 }\nvalid_split = { kind = \"user-ratio\", train = 0.9 }\npooled_negatives = 1000";
const HHFAN_ML1M_40: &str = "split = { kind = \"user-ratio\", train = 0.4 }\nvalid_split = { kind = \"user-ratio\", train = 0.9 }\npooled_negatives = 1000";
const HHFAN_TIKTOK: &str = "pooled_negatives = 1000";
const CUTOFFS_10_20: &[usize] = &[10, 20];

/// An experiment on one of HHFAN's protocols.
const fn on_hhfan(
    dataset: &'static str,
    protocol: &'static str,
    grid: fn() -> Vec<String>,
) -> Experiment {
    Experiment {
        dataset,
        label: "",
        settings: "",
        grid,
        grid_settings: "",
        valid_users: 0,
        ks: CUTOFF_10,
        full: FullRanking::UpTo(usize::MAX),
        protocol,
        full_ks: CUTOFFS_10_20,
    }
}

/// HHFAN's experiments, and each baseline's beside them.
const fn hhfan_experiments(grid: fn() -> Vec<String>) -> [Experiment; 4] {
    [
        on_hhfan("ml1m", HHFAN_ML1M, grid),
        Experiment {
            label: "ml1m@0.6",
            ..on_hhfan("ml1m", HHFAN_ML1M_60, grid)
        },
        Experiment {
            label: "ml1m@0.4",
            ..on_hhfan("ml1m", HHFAN_ML1M_40, grid)
        },
        on_hhfan("tiktok-mmssl", HHFAN_TIKTOK, grid),
    ]
}

const HHFAN_EXPERIMENTS: [Experiment; 4] = hhfan_experiments(no_grid);

const HHFAN_DEMO: &str = "dim = 16\nepochs = 15\nlr = 0.02\nbatch = 512\ncontent_clusters = 8";

/// An HHFAN variant's entry (hhfan.md Tables II-IV, Fig. 3-5).
const fn hhfan(name: &'static str, about: &'static str, preset: &'static str) -> ModelEntry {
    ModelEntry {
        name,
        table: "hhfan",
        paper: "hhfan.md",
        about,
        preset,
        defaults: params::<hinrec_hhfan::HhfanConfig>,
        demo: HHFAN_DEMO,
        experiments: &HHFAN_EXPERIMENTS,
    }
}

/// DURation's protocols (duration.txt 5.3 and A.2.1): every observed
/// rating kept, above 3 stars positive, a seeded global 70/20/10 split,
/// the epoch chosen on validation AUC; the cold start of Table 5 makes a
/// fifth of the test users keep at most three training rows.
const DURATION_DTCDR: &str = "split = { kind = \"global-ratio\", train = 0.7, valid = 0.2 }\npositive_above = 3.0\nmetric = \"AUC\"";
const DURATION_DTCDR_COLD: &str = "split = { kind = \"global-ratio\", train = 0.7, valid = 0.2 }\npositive_above = 3.0\nmetric = \"AUC\"\ncold_start = { share = 0.2, keep = 3 }";

/// DURation's protocol on binary data (douban-hin): the same global
/// 70/20/10 split, and each validation and test positive beside one
/// stored unobserved item of its own kind as a negative.
const DURATION_HIN: &str = "split = { kind = \"global-ratio\", train = 0.7, valid = 0.2 }\nlabelled_negatives = 1\nmetric = \"AUC\"";

/// douban-hin's epoch cap for the grid trials of DURation and its
/// variants: an epoch there is 1.8 M samples (about 18 s on 2 cores since
/// the step runs outside candle, docs/duration.md).
const DURATION_HIN_EPOCHS: &str = "epochs = 4";

/// The seeds' runs on douban-hin: early stopping on validation (patience
/// 5) within 20 epochs; every variant peaked near epoch 5 in a 10-epoch
/// check.
const DURATION_HIN_RUN: &str = "epochs = 20";

/// DURation on douban-hin: that cap, and the α and β its validation grid
/// ([`duration_hin_grid`], 4-epoch trials, seed 1) chose, which
/// `cargo xtask reproduce --no-grid` uses without the grid's 20 minutes.
const DURATION_HIN_CHOSEN: &str = "epochs = 20\nalpha = 100.0\nbeta = 0.0001";

/// One of DURation's experiments.
const fn on_duration(
    dataset: &'static str,
    label: &'static str,
    protocol: &'static str,
    settings: &'static str,
    grid: fn() -> Vec<String>,
    grid_settings: &'static str,
) -> Experiment {
    Experiment {
        dataset,
        label,
        settings,
        grid,
        grid_settings,
        valid_users: 0,
        ks: CUTOFF_10,
        full: FullRanking::UpTo(usize::MAX),
        protocol,
        full_ks: CUTOFF_10,
    }
}

/// DURation's experiments (douban-dtcdr's full data and cold start, and
/// douban-hin), and each baseline's beside them, with `grid_settings` for
/// the grid trials; douban-hin searches `hin_grid` with `hin_settings`
/// under its trials' own cap (DURation's: [`DURATION_HIN_EPOCHS`]).
const fn duration_experiments(
    grid: fn() -> Vec<String>,
    grid_settings: &'static str,
    hin_grid: fn() -> Vec<String>,
    hin_settings: &'static str,
    hin_grid_settings: &'static str,
) -> [Experiment; 3] {
    [
        on_duration("douban-dtcdr", "", DURATION_DTCDR, "", grid, grid_settings),
        on_duration(
            "douban-dtcdr",
            "douban-dtcdr@cold",
            DURATION_DTCDR_COLD,
            "",
            grid,
            grid_settings,
        ),
        // 19,798 users x 29,954 items: full ranking on a sample of users.
        Experiment {
            full: FullRanking::SampledUsers(5000),
            ..on_duration(
                "douban-hin",
                "",
                DURATION_HIN,
                hin_settings,
                hin_grid,
                hin_grid_settings,
            )
        },
    ]
}

/// What DURation's validation chooses among (section 5.3): the unified
/// space's width (32 / 64 / 128) and, at 64, the weights α and β of eq. 8
/// around the values that make the three terms comparable at a batch of
/// 1024 per kind (docs/duration.md).
fn duration_grid() -> Vec<String> {
    let mut out: Vec<String> = [32, 128].iter().map(|d| format!("dim = {d}")).collect();
    for alpha in [1.0, 10.0, 100.0, 1000.0] {
        for beta in [1e-4, 1e-3, 1e-2] {
            out.push(format!("alpha = {alpha:?}\nbeta = {beta:?}"));
        }
    }
    out
}

/// The width alone, for the variants without the alignment and topology
/// losses.
fn duration_dims() -> Vec<String> {
    [32, 64, 128].iter().map(|d| format!("dim = {d}")).collect()
}

/// On douban-hin validation chooses α and β alone (the width stays at
/// 64): each trial costs minutes there.
fn duration_hin_grid() -> Vec<String> {
    let mut out = Vec::new();
    for alpha in [100.0, 1000.0] {
        for beta in [1e-4, 1e-2] {
            out.push(format!("alpha = {alpha:?}\nbeta = {beta:?}"));
        }
    }
    out
}

/// Grid trials stop after this many epochs (the seeds' runs do not).
const DURATION_TRIAL: &str = "epochs = 8";

const DURATION_EXPERIMENTS: [Experiment; 3] = duration_experiments(
    duration_grid,
    DURATION_TRIAL,
    duration_hin_grid,
    DURATION_HIN_CHOSEN,
    DURATION_HIN_EPOCHS,
);
const DURATION_DIMS_EXPERIMENTS: [Experiment; 3] = duration_experiments(
    duration_dims,
    DURATION_TRIAL,
    no_grid,
    DURATION_HIN_RUN,
    DURATION_HIN_EPOCHS,
);

const DURATION_DEMO: &str = "dim = 16\nepochs = 10\nbatch = 256\nlr = 0.005";

/// A DURation variant's entry (duration.txt Tables 3 and 5).
const fn duration(
    name: &'static str,
    about: &'static str,
    preset: &'static str,
    experiments: &'static [Experiment],
) -> ModelEntry {
    ModelEntry {
        name,
        table: "duration",
        paper: "duration.txt",
        about,
        preset,
        defaults: params::<hinrec_duration::DurationConfig>,
        demo: DURATION_DEMO,
        experiments,
    }
}

/// A baseline's experiments: every dataset and protocol of the papers'
/// tables, searching `grid` on validation.
const fn baseline_experiments(grid: fn() -> Vec<String>) -> [Experiment; 13] {
    [
        baseline(BASELINE_DATASETS[0], grid),
        baseline(BASELINE_DATASETS[1], grid),
        baseline(BASELINE_DATASETS[2], grid),
        baseline(BASELINE_DATASETS[3], grid),
        on_glrs("glrs-yelp-madison", GLRS_MADISON, grid),
        on_glrs("movielens", GLRS_MOVIELENS, grid),
        hhfan_experiments(grid)[0],
        hhfan_experiments(grid)[1],
        hhfan_experiments(grid)[2],
        hhfan_experiments(grid)[3],
        duration_experiments(grid, "", grid, "", "")[0],
        duration_experiments(grid, "", grid, "", "")[1],
        duration_experiments(grid, "", grid, "", "")[2],
    ]
}
const MOSTPOP_EXPERIMENTS: [Experiment; 13] = baseline_experiments(no_grid);
const ITEMKNN_EXPERIMENTS: [Experiment; 13] = baseline_experiments(itemknn_grid);
const BPR_EXPERIMENTS: [Experiment; 13] = baseline_experiments(bpr_grid);
const NEUMF_EXPERIMENTS: [Experiment; 13] = baseline_experiments(neumf_grid);
const LIGHTGCN_EXPERIMENTS: [Experiment; 13] = baseline_experiments(lightgcn_grid);
/// lgrec.txt Table 2: Yelp's validation runs on 2,000 sampled users with a
/// 15-epoch cap (docs/lgrec.md).
const LGREC_EXPERIMENTS: [Experiment; 3] = [
    lgrec("lgrec-ml100k", "", 0),
    lgrec("lastfm", "", 0),
    lgrec("yelp", "epochs = 15", 2000),
];
const REDA_EXPERIMENTS: [Experiment; 1] = [Experiment {
    dataset: "reda-lastfm",
    label: "",
    settings: "",
    grid: no_grid,
    grid_settings: "epochs = 3",
    valid_users: 0,
    ks: CUTOFFS_5_10_15,
    full: FullRanking::SampledUsers(200),
    protocol: "",
    full_ks: CUTOFF_10,
}];

const LGREC_DEMO: &str =
    "dim = 32\nk_user = 20\nk_item = 20\nepochs = 6\nbpr_epochs = 30\nlr = 0.005";
const REDA_DEMO: &str = "dim = 32\nmemory_slots = 10\nepochs = 4\nuser_pairs = 100\ntriples_per_interaction = 2\nbatch = 1000";

const GLRS_DEMO: &str = "epochs = 30\nlr = 0.002\nclusters = 8\npatience = 5\nhard_negatives = 5\nlocal_tries = 1\npruned_validation = true";

/// A GLRS variant's entry (glrs.txt Tables 2-4).
const fn glrs(name: &'static str, about: &'static str, preset: &'static str) -> ModelEntry {
    ModelEntry {
        name,
        table: "glrs",
        paper: "glrs-global-local-attention.txt",
        about,
        preset,
        defaults: params::<hinrec_glrs::GlrsConfig>,
        demo: GLRS_DEMO,
        experiments: &GLRS_EXPERIMENTS,
    }
}

/// Tables 2 and 4 (Madison, MovieLens half split) and Table 6
/// (lgrec-ml100k's leave-one-out with 100 stored negatives).
const GLRS_EXPERIMENTS: [Experiment; 3] = [
    Experiment {
        settings: GLRS_PRUNED,
        ..on_glrs("glrs-yelp-madison", GLRS_MADISON, glrs_grid)
    },
    Experiment {
        settings: GLRS_PRUNED,
        ..on_glrs("movielens", GLRS_MOVIELENS, glrs_grid)
    },
    Experiment {
        dataset: "lgrec-ml100k",
        label: "",
        settings: "",
        grid: glrs_grid,
        grid_settings: "",
        valid_users: 0,
        ks: CUTOFF_10,
        full: FullRanking::UpTo(usize::MAX),
        protocol: "",
        full_ks: CUTOFF_10,
    },
];

/// Tables 2-4 rank within the probed clusters: so does validation there.
const GLRS_PRUNED: &str = "pruned_validation = true";

/// What GLRS's validation chooses among: hard-negative draws per global
/// triplet (section 3.1 suggests hard triplets; 1 is eq. 2 as written) and
/// draws per positive when looking for a hard local one (1 keeps fewer,
/// less hard local triplets).
fn glrs_grid() -> Vec<String> {
    let mut out = Vec::new();
    for h in [1, 5] {
        for t in [1, 5] {
            out.push(format!("hard_negatives = {h}\nlocal_tries = {t}"));
        }
    }
    out
}

/// Every model, in table order.
pub static MODELS: &[ModelEntry] = &[
    ModelEntry {
        name: "mostpop",
        table: "mostpop",
        paper: "baseline",
        about: "item popularity",
        preset: "",
        defaults: params::<hinrec_baselines::MostPopParams>,
        demo: "",
        experiments: &MOSTPOP_EXPERIMENTS,
    },
    ModelEntry {
        name: "itemknn",
        table: "itemknn",
        paper: "baseline",
        about: "item-based k-nearest neighbours (cosine, top-k)",
        preset: "",
        defaults: params::<hinrec_baselines::ItemKnnConfig>,
        demo: "",
        experiments: &ITEMKNN_EXPERIMENTS,
    },
    ModelEntry {
        name: "bpr",
        table: "bpr",
        paper: "baseline",
        about: "matrix factorisation with the BPR loss",
        preset: "",
        defaults: params::<hinrec_baselines::BprConfig>,
        demo: "",
        experiments: &BPR_EXPERIMENTS,
    },
    ModelEntry {
        name: "neumf",
        table: "neumf",
        paper: "baseline",
        about: "NeuMF: GMF and MLP towers under one output layer, pointwise cross-entropy",
        preset: "",
        defaults: params::<hinrec_neural_baselines::NeuMfConfig>,
        demo: "gmf_dim = 16\nmlp_dim = 16\nhidden = [32, 16]\nepochs = 10\nlr = 0.005\nbatch = 512",
        experiments: &NEUMF_EXPERIMENTS,
    },
    ModelEntry {
        name: "gmf",
        table: "neumf",
        paper: "baseline",
        about: "GMF: NeuMF's GMF tower alone, matrix factorisation under the cross-entropy loss (LGRec's \"MF\" row)",
        preset: "towers = \"gmf\"",
        defaults: params::<hinrec_neural_baselines::NeuMfConfig>,
        demo: "gmf_dim = 16\nepochs = 10\nlr = 0.005\nbatch = 512",
        experiments: &NEUMF_EXPERIMENTS,
    },
    ModelEntry {
        name: "lightgcn",
        table: "lightgcn",
        paper: "baseline",
        about: "LightGCN: layer means of ID embeddings propagated over the normalised user-item graph, BPR",
        preset: "",
        defaults: params::<hinrec_neural_baselines::LightGcnConfig>,
        demo: "dim = 16\nlayers = 2\nepochs = 20\nlr = 0.01\nbatch = 512",
        experiments: &LIGHTGCN_EXPERIMENTS,
    },
    ModelEntry {
        name: "lgrec",
        table: "lgrec",
        paper: "lgrec.txt",
        about: "LGRec: co-attention over neighbours plus meta-path relation labels",
        preset: "",
        defaults: params::<hinrec_lgrec::LgrecConfig>,
        demo: LGREC_DEMO,
        experiments: &LGREC_EXPERIMENTS,
    },
    ModelEntry {
        name: "lgrec-noglo",
        table: "lgrec",
        paper: "lgrec.txt",
        about: "LGRec without the global relation (Table 2's LGRec_noGlo); margin 0.1, chosen on validation on all three datasets",
        preset: "variant = \"noglo\"\nmargin = 0.1",
        defaults: params::<hinrec_lgrec::LgrecConfig>,
        demo: LGREC_DEMO,
        experiments: &LGREC_EXPERIMENTS,
    },
    ModelEntry {
        name: "lgrec-noatt",
        table: "lgrec",
        paper: "lgrec.txt",
        about: "LGRec with a plain mean instead of co-attention (Table 2's LGRec_noAtt)",
        preset: "variant = \"noatt\"",
        defaults: params::<hinrec_lgrec::LgrecConfig>,
        demo: LGREC_DEMO,
        experiments: &LGREC_EXPERIMENTS,
    },
    ModelEntry {
        name: "reda",
        table: "reda",
        paper: "reda.txt",
        about: "REDA: item relation embeddings, key-value memory and weight attention",
        preset: "",
        defaults: params::<hinrec_reda::RedaConfig>,
        demo: REDA_DEMO,
        experiments: &REDA_EXPERIMENTS,
    },
    ModelEntry {
        name: "reda-npil",
        table: "reda",
        paper: "reda.txt",
        about: "REDA without the pair-wise interaction layer (one embedding per item)",
        preset: "variant = \"npil\"",
        defaults: params::<hinrec_reda::RedaConfig>,
        demo: REDA_DEMO,
        experiments: &REDA_EXPERIMENTS,
    },
    ModelEntry {
        name: "reda-nmal",
        table: "reda",
        paper: "reda.txt",
        about: "REDA without the memory attention",
        preset: "variant = \"nmal\"",
        defaults: params::<hinrec_reda::RedaConfig>,
        demo: REDA_DEMO,
        experiments: &REDA_EXPERIMENTS,
    },
    glrs(
        "glrs-ap",
        "GLRS: attention over four global/local representation spaces, product loss (AP)",
        "variant = \"ap\"",
    ),
    glrs(
        "glrs-ad",
        "GLRS with the distance loss in the attention network (AD)",
        "variant = \"ad\"",
    ),
    glrs(
        "glrs-gap",
        "GLRS attention over the two global spaces, product loss (GAP)",
        "variant = \"gap\"",
    ),
    glrs(
        "glrs-gad",
        "GLRS attention over the two global spaces, distance loss (GAD)",
        "variant = \"gad\"",
    ),
    glrs(
        "glrs-lap",
        "GLRS attention over the two local spaces, product loss (LAP)",
        "variant = \"lap\"",
    ),
    glrs(
        "glrs-lad",
        "GLRS attention over the two local spaces, distance loss (LAD)",
        "variant = \"lad\"",
    ),
    glrs("glrs-gd", "GLRS's global space with the distance loss alone (GD)", "variant = \"gd\""),
    glrs("glrs-gp", "GLRS's global space with the product loss alone (GP)", "variant = \"gp\""),
    glrs("glrs-ld", "GLRS's local space with the distance loss alone (LD)", "variant = \"ld\""),
    glrs("glrs-lp", "GLRS's local space with the product loss alone (LP)", "variant = \"lp\""),
    hhfan(
        "hhfan",
        "HHFAN: random-walk neighbour groups on a modality-aware HIN, Bi-LSTM per type, attribute and neighbour-type attention",
        "",
    ),
    hhfan("hhfan-l", "HHFAN with the mean of each group instead of its LSTM (HHFAN-l)", "variant = \"l\""),
    hhfan("hhfan-a", "HHFAN without the attribute self-attention (HHFAN-a)", "variant = \"a\""),
    hhfan("hhfan-n", "HHFAN without the neighbour-type attention (HHFAN-n)", "variant = \"n\""),
    duration(
        "duration",
        "DURation: two towers over sparse histories, per-kind attribute mappings into one space, RBF alignment and covariance topology losses",
        "",
        &DURATION_EXPERIMENTS,
    ),
    duration(
        "duration-noat",
        "DURation without the alignment and topology losses (Table 5's ablation)",
        "alpha = 0.0\nbeta = 0.0",
        &DURATION_DIMS_EXPERIMENTS,
    ),
    duration(
        "duration-dmf",
        "DURation's towers over histories alone, no attribute mapping (a DeepMF-style two-tower baseline)",
        "variant = \"dmf\"",
        &DURATION_DIMS_EXPERIMENTS,
    ),
    ModelEntry {
        defaults: params::<hinrec_duration::PerKindConfig>,
        ..duration(
            "duration-ho",
            "one DURation per item kind, each trained on its kind alone (the paper's homogeneous setting)",
            "",
            &DURATION_DIMS_EXPERIMENTS,
        )
    },
];

/// The entry named `name` (case and `_` ignored), or an error listing
/// every name.
pub fn model(name: &str) -> Result<&'static ModelEntry, String> {
    let want = name.to_ascii_lowercase().replace('_', "-");
    MODELS.iter().find(|m| m.name == want).ok_or_else(|| {
        format!(
            "unknown model {name:?}: choose one of {}",
            MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The TOML table names the registry uses.
pub fn tables() -> Vec<&'static str> {
    let mut t: Vec<&str> = MODELS.iter().map(|m| m.table).collect();
    t.dedup();
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_builds_its_checked_defaults_and_names_are_unique() {
        let empty = toml::Table::new();
        for (k, m) in MODELS.iter().enumerate() {
            assert!(MODELS[..k].iter().all(|o| o.name != m.name), "{}", m.name);
            let p = m.params(None, &empty).unwrap();
            assert!(p.to_toml().is_ok(), "{}", m.name);
            m.params(None, &parse_toml(m.demo).unwrap()).unwrap();
            for (j, e) in m.experiments.iter().enumerate() {
                assert!(
                    m.experiments[..j].iter().all(|o| o.name() != e.name()),
                    "{} {}",
                    m.name,
                    e.name()
                );
                crate::experiment::ExperimentConfig::parse(e.protocol).unwrap();
                // The settings, every grid point and the trials' cap are
                // parameters this model takes.
                let settings = parse_toml(e.settings).unwrap();
                let trial = parse_toml(e.grid_settings).unwrap();
                let mut points = vec![toml::Table::new()];
                for g in (e.grid)() {
                    points.push(parse_toml(&g).unwrap());
                }
                for point in points {
                    let mut t = settings.clone();
                    t.extend(point);
                    t.extend(trial.clone());
                    if let Err(err) = m.params(None, &t) {
                        panic!("{} on {}: {t:?}: {err}", m.name, e.name());
                    }
                }
            }
        }
        assert_eq!(model("LGREC_NOATT").unwrap().name, "lgrec-noatt");
        let sets = parse_sets(&[
            "lr=0.01".into(),
            "meta_paths=[\"UIUI\"]".into(),
            "variant=noatt".into(),
        ])
        .unwrap();
        assert_eq!(sets["lr"].as_float(), Some(0.01));
        assert_eq!(sets["meta_paths"].as_array().map(Vec::len), Some(1));
        assert_eq!(sets["variant"].as_str(), Some("noatt"));
        assert!(parse_sets(&["lr".into()]).is_err());
        assert!(model("lgrec-typo").unwrap_err().contains("reda-nmal"));
    }

    #[test]
    fn presets_win_over_the_table_and_sets_over_both() {
        let m = model("lgrec-noglo").unwrap();
        let table = parse_toml("variant = \"full\"\nmargin = 2.0\ndim = 16").unwrap();
        let p = m
            .params(Some(&table), &parse_toml("dim = 8").unwrap())
            .unwrap();
        let t = p.to_toml().unwrap();
        assert_eq!(t["variant"].as_str(), Some("noglo"));
        assert_eq!(t["margin"].as_float(), Some(0.1));
        assert_eq!(t["dim"].as_integer(), Some(8));
        let e = m
            .params(None, &parse_toml("dimm = 8").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("dimm"), "{e}");
        let e = m.params(None, &parse_toml("dim = 0").unwrap()).unwrap_err();
        assert!(e.to_string().contains("dim"), "{e}");
    }
}
