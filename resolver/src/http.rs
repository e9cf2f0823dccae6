//! The external HTTP adapter: a namespace mapped to an external JSON API.
//!
//! A reference is fetched with `GET` on a URL template (`{namespace}`, `{repo}` and `{id}`
//! are replaced, percent-encoded), with an optional authentication header from the
//! configuration, within a timeout. `404` is "no such reference"; a JSON object is its value
//! (a `kind` field is its kind, a `version` number its version, else 1). Answers are cached for
//! a configured time (absences too), so a hot pointer does not call the API each time.
//! Listing is served when a list template is configured (`{namespace}`, `{repo}`): it must
//! answer a JSON array of objects with an `id` (or `{"items": [...]}`), one page.
//!
//! Plain `http://` only: TLS would need a rustls backend in this crate, which is not enabled
//! (`https://` URLs are refused at configuration time).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bver_contracts::{BverError, ErrorCode, Phase, RefPtr};
use serde_json::Value;

use crate::adapter::{Adapter, BoxFuture, Fetched, Listed, Page, Source};
use crate::files::now_ms;

/// How an HTTP namespace is reached.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The fetch URL template, e.g. `http://api.local/v2/{repo}/{id}`.
    pub url: String,
    /// The list URL template (`{namespace}`, `{repo}`), if the API can list.
    pub list_url: Option<String>,
    /// An authentication header: name and value (e.g. `Authorization`, `Bearer ...`).
    pub auth: Option<(String, String)>,
    /// How long one call may take.
    pub timeout: Duration,
    /// How long an answer is reused (zero: never).
    pub cache_ttl: Duration,
}

/// Resolves a namespace at an external JSON API.
#[derive(Debug)]
pub struct HttpAdapter {
    config: HttpConfig,
    client: reqwest::Client,
    cache: Mutex<HashMap<String, (Instant, Option<Fetched>)>>,
}

fn config_error(message: String) -> BverError {
    BverError::new(ErrorCode::InvalidDefinition, Phase::Configuration, message)
}

fn unavailable(message: String) -> BverError {
    BverError::new(ErrorCode::Unavailable, Phase::Resolution, message).retryable(true)
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl HttpAdapter {
    /// An adapter for `config` (`https://` and templates without `{id}` are refused).
    pub fn new(config: HttpConfig) -> Result<Self, BverError> {
        for t in std::iter::once(&config.url).chain(config.list_url.as_ref()) {
            if !t.starts_with("http://") {
                return Err(config_error(format!(
                    "HTTP adapter URL `{t}`: only http:// is supported"
                )));
            }
        }
        if !config.url.contains("{id}") {
            return Err(config_error(format!(
                "HTTP adapter URL `{}` has no `{{id}}`",
                config.url
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| config_error(format!("HTTP client: {e}")))?;
        Ok(Self {
            config,
            client,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn request(&self, url: &str) -> reqwest::RequestBuilder {
        let mut r = self.client.get(url).header("accept", "application/json");
        if let Some((name, value)) = &self.config.auth {
            r = r.header(name.as_str(), value.as_str());
        }
        r
    }

    async fn get_json(&self, url: &str) -> Result<Option<Value>, BverError> {
        let res = self.request(url).send().await.map_err(|e| {
            if e.is_timeout() {
                BverError::new(
                    ErrorCode::Timeout,
                    Phase::Resolution,
                    format!("{url}: no answer within {:?}", self.config.timeout),
                )
                .retryable(true)
            } else {
                unavailable(format!("{url}: {e}"))
            }
        })?;
        match res.status().as_u16() {
            404 => Ok(None),
            s if (200..300).contains(&s) => res
                .json::<Value>()
                .await
                .map(Some)
                .map_err(|e| unavailable(format!("{url}: the answer is not JSON: {e}"))),
            s => Err(unavailable(format!("{url}: HTTP {s}"))),
        }
    }
}

impl Adapter for HttpAdapter {
    fn fetch<'a>(
        &'a self,
        pointer: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>> {
        Box::pin(async move {
            let url = self
                .config
                .url
                .replace("{namespace}", &encode(pointer.namespace()))
                .replace("{repo}", &encode(pointer.repo()))
                .replace("{id}", &encode(pointer.id()));
            if !self.config.cache_ttl.is_zero()
                && let Ok(cache) = self.cache.lock()
                && let Some((at, hit)) = cache.get(&url)
                && at.elapsed() < self.config.cache_ttl
            {
                return Ok(hit.clone());
            }
            let fetched = self.get_json(&url).await?.map(|value| Fetched {
                version: value.get("version").and_then(Value::as_u64).unwrap_or(1),
                kind: value.get("kind").and_then(Value::as_str).map(str::to_owned),
                value,
                updated_at: now_ms(),
                source: Source::Http,
            });
            if !self.config.cache_ttl.is_zero()
                && let Ok(mut cache) = self.cache.lock()
            {
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(url, (Instant::now(), fetched.clone()));
            }
            Ok(fetched)
        })
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        repo: &'a str,
        kind: Option<&'a str>,
        _cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        Box::pin(async move {
            let Some(template) = &self.config.list_url else {
                return Err(BverError::new(
                    ErrorCode::Unavailable,
                    Phase::Resolution,
                    format!("namespace `{namespace}` is served by an HTTP API without a list URL"),
                ));
            };
            let url = template
                .replace("{namespace}", &encode(namespace))
                .replace("{repo}", &encode(repo));
            let body = self
                .get_json(&url)
                .await?
                .unwrap_or(Value::Array(Vec::new()));
            let rows = match body {
                Value::Array(a) => a,
                Value::Object(mut o) => match o.remove("items") {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            let mut items = Vec::new();
            for r in rows {
                let Some(id) = r.get("id").and_then(Value::as_str) else {
                    continue;
                };
                let k = r.get("kind").and_then(Value::as_str).map(str::to_owned);
                if let Some(want) = kind
                    && !k
                        .as_deref()
                        .is_some_and(|k| k == want || k.starts_with(&format!("{want}.")))
                {
                    continue;
                }
                let Ok(pointer) = RefPtr::new(namespace, repo, id) else {
                    continue;
                };
                items.push(Listed {
                    pointer,
                    version: r.get("version").and_then(Value::as_u64).unwrap_or(1),
                    kind: k,
                    updated_at: now_ms(),
                });
                if items.len() >= limit.clamp(1, 1000) as usize {
                    break;
                }
            }
            Ok(Page { items, next: None })
        })
    }

    fn listrefs<'a>(
        &'a self,
        namespace: &'a str,
        _cursor: Option<&'a str>,
        _limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        Box::pin(async move {
            Err(BverError::new(
                ErrorCode::Unavailable,
                Phase::Resolution,
                format!("namespace `{namespace}` is served by an HTTP API: list a repo instead"),
            ))
        })
    }
}
