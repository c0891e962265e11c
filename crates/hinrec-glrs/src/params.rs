//! GLRS's parameters (glrs.txt section 4.3), their checks, and GLRS under
//! the model contract of hinrec-train.

use std::path::Path;

use hinrec_eval::ScoreError;
use hinrec_nn::checkpoint;
use hinrec_train::{FitContext, Fitted, ModelError, ModelParams};
use serde::{Deserialize, Serialize};

use crate::network::Glrs;

/// Errors of GLRS.
#[derive(Debug, thiserror::Error)]
pub enum GlrsError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Clustering failed.
    #[error(transparent)]
    Cluster(#[from] hinrec_cluster::ClusterError),
    /// A configuration value is unusable.
    #[error("invalid GLRS configuration: {0}")]
    Config(String),
    /// Validation scoring failed.
    #[error("validation: {0}")]
    Score(ScoreError),
}

pub(crate) type Result<T, E = GlrsError> = std::result::Result<T, E>;

/// One of the four representation spaces (section 4.3): global or local
/// training data, distance (eq. 4) or product (eq. 3) loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    /// Global triplets, distance loss.
    Gd,
    /// Global triplets, product loss.
    Gp,
    /// Local triplets (eq. 5-6), distance loss.
    Ld,
    /// Local triplets, product loss.
    Lp,
}

impl Space {
    /// All four, in the paper's order.
    pub const ALL: [Space; 4] = [Space::Gd, Space::Gp, Space::Ld, Space::Lp];

    /// Its short name (`gd`), as in tensor names.
    pub fn name(self) -> &'static str {
        match self {
            Space::Gd => "gd",
            Space::Gp => "gp",
            Space::Ld => "ld",
            Space::Lp => "lp",
        }
    }

    /// The loss it is trained with.
    pub fn loss(self) -> Loss {
        match self {
            Space::Gd | Space::Ld => Loss::Distance,
            Space::Gp | Space::Lp => Loss::Product,
        }
    }

    /// Whether it learns from local triplets.
    pub fn local(self) -> bool {
        matches!(self, Space::Ld | Space::Lp)
    }
}

/// A triplet loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Eq. 4: `max(0, |u - i+|^2 - |u - i-|^2 + margin)`.
    Distance,
    /// Eq. 3: `-ln sigmoid(<u, i+> - <u, i->)`.
    Product,
}

/// The model and its ablations (Tables 2 and 3): the attentive
/// representations over all four spaces (AD, AP), over the global or the
/// local pair (GAD, GAP, LAD, LAP), and each space alone. Serialised as
/// the suffix of the registry name (`gad` for `glrs-gad`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Attention over all four spaces, distance loss.
    Ad,
    /// Attention over all four spaces, product loss.
    Ap,
    /// Attention over GD and GP, distance loss.
    Gad,
    /// Attention over GD and GP, product loss.
    Gap,
    /// Attention over LD and LP, distance loss.
    Lad,
    /// Attention over LD and LP, product loss.
    Lap,
    /// GD alone.
    Gd,
    /// GP alone.
    Gp,
    /// LD alone.
    Ld,
    /// LP alone.
    Lp,
}

impl Variant {
    /// Every variant, in the tables' order.
    pub const ALL: [Variant; 10] = [
        Variant::Gd,
        Variant::Gp,
        Variant::Gad,
        Variant::Gap,
        Variant::Ld,
        Variant::Lp,
        Variant::Lad,
        Variant::Lap,
        Variant::Ad,
        Variant::Ap,
    ];

    /// Its name in the tables (`AD`).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Ad => "AD",
            Variant::Ap => "AP",
            Variant::Gad => "GAD",
            Variant::Gap => "GAP",
            Variant::Lad => "LAD",
            Variant::Lap => "LAP",
            Variant::Gd => "GD",
            Variant::Gp => "GP",
            Variant::Ld => "LD",
            Variant::Lp => "LP",
        }
    }

    /// The spaces it blends (one for a single space).
    pub fn spaces(self) -> &'static [Space] {
        match self {
            Variant::Ad | Variant::Ap => &Space::ALL,
            Variant::Gad | Variant::Gap => &[Space::Gd, Space::Gp],
            Variant::Lad | Variant::Lap => &[Space::Ld, Space::Lp],
            Variant::Gd => &[Space::Gd],
            Variant::Gp => &[Space::Gp],
            Variant::Ld => &[Space::Ld],
            Variant::Lp => &[Space::Lp],
        }
    }

    /// The attention network's loss, or `None` for a single space.
    pub fn attention_loss(self) -> Option<Loss> {
        match self {
            Variant::Ad | Variant::Gad | Variant::Lad => Some(Loss::Distance),
            Variant::Ap | Variant::Gap | Variant::Lap => Some(Loss::Product),
            _ => None,
        }
    }
}

/// Where a local network starts (the paper says only that it has the
/// same architecture and trains on local triplets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalInit {
    /// From the trained GD network: local triplets refine the global view.
    Global,
    /// From fresh random weights.
    Fresh,
}

/// Hyper-parameters (defaults from glrs.txt section 4.3; those the paper
/// leaves out are marked and documented in docs/glrs.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlrsConfig {
    /// Which representation is scored.
    pub variant: Variant,
    /// Output dimension d of every representation network (64; Table 6
    /// also 32 and 128).
    pub dim: usize,
    /// Width of the ID embedding and of each hidden layer (64).
    pub hidden: usize,
    /// Hidden layers per tower (2).
    pub layers: usize,
    /// Adam learning rate of every network (0.00017).
    pub lr: f64,
    /// Triplets per batch (512).
    pub batch: usize,
    /// Most epochs of each network (200).
    pub epochs: usize,
    /// Epochs without validation improvement before a network stops (not
    /// in the paper).
    pub patience: usize,
    /// Margin alpha of the distance loss, eq. 4 (0.5).
    pub margin: f64,
    /// L2 weight on the embedding rows a batch uses, per triplet (the
    /// paper applies L2 to the product loss's representations, which are
    /// unit vectors: we put it on the embeddings, 0 by default).
    pub reg: f64,
    /// Clusters M of the GD item space (20 for Madison and MovieLens).
    pub clusters: usize,
    /// Clusters probed per query, K of Algorithm 1 (2).
    pub probe: usize,
    /// Candidate clusters J around each user for local triplets (not given
    /// in the paper; default the probe count).
    pub local_clusters: usize,
    /// Draws per positive when looking for a hard local negative.
    pub local_tries: usize,
    /// Lloyd iterations of the k-means.
    pub kmeans_iters: usize,
    /// Where LD and LP start: `global` (GD's trained network) or `fresh`.
    pub local_init: LocalInit,
    /// Candidate negatives drawn per global triplet, of which the hardest
    /// under the current network is trained on (1: uniform, eq. 2 as
    /// written; section 3.1 suggests selecting hard triplets).
    pub hard_negatives: usize,
    /// Learning rate of the attention network (default: `lr`).
    pub attention_lr: Option<f64>,
    /// Validate every network after GD within the candidates of the GD
    /// index (`probe` clusters), as the paper's Tables 2-4 evaluate (the
    /// registry's experiments there set it); `false` ranks every item, as
    /// the sampled protocol and full ranking do.
    pub pruned_validation: bool,
}

impl Default for GlrsConfig {
    fn default() -> Self {
        GlrsConfig {
            variant: Variant::Ap,
            dim: 64,
            hidden: 64,
            layers: 2,
            lr: 0.00017,
            batch: 512,
            epochs: 200,
            patience: 10,
            margin: 0.5,
            reg: 0.0,
            clusters: 20,
            probe: 2,
            local_clusters: 2,
            local_tries: 5,
            kmeans_iters: 100,
            local_init: LocalInit::Global,
            hard_negatives: 1,
            attention_lr: None,
            pruned_validation: false,
        }
    }
}

impl GlrsConfig {
    /// Checks every value before any work.
    pub fn check(&self) -> Result<()> {
        let positive = [
            ("dim", self.dim),
            ("hidden", self.hidden),
            ("batch", self.batch),
            ("patience", self.patience),
            ("clusters", self.clusters),
            ("probe", self.probe),
            ("local_clusters", self.local_clusters),
            ("local_tries", self.local_tries),
            ("kmeans_iters", self.kmeans_iters),
            ("hard_negatives", self.hard_negatives),
        ];
        if let Some((name, _)) = positive.iter().find(|p| p.1 == 0) {
            return Err(GlrsError::Config(format!("{name} must be positive")));
        }
        if self.probe > self.clusters || self.local_clusters > self.clusters {
            return Err(GlrsError::Config(format!(
                "probe ({}) and local_clusters ({}) cannot exceed clusters ({})",
                self.probe, self.local_clusters, self.clusters
            )));
        }
        for (name, v) in [("margin", self.margin), ("reg", self.reg)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(GlrsError::Config(format!(
                    "{name} must be a finite number >= 0 (got {v})"
                )));
            }
        }
        for (name, v) in [("lr", Some(self.lr)), ("attention_lr", self.attention_lr)] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(GlrsError::Config(format!(
                        "{name} must be positive (got {v})"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl From<GlrsError> for ModelError {
    fn from(e: GlrsError) -> Self {
        match e {
            GlrsError::Config(m) => ModelError::Params(m),
            GlrsError::Score(s) => ModelError::Score(s),
            GlrsError::Cluster(c) => ModelError::Data(c.to_string()),
            other => ModelError::other(other),
        }
    }
}

impl ModelParams for GlrsConfig {
    type Model = Glrs;

    fn check(&self) -> Result<(), ModelError> {
        Ok(GlrsConfig::check(self)?)
    }

    fn max_epochs(&self) -> usize {
        self.epochs
    }

    fn fit(&self, ctx: &mut FitContext<'_>) -> Result<Fitted<Glrs>, ModelError> {
        let (model, summary) = Glrs::fit(self, ctx)?;
        Ok(Fitted {
            model,
            summary: Some(summary),
        })
    }

    fn load(&self, path: &Path) -> Result<Glrs, ModelError> {
        checkpoint::load_model(path, |state| Glrs::from_state(self, state))
    }
}
