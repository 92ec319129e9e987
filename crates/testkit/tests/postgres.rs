//! The shared test cluster hands out separate, working databases.

use countersign_testkit::TestPostgres;
use sqlx::{Connection as _, PgConnection};

#[tokio::test]
async fn fresh_databases_are_distinct_and_usable() -> anyhow::Result<()> {
    let postgres = TestPostgres::shared().await?;
    let first = postgres.fresh_database().await?;
    let second = postgres.fresh_database().await?;
    assert_ne!(first, second);
    assert!(first.starts_with(&format!(
        "postgres://postgres@127.0.0.1:{}/db_",
        postgres.port()
    )));

    for url in [&first, &second] {
        let mut conn = PgConnection::connect(url).await?;
        let one: i32 = sqlx::query_scalar("select 1").fetch_one(&mut conn).await?;
        assert_eq!(one, 1);
        conn.close().await?;
    }
    Ok(())
}
