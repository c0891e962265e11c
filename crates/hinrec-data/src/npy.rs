//! A reader for the NPY files that hold dense item features.

use std::path::Path;

use crate::error::{DataError, Result};

/// A row-major `rows x cols` matrix of `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Values, row-major.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// Reads a 1-D or 2-D little-endian float16/32/64 NPY file in C order.
pub fn read_npy(path: &Path) -> Result<Matrix> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_npy(&bytes).map_err(|m| DataError::file(path, m))
}

/// Parses NPY bytes ([`read_npy`] without the file): every length is
/// checked arithmetic, and the header is read as text by characters, so
/// no input makes it panic.
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<Matrix, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an NPY file (bad magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
            10usize,
        ),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err("truncated NPY header".into()),
        v => return Err(format!("unsupported NPY version {v}")),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or("truncated NPY header")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "NPY header is not text")?;
    let dict = parse_header(header)?;
    let get = |key: &str| {
        dict.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("NPY header lacks '{key}'"))
    };
    let descr = get("descr")?;
    let width = match descr {
        "'<f2'" | "\"<f2\"" => 2,
        "'<f4'" | "\"<f4\"" => 4,
        "'<f8'" | "\"<f8\"" => 8,
        d => {
            return Err(format!(
                "unsupported dtype {} (want '<f2', '<f4' or '<f8')",
                crate::text::show(d)
            ))
        }
    };
    match get("fortran_order")? {
        "False" => {}
        "True" => return Err("Fortran-order NPY is not supported".into()),
        v => return Err(format!("bad fortran_order {}", crate::text::show(v))),
    }
    let shape = get("shape")?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape {}", crate::text::show(shape)))?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {}", crate::text::show(shape)))
        })
        .collect::<std::result::Result<_, _>>()?;
    let (rows, cols) = match dims[..] {
        [r] => (r, 1),
        [r, c] => (r, c),
        _ => {
            return Err(format!(
                "expected a 1-D or 2-D array, shape is {}",
                crate::text::show(shape)
            ))
        }
    };
    let body = &bytes[end..];
    let need = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(width))
        .ok_or_else(|| format!("shape {rows}x{cols} is too large"))?;
    if body.len() != need {
        return Err(format!(
            "data holds {} bytes, shape {rows}x{cols} of {descr} needs {need}",
            body.len()
        ));
    }
    let data = match width {
        2 => body
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        4 => body
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        _ => body
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
    };
    Ok(Matrix { rows, cols, data })
}

/// The `{'key': value, ...}` of an NPY header as (key, value text) pairs;
/// values are a quoted string, a parenthesised tuple or a bare word.
fn parse_header(header: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let bad = || format!("malformed NPY header {}", crate::text::show(header.trim()));
    let body = header
        .trim()
        .strip_prefix('{')
        .and_then(|h| h.strip_suffix('}'))
        .ok_or_else(bad)?;
    let mut chars = body.chars().peekable();
    let mut out = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let Some(q) = chars.next() else { break };
        if q != '\'' && q != '"' {
            return Err(bad());
        }
        let key: String = chars.by_ref().take_while(|&c| c != q).collect();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some(':') {
            return Err(bad());
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        match chars.next() {
            Some(c @ ('\'' | '"')) => {
                value.push(c);
                let mut closed = false;
                for d in chars.by_ref() {
                    value.push(d);
                    if d == c {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(bad());
                }
            }
            Some('(') => {
                value.push('(');
                let mut closed = false;
                for d in chars.by_ref() {
                    value.push(d);
                    if d == ')' {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(bad());
                }
            }
            Some(c) => {
                value.push(c);
                while let Some(&d) = chars.peek() {
                    if d == ',' {
                        break;
                    }
                    value.push(d);
                    chars.next();
                }
            }
            None => return Err(bad()),
        }
        out.push((key, value.trim().to_string()));
    }
    Ok(out)
}

/// IEEE 754 half to single precision.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: renormalise.
            let shift = f.leading_zeros() - 21;
            let f = (f << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (f << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn parses_f2_and_f4_matrices() {
        let body: Vec<u8> = [0x3c00u16, 0xc000, 0, 0x3c00]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let m = parse_npy(&npy("<f2", "(2, 2)", &body)).unwrap();
        assert_eq!((m.rows, m.cols), (2, 2));
        assert_eq!(m.row(0), &[1.0, -2.0]);
        let body: Vec<u8> = [0.5f32, 1.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let m = parse_npy(&npy("<f4", "(2,)", &body)).unwrap();
        assert_eq!(m.data, vec![0.5, 1.5]);
    }

    #[test]
    fn rejects_truncated_and_bad_dtype() {
        assert!(parse_npy(&npy("<f4", "(2, 2)", &[0; 8])).is_err());
        assert!(parse_npy(&npy("<i8", "(1,)", &[0; 8])).is_err());
        assert!(parse_npy(b"hello world").is_err());
    }

    fn with_header(h: &str) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let cases = [
            // descr cut short, a multi-byte character where a slice would cut.
            "{'descr': '",
            "{'descr': 'é",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, }",
            "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }",
            "{'descr': <f4, 'fortran_order': False, 'shape': (1,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3), }",
            "{'descr'}",
            "no braces",
            "{'é': 'é'}",
        ];
        for h in cases {
            assert!(parse_npy(&with_header(h)).is_err(), "{h:?} was accepted");
        }
    }

    #[test]
    fn a_shape_whose_size_overflows_is_an_error() {
        let h = format!(
            "{{'descr': '<f8', 'fortran_order': False, 'shape': ({}, {}), }}",
            usize::MAX / 2,
            3
        );
        let e = parse_npy(&with_header(&h)).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        // A 2^62 x 4 f4 array overflows only at the width multiplication.
        let h = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 1), }}",
            1usize << 62
        );
        assert!(parse_npy(&with_header(&h))
            .unwrap_err()
            .contains("too large"));
    }
}
