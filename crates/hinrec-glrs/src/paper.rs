//! The retrieval study behind glrs.txt Fig. 4 and Algorithm 1: for each
//! number of clusters M and probe count K, how much of the catalogue a
//! query scores, how many of the user's test items the probed clusters
//! hold, the pruned metrics against exhaustive ranking (attentive and the
//! index's own GD space alone), and the time per query; then query time
//! against catalogue size on a synthetic catalogue grown from the trained
//! item vectors.

use std::time::Instant;

use hinrec_cluster::index::{ClusterIndex, Metric};
use hinrec_cluster::kmeans::{KMeans, KMeansConfig};
use hinrec_data::{Interactions, Split};
use hinrec_eval::{candidate_recall, full_ranking, Metrics, Pruned, ScoreError, Scorer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::network::{Glrs, SpaceScorer, Tables};
use crate::params::Result;

/// One (M, K) point of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalPoint {
    /// Clusters M.
    pub clusters: usize,
    /// Probed clusters K.
    pub probe: usize,
    /// Mean share of the catalogue a query scores.
    pub scanned: f64,
    /// Mean share of a user's test items inside the probed clusters.
    pub cluster_recall: f64,
    /// The model within the candidates (Recall/Precision/HR/ARHR at the
    /// cut-off).
    pub pruned: Metrics,
    /// GD alone within the same candidates.
    pub index_space: Metrics,
    /// Milliseconds per query: probe, score the candidates, keep the top.
    pub ms_per_query: f64,
}

/// The study on one trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalStudy {
    /// Cut-off of the metrics.
    pub k: usize,
    /// The model ranking every item.
    pub exhaustive: Metrics,
    /// GD alone ranking every item.
    pub index_space_exhaustive: Metrics,
    /// Milliseconds per exhaustive query.
    pub ms_per_query_exhaustive: f64,
    /// Every (M, K) point.
    pub points: Vec<RetrievalPoint>,
}

/// The top `n` items of `user` among `candidates` (every item when
/// `None`), training items excluded: one query of Algorithm 1.
pub fn query(
    model: &Glrs,
    user: u32,
    candidates: Option<&[u32]>,
    known: &[u32],
    n: usize,
) -> std::result::Result<Vec<(u32, f32)>, ScoreError> {
    let all: Vec<u32>;
    let items = match candidates {
        Some(c) => c,
        None => {
            all = (0..model.n_items() as u32).collect();
            &all
        }
    };
    let pairs: Vec<(u32, u32)> = items
        .iter()
        .filter(|i| known.binary_search(i).is_err())
        .map(|&i| (user, i))
        .collect();
    let mut scores = vec![0f32; pairs.len()];
    model.score_pairs(&pairs, &mut scores)?;
    let mut top: Vec<(u32, f32)> = pairs.iter().map(|p| p.1).zip(scores).collect();
    let n = n.min(top.len());
    if n > 0 && n < top.len() {
        top.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
        top.truncate(n);
    }
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(top)
}

/// Seconds per query over `users`, with candidates from `index` probing
/// `probe` clusters (every item when `index` is `None`).
fn time_queries(
    model: &Glrs,
    users: &[u32],
    known: &Interactions,
    index: Option<(&ClusterIndex, usize)>,
    n: usize,
) -> std::result::Result<f64, ScoreError> {
    let start = Instant::now();
    for &u in users {
        let cands = index.map(|(ix, k)| ix.candidates(model.gd().user(u), k));
        query(model, u, cands.as_deref(), known.user_items(u), n)?;
    }
    Ok(start.elapsed().as_secs_f64() / users.len().max(1) as f64)
}

/// Runs the study: for each M in `ms` a fresh k-means of the GD item
/// space (seeded), for each K in `probes` (K >= M means every cluster)
/// the candidates of every test user, the metrics at cut-off `k` and the
/// time per query over `timed_users` users.
pub fn retrieval_study(
    model: &Glrs,
    split: &Split,
    ms: &[usize],
    probes: &[usize],
    k: usize,
    timed_users: usize,
    seed: u64,
) -> Result<RetrievalStudy> {
    let known = [&split.train, &split.valid];
    let ks = [k];
    let gd = SpaceScorer { tables: model.gd() };
    let score = |e: ScoreError| crate::params::GlrsError::Score(e);
    let exhaustive = full_ranking(model, &split.test, &known, &ks).map_err(score)?;
    let index_space_exhaustive = full_ranking(&gd, &split.test, &known, &ks).map_err(score)?;
    let seen = split.train.union(&split.valid);
    let users: Vec<u32> = (0..split.test.n_users() as u32)
        .filter(|&u| split.test.user_degree(u) > 0)
        .take(timed_users)
        .collect();
    let ms_per_query_exhaustive = time_queries(model, &users, &seen, None, k).map_err(score)? * 1e3;
    let mut points = Vec::new();
    for &m in ms {
        let km = KMeans::fit(
            &model.gd().items,
            model.gd().dim,
            &KMeansConfig {
                k: m.min(model.n_items()),
                max_iter: model.config().kmeans_iters,
                seed,
            },
        )?;
        let index = ClusterIndex::new(&km, Metric::L2);
        for &probe in probes {
            let probe = probe.min(m);
            if points
                .iter()
                .any(|p: &RetrievalPoint| p.clusters == m && p.probe == probe)
            {
                continue;
            }
            let cands = |u: u32| {
                ((u as usize) < model.n_users())
                    .then(|| index.candidates(model.gd().user(u), probe))
            };
            let pruned = full_ranking(
                &Pruned {
                    scorer: model,
                    candidates: &cands,
                },
                &split.test,
                &known,
                &ks,
            )
            .map_err(score)?;
            let index_space = full_ranking(
                &Pruned {
                    scorer: &gd,
                    candidates: &cands,
                },
                &split.test,
                &known,
                &ks,
            )
            .map_err(score)?;
            let test_users: Vec<u32> = (0..split.test.n_users() as u32)
                .filter(|&u| split.test.user_degree(u) > 0)
                .collect();
            let scanned = test_users
                .iter()
                .map(|&u| index.candidates(model.gd().user(u), probe).len() as f64)
                .sum::<f64>()
                / (test_users.len().max(1) * model.n_items().max(1)) as f64;
            let ms_per_query =
                time_queries(model, &users, &seen, Some((&index, probe)), k).map_err(score)? * 1e3;
            points.push(RetrievalPoint {
                clusters: m,
                probe,
                scanned,
                cluster_recall: candidate_recall(&split.test, &cands),
                pruned,
                index_space,
                ms_per_query,
            });
        }
    }
    Ok(RetrievalStudy {
        k,
        exhaustive,
        index_space_exhaustive,
        ms_per_query_exhaustive,
        points,
    })
}

/// Query time on one catalogue size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalePoint {
    /// Items in the catalogue.
    pub items: usize,
    /// Clusters of its index.
    pub clusters: usize,
    /// Probed clusters.
    pub probe: usize,
    /// Share of the catalogue a pruned query scored.
    pub scanned: f64,
    /// Milliseconds per pruned query.
    pub ms_pruned: f64,
    /// Milliseconds per exhaustive query.
    pub ms_exhaustive: f64,
}

/// Item rows grown from the trained ones: row k is trained item
/// `sources[k]`'s row plus Gaussian noise of a tenth of a unit vector's
/// spread, renormalised (GLRS's vectors are unit length). Every space of
/// an item grows from the same trained item.
fn grown_tables(t: &Tables, sources: &[usize], rng: &mut ChaCha8Rng) -> Tables {
    let d = t.dim;
    let noise = Normal::new(0.0, 0.1 / (d as f64).sqrt())
        .unwrap_or_else(|_| Normal::new(0.0, 0.01).expect("a valid normal"));
    let mut items = Vec::with_capacity(sources.len() * d);
    for &src in sources {
        let row: Vec<f32> = t.items[src * d..(src + 1) * d]
            .iter()
            .map(|&v| v + noise.sample(rng) as f32)
            .collect();
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        items.extend(row.iter().map(|x| x / norm));
    }
    Tables {
        dim: d,
        users: t.users.clone(),
        items,
    }
}

/// Query time against catalogue size: for each size in `sizes`, every
/// space's item rows grown from the trained ones ([`grown_tables`]), the
/// GD item rows clustered into `clusters` clusters (the setting under
/// test), and `queries` users timed probing `probe` of them and
/// exhaustively.
pub fn scaling(
    model: &Glrs,
    sizes: &[usize],
    clusters: usize,
    probe: usize,
    queries: usize,
    seed: u64,
) -> Result<Vec<ScalePoint>> {
    let mut out = Vec::new();
    for &n in sizes {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ n as u64);
        let sources: Vec<usize> = (0..n)
            .map(|_| rng.random_range(0..model.n_items()))
            .collect();
        let gd = grown_tables(model.gd(), &sources, &mut rng);
        let m = clusters.clamp(1, n);
        let km = KMeans::fit(
            &gd.items,
            gd.dim,
            &KMeansConfig {
                k: m,
                max_iter: 20,
                seed,
            },
        )?;
        // An index keeps each list's rows together (as an IVF index
        // stores its vectors): number the items cluster by cluster, so a
        // probe reads contiguous rows.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&k| (km.assignment[k], k));
        let sources: Vec<usize> = order.iter().map(|&k| sources[k]).collect();
        let gd = Tables {
            dim: gd.dim,
            users: gd.users.clone(),
            items: order
                .iter()
                .flat_map(|&k| gd.items[k * gd.dim..(k + 1) * gd.dim].iter().copied())
                .collect(),
        };
        let km = KMeans {
            assignment: order.iter().map(|&k| km.assignment[k]).collect(),
            ..km
        };
        let spaces: Vec<_> = model
            .spaces()
            .iter()
            .map(|(s, t)| (*s, grown_tables(t, &sources, &mut rng)))
            .collect();
        let probe = probe.clamp(1, m);
        let big = Glrs::assemble(model.config(), spaces, gd, model.attention.clone(), km)?;
        let users: Vec<u32> = (0..big.n_users() as u32)
            .step_by((big.n_users() / queries.max(1)).max(1))
            .take(queries)
            .collect();
        let score = |e: ScoreError| crate::params::GlrsError::Score(e);
        let none = Interactions::empty(big.n_users(), n);
        let ms_exhaustive = time_queries(&big, &users, &none, None, 15).map_err(score)? * 1e3;
        let ms_pruned =
            time_queries(&big, &users, &none, Some((big.index(), probe)), 15).map_err(score)? * 1e3;
        let scanned = users
            .iter()
            .map(|&u| big.candidates(u, probe).len() as f64)
            .sum::<f64>()
            / (users.len().max(1) * n) as f64;
        out.push(ScalePoint {
            items: n,
            clusters: m,
            probe,
            scanned,
            ms_pruned,
            ms_exhaustive,
        });
    }
    Ok(out)
}

/// An SVG line chart of recall (relative to exhaustive ranking) against
/// the share of the catalogue scanned: one line per M for the attentive
/// re-ranking (solid) and for the index's own space (dashed).
pub fn recall_curve_svg(title: &str, study: &RetrievalStudy) -> String {
    let (w, h, pad) = (640.0, 420.0, 56.0);
    let key = format!("Recall@{}", study.k);
    let full = study.exhaustive.get(&key).unwrap_or(0.0).max(1e-12);
    let full_gd = study
        .index_space_exhaustive
        .get(&key)
        .unwrap_or(0.0)
        .max(1e-12);
    let x = |v: f64| pad + v.clamp(0.0, 1.0) * (w - 2.0 * pad);
    let y = |v: f64| h - pad - (v.clamp(0.0, 1.2) / 1.2) * (h - 2.0 * pad);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\n",
        w / 2.0
    );
    // Axes, grid and labels.
    for t in 0..=5 {
        let v = t as f64 / 5.0;
        svg += &format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}%</text>\n",
            x(v),
            y(0.0),
            x(v),
            y(1.2),
            x(v),
            h - pad + 18.0,
            v * 100.0
        );
    }
    for t in 0..=6 {
        let v = t as f64 * 0.2;
        svg += &format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.1}</text>\n",
            x(0.0),
            y(v),
            x(1.0),
            y(v),
            pad - 6.0,
            y(v) + 4.0,
            v
        );
    }
    svg += &format!(
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"2,3\"/>\n",
        x(0.0),
        y(0.95),
        x(1.0),
        y(0.95)
    );
    svg += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">share of items scanned</text>\n\
         <text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">{key} / exhaustive {key}</text>\n",
        w / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0
    );
    let colours = ["#1b6ca8", "#d1495b", "#2e933c", "#8f5bb5", "#e09f3e"];
    let mut ms: Vec<usize> = study.points.iter().map(|p| p.clusters).collect();
    ms.dedup();
    for (c, m) in ms.iter().enumerate() {
        let colour = colours[c % colours.len()];
        let mut pts: Vec<&RetrievalPoint> =
            study.points.iter().filter(|p| p.clusters == *m).collect();
        pts.sort_by(|a, b| a.scanned.total_cmp(&b.scanned));
        for (gd, dash) in [(false, ""), (true, " stroke-dasharray=\"6,4\"")] {
            let path: Vec<String> = pts
                .iter()
                .map(|p| {
                    let (m, f) = if gd {
                        (&p.index_space, full_gd)
                    } else {
                        (&p.pruned, full)
                    };
                    format!(
                        "{:.1},{:.1}",
                        x(p.scanned),
                        y(m.get(&key).unwrap_or(0.0) / f)
                    )
                })
                .collect();
            svg += &format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n",
                path.join(" ")
            );
        }
        for p in &pts {
            svg += &format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>M={} K={}</title></circle>\n",
                x(p.scanned),
                y(p.pruned.get(&key).unwrap_or(0.0) / full),
                p.clusters,
                p.probe
            );
        }
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{colour}\">M = {m}</text>\n",
            w - pad - 60.0,
            pad + 16.0 * c as f64
        );
    }
    svg += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#555\">solid: attentive; dashed: GD alone</text>\n",
        w - pad - 230.0,
        pad + 16.0 * ms.len() as f64
    );
    svg += "</svg>\n";
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GlrsConfig, Variant};
    use hinrec_data::{synthetic, SplitRule};
    use hinrec_train::{FitContext, Silent, Validation};

    #[test]
    fn probing_every_cluster_is_exhaustive_and_fewer_scan_less() {
        let ds = synthetic::generate(&synthetic::SyntheticConfig {
            n_users: 60,
            n_items: 50,
            ..synthetic::SyntheticConfig::default()
        })
        .unwrap();
        let split = SplitRule::UserCount { count: 2 }
            .apply(&ds.interactions, 1)
            .unwrap();
        let cfg = GlrsConfig {
            variant: Variant::Gap,
            epochs: 2,
            clusters: 5,
            lr: 0.01,
            ..GlrsConfig::default()
        };
        let mut silent = Silent;
        let mut ctx = FitContext::new(&split, Validation::none(), 1, &mut silent);
        let (model, _) = Glrs::fit(&cfg, &mut ctx).unwrap();
        let study = retrieval_study(&model, &split, &[5], &[1, 2, 5], 10, 5, 1).unwrap();
        assert_eq!(study.points.len(), 3);
        let all = &study.points[2];
        assert_eq!((all.probe, all.scanned, all.cluster_recall), (5, 1.0, 1.0));
        assert_eq!(
            all.pruned.get("Recall@10"),
            study.exhaustive.get("Recall@10")
        );
        assert!(study.points[0].scanned < study.points[1].scanned);
        assert!(study.points[0].cluster_recall <= study.points[1].cluster_recall);
        let svg = recall_curve_svg("t", &study);
        assert!(svg.starts_with("<svg") && svg.contains("polyline"));
        let top = query(&model, 0, None, split.train.user_items(0), 5).unwrap();
        assert_eq!(top.len(), 5);
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(top.iter().all(|t| !split.train.contains(0, t.0)));
        let scale = scaling(&model, &[200, 400], 10, 1, 3, 1).unwrap();
        assert_eq!(scale[1].items, 400);
        assert!(scale[1].scanned < 0.5);
    }
}
