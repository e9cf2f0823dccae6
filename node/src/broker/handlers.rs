//! The handler registry: in-process Rust functions that run the operations figments declare.
//!
//! A figment operation (`[figment.operations.locate]`, `handler = "geo.locate"`) becomes
//! `refs.{repo}.locate` on every reference type that includes the figment. The broker runs
//! it like any other operation (lookup, input schema, scopes, mutation gate) and then calls
//! the handler registered under its `handler` name with a [`HandlerCall`]. The handler's
//! answer is checked against the operation's output schema before it is returned.
//!
//! Handlers are registered by name before the broker is built ([`Handlers::register`],
//! [`Broker::with_handlers`](super::Broker::with_handlers)); building a broker for a domain
//! whose operations name a handler that is not registered fails then, never at request time.
//! [`Handlers::builtin`] holds the handlers BVER ships (`geo.locate`).
//!
//! A handler reaches data only through the broker handle it is given (`call.broker`), with
//! the caller's principal: it cannot read what the caller may not read, and the handle of a
//! query (`mutation = false`) is read-only.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use bver_auth::Principal;
use bver_contracts::{BverError, ErrorCode, Phase};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::{Broker, Call};

/// What a handler is called with.
#[derive(Debug, Clone)]
pub struct HandlerCall {
    /// The operation (`refs.site.locate`).
    pub operation: String,
    /// The repo it was called on (`site`).
    pub repo: String,
    /// The repo's namespace (`sites`).
    pub namespace: String,
    /// The input, already valid against the operation's input schema.
    pub input: Value,
    /// Who called.
    pub principal: Principal,
    /// The caller's request id.
    pub request_id: String,
    /// A broker handle to read (or, for a mutating operation, write) through; read-only for
    /// queries.
    pub broker: Broker,
}

impl HandlerCall {
    /// Run another operation as the caller, through the broker (every check applies).
    pub async fn invoke(&self, operation: &str, input: Value) -> Result<Value, BverError> {
        self.broker
            .invoke(
                &self.principal,
                Call::new(operation, input).request_id(self.request_id.clone()),
            )
            .await
    }
}

/// A registered handler.
pub type Handler =
    Arc<dyn Fn(HandlerCall) -> BoxFuture<'static, Result<Value, BverError>> + Send + Sync>;

/// Handlers by name.
#[derive(Clone, Default)]
pub struct Handlers {
    map: BTreeMap<String, Handler>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Handlers {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handlers BVER ships: `geo.locate`.
    pub fn builtin() -> Self {
        let mut h = Self::new();
        h.register("geo.locate", geo_locate);
        h
    }

    /// Register `f` under `name` (replacing any handler of that name).
    pub fn register<F, Fut>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(HandlerCall) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, BverError>> + Send + 'static,
    {
        self.map
            .insert(name.into(), Arc::new(move |call| Box::pin(f(call))));
        self
    }

    /// The handler named `name`.
    pub fn get(&self, name: &str) -> Option<&Handler> {
        self.map.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

/// `geo.locate`: where a reference is (its `location`, from the `geo` figment) and, given
/// `from: {lat, lon}`, how far away it is along the great circle (haversine, mean Earth
/// radius 6371.0088 km).
///
/// Input: `{id, from?}`. Output: `{pointer, location, distance_km?}` (`location` is `null`
/// when the reference has none).
async fn geo_locate(call: HandlerCall) -> Result<Value, BverError> {
    let id = call.input.get("id").cloned().unwrap_or(Value::Null);
    let reference = call
        .invoke(&format!("refs.{}.get", call.repo), json!({ "id": id }))
        .await?;
    let location = reference
        .get("value")
        .and_then(|v| v.get("location"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = json!({ "pointer": reference["pointer"], "location": location });
    if let Some(from) = call.input.get("from") {
        let coords = |v: &Value| Some((v.get("lat")?.as_f64()?, v.get("lon")?.as_f64()?));
        let (Some(a), Some(b)) = (coords(from), coords(&location)) else {
            return Err(BverError::new(
                ErrorCode::NotFound,
                Phase::Execution,
                format!("{} has no location", reference["pointer"]),
            )
            .with_details(json!({ "missing": "location" })));
        };
        out["distance_km"] = json!(haversine_km(a, b));
    }
    Ok(out)
}

/// Great-circle distance in km between two (lat, lon) in degrees.
fn haversine_km((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0088 * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_london_to_paris() {
        let d = haversine_km((51.5074, -0.1278), (48.8566, 2.3522));
        assert!((d - 343.5).abs() < 1.0, "{d}");
    }
}
