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
    parse_npy(&bytes).map_err(|m| DataError::parse(path, 1, m))
}

fn parse_npy(bytes: &[u8]) -> std::result::Result<Matrix, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an NPY file (bad magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported NPY version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated NPY header")?;
    let header = std::str::from_utf8(header).map_err(|_| "NPY header is not text")?;
    let descr = dict_value(header, "descr").ok_or("NPY header lacks 'descr'")?;
    let quote = descr.chars().next().unwrap_or('\'');
    let descr = descr[1..].split(quote).next().unwrap_or("");
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-order NPY is not supported".into());
    }
    let shape = dict_value(header, "shape").ok_or("NPY header lacks 'shape'")?;
    let dims: Vec<usize> = shape
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {shape}")))
        .collect::<std::result::Result<_, _>>()?;
    let (rows, cols) = match dims[..] {
        [r] => (r, 1),
        [r, c] => (r, c),
        _ => return Err(format!("expected a 1-D or 2-D array, shape is {shape}")),
    };
    let body = &bytes[start + header_len..];
    let n = rows * cols;
    let width = match descr {
        "<f2" => 2,
        "<f4" => 4,
        "<f8" => 8,
        d => return Err(format!("unsupported dtype {d} (want <f2, <f4 or <f8)")),
    };
    if body.len() != n * width {
        return Err(format!(
            "data holds {} bytes, shape {rows}x{cols} of {descr} needs {}",
            body.len(),
            n * width
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
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
    };
    Ok(Matrix { rows, cols, data })
}

fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    Some(rest)
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
}
