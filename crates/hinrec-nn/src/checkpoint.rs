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

/// [`save`] for a [`hinrec_train::TrainedModel::save`]: errors name the
/// file.
pub fn save_model(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
) -> std::result::Result<(), hinrec_train::ModelError> {
    save(path, tensors).map_err(|e| hinrec_train::ModelError::file(path, e))
}

/// A saved model's tensors, for a [`hinrec_train::ModelParams::load`]
/// that builds the model from them with `build`; errors name the file.
pub fn load_model<M, E: std::fmt::Display>(
    path: &Path,
    build: impl FnOnce(&HashMap<String, Tensor>) -> std::result::Result<M, E>,
) -> std::result::Result<M, hinrec_train::ModelError> {
    let state = load(path).map_err(|e| hinrec_train::ModelError::file(path, e))?;
    build(&state).map_err(|e| hinrec_train::ModelError::file(path, e))
}

/// Copies of named variables (`f.0.weight`, ...), as a checkpoint holds
/// them.
pub fn vars_state(vars: &[(String, Var)]) -> Result<HashMap<String, Tensor>> {
    vars.iter()
        .map(|(name, v)| Ok((name.clone(), v.as_tensor().copy()?)))
        .collect()
}

/// Sets named variables from what [`vars_state`] saved; a missing tensor
/// or one of another shape is an error that names it.
pub fn load_vars(vars: &[(String, Var)], state: &HashMap<String, Tensor>) -> Result<()> {
    for (name, v) in vars {
        let t = state
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("the checkpoint lacks {name}")))?;
        if t.dims() != v.dims() {
            return Err(candle_core::Error::Msg(format!(
                "{name} is {:?} in the checkpoint, {:?} in the model",
                t.dims(),
                v.dims()
            )));
        }
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
