//! Bad input never panics: each malformed case errors with the file and line.

use std::path::Path;

use hinrec_data::{registry, Dataset};

const MANIFEST: &str = r#"
name = "tiny"
id_base = 1
user = "user"
item = "item"
columns = { user = 0, item = 1, rating = 2 }
[[entities]]
name = "user"
count = 3
[[entities]]
name = "item"
count = 4
[[entities]]
name = "genre"
[[interactions]]
file = "ui.tsv"
[[relations]]
name = "item_genre"
file = "ig.tsv"
src = "item"
dst = "genre"
"#;

const GOOD_UI: &str = "1\t1\t5\n1\t2\t3\n2\t3\t4\n3\t4\t1\n";
const GOOD_IG: &str = "1\t7\n2\t8\n";

/// Writes the tiny dataset with `ui` and `ig` as its files and loads it.
fn load_with(ui: Option<&str>, ig: &str) -> Result<Dataset, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.toml"), MANIFEST).unwrap();
    if let Some(ui) = ui {
        std::fs::write(dir.path().join("ui.tsv"), ui).unwrap();
    }
    std::fs::write(dir.path().join("ig.tsv"), ig).unwrap();
    Dataset::load_manifest(&dir.path().join("manifest.toml")).map_err(|e| e.to_string())
}

fn assert_err(result: Result<Dataset, String>, want: &str) {
    match result {
        Ok(_) => panic!("expected an error containing {want:?}"),
        Err(e) => assert!(e.contains(want), "error {e:?} does not contain {want:?}"),
    }
}

#[test]
fn good_input_loads() {
    let ds = load_with(Some(GOOD_UI), GOOD_IG).unwrap();
    assert_eq!(
        (ds.n_users(), ds.n_items(), ds.interactions.nnz()),
        (3, 4, 4)
    );
    assert_eq!(ds.relations[0].edges.len(), 2);
}

#[test]
fn malformed_line() {
    assert_err(
        load_with(Some("1\t1\t5\n12\n"), GOOD_IG),
        "ui.tsv:2: missing column 2 (item)",
    );
}

#[test]
fn missing_column() {
    assert_err(
        load_with(Some("1\t1\t5\n2\t2\n"), GOOD_IG),
        "ui.tsv:2: missing column 3 (rating)",
    );
}

#[test]
fn non_numeric_field() {
    assert_err(
        load_with(Some("1\t1\t5\n\n2\t2\tfive\n"), GOOD_IG),
        "ui.tsv:3: column 3 (rating): \"five\" is not a valid number",
    );
    assert_err(
        load_with(Some("x\t1\t5\n"), GOOD_IG),
        "ui.tsv:1: user id \"x\" is not an integer",
    );
}

#[test]
fn id_out_of_range() {
    assert_err(
        load_with(Some("1\t1\t5\n9\t1\t5\n"), GOOD_IG),
        "ui.tsv:2: user id 9 is out of range 1..=3",
    );
    assert_err(
        load_with(Some(GOOD_UI), "1\t7\n5\t8\n"),
        "ig.tsv:2: item id 5 is out of range 1..=4",
    );
}

#[test]
fn empty_file() {
    assert_err(load_with(Some("\n"), GOOD_IG), "ui.tsv: file is empty");
    assert_err(load_with(Some(GOOD_UI), ""), "ig.tsv: file is empty");
}

#[test]
fn missing_file() {
    assert_err(load_with(None, GOOD_IG), "ui.tsv: No such file");
}

#[test]
fn broken_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("manifest.toml");
    std::fs::write(&p, "name = \"x\"\nuser = [").unwrap();
    let e = Dataset::load_manifest(&p).unwrap_err().to_string();
    assert!(e.contains("manifest.toml") && e.contains("line 2"), "{e}");
    let e = Dataset::load_manifest(Path::new("/no/such/manifest.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/no/such/manifest.toml"), "{e}");
}

/// A folder in LGRec's layout with two users (negatives written by the test).
fn lgrec_layout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train.rating"),
        "1\t1\t5\t10\n2\t2\t4\t11\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("test.rating"), "1\t3\t5\t12\n2\t1\t4\t13\n").unwrap();
    dir
}

#[test]
fn bad_stored_negatives() {
    let dir = lgrec_layout();
    // Line 2 names a negative the user has in training.
    std::fs::write(dir.path().join("test.negative"), "(1,3)\t2\n(2,1)\t2\n").unwrap();
    let e = registry::load(dir.path().to_str().unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test.negative") && e.contains("is one of the user's items"),
        "{e}"
    );
    std::fs::write(dir.path().join("test.negative"), "(1,3)\t2\n(2,1)\tnope\n").unwrap();
    let e = registry::load(dir.path().to_str().unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test.negative:2: unknown item id \"nope\""),
        "{e}"
    );
    std::fs::write(dir.path().join("test.negative"), "(1,3)\t2\n").unwrap();
    let e = registry::load(dir.path().to_str().unwrap(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cover 1 test pairs, the test set has 2"), "{e}");
}

#[test]
fn lgrec_layout_folder_loads() {
    let dir = lgrec_layout();
    std::fs::write(dir.path().join("test.negative"), "(1,3)\t2\n(2,1)\t3\n").unwrap();
    let ds = registry::load(dir.path().to_str().unwrap(), None).unwrap();
    let split = ds.given_split.as_ref().unwrap();
    assert_eq!((split.train.nnz(), split.test.nnz()), (2, 2));
    assert_eq!(ds.given_negatives.unwrap().len(), 2);
}
