//! Reading delimited text files line by line (plain or gzip), with the file
//! and line attached to every error and a content hash of what was read.
//!
//! A file is read whole, hashed ([`FileDigest`]) and then parsed from
//! memory, so the hash is of exactly the bytes the data came from, and the
//! parsing functions ([`lines_of`], [`decode`]) take bytes and can be
//! fuzzed without files.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// What a file held when it was read: its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Bytes on disk (compressed, for a `.gz` file).
    pub bytes: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
}

impl FileDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        FileDigest {
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `bytes` as lower-case hex (digests in provenance files and cache keys).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`for_each_line`] saw in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFile {
    /// Lines, blank ones included (a last line without a line break
    /// counts).
    pub lines: usize,
    /// Whether the last line ends with a line break (or the file is empty).
    pub ends_with_newline: bool,
    /// The file's digest.
    pub digest: FileDigest,
}

/// The UTF-8 byte-order mark some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads `path` whole and returns its bytes with their digest.
pub fn read_file(path: &Path) -> Result<(Vec<u8>, FileDigest)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let digest = FileDigest::of(&bytes);
    Ok((bytes, digest))
}

/// The text of a file's bytes: gzip is decompressed (every member of a
/// multi-member file; anything after the last member is an error), and a
/// leading byte-order mark is dropped.
pub fn decode(bytes: &[u8], gzip: bool) -> std::result::Result<Vec<u8>, String> {
    let mut out = if gzip {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("not a valid gzip stream ({e})"))?;
        out
    } else {
        bytes.to_vec()
    };
    if out.starts_with(BOM) {
        out.drain(..BOM.len());
    }
    Ok(out)
}

/// Strips a leading byte-order mark from text read in one piece (a
/// manifest, a config file).
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Calls `f(line_number, line)` for every line of `path` that is not blank
/// and returns what the file held.
///
/// Files ending in `.gz` are decompressed. Bytes that are not UTF-8
/// (MovieLens titles are ISO-8859-1) are replaced, which never touches the
/// numeric columns we read. A file without a single non-blank line is an
/// error.
pub fn for_each_line(path: &Path, f: impl FnMut(usize, &str) -> Result<()>) -> Result<TextFile> {
    let (bytes, digest) = read_file(path)?;
    let gzip = path.extension().is_some_and(|e| e == "gz");
    let text = decode(&bytes, gzip).map_err(|m| DataError::file(path, m))?;
    let (lines, ends_with_newline) = lines_of(path, &text, f)?;
    Ok(TextFile {
        lines,
        ends_with_newline,
        digest,
    })
}

/// [`for_each_line`] over bytes already in memory; `origin` names them in
/// errors. Returns the line count and whether the last line ends with a
/// line break.
pub fn lines_of(
    origin: &Path,
    text: &[u8],
    mut f: impl FnMut(usize, &str) -> Result<()>,
) -> Result<(usize, bool)> {
    let mut line_no = 0usize;
    let mut any = false;
    let mut ends_with_newline = true;
    for raw in text.split_inclusive(|&b| b == b'\n') {
        line_no += 1;
        ends_with_newline = raw.ends_with(b"\n");
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        any = true;
        f(line_no, line)?;
    }
    if any {
        Ok((line_no, ends_with_newline))
    } else {
        Err(DataError::Empty {
            path: origin.to_path_buf(),
        })
    }
}

/// Splits `line` on `sep`; a separator of a single space means "any run of
/// whitespace".
pub fn split_fields<'a>(line: &'a str, sep: &str, out: &mut Vec<&'a str>) {
    out.clear();
    if sep == " " {
        out.extend(line.split_whitespace());
    } else {
        out.extend(line.split(sep).map(str::trim));
    }
}

/// Longest field text an error message quotes whole.
const SHOWN_CHARS: usize = 40;

/// A field quoted for an error message: whole when short, else its start
/// and its length, so a 10 MB field never floods the terminal.
pub fn show(field: &str) -> String {
    if field.chars().count() <= SHOWN_CHARS {
        format!("{field:?}")
    } else {
        let head: String = field.chars().take(SHOWN_CHARS).collect();
        format!("{head:?}... ({} bytes)", field.len())
    }
}

/// Parses one field, naming the file, line and column on failure.
pub fn parse_field<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    fields: &[&str],
    col: usize,
    what: &str,
) -> Result<T> {
    let raw = field(path, line, fields, col, what)?;
    raw.parse::<T>().map_err(|_| {
        DataError::parse(
            path,
            line,
            format!("column {col} ({what}): {} is not a valid number", show(raw)),
        )
    })
}

/// Returns field `col`, or an error naming the missing column. Columns
/// count from 0, as in manifests.
pub fn field<'a>(
    path: &Path,
    line: usize,
    fields: &[&'a str],
    col: usize,
    what: &str,
) -> Result<&'a str> {
    match fields.get(col) {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(DataError::parse(
            path,
            line,
            format!("column {col} ({what}) is empty"),
        )),
        None => Err(DataError::parse(
            path,
            line,
            format!(
                "no column {col} ({what}): the line has {} column(s), counted from 0",
                fields.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn splits_on_whitespace_runs_and_exact_separators() {
        let mut v = Vec::new();
        split_fields("1  2\t3", " ", &mut v);
        assert_eq!(v, ["1", "2", "3"]);
        split_fields("1::F::25", "::", &mut v);
        assert_eq!(v, ["1", "F", "25"]);
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.txt");
        std::fs::write(&p, "\n\n").unwrap();
        let err = for_each_line(&p, |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("e.txt: file is empty"), "{err}");
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn lines(p: &Path) -> Result<Vec<(usize, String)>> {
        let mut seen = Vec::new();
        for_each_line(p, |n, l| {
            seen.push((n, l.to_string()));
            Ok(())
        })?;
        Ok(seen)
    }

    #[test]
    fn reads_gzip_and_counts_lines_from_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tsv.gz");
        std::fs::write(&p, gz(b"1\t2\n\n3\t4\n")).unwrap();
        assert_eq!(lines(&p).unwrap(), [(1, "1\t2".into()), (3, "3\t4".into())]);
    }

    #[test]
    fn every_gzip_member_is_read_and_trailing_bytes_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.tsv.gz");
        let mut two = gz(b"1\t2\n");
        two.extend(gz(b"3\t4\n"));
        std::fs::write(&p, &two).unwrap();
        assert_eq!(lines(&p).unwrap(), [(1, "1\t2".into()), (2, "3\t4".into())]);
        two.extend(b"garbage after the stream");
        std::fs::write(&p, &two).unwrap();
        let e = lines(&p).unwrap_err().to_string();
        assert!(e.contains("m.tsv.gz: not a valid gzip stream"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bom.tsv");
        std::fs::write(&p, b"\xEF\xBB\xBF1\t2\n").unwrap();
        assert_eq!(lines(&p).unwrap(), [(1, "1\t2".into())]);
        assert_eq!(strip_bom("\u{feff}name = 1"), "name = 1");
    }

    #[test]
    fn digest_line_count_and_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.tsv");
        std::fs::write(&p, "a\n\nb").unwrap();
        let t = for_each_line(&p, |_, _| Ok(())).unwrap();
        assert_eq!((t.lines, t.ends_with_newline), (3, false));
        assert_eq!(t.digest.bytes, 4);
        // sha256("a\n\nb"), from `printf 'a\n\nb' | sha256sum`.
        assert_eq!(
            t.digest.sha256,
            sha256_hex(b"a\n\nb"),
            "digest is of the bytes on disk"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn long_fields_are_cut_in_messages() {
        let long = "x".repeat(10_000_000);
        let s = show(&long);
        assert!(s.len() < 80, "{s}");
        assert!(s.ends_with("(10000000 bytes)"), "{s}");
        assert_eq!(show("abc"), "\"abc\"");
    }

    #[test]
    fn bad_number_names_file_line_and_column_from_zero() {
        let p = Path::new("x.dat");
        let err = parse_field::<f32>(p, 7, &["1", "abc"], 1, "rating").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.dat:7: column 1 (rating): \"abc\" is not a valid number"
        );
        let err = field(p, 3, &["1"], 2, "timestamp").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.dat:3: no column 2 (timestamp)"),
            "{err}"
        );
    }
}
