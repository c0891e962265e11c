//! DURation's alignment figure: saved models' mapped item rows, each in a
//! 2-D principal projection, side by side in one SVG (docs/duration.md).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hinrec::duration::paper::{alignment_svg, alignment_view, AlignmentView};
use hinrec::duration::DurationConfig;
use hinrec::train::ModelParams;

#[derive(clap::Args)]
pub struct Args {
    /// Model directories written by `hinrec train --model duration...`
    /// (one panel each, in order), each as `TITLE=DIR` (split at the last
    /// `=`) or `DIR`.
    #[arg(long = "model", required = true)]
    models: Vec<String>,
    /// Items drawn from each kind.
    #[arg(long, default_value_t = 600)]
    per_kind: usize,
    /// Seed of the drawn items (the same items for every model).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The SVG written.
    #[arg(long, default_value = "docs/duration-alignment.svg")]
    out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let mut views: Vec<(String, AlignmentView)> = Vec::new();
    for spec in &args.models {
        let (title, dir) = match spec.rsplit_once('=') {
            Some((t, d)) => (t.to_string(), PathBuf::from(d)),
            None => (spec.clone(), PathBuf::from(spec)),
        };
        // The directory's checksums and tensor shapes; the weights are
        // then read once, as a concrete DURation.
        let v = hinrec::model_dir::read_verified(&dir)?;
        if v.entry.table != "duration" || v.info.model == "duration-ho" {
            bail!(
                "{}: a {} model; the figure needs one DURation over every kind",
                dir.display(),
                v.info.model
            );
        }
        let cfg: DurationConfig = toml::Value::Table(v.info.params)
            .try_into()
            .with_context(|| format!("{}: config.toml's [params]", dir.display()))?;
        let model = cfg.load(&v.weights)?;
        let view = alignment_view(&model, args.per_kind, args.seed)
            .with_context(|| format!("{}", dir.display()))?;
        println!(
            "{title}: distributional variance {:.5} over {} kinds ({} points); the two axes hold {:.0}% of the variance",
            view.variance,
            view.kinds.len(),
            view.points.iter().map(Vec::len).sum::<usize>(),
            100.0 * view.explained
        );
        views.push((title, view));
    }
    let panels: Vec<(&str, &AlignmentView)> = views.iter().map(|(t, v)| (t.as_str(), v)).collect();
    let svg = alignment_svg(&panels);
    let tmp = args.out.with_extension("svg.tmp");
    std::fs::write(&tmp, svg).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
