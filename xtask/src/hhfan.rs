//! HHFAN's neighbour sampling timed on the real ml1m M-HIG (its walks
//! from every node, hhfan.md III.D), and the graph exported for the numpy
//! peer in scripts/compare_walks.sh.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use hinrec::data::registry as datasets;
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::hhfan::graph::Mhig;
use hinrec::hhfan::{Hhfan, HhfanConfig};
use hinrec::sample::walk::NeighborGroups;

#[derive(clap::Args)]
pub struct Args {
    /// Folder of the shared datasets.
    #[arg(long, default_value = "../shared/datasets")]
    data_root: PathBuf,
    /// The dataset (its HHFAN protocol's training split is walked).
    #[arg(long, default_value = "ml1m")]
    data: String,
    /// Timed repetitions (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Also write the graph as NPY files (offsets, indptr, indices) here.
    #[arg(long)]
    export: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    let entry = hinrec::registry::model("hhfan").map_err(anyhow::Error::msg)?;
    let exp = entry
        .experiments
        .iter()
        .find(|e| e.dataset == args.data)
        .with_context(|| format!("hhfan has no experiment on {}", args.data))?;
    let ds = datasets::load(&args.data, Some(&args.data_root))?;
    let prepared = Prepared::new(&ds, &ExperimentConfig::parse(exp.protocol)?)?;
    let cfg = HhfanConfig::default();
    let t = Instant::now();
    let mhig = Mhig::build(&prepared.hin(&ds), cfg.content_clusters, 1)?;
    let build_s = t.elapsed().as_secs_f64();
    let walk = Hhfan::walk_config(&cfg, &mhig, 1);
    let n = mhig.graph.n_nodes();
    let mut best = f64::INFINITY;
    for _ in 0..args.repeats.max(1) {
        let t = Instant::now();
        let groups = NeighborGroups::sample(&mhig.graph, &walk).map_err(anyhow::Error::msg)?;
        best = best.min(t.elapsed().as_secs_f64());
        std::hint::black_box(groups);
    }
    println!(
        "{}: M-HIG of {n} nodes ({} types), {} edges, built in {build_s:.2}s",
        args.data,
        mhig.kinds.len(),
        mhig.graph.n_edges()
    );
    println!(
        "hinrec walks ({} threads): {n} start nodes in {best:.3}s, {:.0} walks/s (restart {}, {} nodes collected, best of {})",
        rayon::current_num_threads(),
        n as f64 / best,
        walk.restart,
        walk.collect,
        args.repeats.max(1)
    );
    if let Some(dir) = &args.export {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (offsets, indptr, indices) = mhig.graph.csr();
        let as_i64 = |v: Vec<i64>| v;
        write_npy(
            &dir.join("offsets.npy"),
            &as_i64(offsets.iter().map(|&x| x as i64).collect()),
        )?;
        write_npy(
            &dir.join("indptr.npy"),
            &as_i64(indptr.iter().map(|&x| x as i64).collect()),
        )?;
        write_npy(
            &dir.join("indices.npy"),
            &as_i64(indices.iter().map(|&x| x as i64).collect()),
        )?;
        let meta = format!(
            "restart = {}\ncollect = {}\nquotas = {:?}\nkeep = {:?}\nmax_steps_per_node = {}\n",
            walk.restart, walk.collect, walk.quotas, walk.keep, walk.max_steps_per_node
        );
        std::fs::write(dir.join("walk.toml"), meta)?;
        println!("graph written to {}", dir.display());
    }
    Ok(())
}

/// A 1-D little-endian int64 NPY file.
fn write_npy(path: &Path, v: &[i64]) -> Result<()> {
    let dict = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
        v.len()
    );
    // Magic, version 1.0, header length; the header padded to 64 bytes.
    let mut header = dict.into_bytes();
    let total = 10 + header.len() + 1;
    header.extend(std::iter::repeat_n(b' ', (64 - total % 64) % 64));
    header.push(b'\n');
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    f.write_all(b"\x93NUMPY\x01\x00")?;
    f.write_all(&(header.len() as u16).to_le_bytes())?;
    f.write_all(&header)?;
    for x in v {
        f.write_all(&x.to_le_bytes())?;
    }
    f.flush()?;
    Ok(())
}
