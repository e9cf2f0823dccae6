//! The adapter trait and the resolver that routes each namespace to its adapter.
//!
//! An [`Adapter`] serves whole references of the namespaces it is routed; the [`Resolver`]
//! applies attribute paths on top, so every source behaves the same for paths, not-found
//! errors and listings.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bver_contracts::{BverError, ErrorCode, Phase, RefPtr};
use serde_json::Value;

use crate::path;

/// A boxed future, as adapters return (the trait must be object safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// This platform's own store.
    Local,
    /// The owning peer platform, over EAGER.
    Peer,
    /// A local cache of a remote namespace, kept fresh by a subscription.
    Cache,
    /// A directory of documents.
    Files,
    /// An external HTTP API.
    Http,
}

impl Source {
    /// `local`, `peer`, `cache`, `files` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Peer => "peer",
            Self::Cache => "cache",
            Self::Files => "files",
            Self::Http => "http",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole reference as an adapter returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// The current version (sources without versions report 1).
    pub version: u64,
    /// The kind, if any.
    pub kind: Option<String>,
    /// The whole value.
    pub value: Value,
    /// When that version was made, unix milliseconds.
    pub updated_at: i64,
    /// Where it came from.
    pub source: Source,
}

/// A resolved pointer: the reference's metadata and the value the pointer addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The pointer as asked (canonical).
    pub pointer: RefPtr,
    /// The reference's version.
    pub version: u64,
    /// The reference's kind.
    pub kind: Option<String>,
    /// The addressed value (the whole value without an attribute path).
    pub value: Value,
    /// When that version was made, unix milliseconds.
    pub updated_at: i64,
    /// Where it came from.
    pub source: Source,
}

/// One entry of a listing: a reference and its version, not its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The reference.
    pub pointer: RefPtr,
    /// Its current version.
    pub version: u64,
    /// Its kind.
    pub kind: Option<String>,
    /// When its current version was made, unix milliseconds.
    pub updated_at: i64,
}

/// A page of a listing, with an opaque cursor for the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The entries.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last.
    pub next: Option<String>,
}

/// A source of references for some namespaces: the local store, a peer, files, HTTP.
///
/// Adapters return whole references; the [`Resolver`] applies attribute paths.
pub trait Adapter: Send + Sync {
    /// The reference `pointer` addresses (its attribute path is ignored), or `None`.
    fn fetch<'a>(
        &'a self,
        pointer: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>>;

    /// References of `repo` in `namespace`, optionally of `kind` (or a kind below it).
    fn list<'a>(
        &'a self,
        namespace: &'a str,
        repo: &'a str,
        kind: Option<&'a str>,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>>;

    /// References of every repo in `namespace`.
    fn listrefs<'a>(
        &'a self,
        namespace: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>>;
}

/// Routes each namespace to the adapter that serves it, and implements the spec's runtime
/// interface: `get`, `resolve`, `exists`, `list`, `listrefs`.
#[derive(Clone, Default)]
pub struct Resolver {
    routes: BTreeMap<String, Arc<dyn Adapter>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("namespaces", &self.routes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Resolver {
    /// A resolver with no routes: every namespace is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Route `namespace` to `adapter` (replacing an earlier route).
    pub fn route(&mut self, namespace: impl Into<String>, adapter: Arc<dyn Adapter>) {
        self.routes.insert(namespace.into(), adapter);
    }

    /// Whether `namespace` has a route.
    pub fn routes(&self, namespace: &str) -> bool {
        self.routes.contains_key(namespace)
    }

    fn adapter(&self, namespace: &str) -> Result<&Arc<dyn Adapter>, BverError> {
        self.routes.get(namespace).ok_or_else(|| {
            BverError::new(
                ErrorCode::NotFound,
                Phase::Resolution,
                format!(
                    "namespace `{namespace}` is not owned by this platform and no peer or \
                     adapter is configured for it"
                ),
            )
            .with_details(serde_json::json!({
                "namespace": namespace,
                "known_namespaces": self.routes.keys().collect::<Vec<_>>(),
            }))
        })
    }

    /// Resolve `pointer`: the reference's metadata and the addressed value.
    ///
    /// A reference that does not exist, or an attribute path that does not match, is a
    /// `not_found` error (the latter naming the first missing segment).
    pub async fn resolve(&self, pointer: &RefPtr) -> Result<Resolved, BverError> {
        let adapter = self.adapter(pointer.namespace())?;
        let fetched = adapter.fetch(pointer).await?.ok_or_else(|| {
            BverError::new(
                ErrorCode::NotFound,
                Phase::Resolution,
                format!("{} does not exist", pointer.reference_str()),
            )
            .with_ref(pointer.to_string())
        })?;
        let value = match pointer.path() {
            None => fetched.value,
            Some(p) => path::select(&fetched.value, p)
                .map_err(|m| m.into_error(&pointer.to_string()))?
                .clone(),
        };
        Ok(Resolved {
            pointer: pointer.clone(),
            version: fetched.version,
            kind: fetched.kind,
            value,
            updated_at: fetched.updated_at,
            source: fetched.source,
        })
    }

    /// The addressed value alone.
    pub async fn get(&self, pointer: &RefPtr) -> Result<Value, BverError> {
        Ok(self.resolve(pointer).await?.value)
    }

    /// Whether `pointer` addresses something (the reference exists and, with a path, the
    /// attribute is present). An unrouted namespace is an error, not `false`.
    pub async fn exists(&self, pointer: &RefPtr) -> Result<bool, BverError> {
        let adapter = self.adapter(pointer.namespace())?;
        Ok(match adapter.fetch(pointer).await? {
            None => false,
            Some(f) => match pointer.path() {
                None => true,
                Some(p) => path::select(&f.value, p).is_ok(),
            },
        })
    }

    /// References of a repo.
    pub async fn list(
        &self,
        namespace: &str,
        repo: &str,
        kind: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Listed>, BverError> {
        self.adapter(namespace)?
            .list(namespace, repo, kind, cursor, limit)
            .await
    }

    /// References of a namespace, across its repos.
    pub async fn listrefs(
        &self,
        namespace: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Listed>, BverError> {
        self.adapter(namespace)?
            .listrefs(namespace, cursor, limit)
            .await
    }
}
