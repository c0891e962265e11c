//! A dataset loaded from a manifest: entities, interactions, an optional
//! given split, side relations and dense features.

use std::path::{Path, PathBuf};

use crate::error::{DataError, Result};
use crate::ids::IdMap;
use crate::interactions::{Interactions, Record};
use crate::manifest::{
    Columns, EntitySpec, Format, IdKind, InteractionFile, Manifest, RelationSpec,
};
use crate::negatives::{Against, EvalNegatives, Ids};
use crate::npy::{parse_npy, Matrix};
use crate::split::Split;
use crate::text::{self, FileDigest};

/// An entity type and its ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Type name.
    pub name: String,
    /// Meta-path code (`U`, `Ca`).
    pub code: Option<String>,
    /// Its ids.
    pub ids: IdMap,
}

/// A side relation in internal ids of its two entity types.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// Name.
    pub name: String,
    /// Source entity index in [`Dataset::entities`].
    pub src: usize,
    /// Destination entity index.
    pub dst: usize,
    /// Non-blank lines (or multi-valued entries) read from the file.
    pub rows: usize,
    /// Distinct (src, dst) edges, sorted; ids of an item type are in the
    /// dataset's combined item space.
    pub edges: Vec<(u32, u32)>,
    /// Weight of each edge: the sum of its lines' weights (1 per line when
    /// the file has no weight column), so repeated lines count.
    pub weights: Vec<f32>,
    /// Lines naming a user or item that has no interaction (left out).
    pub dropped: usize,
}

/// Dense features of one entity type, row *k* for internal id *k*.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Name.
    pub name: String,
    /// Entity index.
    pub entity: usize,
    /// The values.
    pub matrix: Matrix,
}

/// A file a dataset was read from, and what it held.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    /// The path as the manifest gives it (relative to its folder).
    pub file: String,
    /// Size and SHA-256 of the bytes read.
    #[serde(flatten)]
    pub digest: FileDigest,
}

/// A loaded dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Name from the manifest.
    pub name: String,
    /// Folder the files were read from.
    pub root: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
    /// Entity types in manifest order.
    pub entities: Vec<Entity>,
    /// Index of the user entity.
    pub user_entity: usize,
    /// Indices of the item entities; the combined item space lays their ids
    /// out one after the other.
    pub item_entities: Vec<usize>,
    /// Start of each item entity in the combined item space (plus the end).
    pub item_offsets: Vec<u32>,
    /// Every interaction (train, validation and test of a given split).
    pub interactions: Interactions,
    /// Non-blank lines read from interaction files (before merging duplicates).
    pub interaction_rows: usize,
    /// The split shipped with the data, if any.
    pub given_split: Option<Split>,
    /// The evaluation negatives shipped with the data, if any.
    pub given_negatives: Option<EvalNegatives>,
    /// Side relations.
    pub relations: Vec<Relation>,
    /// Dense features.
    pub features: Vec<Features>,
    /// Every file read, in the order read (none for generated data).
    pub sources: Vec<SourceFile>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    All,
    Train,
    Valid,
    Test,
}

struct RawRecord {
    user: String,
    domain: usize,
    item: String,
    rating: Option<f32>,
    timestamp: Option<i64>,
    part: Part,
}

impl Dataset {
    /// Loads the dataset a manifest file describes; data files are relative
    /// to the manifest's folder.
    pub fn load_manifest(path: &Path) -> Result<Self> {
        let manifest = Manifest::read(path)?;
        let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        Self::load(manifest, &root)
    }

    /// Loads the data of `manifest` from `root`.
    pub fn load(manifest: Manifest, root: &Path) -> Result<Self> {
        let m = &manifest;
        let item_names = m.item_entities();
        let user_entity = m.entity_index(&m.user).expect("validated");
        let item_entities: Vec<usize> = item_names
            .iter()
            .map(|n| m.entity_index(n).expect("validated"))
            .collect();

        // 1. Interaction files, as text ids.
        let mut raw = Vec::new();
        let mut rows = 0usize;
        let mut sources = Sources::default();
        let mut line_lists: Vec<(PathBuf, usize)> = Vec::new();
        let mut files: Vec<(&InteractionFile, Part)> =
            m.interactions.iter().map(|f| (f, Part::All)).collect();
        if let Some(s) = &m.split {
            files.extend(s.train.iter().map(|f| (f, Part::Train)));
            files.extend(s.valid.iter().map(|f| (f, Part::Valid)));
            files.push((&s.test, Part::Test));
        }
        for (f, part) in &files {
            let before = raw.len();
            let read = read_interactions(m, root, f, *part, &item_names, &mut raw)?;
            rows += raw.len() - before;
            if f.format == Format::LineList {
                line_lists.push((root.join(&f.file), read.lines));
            }
            sources.add(&f.file, read.digest);
        }

        // 2. Dense ids: users and items are those with interactions.
        // A declared count makes the id space exactly base..base+count.
        let declared = |e: usize| {
            m.entities[e]
                .count
                .map(|n| IdMap::contiguous(n, m.id_base_of(e)))
        };
        let users = declared(user_entity)
            .unwrap_or_else(|| IdMap::from_originals(raw.iter().map(|r| r.user.as_str())));
        let mut item_maps: Vec<IdMap> = item_entities
            .iter()
            .enumerate()
            .map(|(d, &e)| {
                declared(e).unwrap_or_else(|| {
                    IdMap::from_originals(
                        raw.iter()
                            .filter(|r| r.domain == d)
                            .map(|r| r.item.as_str()),
                    )
                })
            })
            .collect();
        let mut item_offsets = vec![0u32];
        for map in &item_maps {
            item_offsets.push(item_offsets.last().copied().unwrap_or(0) + map.len() as u32);
        }
        let (n_users, n_items) = (users.len(), *item_offsets.last().unwrap_or(&0) as usize);
        for (path, lines) in &line_lists {
            // Line k is user k: a missing line would shift every later user.
            if *lines != n_users {
                return Err(DataError::file(
                    path,
                    format!(
                        "{lines} lines for {n_users} users: line k lists the items of user k - 1 + id_base, \
                         so every user needs a line (an empty one for none)"
                    ),
                ));
            }
        }
        let mut parts: [Vec<Record>; 4] = Default::default();
        for r in &raw {
            let rec = Record {
                user: users.get(&r.user).expect("collected above"),
                item: item_offsets[r.domain] + item_maps[r.domain].get(&r.item).expect("collected"),
                rating: r.rating,
                timestamp: r.timestamp,
            };
            parts[r.part as usize].push(rec);
        }
        drop(raw);
        let [all, train, valid, test] =
            parts.map(|p| Interactions::from_records(n_users, n_items, p));
        let given_split = m.split.as_ref().map(|s| {
            let valid = valid.clone();
            let train = if s.train.is_some() {
                train.clone()
            } else {
                // Training is what the test and validation files leave out.
                all.filter(|r| !test.contains(r.user, r.item) && !valid.contains(r.user, r.item))
            };
            Split {
                train,
                valid,
                test: test.clone(),
            }
        });
        let interactions = all.union(&train).union(&valid).union(&test);

        // 3. Entities: users and items from interactions, the others from relations.
        let mut entities: Vec<Entity> = m
            .entities
            .iter()
            .map(|e| Entity {
                name: e.name.clone(),
                code: e.code.clone(),
                ids: IdMap::default(),
            })
            .collect();
        entities[user_entity].ids = users;
        for (d, &e) in item_entities.iter().enumerate() {
            entities[e].ids = std::mem::take(&mut item_maps[d]);
        }
        let mut raw_relations = Vec::with_capacity(m.relations.len());
        for r in &m.relations {
            let (rows, digest) = read_relation(m, root, r)?;
            sources.add(&r.file, digest);
            raw_relations.push(rows);
        }
        let interaction_entities: Vec<usize> = std::iter::once(user_entity)
            .chain(item_entities.iter().copied())
            .collect();
        for (e, entity) in entities.iter_mut().enumerate() {
            if interaction_entities.contains(&e) {
                continue;
            }
            let mut ids = Vec::new();
            for (spec, rr) in m.relations.iter().zip(&raw_relations) {
                if m.entity_index(&spec.src) == Some(e) {
                    ids.extend(rr.iter().map(|x| x.0.as_str()));
                }
                if m.entity_index(&spec.dst) == Some(e) {
                    ids.extend(rr.iter().map(|x| x.1.as_str()));
                }
            }
            entity.ids = declared(e).unwrap_or_else(|| IdMap::from_originals(ids));
        }
        let offset_of = |e: usize| {
            item_entities
                .iter()
                .position(|&x| x == e)
                .map_or(0, |d| item_offsets[d])
        };
        let relations = m
            .relations
            .iter()
            .zip(raw_relations)
            .map(|(spec, rr)| {
                let src = m.entity_index(&spec.src).expect("validated");
                let dst = m.entity_index(&spec.dst).expect("validated");
                let (so, dof) = (offset_of(src), offset_of(dst));
                let mut edges: Vec<(u32, u32, f32)> = Vec::with_capacity(rr.len());
                let mut dropped = 0;
                for (s, d, w) in &rr {
                    match (entities[src].ids.get(s), entities[dst].ids.get(d)) {
                        (Some(a), Some(b)) => edges.push((a + so, b + dof, *w)),
                        _ => dropped += 1,
                    }
                }
                edges.sort_by_key(|e| (e.0, e.1));
                let mut out = Relation {
                    name: spec.name.clone(),
                    src,
                    dst,
                    rows: rr.len(),
                    edges: Vec::with_capacity(edges.len()),
                    weights: Vec::with_capacity(edges.len()),
                    dropped,
                };
                for (a, b, w) in edges {
                    if out.edges.last() == Some(&(a, b)) {
                        *out.weights.last_mut().expect("pushed together") += w;
                    } else {
                        out.edges.push((a, b));
                        out.weights.push(w);
                    }
                }
                out
            })
            .collect();

        // 4. Dense features, rows re-ordered to internal ids.
        let mut features = Vec::new();
        for f in &m.features {
            let e = m.entity_index(&f.entity).expect("validated");
            let path = root.join(&f.file);
            let (bytes, digest) = text::read_file(&path)?;
            sources.add(&f.file, digest);
            let mat = parse_npy(&bytes).map_err(|m| DataError::file(&path, m))?;
            let ids = &entities[e].ids;
            let mut data = Vec::with_capacity(ids.len() * mat.cols);
            for k in 0..ids.len() as u32 {
                let orig = ids.original(k);
                let row = orig
                    .parse::<i64>()
                    .ok()
                    .map(|v| v - m.id_base_of(e))
                    .filter(|&r| r >= 0 && (r as usize) < mat.rows)
                    .ok_or_else(|| {
                        DataError::Invalid(format!(
                            "{}: no row for {} id {orig:?} (the file has {} rows, id_base {})",
                            path.display(),
                            f.entity,
                            mat.rows,
                            m.id_base_of(e)
                        ))
                    })?;
                data.extend_from_slice(mat.row(row as usize));
            }
            features.push(Features {
                name: f.name.clone(),
                entity: e,
                matrix: Matrix {
                    rows: ids.len(),
                    cols: mat.cols,
                    data,
                },
            });
        }

        let mut ds = Dataset {
            name: m.name.clone(),
            root: root.to_path_buf(),
            manifest: manifest.clone(),
            entities,
            user_entity,
            item_entities,
            item_offsets,
            interactions,
            interaction_rows: rows,
            given_split,
            given_negatives: None,
            relations,
            features,
            sources: Vec::new(),
        };
        if let Some(neg) = m.split.as_ref().and_then(|s| s.negatives.as_ref()) {
            let path = root.join(neg);
            let (_, digest) = text::read_file(&path)?;
            sources.add(neg, digest);
            let negs = match &ds.given_split {
                Some(split) => {
                    let known = [&split.train, &split.valid, &split.test];
                    let against = Against {
                        name: "test",
                        test: &split.test,
                        known: &known,
                    };
                    EvalNegatives::read(&path, &ds, Some(&against))?
                }
                None => EvalNegatives::read(&path, &ds, None)?,
            };
            ds.given_negatives = Some(negs);
        }
        ds.sources = sources.0;
        Ok(ds)
    }

    /// The user ids.
    pub fn users(&self) -> &IdMap {
        &self.entities[self.user_entity].ids
    }

    /// Number of users.
    pub fn n_users(&self) -> usize {
        self.interactions.n_users()
    }

    /// Number of items in the combined item space.
    pub fn n_items(&self) -> usize {
        self.interactions.n_items()
    }

    /// The original id of an item: the file's id, prefixed by its entity
    /// name (`book:12`) when the dataset has several item types.
    pub fn item_original(&self, item: u32) -> String {
        let d = self.item_offsets[1..].partition_point(|&end| end <= item);
        let e = &self.entities[self.item_entities[d]];
        let local = e.ids.original(item - self.item_offsets[d]);
        if self.item_entities.len() == 1 {
            local.to_string()
        } else {
            format!("{}:{local}", e.name)
        }
    }

    /// The internal item id of an original id (`12`, or `book:12` when the
    /// dataset has several item types).
    pub fn item_id(&self, original: &str) -> Option<u32> {
        if self.item_entities.len() == 1 {
            return self.entities[self.item_entities[0]].ids.get(original);
        }
        let (name, local) = original.split_once(':')?;
        let d = self
            .item_entities
            .iter()
            .position(|&e| self.entities[e].name == name)?;
        Some(self.item_offsets[d] + self.entities[self.item_entities[d]].ids.get(local)?)
    }

    /// Entity index by meta-path code.
    pub fn entity_by_code(&self, code: &str) -> Option<usize> {
        self.entities
            .iter()
            .position(|e| e.code.as_deref() == Some(code))
    }

    /// The interactions that count as positive under the manifest's implicit
    /// rule (all of them when it has none).
    pub fn implicit(&self) -> Interactions {
        let rule = self.manifest.implicit.unwrap_or_default();
        let data = match rule.min_rating {
            Some(min) => crate::filter::min_rating(&self.interactions, min),
            None => self.interactions.clone(),
        };
        crate::filter::min_user_interactions(&data, rule.min_user_interactions)
    }
}

fn check_id(path: &Path, line: usize, spec: &EntitySpec, raw: &str, base: i64) -> Result<()> {
    if spec.ids == IdKind::Tokens {
        return Ok(());
    }
    let base = base as u64;
    let last = match spec.count {
        Some(count) => base + count as u64 - 1,
        None => u64::from(u32::MAX),
    };
    let hint = if spec.count.is_some() {
        String::new()
    } else {
        format!(
            " (ids are numeric by default; for free-form ids set ids = \"tokens\" on entity {:?} in the manifest)",
            spec.name
        )
    };
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<u64>() {
        Ok(v) if digits && (base..=last).contains(&v) => Ok(()),
        Ok(v) if digits => Err(DataError::parse(
            path,
            line,
            format!("{} id {v} is out of range {base}..={last}{hint}", spec.name),
        )),
        _ => Err(DataError::parse(
            path,
            line,
            format!(
                "{} id {} is not a whole number from {base}{hint}",
                spec.name,
                text::show(raw)
            ),
        )),
    }
}

fn read_interactions(
    m: &Manifest,
    root: &Path,
    f: &InteractionFile,
    part: Part,
    item_names: &[String],
    out: &mut Vec<RawRecord>,
) -> Result<text::TextFile> {
    let path = root.join(&f.file);
    let sep = f.separator.as_deref().unwrap_or(&m.separator);
    let cols: Columns = f.columns.unwrap_or(m.columns);
    let item_name = f.item.as_deref().unwrap_or(&m.item);
    let domain = item_names
        .iter()
        .position(|n| n == item_name)
        .expect("validated");
    let user_e = m.entity_index(&m.user).expect("validated");
    let item_e = m.entity_index(item_name).expect("validated");
    let (user_spec, user_base) = (&m.entities[user_e], m.id_base_of(user_e));
    let (item_spec, item_base) = (&m.entities[item_e], m.id_base_of(item_e));
    text::for_each_line(&path, |line_no, line| {
        let mut fields = Vec::with_capacity(8);
        text::split_fields(line, sep, &mut fields);
        let mut push = |user: &str, item: &str, rating, timestamp| -> Result<()> {
            check_id(&path, line_no, user_spec, user, user_base)?;
            check_id(&path, line_no, item_spec, item, item_base)?;
            out.push(RawRecord {
                user: match &f.user_group {
                    Some(g) => format!("{g}:{user}"),
                    None => user.to_string(),
                },
                domain,
                item: item.to_string(),
                rating,
                timestamp,
                part,
            });
            Ok(())
        };
        match f.format {
            Format::Rows => {
                let user = text::field(&path, line_no, &fields, cols.user, "user")?;
                let item = text::field(&path, line_no, &fields, cols.item, "item")?;
                let rating = cols
                    .rating
                    .map(|c| text::parse_field::<f32>(&path, line_no, &fields, c, "rating"))
                    .transpose()?;
                if rating.is_some_and(|r| !r.is_finite()) {
                    return Err(DataError::parse(&path, line_no, "rating is not finite"));
                }
                let ts = cols
                    .timestamp
                    .map(|c| text::parse_field::<i64>(&path, line_no, &fields, c, "timestamp"))
                    .transpose()?;
                push(user, item, rating, ts)
            }
            Format::Adjacency => {
                let user = text::field(&path, line_no, &fields, 0, "user")?;
                for item in &fields[1..] {
                    push(user, item, None, None)?;
                }
                Ok(())
            }
            Format::LineList => {
                let user = (line_no as i64 - 1 + user_base).to_string();
                for item in fields.iter().filter(|s| !s.is_empty()) {
                    push(&user, item, None, None)?;
                }
                Ok(())
            }
        }
    })
}

/// A relation line as read: source id, destination id, weight.
type RawEdge = (String, String, f32);

fn read_relation(
    m: &Manifest,
    root: &Path,
    r: &RelationSpec,
) -> Result<(Vec<RawEdge>, FileDigest)> {
    let path = root.join(&r.file);
    let sep = r.separator.as_deref().unwrap_or(&m.separator);
    let (src_e, dst_e) = (
        m.entity_index(&r.src).expect("validated"),
        m.entity_index(&r.dst).expect("validated"),
    );
    let (src_spec, src_base) = (&m.entities[src_e], m.id_base_of(src_e));
    let (dst_spec, dst_base) = (&m.entities[dst_e], m.id_base_of(dst_e));
    let mut out = Vec::new();
    let read = text::for_each_line(&path, |line_no, line| {
        let mut fields = Vec::with_capacity(8);
        text::split_fields(line, sep, &mut fields);
        let s = text::field(&path, line_no, &fields, r.columns.src, &r.src)?;
        let mut d = text::field(&path, line_no, &fields, r.columns.dst, &r.dst)?;
        if let Some(x) = r.extract {
            d = x.apply(d).ok_or_else(|| {
                DataError::parse(&path, line_no, format!("{x:?} found nothing in {d:?}"))
            })?;
        }
        let w = match r.columns.weight {
            Some(c) => text::parse_field::<f32>(&path, line_no, &fields, c, "weight")?,
            None => 1.0,
        };
        check_id(&path, line_no, src_spec, s, src_base)?;
        let dsts: Vec<&str> = match &r.multi_separator {
            Some(ms) => d.split(ms.as_str()).filter(|x| !x.is_empty()).collect(),
            None => vec![d],
        };
        for d in dsts {
            check_id(&path, line_no, dst_spec, d, dst_base)?;
            out.push((s.to_string(), d.to_string(), w));
        }
        Ok(())
    })?;
    Ok((out, read.digest))
}

/// The files a dataset was read from, each once.
#[derive(Default)]
struct Sources(Vec<SourceFile>);

impl Sources {
    fn add(&mut self, file: &str, digest: FileDigest) {
        if !self.0.iter().any(|s| s.file == file) {
            self.0.push(SourceFile {
                file: file.to_string(),
                digest,
            });
        }
    }
}

impl Ids for Dataset {
    fn user_id(&self, original: &str) -> Option<u32> {
        self.users().get(original)
    }
    fn item_id(&self, original: &str) -> Option<u32> {
        Dataset::item_id(self, original)
    }
    fn user_name(&self, user: u32) -> String {
        self.users().original(user).to_string()
    }
    fn item_name(&self, item: u32) -> String {
        self.item_original(item)
    }
}
