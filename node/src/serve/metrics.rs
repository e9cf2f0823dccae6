//! Prometheus metrics of a node (`GET /metrics`, text exposition format 0.0.4).
//!
//! | Metric | Type | Labels |
//! |---|---|---|
//! | `bver_http_requests_total` | counter | `method`, `route` (the matched route template), `status` |
//! | `bver_http_request_duration_seconds` | histogram | `method`, `route` |
//! | `bver_operations_total` | counter | `operation`, `outcome` (`ok` or the error code) |
//! | `bver_operation_duration_seconds` | histogram | `operation` |
//! | `bver_store_call_duration_seconds` | histogram | `backend`, `kind` (`read` or `write`): time in the broker's store step, commit included |
//! | `bver_auth_rejections_total` | counter | `reason` (the token rejection code) |
//! | `bver_info` | gauge (1) | `platform`, `version`, `backend` |
//! | `bver_eager_subscription_connected` | gauge (0/1) | `subscription`, `peer`, `channel` |
//! | `bver_eager_subscription_seq` | gauge | same: the last applied sequence number |
//! | `bver_eager_subscription_lag_events` | gauge | same: events behind the publisher's head, as known |
//! | `bver_eager_subscription_lag_seconds` | gauge | same: origin commit to local apply of the last event |
//! | `bver_eager_subscription_applied` | gauge | same: events applied since the process started |
//! | `bver_eager_subscription_rejected` | gauge | same: events dropped as forged or altered |
//! | `bver_eager_subscription_runner` | gauge (0/1) | same: whether this process runs it (holds the subscription lease) |
//!
//! Route labels are templates (`/v1/refs/{namespace}/{repo}/{id}`), never raw paths, so the
//! number of series stays bounded whatever clients send.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpNameLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    backend: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubLabels {
    subscription: String,
    peer: String,
    channel: String,
}

/// Gauges of the EAGER subscriptions, refreshed from their live state at each scrape.
struct SubGauges {
    states: crate::federation::States,
    connected: Family<SubLabels, Gauge>,
    seq: Family<SubLabels, Gauge>,
    lag_events: Family<SubLabels, Gauge>,
    lag_seconds: Family<SubLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    applied: Family<SubLabels, Gauge>,
    rejected: Family<SubLabels, Gauge>,
    runner: Family<SubLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    platform: String,
    version: String,
    backend: String,
}

/// Latency buckets from 50 µs to 10 s.
fn latency() -> Histogram {
    Histogram::new([
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 10.0,
    ])
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    operations: Family<OpLabels, Counter>,
    operation_duration: Family<OpNameLabels, Histogram, fn() -> Histogram>,
    store_duration: Family<StoreLabels, Histogram, fn() -> Histogram>,
    auth_rejections: Family<ReasonLabels, Counter>,
    backend: String,
    subscriptions: Option<SubGauges>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of platform `platform` on storage `backend`.
    pub fn new(platform: &str, backend: &str) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "bver_http_requests",
            "HTTP requests answered",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register(
            "bver_http_request_duration_seconds",
            "HTTP request latency, from the request's arrival to its response head",
            http_duration.clone(),
        );
        let operations = Family::<OpLabels, Counter>::default();
        registry.register(
            "bver_operations",
            "Operations run by the broker, by outcome",
            operations.clone(),
        );
        let operation_duration =
            Family::<OpNameLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register(
            "bver_operation_duration_seconds",
            "Operation latency in the broker",
            operation_duration.clone(),
        );
        let store_duration =
            Family::<StoreLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register(
            "bver_store_call_duration_seconds",
            "Time operations spend in the store, durable commit included",
            store_duration.clone(),
        );
        let auth_rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "bver_auth_rejections",
            "Requests refused at authentication, by reason",
            auth_rejections.clone(),
        );
        let info = Family::<InfoLabels, Gauge>::default();
        info.get_or_create(&InfoLabels {
            platform: platform.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            backend: backend.to_owned(),
        })
        .set(1);
        registry.register("bver_info", "The node's platform and build", info);
        Self {
            registry,
            http_requests,
            http_duration,
            operations,
            operation_duration,
            store_duration,
            auth_rejections,
            backend: backend.to_owned(),
            subscriptions: None,
        }
    }

    /// Also export the live state of the EAGER subscriptions in `states`.
    pub fn with_subscriptions(mut self, states: crate::federation::States) -> Self {
        fn gauge(registry: &mut Registry, name: &str, help: &str) -> Family<SubLabels, Gauge> {
            let f = Family::<SubLabels, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        }
        let r = &mut self.registry;
        let connected = gauge(
            r,
            "bver_eager_subscription_connected",
            "Whether the subscription's stream is up (1) or not (0)",
        );
        let seq = gauge(
            r,
            "bver_eager_subscription_seq",
            "The last applied sequence number of the subscription",
        );
        let lag_events = gauge(
            r,
            "bver_eager_subscription_lag_events",
            "Events behind the publisher's head, as far as known",
        );
        let lag_seconds = Family::<SubLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        r.register(
            "bver_eager_subscription_lag_seconds",
            "Time from the origin's commit of the last applied event to its local apply",
            lag_seconds.clone(),
        );
        let applied = gauge(
            r,
            "bver_eager_subscription_applied",
            "Events applied since the process started",
        );
        let rejected = gauge(
            r,
            "bver_eager_subscription_rejected",
            "Events dropped as forged or altered",
        );
        let runner = gauge(
            r,
            "bver_eager_subscription_runner",
            "Whether this process runs the subscription (holds the subscription lease: 1) or stands by (0)",
        );
        self.subscriptions = Some(SubGauges {
            states,
            connected,
            seq,
            lag_events,
            lag_seconds,
            applied,
            rejected,
            runner,
        });
        self
    }

    /// Count one HTTP response.
    pub fn http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Count one operation run: `outcome` is `ok` or the error code.
    pub fn operation(&self, operation: &str, mutation: bool, outcome: &str, elapsed: Duration) {
        self.operations
            .get_or_create(&OpLabels {
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.operation_duration
            .get_or_create(&OpNameLabels {
                operation: operation.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        if outcome == "ok" {
            self.store_duration
                .get_or_create(&StoreLabels {
                    backend: self.backend.clone(),
                    kind: if mutation { "write" } else { "read" }.to_owned(),
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Count one authentication rejection.
    pub fn auth_rejected(&self, reason: &str) {
        self.auth_rejections
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        if let Some(g) = &self.subscriptions {
            let states: Vec<crate::federation::SubscriptionState> = g
                .states
                .lock()
                .map(|s| s.values().cloned().collect())
                .unwrap_or_default();
            let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            for s in states {
                let l = SubLabels {
                    subscription: s.name.clone(),
                    peer: s.peer.clone(),
                    channel: s.channel.clone(),
                };
                g.connected.get_or_create(&l).set(i64::from(s.connected));
                g.seq.get_or_create(&l).set(as_i64(s.seq));
                g.lag_events.get_or_create(&l).set(as_i64(s.lag_events));
                g.lag_seconds.get_or_create(&l).set(s.lag_seconds);
                g.applied.get_or_create(&l).set(as_i64(s.applied));
                g.rejected.get_or_create(&l).set(as_i64(s.rejected));
                g.runner.get_or_create(&l).set(i64::from(s.runner));
            }
        }
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
