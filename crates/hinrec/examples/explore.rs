//! Scratch exploration of baseline hyper-parameters on a dataset.
use hinrec::experiment::{ExperimentConfig, Prepared};
use hinrec::models::{fit, ModelKind};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ds = hinrec::data::registry::load(&args[1], None)?;
    let base = ExperimentConfig::default();
    let p = Prepared::new(&ds, &base)?;
    for k in [10, 20, 50, 100, 200, 400, 1000] {
        for shrink in [0.0, 10.0] {
            let mut c = base.clone();
            c.itemknn.k = k;
            c.itemknn.shrink = shrink;
            let f = fit(ModelKind::ItemKnn, &p, &c, 1, &mut |_| {})?;
            let v = hinrec::models::validation(&p, &c)
                .score(f.scorer())
                .unwrap();
            let t = p.evaluate_sampled(f.scorer(), "knn", 1, &[10]);
            println!(
                "knn k={k} shrink={shrink} valid {v:.4} test HR {:.4} NDCG {:.4}",
                t.metrics.get("HR@10").unwrap(),
                t.metrics.get("NDCG@10").unwrap()
            );
        }
    }
    for dim in [32, 64, 128] {
        for lr in [0.01, 0.03, 0.1] {
            for reg in [0.001, 0.01, 0.03] {
                let mut c = base.clone();
                c.bpr.dim = dim;
                c.bpr.lr = lr;
                c.bpr.reg = reg;
                c.patience = 20;
                let f = fit(ModelKind::Bpr, &p, &c, 1, &mut |_| {})?;
                let s = f.summary.clone().unwrap();
                let t = p.evaluate_sampled(f.scorer(), "bpr", 1, &[10]);
                println!("bpr d={dim} lr={lr} reg={reg} best_ep {} valid {:.4} test HR {:.4} NDCG {:.4} ({:.1}s)", s.best_epoch, s.best_valid.unwrap(), t.metrics.get("HR@10").unwrap(), t.metrics.get("NDCG@10").unwrap(), s.total_s);
            }
        }
    }
    Ok(())
}
