//! The fuzz targets on seeded mutations of valid inputs, a fixed number of
//! cases each: the bounded version of `fuzz/` that CI runs. A panic fails
//! the test; the failing input is printed for a regression case.

use std::io::Write;

use hinrec_fuzz::{mutate, rng, ModelDirTarget, NegativesTarget, DELIMITED_MANIFESTS};

/// Runs `target` on `cases` mutations of the `seeds`, printing the input
/// before a panic propagates.
fn bounded(name: &str, seeds: &[Vec<u8>], cases: usize, target: impl Fn(&[u8])) {
    let mut r = rng(name.bytes().map(u64::from).sum());
    for seed in seeds {
        target(seed);
    }
    for k in 0..cases {
        let input = mutate(&mut r, &seeds[k % seeds.len()]);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&input)));
        if let Err(p) = ok {
            eprintln!("{name}: case {k} panicked on {input:?}");
            std::panic::resume_unwind(p);
        }
    }
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
    let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((h.len() as u16).to_le_bytes());
    out.extend(h.as_bytes());
    out.extend(body);
    out
}

#[test]
fn manifest_target() {
    let mut seeds: Vec<Vec<u8>> = hinrec::data::registry::SHIPPED
        .iter()
        .map(|s| s.manifest.as_bytes().to_vec())
        .collect();
    seeds.extend(DELIMITED_MANIFESTS.iter().map(|m| m.as_bytes().to_vec()));
    bounded("manifest", &seeds, 4000, hinrec_fuzz::manifest);
}

#[test]
fn gzip_target() {
    let mut two = gz(b"1\t2\n");
    two.extend(gz(b"3\t4\n"));
    let seeds = vec![gz(b"1\t2\t5\n2\t3\t4\n"), two, gz(b"")];
    bounded("gzip", &seeds, 4000, hinrec_fuzz::gzip);
}

#[test]
fn npy_target() {
    let f4: Vec<u8> = [0.5f32, 1.5, -2.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let seeds = vec![
        npy("<f4", "(2, 2)", &f4),
        npy("<f2", "(4,)", &f4[..8]),
        npy("<f8", "(1, 2)", &f4),
    ];
    bounded("npy", &seeds, 4000, hinrec_fuzz::npy);
}

#[test]
fn delimited_target() {
    let work = tempfile::tempdir().unwrap();
    let seeds: Vec<Vec<u8>> = [
        "\u{0}1\t1\t5\t100\n2\t3\t4\t101\n1\t7\t1\t99\n",
        "\u{1}1 2 3\n2 3 4 5\n",
        "\u{2}1,2\n\n3\n4\n",
        "\u{3}1::Toy::Comedy|Drama\n2::Jumanji::Adventure\n",
        "\u{4}u1,i1\nu2,i2\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    bounded("delimited", &seeds, 1500, |b| {
        hinrec_fuzz::delimited(work.path(), b)
    });
}

#[test]
fn negatives_target() {
    let work = tempfile::tempdir().unwrap();
    let t = NegativesTarget::new(work.path());
    let seeds = vec![NegativesTarget::VALID.as_bytes().to_vec()];
    bounded("negatives", &seeds, 4000, |b| t.run(b));
}

#[test]
fn model_dir_target() {
    let work = tempfile::tempdir().unwrap();
    let t = ModelDirTarget::new(work.path());
    // Pick each model; reseal and re-record (flags 3) so most edits get
    // past the checksums to the parsers and the models' own checks.
    let seeds: Vec<Vec<u8>> = (0..9u8)
        .flat_map(|m| [vec![m, 3, 0, 0x80, 0x00, 1, b'7'], vec![m, 0], vec![m, 3]])
        .collect();
    bounded("model_dir", &seeds, 360, |b| t.run(b));
}

#[test]
fn hostile_tensor_values_never_panic() {
    let work = tempfile::tempdir().unwrap();
    let t = ModelDirTarget::new(work.path());
    let mut loaded = 0;
    for k in 0..t.dirs().len() {
        let mut names = t.tensor_names(k);
        names.sort();
        for name in names {
            for value in [
                u32::MAX.to_le_bytes(),
                7u32.to_le_bytes(),
                f32::NAN.to_le_bytes(),
            ] {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    t.poison(k, &name, value)
                }));
                match r {
                    Ok(l) => loaded += usize::from(l),
                    Err(p) => {
                        eprintln!(
                            "{}: tensor {name} = {value:?} panicked",
                            t.dirs()[k].display()
                        );
                        std::panic::resume_unwind(p);
                    }
                }
            }
        }
    }
    // Most hostile values load (they are well-formed) and reach scoring.
    assert!(loaded > 50, "only {loaded} poisoned directories loaded");
}
