//! The local-store resolver adapter: serves the namespaces this platform owns from its store.

use bver_contracts::{BverError, RefPtr};
use bver_resolver::{Adapter, BoxFuture, Fetched, Listed, Page, Source};

use crate::store::{Current, RefKey, Store};

/// Resolves pointers of this platform's own namespaces from its [`Store`].
#[derive(Clone)]
pub struct LocalAdapter {
    store: Store,
}

impl std::fmt::Debug for LocalAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAdapter")
            .field("backend", &self.store.backend_name())
            .finish()
    }
}

impl LocalAdapter {
    /// An adapter over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn key_of(p: &RefPtr) -> RefKey {
    RefKey::new(p.namespace(), p.repo(), p.id())
}

pub(crate) fn listed(c: &Current) -> Result<Listed, BverError> {
    Ok(Listed {
        pointer: RefPtr::new(&c.key.namespace, &c.key.repo, &c.key.id)?,
        version: c.version,
        kind: c.kind.clone(),
        updated_at: c.updated_at,
    })
}

impl Adapter for LocalAdapter {
    fn fetch<'a>(
        &'a self,
        pointer: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>> {
        Box::pin(async move {
            Ok(self
                .store
                .get(&key_of(pointer))
                .await?
                .filter(|c| !c.deleted)
                .map(|c| Fetched {
                    version: c.version,
                    kind: c.kind.clone(),
                    value: c.value.clone(),
                    updated_at: c.updated_at,
                    source: Source::Local,
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
            let page = self
                .store
                .list(namespace, repo, kind, cursor, limit)
                .await?;
            Ok(Page {
                items: page.items.iter().map(listed).collect::<Result<_, _>>()?,
                next: page.next,
            })
        })
    }

    fn listrefs<'a>(
        &'a self,
        namespace: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        Box::pin(async move {
            let page = self.store.listrefs(namespace, cursor, limit).await?;
            let mut items = Vec::with_capacity(page.items.len());
            for key in &page.items {
                // Read through the cache; a reference deleted since the listing is skipped.
                if let Some(c) = self.store.get(key).await?
                    && !c.deleted
                {
                    items.push(listed(&c)?);
                }
            }
            Ok(Page {
                items,
                next: page.next,
            })
        })
    }
}
