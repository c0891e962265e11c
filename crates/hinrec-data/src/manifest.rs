//! The TOML manifest that describes a dataset folder.
//!
//! A manifest names the entity types, the interaction files and their
//! columns, an optional given split, side relations and dense features. See
//! `docs/datasets.md` for a worked example.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// How a data file's lines are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One record per line, fields by separator.
    #[default]
    Rows,
    /// `user item item ...`: a user followed by all its items.
    Adjacency,
    /// Line *k* (1-based) lists the items of the user with id `k - 1 + id_base`.
    LineList,
}

/// What the ids of an entity type look like in the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdKind {
    /// Integers from the manifest's `id_base` (up to `id_base + count - 1`
    /// when `count` is declared, else up to 4294967295); anything else
    /// (`abc`, `-5`, `0` with `id_base = 1`, a number too large) is an
    /// error naming the file and line.
    #[default]
    Numeric,
    /// Free-form tokens (`M`, `Comedy`, `u_17`): any non-empty field.
    Tokens,
}

/// An entity type of the heterogeneous graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    /// Name used by the other sections (`user`, `movie`, `genre`, ...).
    pub name: String,
    /// Short code for meta-paths (`U`, `M`, `Ca`, ...): an upper-case
    /// letter, optionally followed by lower-case ones.
    #[serde(default)]
    pub code: Option<String>,
    /// Number of ids when known: ids must then be integers in
    /// `id_base..id_base + count`, and anything else is an error.
    #[serde(default)]
    pub count: Option<usize>,
    /// How its ids look: `numeric` (the default, checked) or `tokens`.
    #[serde(default, skip_serializing_if = "is_numeric")]
    pub ids: IdKind,
    /// This entity's smallest numeric id, where it differs from the
    /// manifest's `id_base` (MovieLens-1M counts occupations from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_base: Option<i64>,
}

fn is_numeric(k: &IdKind) -> bool {
    *k == IdKind::Numeric
}

/// Column positions (0-based) of an interaction file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// User column.
    #[serde(default)]
    pub user: usize,
    /// Item column.
    #[serde(default = "one")]
    pub item: usize,
    /// Rating column, if any.
    #[serde(default)]
    pub rating: Option<usize>,
    /// Unix-time column, if any.
    #[serde(default)]
    pub timestamp: Option<usize>,
}

fn one() -> usize {
    1
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            user: 0,
            item: 1,
            rating: None,
            timestamp: None,
        }
    }
}

/// A file of user-item interactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionFile {
    /// Path relative to the manifest's folder.
    pub file: String,
    /// Line layout.
    #[serde(default)]
    pub format: Format,
    /// Field separator; defaults to the manifest's.
    #[serde(default)]
    pub separator: Option<String>,
    /// Item entity type; defaults to the manifest's `item`.
    #[serde(default)]
    pub item: Option<String>,
    /// Columns; default to the manifest's `columns`.
    #[serde(default)]
    pub columns: Option<Columns>,
    /// A user population of its own (`book`): this file's user ids are
    /// read as `group:id`, so the same number in files of two groups names
    /// two users (two crawls with separate user id spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_group: Option<String>,
}

/// A split shipped with the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    /// Training interactions; when absent, training is every interaction
    /// that is not in `valid` or `test`.
    #[serde(default)]
    pub train: Option<InteractionFile>,
    /// Validation interactions.
    #[serde(default)]
    pub valid: Option<InteractionFile>,
    /// Test interactions.
    pub test: InteractionFile,
    /// Stored evaluation negatives in the `test.negative` format.
    #[serde(default)]
    pub negatives: Option<String>,
}

/// Column positions of a relation file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationColumns {
    /// Source entity column.
    #[serde(default)]
    pub src: usize,
    /// Destination entity column.
    #[serde(default = "one")]
    pub dst: usize,
    /// Weight column, if any (default weight 1 per line).
    #[serde(default)]
    pub weight: Option<usize>,
}

impl Default for RelationColumns {
    fn default() -> Self {
        RelationColumns {
            src: 0,
            dst: 1,
            weight: None,
        }
    }
}

/// A side relation between two entity types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationSpec {
    /// Relation name (`movie_genre`).
    pub name: String,
    /// Path relative to the manifest's folder.
    pub file: String,
    /// Source entity type.
    pub src: String,
    /// Destination entity type.
    pub dst: String,
    /// Columns.
    #[serde(default)]
    pub columns: RelationColumns,
    /// Field separator; defaults to the manifest's.
    #[serde(default)]
    pub separator: Option<String>,
    /// When the destination field holds several ids (`Action|Comedy`), the
    /// separator between them.
    #[serde(default)]
    pub multi_separator: Option<String>,
    /// Derive the destination id from the field instead of reading it
    /// as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<Extract>,
}

/// How a relation's destination id is derived from its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Extract {
    /// The year of a title ending in `(1995)` (MovieLens' `movies.dat`); a
    /// title without one is an error naming the file and line.
    TitleYear,
}

impl Extract {
    /// The derived value of `field`, if it has one.
    pub fn apply(self, field: &str) -> Option<&str> {
        match self {
            Extract::TitleYear => {
                let t = field.trim_end().strip_suffix(')')?;
                let open = t.rfind('(')?;
                let year = &t[open + 1..];
                (year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit())).then_some(year)
            }
        }
    }
}

/// A dense feature matrix (NPY, float16/32/64, C order), row *r* for the
/// entity whose id is `r + id_base` (the entity's own, else the
/// manifest's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    /// Feature name (`image`).
    pub name: String,
    /// Entity type the rows describe.
    pub entity: String,
    /// Path relative to the manifest's folder.
    pub file: String,
}

/// Which interactions count as positive feedback, and which users keep
/// theirs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImplicitRule {
    /// Keep interactions whose rating is at least this.
    #[serde(default)]
    pub min_rating: Option<f32>,
    /// Then keep only users with at least this many interactions (one pass,
    /// not a k-core: items are not filtered; dropped users keep their ids
    /// and have no interactions).
    #[serde(default)]
    pub min_user_interactions: usize,
}

/// A dataset manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Dataset name.
    pub name: String,
    /// One line saying what it is.
    #[serde(default)]
    pub description: String,
    /// Default field separator (`"\t"`; `" "` means any whitespace).
    #[serde(default = "tab")]
    pub separator: String,
    /// Smallest numeric id in the files (usually 0 or 1).
    #[serde(default)]
    pub id_base: i64,
    /// Entity type of users.
    pub user: String,
    /// Default item entity type.
    pub item: String,
    /// Default interaction columns.
    #[serde(default)]
    pub columns: Columns,
    /// Entity types.
    pub entities: Vec<EntitySpec>,
    /// Interaction files (optional when a split gives them).
    #[serde(default)]
    pub interactions: Vec<InteractionFile>,
    /// A split shipped with the data.
    #[serde(default)]
    pub split: Option<SplitSpec>,
    /// Rule turning ratings into implicit feedback.
    #[serde(default)]
    pub implicit: Option<ImplicitRule>,
    /// Side relations.
    #[serde(default)]
    pub relations: Vec<RelationSpec>,
    /// Dense features.
    #[serde(default)]
    pub features: Vec<FeatureSpec>,
    /// Meta-paths by entity codes (`UMUM`, `UBCaB`) for the models that use
    /// them (LGRec's relation labels), unless a model's parameters name
    /// their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metapaths: Vec<String>,
}

fn tab() -> String {
    "\t".into()
}

impl Manifest {
    /// Parses and validates manifest text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let text = crate::text::strip_bom(text);
        let m: Manifest = toml::from_str(text)
            .map_err(|e| DataError::manifest(origin, e.to_string().trim().to_string()))?;
        m.validate(origin)?;
        Ok(m)
    }

    /// Reads and validates a manifest file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// The smallest numeric id of entity `e` (its own `id_base`, else the
    /// manifest's).
    pub fn id_base_of(&self, e: usize) -> i64 {
        self.entities
            .get(e)
            .and_then(|x| x.id_base)
            .unwrap_or(self.id_base)
    }

    /// Index of an entity type by name.
    pub fn entity_index(&self, name: &str) -> Option<usize> {
        self.entities.iter().position(|e| e.name == name)
    }

    /// Every interaction file: `[[interactions]]`, then the split's.
    pub fn interaction_files(&self) -> impl Iterator<Item = &InteractionFile> {
        self.interactions
            .iter()
            .chain(self.split.iter().flat_map(|s| {
                s.train
                    .iter()
                    .chain(s.valid.iter())
                    .chain(std::iter::once(&s.test))
            }))
    }

    /// Item entity types in the order their id ranges are laid out.
    pub fn item_entities(&self) -> Vec<String> {
        let mut out = vec![self.item.clone()];
        for f in self.interaction_files() {
            if let Some(it) = &f.item {
                if !out.contains(it) {
                    out.push(it.clone());
                }
            }
        }
        out
    }

    fn validate(&self, origin: &Path) -> Result<()> {
        let err = |m: String| Err(DataError::manifest(origin, m));
        let known = |n: &str| self.entity_index(n).is_some();
        let bases = std::iter::once(("the manifest", self.id_base)).chain(
            self.entities
                .iter()
                .filter_map(|e| e.id_base.map(|b| (e.name.as_str(), b))),
        );
        for (whose, base) in bases {
            if !(0..=i64::from(u32::MAX)).contains(&base) {
                return err(format!(
                    "id_base = {base} of {whose}: want 0 to 4294967295 (the smallest id in the files)"
                ));
            }
        }
        if let (Some(_), Some(_)) = (&self.implicit, &self.split) {
            return err(
                "[implicit] cannot be combined with [split]: the given split is used as it is \
                 (filter its files, or drop [split] and let hinrec split the filtered data)"
                    .into(),
            );
        }
        for (i, e) in self.entities.iter().enumerate() {
            if self.entities[..i].iter().any(|o| o.name == e.name) {
                return err(format!("entity {:?} is declared twice", e.name));
            }
            if let Some(n) = e.count {
                let base = self.id_base_of(i);
                let last = (base as u64).checked_add(n as u64);
                if n == 0 || last.is_none_or(|l| l > u64::from(u32::MAX) + 1) {
                    return err(format!(
                        "entity {:?}: count = {n} does not fit (want 1 to {} ids from id_base {})",
                        e.name,
                        u64::from(u32::MAX) + 1 - base as u64,
                        base
                    ));
                }
                if e.ids == IdKind::Tokens {
                    return err(format!(
                        "entity {:?}: a count needs numeric ids, not ids = \"tokens\"",
                        e.name
                    ));
                }
            }
            if let Some(c) = &e.code {
                let mut chars = c.chars();
                let ok = chars.next().is_some_and(|f| f.is_ascii_uppercase())
                    && chars.all(|x| x.is_ascii_lowercase());
                if !ok {
                    return err(format!(
                        "code {c:?} of {:?}: want an upper-case letter and optional lower-case ones",
                        e.name
                    ));
                }
                if self.entities[..i]
                    .iter()
                    .any(|o| o.code.as_ref() == Some(c))
                {
                    return err(format!("code {c:?} is used by two entities"));
                }
            }
        }
        for (what, name) in [("user", &self.user), ("item", &self.item)] {
            if !known(name) {
                return err(format!(
                    "{what} entity {name:?} is not declared in [[entities]]"
                ));
            }
        }
        let user = self.entity_index(&self.user).expect("checked above");
        for f in self.interaction_files() {
            let Some(g) = &f.user_group else { continue };
            if g.is_empty() || g.contains(':') {
                return err(format!(
                    "{}: user_group = {g:?}: want a non-empty name without ':'",
                    f.file
                ));
            }
            if self.entities[user].count.is_some() {
                return err(format!(
                    "{}: user_group makes its own user ids, so the user entity {:?} cannot declare a count",
                    f.file, self.user
                ));
            }
        }
        if self.interactions.is_empty() && self.split.is_none() {
            return err("no [[interactions]] and no [split]: there is no interaction data".into());
        }
        for it in self.item_entities() {
            if !known(&it) {
                return err(format!(
                    "item entity {it:?} is not declared in [[entities]]"
                ));
            }
            if it == self.user {
                return err("the user entity cannot also be an item entity".into());
            }
        }
        for r in &self.relations {
            for end in [&r.src, &r.dst] {
                if !known(end) {
                    return err(format!(
                        "relation {:?}: entity {end:?} is not declared in [[entities]]",
                        r.name
                    ));
                }
            }
        }
        for f in &self.features {
            if !known(&f.entity) {
                return err(format!(
                    "feature {:?}: entity {:?} is not declared in [[entities]]",
                    f.name, f.entity
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_years_are_extracted_or_refused() {
        let x = Extract::TitleYear;
        assert_eq!(x.apply("Toy Story (1995)"), Some("1995"));
        assert_eq!(x.apply("City of Lost Children, The (1995) "), Some("1995"));
        assert_eq!(x.apply("Seven (Se7en) (1995)"), Some("1995"));
        assert_eq!(x.apply("No year"), None);
        assert_eq!(x.apply("Odd (95)"), None);
        assert_eq!(x.apply("(abcd)"), None);
    }

    const MINIMAL: &str = r#"
name = "tiny"
user = "user"
item = "item"
[[entities]]
name = "user"
[[entities]]
name = "item"
[[interactions]]
file = "ui.tsv"
"#;

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m = Manifest::parse(MINIMAL, Path::new("m.toml")).unwrap();
        assert_eq!(m.separator, "\t");
        assert_eq!(m.columns, Columns::default());
        assert_eq!(m.item_entities(), ["item"]);
    }

    #[test]
    fn unknown_entity_and_unknown_key_are_errors() {
        let bad = MINIMAL.replace("item = \"item\"", "item = \"film\"");
        let e = Manifest::parse(&bad, Path::new("m.toml")).unwrap_err();
        assert!(e.to_string().contains("\"film\" is not declared"), "{e}");
        let typo = format!("{MINIMAL}\nseperator = \",\"\n");
        let e = Manifest::parse(&typo, Path::new("m.toml")).unwrap_err();
        assert!(e.to_string().contains("seperator"), "{e}");
    }
}
