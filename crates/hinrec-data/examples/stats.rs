//! Prints the counts of every shipped dataset under a data root.
fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or("../shared/datasets".into());
    for s in hinrec_data::registry::SHIPPED {
        let t = std::time::Instant::now();
        match hinrec_data::registry::load(s.name, Some(std::path::Path::new(&root))) {
            Ok(ds) => println!(
                "{}({:.2}s)\n",
                hinrec_data::stats::DatasetStats::of(&ds),
                t.elapsed().as_secs_f64()
            ),
            Err(e) => println!("{}: error: {e}\n", s.name),
        }
    }
}
