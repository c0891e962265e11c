//! Trained spaces kept for the life of the process.
//!
//! Each GLRS variant needs GD (for its clusters and the index) and most
//! need two or four spaces; a table's ten variants on one dataset and seed
//! would train the same GD network ten times. A space's rows depend only
//! on the training pairs, the validation, the settings that shape it and
//! the seed, all of which the key hashes; a fit is deterministic for
//! them, so a cached space is the one a new fit would train. Checkpointed
//! fits (`--resume`) bypass nothing: a cache hit simply skips the stage.

use std::sync::{Arc, Mutex, OnceLock};

use hinrec_train::{FitContext, FitSummary, ValidationData};
use sha2::{Digest, Sha256};

use crate::network::SpaceNet;
use crate::params::{GlrsConfig, Space};

/// What a cached fit left.
pub(crate) type Entry = Arc<(SpaceNet, Option<FitSummary>)>;

/// Spaces kept at most (oldest dropped first).
const CAPACITY: usize = 64;

fn store() -> &'static Mutex<Vec<(String, Entry)>> {
    static STORE: OnceLock<Mutex<Vec<(String, Entry)>>> = OnceLock::new();
    STORE.get_or_init(|| Mutex::new(Vec::new()))
}

/// The key of `space` fitted with `cfg` on `ctx`.
pub(crate) fn key(cfg: &GlrsConfig, ctx: &FitContext<'_>, space: Space) -> String {
    let mut h = Sha256::new();
    let pairs = |h: &mut Sha256, x: &hinrec_data::Interactions| {
        h.update((x.n_users() as u64).to_le_bytes());
        h.update((x.n_items() as u64).to_le_bytes());
        for (u, i) in x.pairs() {
            h.update(u.to_le_bytes());
            h.update(i.to_le_bytes());
        }
    };
    pairs(&mut h, &ctx.split.train);
    h.update(ctx.validation.metric.as_bytes());
    match &ctx.validation.data {
        ValidationData::None => h.update(b"none"),
        ValidationData::Sampled(n) => {
            h.update(b"sampled");
            for ((u, i), negs) in n.pairs.iter().zip(&n.negatives) {
                h.update(u.to_le_bytes());
                h.update(i.to_le_bytes());
                for j in negs {
                    h.update(j.to_le_bytes());
                }
            }
        }
        ValidationData::Full { valid, train } => {
            h.update(b"full");
            pairs(&mut h, valid);
            pairs(&mut h, train);
        }
        ValidationData::Labelled(rows) => {
            h.update(b"labelled");
            for &(u, i, l) in *rows {
                h.update(u.to_le_bytes());
                h.update(i.to_le_bytes());
                h.update([u8::from(l)]);
            }
        }
    }
    // The settings that shape a space (not the variant, the attention's,
    // or the probe count).
    let shaping = format!(
        "{space:?} seed {} dim {} hidden {} layers {} lr {} batch {} epochs {} patience {} margin {} reg {} hard {}",
        ctx.seed, cfg.dim, cfg.hidden, cfg.layers, cfg.lr, cfg.batch, cfg.epochs, cfg.patience, cfg.margin, cfg.reg, cfg.hard_negatives
    );
    h.update(shaping.as_bytes());
    if space != Space::Gd {
        // Validated within the GD index's candidates, local ones trained
        // around its clusters.
        let local = format!(
            "clusters {} probe {} pruned {} local {} tries {} kmeans {} init {:?}",
            cfg.clusters,
            cfg.probe,
            cfg.pruned_validation,
            cfg.local_clusters,
            cfg.local_tries,
            cfg.kmeans_iters,
            cfg.local_init
        );
        h.update(local.as_bytes());
    }
    hinrec_data::text::hex(&h.finalize())
}

/// A cached space.
pub(crate) fn get(key: &str) -> Option<Entry> {
    let s = store().lock().ok()?;
    s.iter().find(|(k, _)| k == key).map(|(_, e)| e.clone())
}

/// Keeps a space.
pub(crate) fn put(key: String, net: SpaceNet, summary: Option<FitSummary>) {
    if let Ok(mut s) = store().lock() {
        if s.len() >= CAPACITY {
            s.remove(0);
        }
        s.push((key, Arc::new((net, summary))));
    }
}

/// Drops every cached space (tests that time a fit call this first).
pub fn clear() {
    if let Ok(mut s) = store().lock() {
        s.clear();
    }
}
