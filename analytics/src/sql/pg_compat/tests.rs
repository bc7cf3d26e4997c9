use datafusion::execution::runtime_env::RuntimeEnv;

use super::rewrite::NEVER_HELD;
use super::*;
use crate::sql::{SqlLimits, session};

#[tokio::test]
async fn a_session_and_its_tables_are_freed_when_it_ends() {
    let ctx = session(Arc::new(RuntimeEnv::default()), &SqlLimits::default()).unwrap();
    let rows: Arc<dyn TableProvider> = Arc::new(
        MemTable::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, true)])),
            vec![vec![]],
        )
        .unwrap(),
    );
    ctx.register_table("t", rows.clone()).unwrap();
    // pg_catalog sees the session's tables while it lives ...
    assert_eq!(
        one(
            &ctx,
            "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 't'"
        )
        .await,
        "1"
    );
    let list = Arc::downgrade(ctx.state().catalog_list());
    drop(ctx);
    // ... and holds nothing of it after: no cycle through its catalog list.
    assert!(
        list.upgrade().is_none(),
        "the session's catalog list outlived it"
    );
    assert_eq!(
        Arc::strong_count(&rows),
        1,
        "the session's tables outlived it"
    );
}

fn rewritten(sql: &str) -> String {
    let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .unwrap()
        .remove(0);
    rewrite(&mut s);
    s.to_string()
}

async fn one(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
}

#[test]
fn catalog_queries_are_rewritten_into_what_datafusion_plans() {
    assert_eq!(
        rewritten(
            "SELECT unnest(i.indkey), generate_subscripts(i.indkey, $1) FROM pg_catalog.pg_index i"
        ),
        "SELECT unnest(i.indkey), unnest(generate_series(1, cardinality(i.indkey))) FROM pg_catalog.pg_index i"
    );
    assert_eq!(
        rewritten(
            "SELECT CASE WHEN a.atthasdef THEN (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) END FROM pg_catalog.pg_attribute a"
        ),
        "SELECT CASE WHEN a.atthasdef THEN NULL END FROM pg_catalog.pg_attribute a"
    );
    assert_eq!(
        rewritten(
            "SELECT (SELECT d.description FROM pg_catalog.pg_description d WHERE d.objoid = c.oid) FROM pg_catalog.pg_class c"
        ),
        "SELECT (SELECT max(d.description) FROM pg_catalog.pg_description d WHERE d.objoid = c.oid) FROM pg_catalog.pg_class c"
    );
    // An analyst's own subqueries over the lake are left as they are.
    let own = "SELECT (SELECT s.minutes FROM service_records AS s WHERE s.unit_id = u.unit_id) FROM units AS u";
    assert_eq!(rewritten(own), own);
}

#[tokio::test]
async fn never_held_catalog_tables_are_empty_and_functions_answer_as_postgres() {
    let ctx = session(Arc::new(RuntimeEnv::default()), &SqlLimits::default()).unwrap();
    for table in NEVER_HELD {
        let n = one(&ctx, &format!("SELECT count(*) FROM pg_catalog.{table}")).await;
        assert_eq!(n, "0", "{table} is answered as empty, so it must be");
    }
    assert_eq!(
        one(
            &ctx,
            "SELECT json_build_object('a', 1, 'b', 'x', 'c', NULL, 'd', true)"
        )
        .await,
        r#"{"a":1,"b":"x","c":null,"d":true}"#
    );
    assert_eq!(
        one(
            &ctx,
            "SELECT current_setting('default_table_access_method')"
        )
        .await,
        "heap"
    );
    let unknown = ctx
        .sql("SELECT current_setting('work_mem_of_the_moon')")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(
        unknown
            .to_string()
            .contains("unrecognized configuration parameter"),
        "{unknown}"
    );
    assert!(
        one(&ctx, "SELECT version()")
            .await
            .starts_with("PostgreSQL 16.6 (wenming")
    );
}
