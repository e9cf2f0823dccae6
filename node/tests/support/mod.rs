//! Test support shared by the node's integration tests: a fresh store on either backend.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: the server named by
//! `BVER_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), with a fresh
//! schema per test selected through `search_path`, dropped when the test ends. Set
//! `BVER_TEST_POSTGRES=skip` to skip the PostgreSQL variants deliberately; otherwise an
//! unreachable server fails the test with a message saying so.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use bver_node::store::{Store, StoreOptions};

/// The PostgreSQL server the tests use.
pub fn postgres_base_url() -> String {
    std::env::var("BVER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Whether the PostgreSQL variants are deliberately skipped.
pub fn postgres_skipped() -> bool {
    std::env::var("BVER_TEST_POSTGRES").is_ok_and(|v| v == "skip")
}

/// A fresh, empty database of one backend; cleaned up on drop.
pub enum Db {
    /// An SQLite file in a temporary directory.
    Sqlite { dir: tempfile::TempDir },
    /// A fresh schema on the test PostgreSQL server.
    Postgres { url: String, schema: String },
}

impl Db {
    /// A new SQLite database.
    pub fn sqlite() -> Self {
        Self::Sqlite {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A new PostgreSQL schema, or `None` when PostgreSQL tests are skipped.
    pub async fn postgres() -> Option<Self> {
        if postgres_skipped() {
            eprintln!("BVER_TEST_POSTGRES=skip: skipping a PostgreSQL test");
            return None;
        }
        let base = postgres_base_url();
        let schema = format!("bver_t_{:016x}", rand::random::<u64>());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {base} does not answer ({e}). Start one, point \
                     BVER_TEST_POSTGRES_URL at one, or set BVER_TEST_POSTGRES=skip"
                )
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create the test schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        Some(Self::Postgres { url, schema })
    }

    /// Open a store on this database (each call is a separate store: its own pool, its own
    /// writer, as a separate process would have).
    pub async fn open(&self) -> Store {
        self.open_with(StoreOptions::default()).await
    }

    /// Open with options.
    pub async fn open_with(&self, options: StoreOptions) -> Store {
        match self {
            Self::Sqlite { dir } => Store::open_sqlite(&dir.path().join("bver.db"), options)
                .await
                .expect("open SQLite store"),
            Self::Postgres { url, .. } => Store::open_postgres(url, options)
                .await
                .expect("open PostgreSQL store"),
        }
    }

    /// Arguments that point `bver debug ...` (or `bver serve`) at this database.
    pub fn cli_args(&self) -> Vec<String> {
        match self {
            Self::Sqlite { dir } => vec!["--data".into(), dir.path().display().to_string()],
            Self::Postgres { url, .. } => vec!["--postgres".into(), url.clone()],
        }
    }

    /// Run `sql` (one or more statements) on this database from a connection of its own, as
    /// an operator's tool would: for tests that change the database under a store.
    pub async fn execute(&self, sql: &str) {
        match self {
            Self::Sqlite { dir } => {
                let url = format!("sqlite://{}", dir.path().join("bver.db").display());
                run_sql::<sqlx::SqliteConnection>(&url, sql).await;
            }
            Self::Postgres { url, .. } => run_sql::<sqlx::PgConnection>(url, sql).await,
        }
    }

    /// Whether this is the SQLite backend.
    pub fn is_sqlite(&self) -> bool {
        matches!(self, Self::Sqlite { .. })
    }

    /// The SQLite file, for tests that inspect it directly.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match self {
            Self::Sqlite { dir } => Some(dir.path().join("bver.db")),
            Self::Postgres { .. } => None,
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Self::Postgres { schema, .. } = self {
            let schema = schema.clone();
            let base = postgres_base_url();
            // Drop runs inside a test's runtime: clean up from a thread with its own runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(mut conn) =
                        <sqlx::PgConnection as sqlx::Connection>::connect(&base).await
                    {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .execute(&mut conn)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Define each test once and run it on SQLite and on PostgreSQL:
/// `both_backends! { async fn name(db) { ... } }` makes `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! both_backends {
    ($(async fn $name:ident($db:ident) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let $db = support::Db::sqlite();
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some($db) = support::Db::postgres().await else { return };
                    $body
                }
            )*
        }
    };
}

/// Run `sql` on a new connection of type `C` to `url`.
async fn run_sql<C>(url: &str, sql: &str)
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut conn = C::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("run {sql}: {e}"));
}
