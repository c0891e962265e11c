//! Named tensors to safetensors, written atomically.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Result, Tensor, Var};

/// Writes `tensors` to `path` through a temporary file and a rename, so an
/// interrupted write never leaves a broken checkpoint.
pub fn save(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(candle_core::Error::from)
}

/// Reads a checkpoint written by [`save`].
pub fn load(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu)
}

/// Copies of `vars` named `prefix.0`, `prefix.1`, ... in order.
pub fn vars_state(prefix: &str, vars: &[Var]) -> Result<HashMap<String, Tensor>> {
    vars.iter()
        .enumerate()
        .map(|(k, v)| Ok((format!("{prefix}.{k}"), v.as_tensor().copy()?)))
        .collect()
}

/// Sets `vars` from what [`vars_state`] saved under `prefix`.
pub fn load_vars(prefix: &str, vars: &[Var], state: &HashMap<String, Tensor>) -> Result<()> {
    for (k, v) in vars.iter().enumerate() {
        let t = state
            .get(&format!("{prefix}.{k}"))
            .ok_or_else(|| candle_core::Error::Msg(format!("the checkpoint lacks {prefix}.{k}")))?;
        v.set(&t.to_dtype(v.dtype())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.safetensors");
        let t = Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
        save(&p, &HashMap::from([("a".to_string(), t)])).unwrap();
        let back = load(&p).unwrap();
        assert_eq!(back["a"].to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
        assert!(!p.with_extension("safetensors.tmp").exists());
    }
}
