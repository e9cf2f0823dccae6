//! Leases: work that one process of a platform does at a time (today: running the EAGER
//! subscriptions, `federation::lease`), held through a row of `bver_leases`.
//!
//! A lease has a name, a holder (a process's id, new at every start), an expiry and a
//! **generation**: a fencing token that grows by one each time the lease changes hands. The
//! holder renews it well before it expires; any other process takes it over once it has
//! expired (its holder was killed, hung or cut off from the database) and gets the next
//! generation. Take-over and renewal are one conditional upsert, so two processes never both
//! hold a lease: on PostgreSQL the second upsert waits for the first one's row lock and then
//! re-checks the condition against the committed row; on SQLite transactions are exclusive.
//!
//! Times are the **database's** clock (PostgreSQL `clock_timestamp()`, SQLite's `now`), so
//! processes on machines with skewed clocks agree on when a lease expires.

use std::time::Duration;

use sqlx::Row;

use super::sql::u64_of;
use super::{Backend, Store, store_err};
use bver_contracts::BverError;

/// The state of a lease, as the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Its name.
    pub name: String,
    /// Who holds (or last held) it.
    pub holder: String,
    /// The fencing token: grows by one each time the lease changes hands.
    pub generation: u64,
    /// Whether the caller holds it (after [`Store::lease_acquire`]).
    pub held: bool,
    /// How long until it expires, by the database's clock (negative: expired).
    pub expires_in_ms: i64,
}

/// Unix milliseconds by the database's clock.
fn now_sql(backend: &Backend) -> &'static str {
    match backend {
        Backend::Postgres { .. } => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Backend::Sqlite { .. } => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

impl Store {
    /// Take lease `name` for `holder` for `ttl`, or renew it if `holder` holds it. Taking it
    /// succeeds when nobody holds it or its holder let it expire; the generation then grows
    /// by one (a holder that renews keeps its generation). Returns the lease as it is now:
    /// `held` says whether `holder` has it; otherwise `holder` names who does.
    pub async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, BverError> {
        let now = now_sql(&self.inner.backend);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let upsert = format!(
            "INSERT INTO bver_leases (name, holder, generation, acquired_at, renewed_at, expires_at) \
             VALUES ($1, $2, 1, {now}, {now}, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET \
             generation = CASE WHEN bver_leases.holder = excluded.holder \
                 THEN bver_leases.generation ELSE bver_leases.generation + 1 END, \
             acquired_at = CASE WHEN bver_leases.holder = excluded.holder \
                 THEN bver_leases.acquired_at ELSE excluded.acquired_at END, \
             holder = excluded.holder, renewed_at = excluded.renewed_at, \
             expires_at = excluded.expires_at \
             WHERE bver_leases.holder = excluded.holder \
                OR bver_leases.expires_at <= excluded.renewed_at \
             RETURNING generation, expires_at - renewed_at"
        );
        macro_rules! run {
            ($conn:expr) => {
                sqlx::query(sqlx::AssertSqlSafe(upsert))
                    .bind(name)
                    .bind(holder)
                    .bind(ttl_ms)
                    .fetch_optional($conn)
                    .await
                    .and_then(|r| {
                        r.map(|r| {
                            Ok::<_, sqlx::Error>((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?))
                        })
                        .transpose()
                    })
            };
        }
        let taken = match &self.inner.backend {
            Backend::Sqlite { write, .. } => run!(write),
            Backend::Postgres { pool } => run!(pool),
        }
        .map_err(store_err)?;
        self.inner.backend.durable().await.map_err(store_err)?;
        if let Some((generation, expires_in_ms)) = taken {
            return Ok(Lease {
                name: name.to_owned(),
                holder: holder.to_owned(),
                generation: u64_of(generation),
                held: true,
                expires_in_ms,
            });
        }
        // Someone else holds it: say who.
        Ok(self.lease(name).await?.unwrap_or(Lease {
            name: name.to_owned(),
            holder: String::new(),
            generation: 0,
            held: false,
            expires_in_ms: 0,
        }))
    }

    /// Give lease `name` up if `holder` holds it (it expires now, so a waiting process takes
    /// it over at its next attempt). Returns whether `holder` held it.
    pub async fn lease_release(&self, name: &str, holder: &str) -> Result<bool, BverError> {
        let now = now_sql(&self.inner.backend);
        let text = format!(
            "UPDATE bver_leases SET expires_at = {now} - 1 WHERE name = $1 AND holder = $2 \
             AND expires_at > {now}"
        );
        macro_rules! run {
            ($conn:expr) => {
                sqlx::query(sqlx::AssertSqlSafe(text))
                    .bind(name)
                    .bind(holder)
                    .execute($conn)
                    .await
                    .map(|r| r.rows_affected() > 0)
            };
        }
        let released = match &self.inner.backend {
            Backend::Sqlite { write, .. } => run!(write),
            Backend::Postgres { pool } => run!(pool),
        }
        .map_err(store_err)?;
        self.inner.backend.durable().await.map_err(store_err)?;
        Ok(released)
    }

    /// Lease `name` as the database has it (`held` is always false: this is an observer's
    /// view), or `None` if nobody ever took it.
    pub async fn lease(&self, name: &str) -> Result<Option<Lease>, BverError> {
        let now = now_sql(&self.inner.backend);
        let text = format!(
            "SELECT holder, generation, expires_at - {now} FROM bver_leases WHERE name = $1"
        );
        with_reader!(&self.inner.backend, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(text))
                .bind(name)
                .fetch_optional(conn)
                .await
                .and_then(|r| {
                    r.map(|r| {
                        Ok::<_, sqlx::Error>(Lease {
                            name: name.to_owned(),
                            holder: r.try_get(0)?,
                            generation: u64_of(r.try_get(1)?),
                            held: false,
                            expires_in_ms: r.try_get(2)?,
                        })
                    })
                    .transpose()
                })
        })
        .map_err(store_err)
    }
}
