//! The files adapter: a namespace served read-only from a directory of documents.
//!
//! ```text
//! DIR/{repo}/{id}.json     one reference per file (the document is its value)
//! DIR/{repo}/{id}.toml     the same, in TOML
//! DIR/{repo}.csv           one reference per row: a header row names the fields, the `id`
//!                          column is the reference's id; cells that read as JSON numbers or
//!                          booleans are those, every other cell a string
//! ```
//!
//! Changes are picked up: every fetch and listing reads the directory as it is now (a CSV
//! file is parsed again only when its size or modification time changed). Files have no
//! versions: each reference reports version 1 and `updated_at` = its file's modification time.
//! A `kind` field in a document is its kind.
//!
//! **Invariant:** nothing outside `DIR` is ever read: ids and repos that are not plain names
//! (a separator, a leading dot) are `not_found`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bver_contracts::{BverError, ErrorCode, Phase, RefPtr};
use serde_json::{Map, Value};

use crate::adapter::{Adapter, BoxFuture, Fetched, Listed, Page, Source};

/// The rows of a parsed CSV file, by id.
type CsvRows = Arc<BTreeMap<String, Map<String, Value>>>;

/// Parsed CSV files by path, with the (size, modification time) they were parsed at.
type CsvCache = Mutex<HashMap<PathBuf, ((u64, i64), CsvRows)>>;

/// Serves one directory of documents.
#[derive(Debug)]
pub struct FilesAdapter {
    dir: PathBuf,
    csv: CsvCache,
}

fn plain(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\'])
}

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn bad_file(path: &Path, e: impl std::fmt::Display) -> BverError {
    BverError::new(
        ErrorCode::Unavailable,
        Phase::Resolution,
        format!("{}: {e}", path.display()),
    )
    .retryable(true)
}

/// Split one CSV record (RFC 4180 quoting) into fields.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Records of a CSV text: a newline inside quotes continues the record.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(line);
        if pending.matches('"').count().is_multiple_of(2) {
            if !pending.trim().is_empty() {
                records.push(csv_fields(&pending));
            }
            pending.clear();
        }
    }
    if !pending.trim().is_empty() {
        records.push(csv_fields(&pending));
    }
    records
}

fn cell(s: &str) -> Value {
    match serde_json::from_str::<Value>(s) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(s.to_owned()),
    }
}

impl FilesAdapter {
    /// Serve the documents under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            csv: Mutex::new(HashMap::new()),
        }
    }

    fn csv_rows(&self, repo: &str) -> Result<Option<(CsvRows, i64)>, BverError> {
        let path = self.dir.join(format!("{repo}.csv"));
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(_) => return Ok(None),
        };
        let stamp = (meta.len(), mtime_ms(&meta));
        if let Ok(cache) = self.csv.lock()
            && let Some((s, rows)) = cache.get(&path)
            && *s == stamp
        {
            return Ok(Some((rows.clone(), stamp.1)));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| bad_file(&path, e))?;
        let mut records = csv_records(&text).into_iter();
        let header = records.next().unwrap_or_default();
        let id_col = header
            .iter()
            .position(|h| h == "id")
            .ok_or_else(|| bad_file(&path, "no `id` column in the header row"))?;
        let mut rows = BTreeMap::new();
        for r in records {
            let Some(id) = r.get(id_col).filter(|id| plain(id)) else {
                continue;
            };
            let mut obj = Map::new();
            for (h, v) in header.iter().zip(&r) {
                obj.insert(h.clone(), cell(v));
            }
            rows.insert(id.clone(), obj);
        }
        let rows = Arc::new(rows);
        if let Ok(mut cache) = self.csv.lock() {
            cache.insert(path, (stamp, rows.clone()));
        }
        Ok(Some((rows, stamp.1)))
    }

    fn document(&self, repo: &str, id: &str) -> Result<Option<(Value, i64)>, BverError> {
        for ext in ["json", "toml"] {
            let path = self.dir.join(repo).join(format!("{id}.{ext}"));
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(|e| bad_file(&path, e))?;
            let value: Value = if ext == "json" {
                serde_json::from_str(&text).map_err(|e| bad_file(&path, e))?
            } else {
                let t: toml::Table = toml::from_str(&text).map_err(|e| bad_file(&path, e))?;
                serde_json::to_value(t).map_err(|e| bad_file(&path, e))?
            };
            return Ok(Some((value, mtime_ms(&meta))));
        }
        if let Some((rows, at)) = self.csv_rows(repo)? {
            return Ok(rows.get(id).map(|r| (Value::Object(r.clone()), at)));
        }
        Ok(None)
    }

    /// Every reference of `repo`: (id, kind, updated_at), by id.
    fn entries(&self, repo: &str) -> Result<BTreeMap<String, (Option<String>, i64)>, BverError> {
        let mut out = BTreeMap::new();
        if let Some((rows, at)) = self.csv_rows(repo)? {
            for (id, r) in rows.iter() {
                let kind = r.get("kind").and_then(Value::as_str).map(str::to_owned);
                out.insert(id.clone(), (kind, at));
            }
        }
        if let Ok(dir) = std::fs::read_dir(self.dir.join(repo)) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(id) = name
                    .strip_suffix(".json")
                    .or_else(|| name.strip_suffix(".toml"))
                    .filter(|id| plain(id))
                else {
                    continue;
                };
                if let Some((v, at)) = self.document(repo, id)? {
                    let kind = v.get("kind").and_then(Value::as_str).map(str::to_owned);
                    out.insert(id.to_owned(), (kind, at));
                }
            }
        }
        Ok(out)
    }

    /// The repos present: subdirectories and CSV files.
    fn repos(&self) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        if let Ok(dir) = std::fs::read_dir(&self.dir) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_dir() && plain(&name) {
                    out.insert(name);
                } else if let Some(repo) = name.strip_suffix(".csv").filter(|r| plain(r)) {
                    out.insert(repo.to_owned());
                }
            }
        }
        out.into_iter().collect()
    }
}

fn page(
    namespace: &str,
    items: Vec<(String, String, Option<String>, i64)>,
    cursor: Option<&str>,
    limit: u32,
) -> Result<Page<Listed>, BverError> {
    let limit = limit.clamp(1, 1000) as usize;
    let after = cursor.unwrap_or("");
    let mut rest: Vec<_> = items
        .into_iter()
        .filter(|(repo, id, _, _)| cursor.is_none() || format!("{repo}/{id}").as_str() > after)
        .collect();
    let next = (rest.len() > limit).then(|| {
        let (repo, id, _, _) = &rest[limit - 1];
        format!("{repo}/{id}")
    });
    rest.truncate(limit);
    let items = rest
        .into_iter()
        .map(|(repo, id, kind, at)| {
            Ok(Listed {
                pointer: RefPtr::new(namespace, &repo, &id)?,
                version: 1,
                kind,
                updated_at: at,
            })
        })
        .collect::<Result<Vec<_>, BverError>>()?;
    Ok(Page { items, next })
}

impl Adapter for FilesAdapter {
    fn fetch<'a>(
        &'a self,
        pointer: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>> {
        Box::pin(async move {
            if !plain(pointer.repo()) || !plain(pointer.id()) {
                return Ok(None);
            }
            Ok(self
                .document(pointer.repo(), pointer.id())?
                .map(|(value, updated_at)| Fetched {
                    version: 1,
                    kind: value.get("kind").and_then(Value::as_str).map(str::to_owned),
                    value,
                    updated_at,
                    source: Source::Files,
                }))
        })
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        repo: &'a str,
        kind: Option<&'a str>,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        Box::pin(async move {
            if !plain(repo) {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            }
            let items = self
                .entries(repo)?
                .into_iter()
                .filter(|(_, (k, _))| match (kind, k) {
                    (None, _) => true,
                    (Some(want), Some(k)) => k == want || k.starts_with(&format!("{want}.")),
                    (Some(_), None) => false,
                })
                .map(|(id, (k, at))| (repo.to_owned(), id, k, at))
                .collect();
            page(namespace, items, cursor, limit)
        })
    }

    fn listrefs<'a>(
        &'a self,
        namespace: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        Box::pin(async move {
            let mut items = Vec::new();
            for repo in self.repos() {
                for (id, (k, at)) in self.entries(&repo)? {
                    items.push((repo.clone(), id, k, at));
                }
            }
            page(namespace, items, cursor, limit)
        })
    }
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        // The adapter's futures never wait on anything: poll once with a no-op waker.
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("pending"),
        }
    }

    #[test]
    fn json_toml_and_csv_documents_resolve_list_and_pick_up_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("site")).unwrap();
        std::fs::write(
            dir.path().join("site/a.json"),
            r#"{"name":"A","kind":"power"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("site/b.toml"), "name = \"B\"\nn = 2\n").unwrap();
        std::fs::write(
            dir.path().join("meter.csv"),
            "id,name,reading,ok\nm1,\"Main, north\",12.5,true\nm2,\"say \"\"hi\"\"\",3,false\n",
        )
        .unwrap();
        let f = FilesAdapter::new(dir.path());
        let get = |p: &str| block(f.fetch(&RefPtr::parse(p).unwrap())).unwrap();
        let a = get("bver://ref/site/a").unwrap();
        assert_eq!(a.value["name"], "A");
        assert_eq!(a.kind.as_deref(), Some("power"));
        assert_eq!(a.source, Source::Files);
        assert_eq!(get("bver://ref/site/b").unwrap().value["n"], 2);
        let m1 = get("bver://ref/meter/m1").unwrap();
        assert_eq!(m1.value["name"], "Main, north");
        assert_eq!(m1.value["reading"], 12.5);
        assert_eq!(m1.value["ok"], true);
        assert_eq!(
            get("bver://ref/meter/m2").unwrap().value["name"],
            "say \"hi\""
        );
        assert!(get("bver://ref/site/zz").is_none());

        let listed = block(f.listrefs("ref", None, 10)).unwrap();
        let ptrs: Vec<String> = listed.items.iter().map(|l| l.pointer.to_string()).collect();
        assert_eq!(
            ptrs,
            [
                "bver://ref/meter/m1",
                "bver://ref/meter/m2",
                "bver://ref/site/a",
                "bver://ref/site/b"
            ]
        );
        let p1 = block(f.list("ref", "site", None, None, 1)).unwrap();
        assert_eq!(p1.items.len(), 1);
        let p2 = block(f.list("ref", "site", None, p1.next.as_deref(), 1)).unwrap();
        assert_eq!(p2.items[0].pointer.id(), "b");
        assert_eq!(
            block(f.list("ref", "site", Some("power"), None, 10))
                .unwrap()
                .items
                .len(),
            1
        );

        // Changes are picked up.
        std::fs::write(dir.path().join("site/a.json"), r#"{"name":"A2"}"#).unwrap();
        assert_eq!(get("bver://ref/site/a").unwrap().value["name"], "A2");
        std::fs::write(dir.path().join("meter.csv"), "id,name\nm1,renamed!\n").unwrap();
        assert_eq!(
            get("bver://ref/meter/m1").unwrap().value["name"],
            "renamed!"
        );
        assert!(get("bver://ref/meter/m2").is_none());
    }
}
