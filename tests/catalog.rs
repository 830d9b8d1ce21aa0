//! End-to-end tests of the data catalog and query layer: the Glue database, the raw tables
//! with partition projection, the Athena views stored as Athena stores them, the crawler, the
//! workgroup and its named queries.

use base64::Engine as _;
use serde_json::Value;
use testkit::{Moto, infra, workspace_root};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const DATABASE: &str = "linkedin_ads_local";

fn apply(moto: &Moto) {
    let run = infra(
        BIN,
        Some(moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(run.code, 0, "apply failed: {}", run.all());
}

fn decode_view(text: &str) -> Value {
    let encoded = text
        .strip_prefix("/* Presto View: ")
        .and_then(|t| t.strip_suffix(" */"))
        .unwrap_or_else(|| panic!("{text}"));
    serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn database_raw_tables_and_views_then_drift_on_a_view() {
    let moto = Moto::start();
    apply(&moto);
    let glue = aws_sdk_glue::Client::new(&moto.sdk_config().await);

    for (table, prefix) in [
        ("raw_analytics", "ad_analytics"),
        ("raw_creatives", "creatives"),
    ] {
        let t = glue
            .get_table()
            .database_name(DATABASE)
            .name(table)
            .send()
            .await
            .unwrap();
        let t = t.table().unwrap();
        assert_eq!(t.table_type(), Some("EXTERNAL_TABLE"));
        let parameters = t.parameters().unwrap();
        assert_eq!(parameters["projection.enabled"], "true");
        assert_eq!(parameters["projection.dt.type"], "date");
        assert_eq!(parameters["projection.dt.format"], "yyyy-MM-dd");
        assert_eq!(
            parameters["storage.location.template"],
            format!("s3://linkedin-ads-local-data-123456789012/raw/linkedin/{prefix}/dt=${{dt}}/")
        );
        assert_eq!(t.partition_keys()[0].name(), "dt");
        let sd = t.storage_descriptor().unwrap();
        assert_eq!(
            sd.serde_info().and_then(|s| s.serialization_library()),
            Some("org.apache.hive.hcatalog.data.JsonSerDe")
        );
    }

    for table in ["daily_aggregates", "weekly_summaries"] {
        let t = glue
            .get_table()
            .database_name(DATABASE)
            .name(table)
            .send()
            .await
            .unwrap();
        let sd = t.table().unwrap().storage_descriptor().unwrap();
        assert_eq!(
            sd.serde_info().and_then(|s| s.serialization_library()),
            Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"),
            "{table}"
        );
        assert_eq!(
            sd.location(),
            Some(format!("s3://linkedin-ads-local-data-123456789012/processed/{table}/").as_str())
        );
    }

    for view in ["creative_performance", "daily_summary"] {
        let t = glue
            .get_table()
            .database_name(DATABASE)
            .name(view)
            .send()
            .await
            .unwrap();
        let t = t.table().unwrap();
        assert_eq!(t.table_type(), Some("VIRTUAL_VIEW"), "{view}");
        assert_eq!(t.view_expanded_text(), Some("/* Presto View */"));
        let definition = decode_view(t.view_original_text().unwrap());
        let file = infra_core::sql::load_dir(&workspace_root().join("assets/athena/views"))
            .unwrap()
            .into_iter()
            .find(|f| f.name == view)
            .unwrap();
        assert_eq!(
            definition["originalSql"],
            file.query(),
            "{view}: the stored query is the file's"
        );
        assert_eq!(definition["catalog"], "awsdatacatalog");
        assert_eq!(definition["schema"], DATABASE);
        let columns = t.storage_descriptor().unwrap().columns();
        assert_eq!(
            columns.len(),
            definition["columns"].as_array().unwrap().len()
        );
    }

    assert_eq!(
        infra(
            BIN,
            Some(&moto),
            &["plan", "--env", "local", "--detailed-exitcode"]
        )
        .code,
        0
    );

    // The crawler: raw prefixes, daily after collection, its own table prefix, schema changes
    // only logged, new folders only, under the crawler role.
    let crawler = glue
        .get_crawler()
        .name("linkedin-ads-local-raw")
        .send()
        .await
        .unwrap();
    let crawler = crawler.crawler().unwrap();
    assert_eq!(
        crawler.role(),
        Some("arn:aws:iam::123456789012:role/linkedin-ads-local-glue-crawler")
    );
    assert_eq!(crawler.database_name(), Some(DATABASE));
    assert_eq!(crawler.table_prefix(), Some("crawled_"));
    assert_eq!(
        crawler.schedule().and_then(|s| s.schedule_expression()),
        Some("cron(0 1 * * ? *)")
    );
    let policy = crawler.schema_change_policy().unwrap();
    assert_eq!(policy.update_behavior().map(|b| b.as_str()), Some("LOG"));
    assert_eq!(policy.delete_behavior().map(|b| b.as_str()), Some("LOG"));
    assert_eq!(
        crawler
            .recrawl_policy()
            .and_then(|p| p.recrawl_behavior())
            .map(|b| b.as_str()),
        Some("CRAWL_NEW_FOLDERS_ONLY")
    );
    let paths: Vec<&str> = crawler
        .targets()
        .unwrap()
        .s3_targets()
        .iter()
        .filter_map(|t| t.path())
        .collect();
    assert_eq!(
        paths,
        [
            "s3://linkedin-ads-local-data-123456789012/raw/linkedin/ad_analytics/",
            "s3://linkedin-ads-local-data-123456789012/raw/linkedin/creatives/"
        ]
    );

    // The workgroup: encrypted results under athena-results/, enforced, with the env's cutoff.
    let athena = aws_sdk_athena::Client::new(&moto.sdk_config().await);
    let group = athena
        .get_work_group()
        .work_group("linkedin-ads-local-analytics")
        .send()
        .await
        .unwrap();
    let config = group.work_group().unwrap().configuration().unwrap();
    let results = config.result_configuration().unwrap();
    assert_eq!(
        results.output_location(),
        Some("s3://linkedin-ads-local-data-123456789012/athena-results/")
    );
    assert_eq!(
        results
            .encryption_configuration()
            .unwrap()
            .encryption_option()
            .as_str(),
        "SSE_S3"
    );
    assert_eq!(config.enforce_work_group_configuration(), Some(true));
    assert_eq!(
        config.bytes_scanned_cutoff_per_query(),
        Some(10_737_418_240)
    );

    // The named queries, from assets/athena/queries, thresholds filled from the env file.
    let ids = athena
        .list_named_queries()
        .work_group("linkedin-ads-local-analytics")
        .send()
        .await
        .unwrap();
    let mut names = Vec::new();
    for id in ids.named_query_ids() {
        let q = athena
            .get_named_query()
            .named_query_id(id)
            .send()
            .await
            .unwrap();
        let q = q.named_query().unwrap();
        assert_eq!(q.database(), DATABASE);
        if q.name() == "creatives_below_ctr_threshold" {
            assert!(
                q.query_string().contains("ctr_7d < 0.004") && q.query_string().contains(">= 1000"),
                "{}",
                q.query_string()
            );
        }
        names.push(q.name().to_string());
    }
    names.sort();
    assert_eq!(
        names,
        [
            "creatives_below_ctr_threshold",
            "spend_by_campaign_by_day",
            "top_creatives_by_ctr_7d"
        ]
    );

    // A view changed out of band is drift, and apply puts the file's query back.
    let t = glue
        .get_table()
        .database_name(DATABASE)
        .name("daily_summary")
        .send()
        .await
        .unwrap();
    let t = t.table().unwrap();
    let mut definition = decode_view(t.view_original_text().unwrap());
    definition["originalSql"] = Value::String("SELECT 1 AS date".into());
    let text = format!(
        "/* Presto View: {} */",
        base64::engine::general_purpose::STANDARD.encode(definition.to_string())
    );
    let input = aws_sdk_glue::types::TableInput::builder()
        .name("daily_summary")
        .table_type("VIRTUAL_VIEW")
        .set_parameters(t.parameters().cloned())
        .set_storage_descriptor(t.storage_descriptor().cloned())
        .view_original_text(text)
        .view_expanded_text("/* Presto View */")
        .build()
        .unwrap();
    glue.update_table()
        .database_name(DATABASE)
        .table_input(input)
        .send()
        .await
        .unwrap();
    let drift = infra(BIN, Some(&moto), &["drift", "--env", "local"]);
    assert_eq!(drift.code, 2, "{}", drift.all());
    assert!(
        drift.stdout.contains("glue_table.daily_summary") && drift.stdout.contains("view.sql"),
        "{}",
        drift.all()
    );
    apply(&moto);
    assert_eq!(
        infra(BIN, Some(&moto), &["drift", "--env", "local"]).code,
        0
    );
}
