//! Model directories and `hinrec train` under bad input, crashes and
//! concurrent runs, through the command line as a user meets them: a
//! directory refuses data and files that changed since training, a killed
//! `train` leaves the previous complete directory or the new one, two runs
//! never mix, the same run writes the same bytes, and every argument is
//! checked before training.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{Rng, SeedableRng};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/synthetic-small")
}

fn hinrec(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hinrec"));
    c.args(args).env("CANDLE_NUM_THREADS", "1");
    c
}

fn run(args: &[&str]) -> Output {
    hinrec(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

/// The error `args` fail with (exit code 1 or 2, never a panic's 101).
fn fails(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_ne!(
        o.status.code(),
        Some(101),
        "{args:?} panicked: {}",
        stderr(&o)
    );
    stderr(&o)
}

/// A copy of the fixture the test may change, and a config for it.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        hinrec::paths::copy_dir(&fixture(), &dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("cfg.toml"), "negatives = 50\n").unwrap();
        Setup { dir }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `hinrec train` arguments of `model` into `out` with `extra` args.
    fn train_args(&self, model: &str, out: &Path, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--model",
            model,
            "--data",
            self.data().to_str().unwrap(),
            "--config",
            self.path("cfg.toml").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn train(&self, model: &str, out: &Path, extra: &[&str]) -> Output {
        let a = self.train_args(model, out, extra);
        ok(&a.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// `hinrec evaluate --json` of `dir` without its wall time, or the error.
fn evaluate(dir: &Path) -> Result<serde_json::Value, String> {
    let o = run(&["evaluate", "--model-dir", dir.to_str().unwrap(), "--json"]);
    if !o.status.success() {
        assert_ne!(o.status.code(), Some(101), "panicked: {}", stderr(&o));
        return Err(stderr(&o));
    }
    let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_object_mut().unwrap().remove("wall_s");
    Ok(v)
}

fn evaluate_err(dir: &Path) -> String {
    evaluate(dir).expect_err("evaluate accepted it")
}

#[test]
fn a_model_directory_refuses_data_that_changed_since_training() {
    let s = Setup::new();
    let out = s.path("bpr");
    s.train("bpr", &out, &["--set", "epochs=3"]);
    let before = evaluate(&out).unwrap();
    // The dataset gained one line since training.
    let ui = s.data().join("user_item.tsv");
    let original = std::fs::read(&ui).unwrap();
    let mut grown = original.clone();
    grown.extend(b"1\t150\t5\t1000000000\n");
    std::fs::write(&ui, &grown).unwrap();
    for cmd in [
        vec!["evaluate", "--model-dir", out.to_str().unwrap()],
        vec![
            "recommend",
            "--model-dir",
            out.to_str().unwrap(),
            "--user",
            "1",
        ],
    ] {
        let e = fails(&cmd);
        assert!(e.contains("was trained on other data"), "{e}");
        assert!(e.contains("user_item.tsv: changed since training"), "{e}");
        assert!(e.contains("interactions:"), "{e}");
    }
    std::fs::write(&ui, &original).unwrap();
    assert_eq!(
        evaluate(&out).unwrap(),
        before,
        "restored data scores as before"
    );
    // A changed manifest setting (here a relation dropped) is named too.
    let m = s.data().join("manifest.toml");
    let text = std::fs::read_to_string(&m).unwrap();
    let cut = text.find("[[relations]]").unwrap();
    std::fs::write(&m, &text[..cut]).unwrap();
    let e = evaluate_err(&out);
    assert!(e.contains("manifest (sha256)"), "{e}");
    std::fs::write(&m, text).unwrap();
}

#[test]
fn weights_of_another_run_or_shape_are_refused_at_every_layer() {
    let s = Setup::new();
    let (small, large) = (s.path("d8"), s.path("d16"));
    s.train("bpr", &small, &["--set", "epochs=2", "--set", "dim=8"]);
    s.train("bpr", &large, &["--set", "epochs=2", "--set", "dim=16"]);
    let weights = |d: &Path| d.join("model.safetensors");
    std::fs::copy(weights(&small), weights(&large)).unwrap();
    // 1. The checksum.
    let e = evaluate_err(&large);
    assert!(e.contains("model.safetensors: checksum differs"), "{e}");
    // 2. The recorded tensor shapes, once the checksums are redone.
    hinrec::model_dir::write_sums(&large).unwrap();
    let e = evaluate_err(&large);
    assert!(e.contains("the tensors differ"), "{e}");
    assert!(
        e.contains("user_factors is F32 [200, 8], recorded F32 [200, 16]"),
        "{e}"
    );
    // 3. The parameters, once the record is "fixed" too.
    std::fs::copy(small.join("provenance.toml"), large.join("provenance.toml")).unwrap();
    hinrec::model_dir::write_sums(&large).unwrap();
    let e = evaluate_err(&large);
    assert!(
        e.contains("dimension 8, the parameters say dim = 16"),
        "{e}"
    );
}

#[test]
fn a_flipped_byte_anywhere_is_detected() {
    let s = Setup::new();
    let out = s.path("knn");
    s.train("itemknn", &out, &[]);
    for f in [
        "model.safetensors",
        "config.toml",
        "provenance.toml",
        "split/test.negative",
        "split/train.tsv",
    ] {
        let p = out.join(f);
        let bytes = std::fs::read(&p).unwrap();
        let mut flipped = bytes.clone();
        let at = bytes.len() / 2;
        flipped[at] ^= 0x01;
        std::fs::write(&p, &flipped).unwrap();
        let e = evaluate_err(&out);
        assert!(e.contains(&format!("{f}: checksum differs")), "{f}: {e}");
        std::fs::write(&p, bytes).unwrap();
    }
    std::fs::write(out.join("split/extra.tsv"), "1\t1\n").unwrap();
    assert!(evaluate_err(&out).contains("not listed in SHA256SUMS"));
    std::fs::remove_file(out.join("split/extra.tsv")).unwrap();
    std::fs::remove_file(out.join("split/valid.negative")).unwrap();
    assert!(evaluate_err(&out).contains("lists split/valid.negative"));
}

#[test]
fn negatives_given_to_evaluate_are_checked_against_the_test_split() {
    let s = Setup::new();
    let out = s.path("pop");
    s.train("mostpop", &out, &[]);
    let stored = std::fs::read_to_string(out.join("split/test.negative")).unwrap();
    let mut lines: Vec<String> = stored.lines().map(String::from).collect();
    let custom = s.path("custom.negative");
    let with_out = |f: &Path| {
        vec![
            "evaluate".to_string(),
            "--model-dir".into(),
            out.to_str().unwrap().into(),
            "--negatives".into(),
            f.to_str().unwrap().into(),
        ]
    };
    let args = with_out(&custom);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    std::fs::write(&custom, &stored).unwrap();
    ok(&args);
    // A line cut to one candidate.
    let head: Vec<&str> = lines[1].split('\t').take(2).collect();
    let cut = head.join("\t");
    let mut short = lines.clone();
    short[1] = cut;
    std::fs::write(&custom, short.join("\n") + "\n").unwrap();
    let e = fails(&args);
    assert!(
        e.contains("custom.negative:2: 1 negative(s), line 1 has 50"),
        "{e}"
    );
    // A negative that is one of the user's training items, in file ids.
    let train = std::fs::read_to_string(out.join("split/train.tsv")).unwrap();
    let user = lines[0][1..].split(',').next().unwrap().to_string();
    let item = train
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{user}\t")))
        .unwrap()
        .to_string();
    let mut fields: Vec<String> = lines[0].split('\t').map(String::from).collect();
    fields[1] = item.clone();
    lines[0] = fields.join("\t");
    std::fs::write(&custom, lines.join("\n") + "\n").unwrap();
    let e = fails(&args);
    assert!(
        e.contains(&format!(
            "custom.negative:1: negative item {item} is an item of user {user}"
        )),
        "{e}"
    );
}

#[test]
fn arguments_are_checked_before_any_training() {
    let s = Setup::new();
    let out = s.path("x");
    // A seed TOML cannot store.
    let a = s.train_args("bpr", &out, &["--seed", "9223372036854775808"]);
    let e = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("--seed"), "{e}");
    assert!(!e.contains("loaded"), "failed after reading the data: {e}");
    // --out inside the data folder.
    let inside = s.data().join("model");
    let a = s.train_args("mostpop", &inside, &[]);
    let e = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("inside the data folder"), "{e}");
    assert!(!inside.exists());
    // An unwritable parent.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = s.path("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe = ro.join("probe");
        // Root writes anyway; the check only means something for others.
        if std::fs::write(&probe, b"").is_err() {
            let a = s.train_args("mostpop", &ro.join("m"), &[]);
            let e = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(e.contains("not writable"), "{e}");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_second_train_into_the_same_out_is_refused_while_the_first_runs() {
    let s = Setup::new();
    let out = s.path("busy");
    let held = hinrec::model_dir::lock(&out).unwrap();
    let a = s.train_args("mostpop", &out, &[]);
    let e = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(e.contains("another hinrec train is writing it"), "{e}");
    assert!(!out.exists());
    drop(held);
    s.train("mostpop", &out, &[]);
    evaluate(&out).unwrap();
}

#[test]
fn the_same_run_writes_the_same_bytes() {
    let s = Setup::new();
    for (model, extra) in [
        ("itemknn", vec![]),
        ("bpr", vec!["--set", "epochs=3"]),
        (
            "lgrec",
            vec![
                "--set",
                "epochs=1",
                "--set",
                "dim=8",
                "--set",
                "meta_paths=[\"UIUI\"]",
            ],
        ),
    ] {
        let (a, b) = (s.path(&format!("{model}-a")), s.path(&format!("{model}-b")));
        s.train(model, &a, &extra);
        s.train(model, &b, &extra);
        let sums = |d: &Path| std::fs::read_to_string(d.join("SHA256SUMS")).unwrap();
        assert_eq!(sums(&a), sums(&b), "{model}");
        assert_eq!(
            std::fs::read(a.join("model.safetensors")).unwrap(),
            std::fs::read(b.join("model.safetensors")).unwrap()
        );
    }
}

/// Runs `args` and kills it (SIGKILL) after `delay`; true when it was
/// still running then.
fn kill_after(args: &[String], delay: std::time::Duration) -> bool {
    let mut child = hinrec(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    child.wait().unwrap();
    running
}

#[test]
fn a_killed_train_leaves_the_previous_complete_directory_or_the_new_one() {
    let s = Setup::new();
    // Old and new runs differ (seeds 1 and 2), so each is recognisable.
    let extra = |seed: &'static str| vec!["--set", "epochs=40", "--seed", seed, "--force"];
    let reference_new = s.path("new");
    let t = std::time::Instant::now();
    s.train("bpr", &reference_new, &extra("2"));
    let first = t.elapsed();
    let new = evaluate(&reference_new).unwrap();
    let reference_old = s.path("old");
    let t = std::time::Instant::now();
    s.train("bpr", &reference_old, &extra("1"));
    // The faster of the two runs: kills must land before the end.
    let full = first.min(t.elapsed());
    let old = evaluate(&reference_old).unwrap();
    assert_ne!(old, new);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
    let (mut killed_fresh, mut killed_existing) = (0, 0);
    for k in 0..24 {
        let fresh = k % 2 == 0;
        let out = s.path(&format!("crash-{k}"));
        if !fresh {
            hinrec::paths::copy_dir(&reference_old, &out).unwrap();
        }
        let delay = full.mul_f64(rng.random_range(0.05..1.0));
        let args = s.train_args("bpr", &out, &extra("2"));
        let killed = kill_after(&args, delay);
        match (fresh, out.exists()) {
            (true, false) => {}
            (true, true) => assert_eq!(evaluate(&out).unwrap(), new, "kill {k} at {delay:?}"),
            (false, true) => {
                let now = evaluate(&out).unwrap();
                assert!(now == old || now == new, "kill {k} at {delay:?}: a mix");
            }
            (false, false) => panic!("kill {k} at {delay:?}: the previous directory is gone"),
        }
        if killed {
            if fresh {
                killed_fresh += 1;
            } else {
                killed_existing += 1;
            }
        }
        // The next train into the same --out cleans up and completes.
        s.train("bpr", &out, &extra("2"));
        assert_eq!(evaluate(&out).unwrap(), new);
        let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!(".crash-{k}.")) && !n.ends_with(".lock"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
    assert!(
        killed_fresh >= 3 && killed_existing >= 3,
        "too few kills landed mid-run ({killed_fresh}, {killed_existing})"
    );
}
