//! Reading delimited text files line by line (plain or gzip), with the file
//! and line attached to every error.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::{DataError, Result};

/// Opens `path`, transparently decompressing it when it ends in `.gz`.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}

/// Calls `f(line_number, line)` for every line of `path` that is not blank.
///
/// Bytes that are not UTF-8 (MovieLens titles are ISO-8859-1) are replaced,
/// which never touches the numeric columns we read. A file without a single
/// non-blank line is an error.
pub fn for_each_line(path: &Path, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    let mut reader = open(path)?;
    let mut buf = Vec::with_capacity(256);
    let mut line_no = 0usize;
    let mut any = false;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            continue;
        }
        any = true;
        f(line_no, line)?;
    }
    if any {
        Ok(())
    } else {
        Err(DataError::Empty {
            path: path.to_path_buf(),
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
            format!("column {} ({what}): {raw:?} is not a valid number", col + 1),
        )
    })
}

/// Returns field `col`, or an error naming the missing column.
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
            format!("column {} ({what}) is empty", col + 1),
        )),
        None => Err(DataError::parse(
            path,
            line,
            format!(
                "missing column {} ({what}): the line has {} column(s)",
                col + 1,
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

    #[test]
    fn reads_gzip_and_counts_lines_from_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tsv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(b"1\t2\n\n3\t4\n").unwrap();
        std::fs::write(&p, enc.finish().unwrap()).unwrap();
        let mut seen = Vec::new();
        for_each_line(&p, |n, l| {
            seen.push((n, l.to_string()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(1, "1\t2".into()), (3, "3\t4".into())]);
    }

    #[test]
    fn bad_number_names_file_line_and_column() {
        let p = Path::new("x.dat");
        let err = parse_field::<f32>(p, 7, &["1", "abc"], 1, "rating").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.dat:7: column 2 (rating): \"abc\" is not a valid number"
        );
        let err = field(p, 3, &["1"], 2, "timestamp").unwrap_err();
        assert!(err.to_string().starts_with("x.dat:3: missing column 3"));
    }
}
