//! MCP: the domain as Model Context Protocol tools and resources, over the one broker.
//!
//! Built on the official Rust SDK (`rmcp`). [`McpServer`] is an `rmcp` server handler:
//!
//! - **tools** ([`tools`]): one per operation the caller may see
//!   ([`Broker::visible_operations`]), with the operation's input and output JSON Schemas and
//!   annotations; `tools/call` is one [`Broker::invoke`], failures are `isError` results
//!   carrying the shared error;
//! - **resources** ([`resources`]): every reference by its `bver://` pointer, the template
//!   `bver://{namespace}/{repo}/{id}`, paged listing, reads through `bver.get`;
//! - **subscriptions** ([`changes`]): `subscriptions/listen` (2026-07-28) and
//!   `resources/subscribe` (2025-11-25) notify `notifications/resources/updated` when a
//!   subscribed reference changes.
//!
//! Two transports, one handler: Streamable HTTP at `/mcp` on the node's listener
//! ([`http_service`], behind the node's bearer-token middleware) and stdio ([`serve_stdio`],
//! `bver mcp`, with the principal of one verified token). `docs/mcp.md` is the user's guide.
//!
//! **Architecture Invariant:** every tool call, read and listing is a broker call as the
//! request's own principal; nothing here reads or writes the store except the outbox watcher
//! ([`changes`]), which reads sequence numbers and pointers, never values.

pub mod changes;
pub mod resources;
pub mod tools;

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use bver_auth::{Principal, Verifier};
use bver_contracts::{BverError, ErrorCode as Code, Phase};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Extensions, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
    ResourceUpdatedNotificationParam, ServerCapabilities, ServerConfig, SubscribeRequestParams,
    SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::changes::Changes;
use self::tools::ToolIndex;
use crate::broker::{Broker, Call};
use crate::serve::http::RequestId;

/// The MCP revisions served, newest first. 2026-07-28 is stateless (`server/discover`,
/// per-request `_meta`); 2025-11-25 and 2025-06-18 use `initialize` and, over HTTP, sessions.
pub const PROTOCOL_VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V_2026_07_28,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2025_06_18,
];

/// Where a request's principal comes from.
pub enum Caller {
    /// HTTP: the principal the node's authentication middleware verified for this request.
    Http,
    /// stdio: one token, verified again for every request (so it expires on time).
    Token {
        /// The bearer token.
        token: String,
        /// The verifier of the data directory's keys.
        verifier: Arc<Verifier>,
    },
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http => f.write_str("Http"),
            Self::Token { .. } => f.write_str("Token(..)"),
        }
    }
}

/// Called after every tool call: operation, mutation, outcome (`ok` or the error code),
/// latency. The HTTP node records it in its operation metrics.
pub type Observer = Arc<dyn Fn(&str, bool, &str, Duration) + Send + Sync>;

struct Shared {
    broker: Broker,
    tools: ToolIndex,
    changes: Changes,
    caller: Caller,
    platform_id: String,
    observe: Option<Observer>,
}

/// Per-connection state (a legacy HTTP session, or the stdio connection): the URIs of
/// `resources/subscribe` and the task that forwards their changes.
#[derive(Default)]
struct Session {
    subscriptions: Arc<Mutex<HashSet<String>>>,
    forwarder: Mutex<Option<JoinHandle<()>>>,
    /// Change receivers opened when a `subscriptions/listen` was accepted, oldest first, for
    /// the `listen` calls that follow. The SDK acknowledges a subscription before it calls
    /// `listen`; a receiver opened only there would miss a change the client makes as soon as
    /// it has the acknowledgement.
    listen_rx: Mutex<VecDeque<broadcast::Receiver<Arc<str>>>>,
}

/// Receivers kept for `listen` calls still to come (one per accepted subscription; more
/// only when subscriptions are accepted and then fail before `listen`).
const PENDING_LISTENS: usize = 16;

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = self
            .forwarder
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// The MCP server handler. Cheap to clone; one per connection.
#[derive(Clone)]
pub struct McpServer {
    shared: Arc<Shared>,
    session: Arc<Session>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("platform_id", &self.shared.platform_id)
            .field("caller", &self.shared.caller)
            .finish_non_exhaustive()
    }
}

fn unauthenticated(message: &str) -> BverError {
    BverError::new(Code::Unauthenticated, Phase::Authentication, message)
}

fn mint_request_id() -> String {
    format!("mcp-{:016x}", rand::random::<u64>())
}

impl McpServer {
    /// A server over `broker`, taking principals from `caller`. Starts the outbox watcher, so
    /// it must be called inside a Tokio runtime.
    pub fn new(
        broker: Broker,
        platform_id: impl Into<String>,
        caller: Caller,
        observe: Option<Observer>,
    ) -> Result<Self, BverError> {
        let tools = ToolIndex::new(&broker)?;
        let changes = Changes::start(broker.store().clone());
        Ok(Self {
            shared: Arc::new(Shared {
                broker,
                tools,
                changes,
                caller,
                platform_id: platform_id.into(),
                observe,
            }),
            session: Arc::new(Session::default()),
        })
    }

    /// Another connection to the same server (fresh subscriptions).
    pub fn connection(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            session: Arc::new(Session::default()),
        }
    }

    /// The principal of a request.
    fn principal(&self, ext: &Extensions) -> Result<Principal, BverError> {
        match &self.shared.caller {
            Caller::Http => ext
                .get::<Parts>()
                .and_then(|p| p.extensions.get::<Principal>())
                .cloned()
                .ok_or_else(|| unauthenticated("this request carries no verified token")),
            Caller::Token { token, verifier } => {
                verifier.verify_now(token).map_err(BverError::from)
            }
        }
    }

    fn request_id(ext: &Extensions) -> String {
        ext.get::<Parts>()
            .and_then(|p| p.extensions.get::<RequestId>())
            .map_or_else(mint_request_id, |r| r.0.clone())
    }

    /// Run one tool call as `principal` (the in-process path `tools/call` takes; public for
    /// the benchmark).
    pub async fn call(
        &self,
        principal: &Principal,
        name: &str,
        arguments: Option<serde_json::Map<String, Value>>,
        idempotency_key: Option<String>,
        request_id: String,
    ) -> rmcp::model::CallToolResult {
        let Some(operation) = self.shared.tools.operation(name) else {
            return tools::error_result(&tools::unknown_tool(name, &self.shared.tools));
        };
        let broker = &self.shared.broker;
        let mutation = broker.operation(operation).is_some_and(|s| s.mutation);
        let mut call = Call::new(operation, Value::Object(arguments.unwrap_or_default()))
            .request_id(request_id);
        call.idempotency_key = idempotency_key;
        let start = Instant::now();
        let result = broker.invoke(principal, call).await;
        if let Some(observe) = &self.shared.observe {
            let outcome = result.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok");
            observe(operation, mutation, outcome, start.elapsed());
        }
        match result {
            Ok(output) => tools::ok_result(output),
            Err(e) => {
                if e.code == Code::Internal {
                    tracing::error!(operation, error = %e, "MCP tool call failed");
                }
                tools::error_result(&e)
            }
        }
    }

    fn capabilities() -> ServerCapabilities {
        ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .build()
    }

    /// Start forwarding changes of this connection's `resources/subscribe` URIs to `peer`.
    fn ensure_forwarder(&self, peer: rmcp::Peer<RoleServer>) {
        let mut slot = self
            .session
            .forwarder
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let mut rx = self.shared.changes.subscribe();
        let subs = self.session.subscriptions.clone();
        *slot = Some(tokio::spawn(async move {
            loop {
                let pointer = match rx.recv().await {
                    Ok(p) => p,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "MCP subscriber fell behind");
                        continue;
                    }
                    Err(_) => return,
                };
                let uris: Vec<String> = subs
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .filter(|u| changes::concerns(u, &pointer))
                    .cloned()
                    .collect();
                for uri in uris {
                    let param = ResourceUpdatedNotificationParam::new(uri);
                    if peer.notify_resource_updated(param).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
}

fn rpc(e: &BverError) -> ErrorData {
    resources::rpc_error(e)
}

impl ServerHandler for McpServer {
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(&PROTOCOL_VERSIONS)
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(Self::capabilities())
            .with_server_info(
                Implementation::new("bver", env!("CARGO_PKG_VERSION"))
                    .with_title(format!("BVER platform `{}`", self.shared.platform_id)),
            )
            .with_instructions(format!(
                "The BVER platform `{}`. Every operation of its domain is a tool (the \
                 operation's name with `.` replaced by `_`); every reference is a resource \
                 at its `bver://namespace/repo/id` pointer. Tool errors carry a stable \
                 `code`, a `phase` and whether they are `retryable`.",
                self.shared.platform_id
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let principal = self.principal(&context.extensions).map_err(|e| rpc(&e))?;
        let tools = self
            .shared
            .broker
            .visible_operations(&principal)
            .filter_map(|op| self.shared.tools.tool(&op.name).cloned())
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = match self.principal(&context.extensions) {
            Ok(p) => p,
            Err(e) => return Ok(tools::error_result(&e).into()),
        };
        let key = request
            .meta
            .as_ref()
            .and_then(|m| m.get(tools::IDEMPOTENCY_META))
            .or_else(|| context.meta.get(tools::IDEMPOTENCY_META))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let request_id = Self::request_id(&context.extensions);
        Ok(self
            .call(
                &principal,
                &request.name,
                request.arguments,
                key,
                request_id,
            )
            .await
            .into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let principal = self.principal(&context.extensions).map_err(|e| rpc(&e))?;
        let cursor = request.as_ref().and_then(|r| r.cursor.as_deref());
        resources::list(
            &self.shared.broker,
            &principal,
            cursor,
            &Self::request_id(&context.extensions),
        )
        .await
        .map_err(|e| rpc(&e))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let principal = self.principal(&context.extensions).map_err(|e| rpc(&e))?;
        Ok(resources::templates(&self.shared.broker, &principal))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let principal = self.principal(&context.extensions).map_err(|e| rpc(&e))?;
        resources::read(
            &self.shared.broker,
            &principal,
            &request.uri,
            &Self::request_id(&context.extensions),
        )
        .await
        .map(Into::into)
        .map_err(|e| rpc(&e))
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let principal = self.principal(&context.extensions).map_err(|e| rpc(&e))?;
        resources::check_readable(
            &self.shared.broker,
            &principal,
            &request.uri,
            &Self::request_id(&context.extensions),
        )
        .await
        .map_err(|e| rpc(&e))?;
        self.session
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request.uri);
        self.ensure_forwarder(context.peer.clone());
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut pending = self
            .session
            .listen_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= PENDING_LISTENS {
            pending.pop_front();
        }
        pending.push_back(self.shared.changes.subscribe());
        Some(requested.supported_by(&Self::capabilities()))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let ext = &context.request_context().extensions;
        let principal = self.principal(ext).map_err(|e| rpc(&e))?;
        let request_id = Self::request_id(ext);
        // The receiver opened when the subscription was accepted (before the SDK acknowledged
        // it), so no change after the acknowledgement, or between the check and the loop, is
        // lost.
        let pending = self
            .session
            .listen_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        let mut rx = pending.unwrap_or_else(|| self.shared.changes.subscribe());
        let mut uris = Vec::new();
        for uri in context.accepted().resource_subscriptions.iter().flatten() {
            match resources::check_readable(&self.shared.broker, &principal, uri, &request_id).await
            {
                Ok(()) => uris.push(uri.clone()),
                Err(e) => tracing::info!(uri, code = e.code.as_str(), "subscription refused"),
            }
        }
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = rx.recv() => match change {
                    Ok(pointer) => {
                        for uri in uris.iter().filter(|u| changes::concerns(u, &pointer)) {
                            if context.sink().notify_resource_updated(uri.clone()).await.is_err() {
                                return Ok(());
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "MCP subscriber fell behind");
                    }
                    Err(_) => return Ok(()),
                },
            }
        }
    }
}

/// DNS-rebinding protection of `/mcp`: which `Host` and `Origin` values are accepted.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Accepted `Host` values (host or host:port). Empty: any (not recommended).
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` values (`scheme://host[:port|:*]`). A request without `Origin`
    /// passes; one with an `Origin` not listed is refused.
    pub allowed_origins: Vec<String>,
    /// Accept any `Origin` (configured with `*`).
    pub any_origin: bool,
    /// Cancelled when the node shuts down: open MCP streams close.
    pub cancel: CancellationToken,
}

impl HttpSettings {
    /// The defaults for a node listening on `listen`: loopback names, plus the listen host
    /// when it is a specific address; browser origins on those hosts, any port.
    pub fn for_listen(listen: std::net::SocketAddr) -> Self {
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        let ip = listen.ip();
        if !ip.is_unspecified() && !ip.is_loopback() {
            hosts.push(ip.to_string());
        }
        let allowed_origins = hosts
            .iter()
            .flat_map(|h| {
                let h = if h.contains(':') {
                    format!("[{h}]")
                } else {
                    h.clone()
                };
                [format!("http://{h}:*"), format!("https://{h}:*")]
            })
            .collect();
        Self {
            allowed_hosts: hosts,
            allowed_origins,
            any_origin: false,
            cancel: CancellationToken::new(),
        }
    }
}

/// The Streamable HTTP service for `/mcp`: mount it behind the node's authentication
/// middleware (every request then carries its verified [`Principal`]).
pub fn http_service(
    server: McpServer,
    settings: &HttpSettings,
    max_body_bytes: usize,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(settings.allowed_hosts.clone())
        .with_allowed_origins(settings.allowed_origins.clone());
    if settings.allowed_hosts.is_empty() {
        config = config.disable_allowed_hosts();
    }
    config = if settings.any_origin {
        config.disable_allowed_origins()
    } else {
        config.enforce_origin_validation()
    };
    let config = config
        .with_legacy_session_mode(true)
        .with_max_request_body_bytes(max_body_bytes)
        .with_cancellation_token(settings.cancel.child_token());
    StreamableHttpService::new(
        move || Ok(server.connection()),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

/// Serve MCP on stdin/stdout until the client closes it.
pub async fn serve_stdio(server: McpServer) -> Result<(), BverError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| BverError::internal(format!("MCP on stdio did not start: {e}")))?;
    running
        .waiting()
        .await
        .map_err(|e| BverError::internal(format!("MCP on stdio failed: {e}")))?;
    Ok(())
}
