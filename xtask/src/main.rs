//! hinrec's task runner (run as `cargo xtask <task>`).
//!
//! - `reproduce`: train and evaluate models on the paper datasets with
//!   their protocols and write docs/results.md (ours beside the papers').
//! - `lgrec`, `reda`: one paper's model and ablations on its datasets.
//! - `real-data`: the checks CI runs where ../shared/datasets exists.
//! - `ci`: everything .ci/run runs.

mod lgrec;
mod real_data;
mod reda;
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
    /// Train and evaluate each model on each dataset; update docs/results.md.
    Reproduce(reproduce::Args),
    /// LGRec and its ablations on the paper datasets; updates docs/results.md.
    Lgrec(lgrec::Args),
    /// REDA and its ablations (reda.txt's protocol); updates docs/results.md.
    Reda(reda::Args),
    /// Re-render docs/results.md from docs/results.json.
    Render {
        /// Folder of results.json and paper-numbers.toml.
        #[arg(long, default_value = "docs")]
        out: PathBuf,
    },
    /// Real-data acceptance checks (dataset counts, BPR-MF on lgrec-ml100k).
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
    hinrec::configure_threads();
    match Cli::parse().task {
        Task::Reproduce(args) => reproduce::run(&args),
        Task::Lgrec(args) => lgrec::run(&args),
        Task::Reda(args) => reda::run(&args),
        Task::Render { out } => reproduce::render_file(&out),
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

/// A task's arguments with every option at its default.
pub(crate) fn default_args<A: clap::Args + clap::FromArgMatches>(name: &'static str) -> A {
    A::from_arg_matches(&A::augment_args(clap::Command::new(name)).get_matches_from([name]))
        .expect("the defaults parse")
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
