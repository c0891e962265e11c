//! Per-pair labels agree with the full commuting matrix under every rule,
//! and petgraph export keeps every edge.

use hinrec_data::synthetic::{generate, SyntheticConfig};
use hinrec_graph::export::to_petgraph;
use hinrec_graph::product::commuting_matrix;
use hinrec_graph::{Hin, MetaPath, PairLabeler, RowRule};

fn hin() -> Hin {
    let ds = generate(&SyntheticConfig {
        n_users: 60,
        n_items: 45,
        ..Default::default()
    })
    .unwrap();
    Hin::from_dataset(&ds, &ds.interactions)
}

#[test]
fn pair_labels_equal_the_full_product_entries() {
    let hin = hin();
    let paths = ["UIUI", "UIGI", "UAUI", "UUI"];
    let pairs: Vec<(u32, u32)> = (0..60u32)
        .flat_map(|u| (0..45u32).map(move |i| (u, i)))
        .collect();
    for rule in [
        RowRule::Count,
        RowRule::Positive,
        RowRule::AboveRowMean,
        RowRule::TopK(5),
    ] {
        let labeler = PairLabeler::new(&hin, &paths, rule).unwrap();
        let labels = labeler.labels(&pairs).unwrap();
        for (p, path) in paths.iter().enumerate() {
            let mp = MetaPath::parse(&hin, path).unwrap();
            let full = commuting_matrix(&mp.factors, rule);
            for (k, &(u, i)) in pairs.iter().enumerate() {
                let want = full.get(u as usize, i as usize).copied().unwrap_or(0.0);
                assert_eq!(
                    labels[k * paths.len() + p],
                    want,
                    "{path} {rule:?} ({u},{i})"
                );
            }
        }
    }
}

#[test]
fn bad_paths_and_pairs_are_errors() {
    let hin = hin();
    let e = PairLabeler::new(&hin, &["UXUI"], RowRule::Positive)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no entity type has code \"X\""), "{e}");
    let e = MetaPath::parse(&hin, "UGI").err().unwrap().to_string();
    assert!(e.contains("no relation links user and genre"), "{e}");
    let e = PairLabeler::new(&hin, &["UIUI", "UIUA"], RowRule::Positive)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("do not all join the same two types"), "{e}");
    let l = PairLabeler::new(&hin, &["UIUI"], RowRule::Positive).unwrap();
    assert!(l.labels(&[(60, 0)]).is_err());
}

#[test]
fn petgraph_export_keeps_nodes_and_edges() {
    let hin = hin();
    let g = to_petgraph(&hin);
    assert_eq!(
        g.node_count(),
        hin.types.iter().map(|t| t.count).sum::<usize>()
    );
    assert_eq!(g.edge_count(), hin.nnz());
}
