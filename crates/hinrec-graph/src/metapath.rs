//! Meta-paths named by entity-type codes (`UMUM`, `UBCaB`).

use crate::hin::SpMat;

use crate::error::{GraphError, Result};
use crate::hin::Hin;

/// A meta-path resolved against a network: its types and the adjacency
/// matrix of each step.
#[derive(Debug, Clone)]
pub struct MetaPath<'a> {
    /// The name it was parsed from.
    pub name: String,
    /// Type indices along the path.
    pub types: Vec<usize>,
    /// One matrix per step, `types[k] x types[k + 1]`.
    pub factors: Vec<&'a SpMat>,
}

/// Splits `UBCaB` into `["U", "B", "Ca", "B"]`: an upper-case letter starts a
/// code, lower-case letters continue it.
pub fn split_codes(path: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push(c.to_string());
        } else if c.is_ascii_lowercase() && !out.is_empty() {
            out.last_mut().expect("checked non-empty").push(c);
        } else {
            return Err(GraphError::BadPath(
                path.into(),
                format!("unexpected character {c:?}: codes are an upper-case letter and optional lower-case ones"),
            ));
        }
    }
    if out.len() < 2 {
        return Err(GraphError::BadPath(
            path.into(),
            "a meta-path needs at least two types".into(),
        ));
    }
    Ok(out)
}

impl<'a> MetaPath<'a> {
    /// Resolves `path` against `hin`.
    pub fn parse(hin: &'a Hin, path: &str) -> Result<Self> {
        let codes = split_codes(path)?;
        let types = codes
            .iter()
            .map(|c| {
                hin.type_by_code(c).ok_or_else(|| GraphError::UnknownCode {
                    path: path.into(),
                    code: c.clone(),
                    known: hin
                        .types
                        .iter()
                        .filter_map(|t| t.code.clone())
                        .collect::<Vec<_>>()
                        .join(" "),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let factors = types
            .windows(2)
            .map(|w| {
                hin.between(w[0], w[1])
                    .ok_or_else(|| GraphError::NoRelation {
                        path: path.into(),
                        from: hin.types[w[0]].name.clone(),
                        to: hin.types[w[1]].name.clone(),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MetaPath {
            name: path.into(),
            types,
            factors,
        })
    }

    /// Number of rows of the commuting matrix (nodes of the first type).
    pub fn rows(&self) -> usize {
        self.factors[0].rows()
    }

    /// Number of columns (nodes of the last type).
    pub fn cols(&self) -> usize {
        self.factors.last().expect("at least one step").cols()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_split_on_upper_case() {
        assert_eq!(split_codes("UBCaB").unwrap(), ["U", "B", "Ca", "B"]);
        assert_eq!(split_codes("UMUM").unwrap(), ["U", "M", "U", "M"]);
        assert!(split_codes("U").is_err());
        assert!(split_codes("uM").is_err());
        assert!(split_codes("U-M").is_err());
    }
}
