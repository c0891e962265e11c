//! `cargo xtask glrs-retrieval`: GLRS's retrieval study (glrs.txt Fig. 4
//! and Algorithm 1) on a model trained as `reproduce` trains it (its
//! registry experiment's protocol, grid chosen on validation), and query
//! time against catalogue size; writes docs/glrs-retrieval.md, its JSON
//! and an SVG per dataset.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use hinrec::data::registry as datasets;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::glrs::paper::{recall_curve_svg, retrieval_study, scaling, RetrievalStudy, ScalePoint};
use hinrec::glrs::{Glrs, GlrsConfig};
use hinrec::registry::parse_toml;
use hinrec::tune::tune;
use serde::Serialize;

/// Arguments of `cargo xtask glrs-retrieval`.
#[derive(clap::Args)]
pub struct Args {
    /// Folder of the shared datasets.
    #[arg(long, default_value = "../shared/datasets")]
    data_root: PathBuf,
    /// Datasets (each must be an experiment of the model's registry entry).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "glrs-yelp-madison,movielens"
    )]
    datasets: Vec<String>,
    /// The registered GLRS variant.
    #[arg(long, default_value = "glrs-ap")]
    model: String,
    /// Model seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Clusters M of the study.
    #[arg(long, value_delimiter = ',', default_value = "10,20,30")]
    clusters: Vec<usize>,
    /// Catalogue sizes of the scaling run (on the first dataset's model).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    sizes: Vec<usize>,
    /// Clusters and probes of the scaling run (M, K).
    #[arg(long, value_delimiter = ',', default_value = "20,2")]
    scale_setting: Vec<usize>,
    /// Queries timed per point.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Where the report goes.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
}

#[derive(Serialize)]
struct Report {
    command: String,
    commit: String,
    cpu: String,
    studies: Vec<(String, RetrievalStudy)>,
    scaling: Vec<ScalePoint>,
    /// Per dataset: the chosen parameters' fit, stage by stage, then the
    /// evaluation (seconds).
    timings: Vec<(String, Vec<(String, f64)>)>,
}

pub fn run(args: &Args) -> Result<()> {
    hinrec::paths::check_writable(&args.out).context("--out")?;
    let entry = hinrec::registry::model(&args.model).map_err(anyhow::Error::msg)?;
    let mut studies = Vec::new();
    let mut scaled = Vec::new();
    let mut timings = Vec::new();
    for (d, dataset) in args.datasets.iter().enumerate() {
        let exp = entry
            .experiments
            .iter()
            .find(|e| e.dataset == dataset)
            .with_context(|| format!("{} has no experiment on {dataset}", entry.name))?;
        let t = Instant::now();
        let cfg = ExperimentConfig::parse(exp.protocol)?;
        let ds = datasets::load(dataset, Some(&args.data_root))?;
        let prepared = Prepared::new(&ds, &cfg)?;
        let base = entry.params(None, &parse_toml(exp.settings)?)?;
        let (chosen, _) = tune(
            base.as_ref(),
            &(exp.grid)(),
            exp.grid_settings,
            &prepared,
            None,
            &cfg,
            args.seed,
        )?;
        let params: GlrsConfig = chosen.to_toml()?.try_into().context("GLRS parameters")?;
        let mut silent = hinrec::train::Silent;
        let mut ctx = hinrec::train::FitContext::new(
            &prepared.split,
            cfg.validation(&prepared),
            args.seed,
            &mut silent,
        );
        // The grid's fits left spaces in the cache: time this fit from scratch.
        hinrec::glrs::clear_cache();
        let (model, _) = Glrs::fit(&params, &mut ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut stages = model.timings.clone();
        let t_eval = Instant::now();
        let cands = |u: u32| Some(model.candidates(u, params.probe));
        let s = &prepared.split;
        hinrec::eval::full_ranking(
            &hinrec::eval::Pruned {
                scorer: &model,
                candidates: &cands,
            },
            &s.test,
            &[&s.train, &s.valid],
            &[15],
        )
        .map_err(anyhow::Error::from_boxed)?;
        stages.push((
            "evaluation (pruned, every test user)".into(),
            t_eval.elapsed().as_secs_f64(),
        ));
        for (what, secs) in &stages {
            println!("   {what}: {secs:.1}s");
        }
        println!("   total {:.1}s", stages.iter().map(|x| x.1).sum::<f64>());
        timings.push((dataset.clone(), stages));
        println!(
            "== {dataset}: {} trained in {:.1}s",
            entry.name,
            t.elapsed().as_secs_f64()
        );
        let mut probes: Vec<usize> = (1..=5).collect();
        probes.push(usize::MAX);
        let study = retrieval_study(
            &model,
            &prepared.split,
            &args.clusters,
            &probes,
            15,
            args.queries,
            args.seed,
        )?;
        for p in &study.points {
            println!(
                "   M {:>2} K {:>2}: scanned {:.3} cluster recall {:.3} Recall@15 {:.4} (GD alone {:.4}) {:.3} ms/query",
                p.clusters,
                p.probe,
                p.scanned,
                p.cluster_recall,
                p.pruned.get("Recall@15").unwrap_or(f64::NAN),
                p.index_space.get("Recall@15").unwrap_or(f64::NAN),
                p.ms_per_query
            );
        }
        println!(
            "   exhaustive Recall@15 {:.4} (GD alone {:.4}) {:.3} ms/query",
            study.exhaustive.get("Recall@15").unwrap_or(f64::NAN),
            study
                .index_space_exhaustive
                .get("Recall@15")
                .unwrap_or(f64::NAN),
            study.ms_per_query_exhaustive
        );
        let svg = recall_curve_svg(
            &format!(
                "{} on {dataset}: Recall@15 against items scanned",
                entry.name
            ),
            &study,
        );
        std::fs::write(args.out.join(format!("glrs-retrieval-{dataset}.svg")), svg)?;
        if d == 0 {
            let (m, k) = (
                args.scale_setting[0],
                *args.scale_setting.get(1).unwrap_or(&2),
            );
            scaled = scaling(&model, &args.sizes, m, k, args.queries.min(50), args.seed)?;
            for s in &scaled {
                println!(
                    "   {} items, M {} K {}: scanned {:.3}, {:.2} ms pruned vs {:.2} ms exhaustive ({:.1}x)",
                    s.items,
                    s.clusters,
                    s.probe,
                    s.scanned,
                    s.ms_pruned,
                    s.ms_exhaustive,
                    s.ms_exhaustive / s.ms_pruned.max(1e-9)
                );
            }
        }
        studies.push((dataset.clone(), study));
    }
    let report = Report {
        command: format!(
            "cargo xtask glrs-retrieval --model {} --datasets {} --seed {} --clusters {} --sizes {} --scale-setting {} --queries {}",
            args.model,
            args.datasets.join(","),
            args.seed,
            join(&args.clusters),
            join(&args.sizes),
            join(&args.scale_setting),
            args.queries
        ),
        commit: hinrec::results::git_commit(),
        cpu: hinrec::results::cpu(),
        studies,
        scaling: scaled,
        timings,
    };
    hinrec::paths::write_atomic(
        &args.out.join("glrs-retrieval.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    hinrec::paths::write_atomic(
        &args.out.join("glrs-retrieval.md"),
        markdown(&report).as_bytes(),
    )?;
    println!(
        "wrote {}/glrs-retrieval.md, .json and the SVGs",
        args.out.display()
    );
    Ok(())
}

fn join(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# GLRS retrieval study\n\nWritten by `{}` at commit `{}` on {}; do not edit by hand. \
         Each row re-clusters the GD item space into M clusters (seeded k-means), probes the K nearest to the user's GD vector \
         (K = M: every cluster), and ranks the probed items with the model (pruned) or with GD alone; a test item outside them is a miss. \
         Times are per query (probe, score the candidates, keep the top 15), one query after another, over the first test users.\n",
        r.command, r.commit, r.cpu
    );
    for (dataset, s) in &r.studies {
        let g =
            |m: &hinrec::eval::Metrics, k: &str| m.get(k).map_or("-".into(), |v| format!("{v:.4}"));
        let _ = writeln!(
            md,
            "## {dataset}\n\n![recall against items scanned](glrs-retrieval-{dataset}.svg)\n\n\
             Exhaustive: Recall@15 {}, Precision@15 {}, HR@15 {}, ARHR@15 {} ({:.3} ms per query); GD alone Recall@15 {}.\n\n\
             | M | K | items scanned | cluster recall | Recall@15 | share of exhaustive | Precision@15 | HR@15 | ARHR@15 | GD alone Recall@15 | ms per query | speed-up |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|",
            g(&s.exhaustive, "Recall@15"),
            g(&s.exhaustive, "Precision@15"),
            g(&s.exhaustive, "HR@15"),
            g(&s.exhaustive, "ARHR@15"),
            s.ms_per_query_exhaustive,
            g(&s.index_space_exhaustive, "Recall@15"),
        );
        let full = s.exhaustive.get("Recall@15").unwrap_or(0.0).max(1e-12);
        for p in &s.points {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {:.3} | {} | {:.3} | {} | {} | {} | {} | {:.3} | {:.1}x |",
                p.clusters,
                p.probe,
                p.scanned,
                p.cluster_recall,
                g(&p.pruned, "Recall@15"),
                p.pruned.get("Recall@15").unwrap_or(0.0) / full,
                g(&p.pruned, "Precision@15"),
                g(&p.pruned, "HR@15"),
                g(&p.pruned, "ARHR@15"),
                g(&p.index_space, "Recall@15"),
                p.ms_per_query,
                s.ms_per_query_exhaustive / p.ms_per_query.max(1e-9)
            );
        }
        md.push('\n');
    }
    for (dataset, stages) in &r.timings {
        let _ = writeln!(
            md,
            "## Where one fit's time goes: {dataset}\n\nThe chosen parameters trained from scratch (seed {}), then evaluated within the probed clusters.\n\n| stage | seconds |\n|---|---|",
            r.command.split("--seed ").nth(1).and_then(|x| x.split(' ').next()).unwrap_or("1")
        );
        for (what, secs) in stages {
            let _ = writeln!(md, "| {what} | {secs:.1} |");
        }
        let _ = writeln!(
            md,
            "| total | {:.1} |\n",
            stages.iter().map(|x| x.1).sum::<f64>()
        );
    }
    if !r.scaling.is_empty() {
        let _ = writeln!(
            md,
            "## Query time against catalogue size\n\nEvery space's item rows grown from the first dataset's trained ones (a trained row plus Gaussian noise, renormalised), \
             the GD rows clustered into M clusters, K probed.\n\n| items | M | K | items scanned | ms pruned | ms exhaustive | speed-up |\n|---|---|---|---|---|---|---|"
        );
        for s in &r.scaling {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.3} | {:.2} | {:.2} | {:.1}x |",
                s.items,
                s.clusters,
                s.probe,
                s.scanned,
                s.ms_pruned,
                s.ms_exhaustive,
                s.ms_exhaustive / s.ms_pruned.max(1e-9)
            );
        }
    }
    md
}
