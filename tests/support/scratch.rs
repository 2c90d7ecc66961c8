//! Throwaway PostgreSQL databases, one per test or benchmark run, dropped afterwards.
//!
//! Test support, shared with the benchmarks (`benches/gateway`): the product never creates
//! or drops databases.

use rand::Rng;
use sqlx::Connection;

/// Creates a uniquely named database on the server of `base_url` and returns its URL and name.
pub async fn create_postgres_database(
    base_url: &str,
    prefix: &str,
) -> Result<(String, String), sqlx::Error> {
    let name = format!("{prefix}_{:016x}", rand::thread_rng().gen::<u64>());
    let mut admin = sqlx::PgConnection::connect(base_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok((with_database(base_url, &name), name))
}

/// Drops a database made by [`create_postgres_database`], closing any connections left to it.
pub async fn drop_postgres_database(base_url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = sqlx::PgConnection::connect(base_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

/// `base_url` with its database path replaced by `name` (query string kept).
pub fn with_database(base_url: &str, name: &str) -> String {
    let (head, query) = match base_url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base_url, None),
    };
    let authority_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match head[authority_end..].find('/') {
        Some(slash) => &head[..authority_end + slash],
        None => head,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// [`with_database`] keeps the server and the query string. A trial of the cluster test
/// binary runs it: these harness-less targets compile without `cfg(test)`.
pub fn database_is_swapped_in_the_url() {
    assert_eq!(
        with_database("postgres://u@h:5432/test", "x"),
        "postgres://u@h:5432/x"
    );
    assert_eq!(
        with_database("postgres://u@h/test?sslmode=disable", "x"),
        "postgres://u@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}
