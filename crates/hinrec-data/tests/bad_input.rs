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
        "ui.tsv:2: no column 1 (item)",
    );
}

#[test]
fn missing_column() {
    assert_err(
        load_with(Some("1\t1\t5\n2\t2\n"), GOOD_IG),
        "ui.tsv:2: no column 2 (rating)",
    );
}

#[test]
fn non_numeric_field() {
    assert_err(
        load_with(Some("1\t1\t5\n\n2\t2\tfive\n"), GOOD_IG),
        "ui.tsv:3: column 2 (rating): \"five\" is not a valid number",
    );
    assert_err(
        load_with(Some("x\t1\t5\n"), GOOD_IG),
        "ui.tsv:1: user id \"x\" is not a whole number from 1",
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

/// A folder in LGRec's layout: users 1 and 2 with a test item each, user
/// 3 with training items only (negatives written by the test).
fn lgrec_layout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train.rating"),
        "1\t1\t5\t10\n2\t2\t4\t11\n3\t4\t1\t9\n3\t5\t1\t9\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("test.rating"), "1\t3\t5\t12\n2\t1\t4\t13\n").unwrap();
    dir
}

/// The error loading the LGRec-layout folder with `negatives` as its
/// test.negative.
fn negatives_err(negatives: &str) -> String {
    let dir = lgrec_layout();
    std::fs::write(dir.path().join("test.negative"), negatives).unwrap();
    match registry::load(dir.path().to_str().unwrap(), None) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_stored_negatives() {
    let cases = [
        // Line 2 names a negative the user has in training.
        (
            "(1,3)\t2\n(2,1)\t2\n",
            "test.negative:2: negative item 2 is an item of user 2",
        ),
        (
            "(1,3)\t2\n(2,1)\tnope\n",
            "test.negative:2: unknown item id \"nope\"",
        ),
        ("(1,3)\t2\n", "pair (2,1) of the test split has no line"),
        // A line cut short (one candidate where the first line has two).
        (
            "(1,3)\t2\t4\n(2,1)\t3\n",
            "test.negative:2: 1 negative(s), line 1 has 2",
        ),
        // The last line cut mid-id: "(2,1)\t3\t4" lost its "4\n".
        (
            "(1,3)\t2\t4\n(2,1)\t3\t5",
            "the last line has no line break",
        ),
        (
            "(1,3)\t2\n(2,4)\t3\n",
            "test.negative:2: pair (2,4) is not a pair of the test split",
        ),
    ];
    for (text, want) in cases {
        let e = negatives_err(text);
        assert!(e.contains(want), "{text:?}: {e:?} lacks {want:?}");
    }
}

#[test]
fn lgrec_layout_folder_loads() {
    let dir = lgrec_layout();
    std::fs::write(dir.path().join("test.negative"), "(1,3)\t2\n(2,1)\t4\n").unwrap();
    let ds = registry::load(dir.path().to_str().unwrap(), None).unwrap();
    let split = ds.given_split.as_ref().unwrap();
    assert_eq!((split.train.nnz(), split.test.nnz()), (4, 2));
    assert_eq!(ds.given_negatives.unwrap().len(), 2);
}

/// A manifest with no declared counts (ids come from the files).
const UNCOUNTED: &str = r#"
name = "open"
id_base = 1
user = "user"
item = "item"
[[entities]]
name = "user"
[[entities]]
name = "item"
[[interactions]]
file = "ui.tsv"
"#;

fn load_dir(manifest: &str, files: &[(&str, &[u8])]) -> Result<Dataset, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("manifest.toml"), manifest).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    Dataset::load_manifest(&dir.path().join("manifest.toml")).map_err(|e| e.to_string())
}

#[test]
fn ids_are_numeric_and_checked_unless_the_manifest_says_tokens() {
    let base = "1\t1\n2\t2\n";
    for (bad, want) in [
        ("abc", "user id \"abc\" is not a whole number from 1"),
        ("-5", "user id \"-5\" is not a whole number from 1"),
        ("0", "user id 0 is out of range 1..=4294967295"),
        (
            "4294967296",
            "user id 4294967296 is out of range 1..=4294967295",
        ),
        ("+3", "user id \"+3\" is not a whole number"),
    ] {
        let ui = format!("{base}{bad}\t1\n");
        let e = load_dir(UNCOUNTED, &[("ui.tsv", ui.as_bytes())]).unwrap_err();
        assert!(e.contains(&format!("ui.tsv:3: {want}")), "{bad}: {e}");
        assert!(
            e.contains("ids = \"tokens\""),
            "the error says how to opt in: {e}"
        );
    }
    let tokens = UNCOUNTED.replace(
        "[[entities]]\nname = \"user\"\n",
        "[[entities]]\nname = \"user\"\nids = \"tokens\"\n",
    );
    let ds = load_dir(&tokens, &[("ui.tsv", b"abc\t1\nu-5\t2\n")]).unwrap();
    assert_eq!(ds.users().originals(), ["abc", "u-5"]);
}

#[test]
fn a_byte_order_mark_is_stripped_from_data_and_manifest() {
    let plain = load_dir(UNCOUNTED, &[("ui.tsv", b"1\t1\n2\t2\n")]).unwrap();
    let bom = format!("\u{feff}{UNCOUNTED}");
    let ds = load_dir(&bom, &[("ui.tsv", b"\xEF\xBB\xBF1\t1\n2\t2\n")]).unwrap();
    assert_eq!(ds.users().originals(), plain.users().originals());
    assert_eq!(ds.interactions, plain.interactions);
}

#[test]
fn every_member_of_a_multi_member_gzip_is_read() {
    use std::io::Write;
    let gz = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let manifest = UNCOUNTED.replace("ui.tsv", "ui.tsv.gz");
    let mut two = gz(b"1\t1\n");
    two.extend(gz(b"2\t2\n3\t3\n"));
    let ds = load_dir(&manifest, &[("ui.tsv.gz", &two)]).unwrap();
    assert_eq!(ds.interactions.nnz(), 3);
    two.extend(b"\x00\x01junk");
    let e = load_dir(&manifest, &[("ui.tsv.gz", &two)]).unwrap_err();
    assert!(e.contains("ui.tsv.gz: not a valid gzip stream"), "{e}");
}

#[test]
fn a_malformed_npy_feature_file_is_an_error() {
    let manifest = format!(
        "{}\n[[features]]\nname = \"img\"\nentity = \"item\"\nfile = \"f.npy\"\n",
        UNCOUNTED.trim_end()
    );
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let h = "{'descr': '\u{e9}";
    npy.extend((h.len() as u16).to_le_bytes());
    npy.extend(h.as_bytes());
    let e = load_dir(&manifest, &[("ui.tsv", b"1\t1\n"), ("f.npy", &npy)]).unwrap_err();
    assert!(e.contains("f.npy: malformed NPY header"), "{e}");
}

#[test]
fn a_line_per_user_file_must_have_a_line_per_user() {
    let manifest = r#"
name = "gt"
id_base = 0
user = "user"
item = "item"
[[entities]]
name = "user"
count = 3
[[entities]]
name = "item"
[[interactions]]
file = "all.tsv"
[split]
test = { file = "gt.txt", format = "line-list", separator = "," }
"#;
    let all = b"0\t1\n0\t2\n1\t3\n1\t4\n2\t5\n2\t6\n";
    let ds = load_dir(manifest, &[("all.tsv", all), ("gt.txt", b"1\n3\n5\n")]).unwrap();
    assert_eq!(ds.given_split.unwrap().test.nnz(), 3);
    // User 1's line is gone: user 2's items would become user 1's.
    let e = load_dir(manifest, &[("all.tsv", all), ("gt.txt", b"1\n5\n")]).unwrap_err();
    assert!(e.contains("gt.txt: 2 lines for 3 users"), "{e}");
}

#[test]
fn implicit_rules_with_a_given_split_are_refused() {
    let manifest = format!(
        "{}\n[implicit]\nmin_rating = 4.0\n[split]\ntest = {{ file = \"t.tsv\" }}\n",
        UNCOUNTED.trim_end()
    );
    let e = load_dir(&manifest, &[("ui.tsv", b"1\t1\n"), ("t.tsv", b"1\t2\n")]).unwrap_err();
    assert!(
        e.contains("[implicit] cannot be combined with [split]"),
        "{e}"
    );
}

#[test]
fn messages_cut_long_fields_and_say_each_thing_once() {
    let huge = format!("1\t{}\n", "9".repeat(10 << 20));
    let e = load_dir(UNCOUNTED, &[("ui.tsv", huge.as_bytes())]).unwrap_err();
    assert!(e.len() < 300, "{} bytes of message", e.len());
    assert!(e.contains("ui.tsv:1: item id"), "{e}");
    // An OS error is in the message, not chained again as its source.
    let err = Dataset::load_manifest(Path::new("/no/such/dir/manifest.toml")).unwrap_err();
    assert!(std::error::Error::source(&err).is_none());
    assert_eq!(err.to_string().matches("No such file").count(), 1, "{err}");
}

#[test]
fn id_base_is_checked_with_or_without_a_count() {
    let neg = UNCOUNTED.replace("id_base = 1", "id_base = -1");
    let e = load_dir(&neg, &[("ui.tsv", b"1\t1\n")]).unwrap_err();
    assert!(e.contains("id_base = -1"), "{e}");
    let zero = load_dir(UNCOUNTED, &[("ui.tsv", b"1\t0\n")]).unwrap_err();
    assert!(
        zero.contains("ui.tsv:1: item id 0 is out of range 1..="),
        "{zero}"
    );
}

#[test]
fn user_groups_keep_two_files_users_apart_and_refuse_a_count() {
    let grouped = UNCOUNTED.replace(
        "[[interactions]]\nfile = \"ui.tsv\"\n",
        "[[interactions]]\nfile = \"ui.tsv\"\nuser_group = \"a\"\n\
         [[interactions]]\nfile = \"vi.tsv\"\nuser_group = \"b\"\n",
    );
    let ds = load_dir(
        &grouped,
        &[("ui.tsv", b"1\t1\n2\t2\n"), ("vi.tsv", b"1\t2\n")],
    )
    .unwrap();
    // User 1 of file a and user 1 of file b are two users.
    assert_eq!(ds.users().originals(), ["a:1", "a:2", "b:1"]);
    assert_eq!(ds.interactions.nnz(), 3);
    let empty = grouped.replace("user_group = \"b\"", "user_group = \"\"");
    let e = load_dir(&empty, &[]).unwrap_err();
    assert!(e.contains("vi.tsv: user_group = \"\""), "{e}");
    let counted = grouped.replace(
        "[[entities]]\nname = \"user\"\n",
        "[[entities]]\nname = \"user\"\ncount = 2\n",
    );
    let e = load_dir(&counted, &[]).unwrap_err();
    assert!(e.contains("cannot declare a count"), "{e}");
}
