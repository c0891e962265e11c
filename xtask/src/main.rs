//! hinrec's task runner (run as `cargo xtask <task>`).
//!
//! - `reproduce`: every registered model on its registry entry's
//!   experiments, and docs/results.md (ours beside the papers').
//! - `render`: docs/results.md again from docs/results.json.
//! - `glrs-retrieval`: GLRS's retrieval study and query time against
//!   catalogue size (docs/glrs-retrieval.md).
//! - `hhfan-walks`: HHFAN's neighbour walks timed on the real ml1m graph
//!   (and the graph exported for the numpy peer).
//! - `duration-alignment`: DURation's mapped item rows of saved models in
//!   one SVG (docs/duration.md).
//! - `real-data`: the checks CI runs where ../shared/datasets exists.
//! - `ci`: everything .ci/run runs.

mod duration;
mod glrs;
mod hhfan;
mod real_data;
mod reproduce;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Train and evaluate the registry's models on their papers'
    /// experiments; update docs/results.md.
    Reproduce(reproduce::Args),
    /// GLRS's retrieval study: recall against items scanned for M x K,
    /// query time against catalogue size.
    GlrsRetrieval(glrs::Args),
    /// HHFAN's random walks from every node of ml1m's M-HIG, timed.
    HhfanWalks(hhfan::Args),
    /// DURation's alignment figure: saved models' mapped item rows of each
    /// kind in a 2-D projection, one panel per model.
    DurationAlignment(duration::Args),
    /// Re-render docs/results.md from docs/results.json.
    Render {
        /// Folder of results.json and paper-numbers.toml.
        #[arg(long, default_value = "docs")]
        out: PathBuf,
    },
    /// Real-data acceptance checks (dataset counts, short training runs).
    RealData {
        /// Folder of the shared datasets.
        #[arg(long, default_value = "../shared/datasets")]
        data_root: PathBuf,
    },
    /// What .ci/run runs: fmt, clippy, tests, and real-data checks.
    Ci,
}

// glibc's malloc returns every large tensor buffer to the kernel on free,
// so each candle op on a big batch page-faults its output in afresh.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    hinrec::keep_freed_memory();
    hinrec::configure_threads(None);
    match Cli::parse().task {
        Task::Reproduce(args) => reproduce::run(&args),
        Task::GlrsRetrieval(args) => glrs::run(&args),
        Task::HhfanWalks(args) => hhfan::run(&args),
        Task::DurationAlignment(args) => duration::run(&args),
        Task::Render { out } => hinrec::results::render_file(&out),
        Task::RealData { data_root } => real_data::run(&data_root),
        Task::Ci => {
            cargo(&["fmt", "--all", "--", "--check"])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            cargo(&["test", "--workspace"])?;
            let root = PathBuf::from("../shared/datasets");
            if root.is_dir() {
                real_data::run(&root)?;
            } else {
                println!("../shared/datasets is absent: real-data checks skipped");
            }
            Ok(())
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(args)
        .status()?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}
