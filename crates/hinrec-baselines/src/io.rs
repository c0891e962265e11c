//! Saving and loading named arrays as safetensors, written atomically.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{BaselineError, Result};

/// A named array to save.
pub enum Array<'a> {
    /// 32-bit floats with a shape.
    F32(&'a [f32], Vec<usize>),
    /// 32-bit unsigned integers with a shape.
    U32(&'a [u32], Vec<usize>),
}

/// Writes `arrays` and the model's name (the one metadata key, so the
/// bytes never depend on a hash map's order) to `path` through a temporary
/// file and a rename, so a crash never leaves a half-written model.
pub fn save(path: &Path, arrays: Vec<(&str, Array<'_>)>, model: &str) -> Result<()> {
    let meta = HashMap::from([("model".to_string(), model.to_string())]);
    let buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = arrays
        .into_iter()
        .map(|(name, a)| match a {
            Array::F32(v, shape) => (
                name.to_string(),
                Dtype::F32,
                shape,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Array::U32(v, shape) => (
                name.to_string(),
                Dtype::U32,
                shape,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let fmt = |m: String| BaselineError::Format {
        path: path.to_path_buf(),
        message: m,
    };
    let views = buffers
        .iter()
        .map(|(n, d, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(*d, s.clone(), b).map_err(|e| fmt(e.to_string()))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| fmt(e.to_string()))?;
    let tmp = path.with_extension("safetensors.tmp");
    let io = |e| BaselineError::Io {
        path: path.to_path_buf(),
        error: e,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// A loaded safetensors file.
pub struct Loaded {
    path: std::path::PathBuf,
    bytes: Vec<u8>,
}

impl Loaded {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| BaselineError::Io {
            path: path.to_path_buf(),
            error: e,
        })?;
        let l = Loaded {
            path: path.to_path_buf(),
            bytes,
        };
        l.tensors()?;
        Ok(l)
    }

    fn tensors(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| self.err(e.to_string()))
    }

    fn err(&self, m: String) -> BaselineError {
        BaselineError::Format {
            path: self.path.clone(),
            message: m,
        }
    }

    fn raw(&self, name: &str, dtype: Dtype) -> Result<(Vec<usize>, Vec<u8>)> {
        let st = self.tensors()?;
        let t = st
            .tensor(name)
            .map_err(|_| self.err(format!("no tensor named {name:?}")))?;
        if t.dtype() != dtype {
            return Err(self.err(format!(
                "tensor {name:?} is {:?}, want {dtype:?}",
                t.dtype()
            )));
        }
        Ok((t.shape().to_vec(), t.data().to_vec()))
    }

    /// An f32 tensor and its shape.
    pub fn f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let (shape, b) = self.raw(name, Dtype::F32)?;
        Ok((
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            shape,
        ))
    }

    /// A u32 tensor and its shape.
    pub fn u32(&self, name: &str) -> Result<(Vec<u32>, Vec<usize>)> {
        let (shape, b) = self.raw(name, Dtype::U32)?;
        Ok((
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            shape,
        ))
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<String> {
        let (_, m) =
            SafeTensors::read_metadata(&self.bytes).map_err(|e| self.err(e.to_string()))?;
        m.metadata()
            .as_ref()
            .and_then(|m| m.get(key).cloned())
            .ok_or_else(|| self.err(format!("no metadata {key:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.safetensors");
        let a = [1.5f32, -2.0, 3.0, 4.0];
        let b = [7u32, 9];
        save(
            &p,
            vec![
                ("a", Array::F32(&a, vec![2, 2])),
                ("b", Array::U32(&b, vec![2])),
            ],
            "x",
        )
        .unwrap();
        let l = Loaded::read(&p).unwrap();
        assert_eq!(l.f32("a").unwrap(), (a.to_vec(), vec![2, 2]));
        assert_eq!(l.u32("b").unwrap().0, b.to_vec());
        assert_eq!(l.meta("model").unwrap(), "x");
        assert!(l.f32("b").is_err());
        assert!(l.f32("zz").is_err());
        let bytes = std::fs::read(&p).unwrap();
        for _ in 0..5 {
            save(&p, vec![("a", Array::F32(&a, vec![2, 2]))], "x").unwrap();
            save(
                &p,
                vec![
                    ("a", Array::F32(&a, vec![2, 2])),
                    ("b", Array::U32(&b, vec![2])),
                ],
                "x",
            )
            .unwrap();
            assert_eq!(
                std::fs::read(&p).unwrap(),
                bytes,
                "the same arrays, the same bytes"
            );
        }
        std::fs::write(&p, b"garbage").unwrap();
        assert!(Loaded::read(&p).is_err());
    }
}
