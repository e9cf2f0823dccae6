//! The EAGER resolver adapter: a `bver_resolver::Adapter` that fetches references of a
//! peer's namespaces over EAGER. The resolver routes the namespaces the peer owns to it.

use std::time::Duration;

use bver_contracts::{BverError, ErrorCode, RefPtr};
use bver_resolver::{Adapter, BoxFuture, Fetched, Listed, Page, Source};

use crate::proto::resolve::ListRequest;
use crate::transport::endpoint::EagerEndpoint;

/// Default time a remote fetch may take.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(2);

/// Resolves pointers at one peer, presenting one grant.
#[derive(Debug, Clone)]
pub struct EagerAdapter {
    endpoint: EagerEndpoint,
    peer: String,
    grant: String,
    budget: Duration,
}

impl EagerAdapter {
    /// An adapter for `peer` with `grant` (issued by the peer to this platform).
    pub fn new(endpoint: EagerEndpoint, peer: String, grant: String) -> Self {
        Self {
            endpoint,
            peer,
            grant,
            budget: DEFAULT_BUDGET,
        }
    }

    /// Set the time budget of each fetch.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// The peer.
    pub fn peer(&self) -> &str {
        &self.peer
    }
}

impl Adapter for EagerAdapter {
    fn fetch<'a>(
        &'a self,
        pointer: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>> {
        Box::pin(async move {
            let whole = pointer.without_path();
            match self
                .endpoint
                .resolve(&self.peer, &whole, &self.grant, self.budget)
                .await
            {
                Ok(a) => Ok(Some(Fetched {
                    version: a.answer.version,
                    kind: a.answer.kind,
                    value: a.answer.value,
                    updated_at: a.answer.updated_at,
                    source: Source::Peer,
                })),
                Err(e) if e.code == ErrorCode::NotFound => Ok(None),
                Err(e) => Err(e),
            }
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
            let request = ListRequest {
                namespace: namespace.to_owned(),
                repo: Some(repo.to_owned()),
                kind: kind.map(str::to_owned),
                cursor: cursor.map(str::to_owned),
                limit,
            };
            self.endpoint
                .list(&self.peer, request, &self.grant, self.budget)
                .await
        })
    }

    fn listrefs<'a>(
        &'a self,
        namespace: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        Box::pin(async move {
            let request = ListRequest {
                namespace: namespace.to_owned(),
                repo: None,
                kind: None,
                cursor: cursor.map(str::to_owned),
                limit,
            };
            self.endpoint
                .list(&self.peer, request, &self.grant, self.budget)
                .await
        })
    }
}
