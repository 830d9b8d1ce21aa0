//! The processor against moto: raw data written by the real collector (from a fake LinkedIn
//! API serving the sample creatives) and raw partitions written by hand become Parquet that
//! is read back and checked against hand-computed numbers: latest run wins, the ratios, the
//! content of a text ad and of a sponsored post with an image, and ISO weeks across a year.

use chrono::{DateTime, TimeZone, Utc};
use runtime::columnar::read_json;
use runtime::processor::{ProcessSummary, Processor, ProcessorConfig};
use serde_json::{Value, json};
use testkit::Moto;
use testkit::fake_http::{FakeServer, Reply};

mod common;
use common::*;

fn processor(sdk: &aws_types::SdkConfig, clock: fn() -> DateTime<Utc>, days: u32) -> Processor {
    Processor {
        config: ProcessorConfig {
            bucket: BUCKET.into(),
            namespace: "LinkedInAds".into(),
            environment: "local".into(),
            lookback_days: days,
        },
        s3: s3(sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        clock,
    }
}

async fn get(sdk: &aws_types::SdkConfig, key: &str) -> Vec<u8> {
    s3(sdk)
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

async fn parquet(sdk: &aws_types::SdkConfig, key: &str) -> Vec<Value> {
    read_json(get(sdk, key).await).unwrap()
}

async fn put(sdk: &aws_types::SdkConfig, key: &str, body: &str) {
    s3(sdk)
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
}

fn by_creative<'a>(rows: &'a [Value], creative: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["creative_id"] == creative)
        .unwrap_or_else(|| panic!("no row for {creative} in {rows:?}"))
}

/// One collection run over Jan 2 to 4 of the sample account, with these analytics answers.
fn collection(analytics: Value) -> FakeServer {
    FakeServer::start(vec![
        sample("creatives-page-1.json"),
        sample("post.json"),
        sample("image.json"),
        sample("creatives-page-2.json"),
        Reply::json(200, analytics),
    ])
}

fn jan_4_evening() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 4, 18, 0, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn collected_data_becomes_parquet_with_ratios_and_creative_content() {
    let moto = Moto::start();
    let sdk = setup(&moto).await;
    let first = collection(json!({"elements": [
        element("111", 2, json!({"impressions": 1000, "clicks": 10, "costInUsd": "20.5", "externalWebsiteConversions": 1})),
        element("111", 3, json!({"impressions": 2000, "clicks": 30, "costInUsd": "45", "externalWebsiteConversions": 2})),
        element("222", 3, json!({"impressions": 4000, "clicks": 20, "costInUsd": "50", "externalWebsiteConversions": 0})),
        element("333", 3, json!({"impressions": 0, "clicks": 0, "costInUsd": "0"})),
    ]}));
    collector(&sdk, &first, &["500000001"], jan_4)
        .run()
        .await
        .unwrap();
    // Later that day LinkedIn restates Jan 3 for 111: four late conversions.
    let second = collection(json!({"elements": [
        element("111", 2, json!({"impressions": 1000, "clicks": 10, "costInUsd": "20.5", "externalWebsiteConversions": 1})),
        element("111", 3, json!({"impressions": 2000, "clicks": 30, "costInUsd": "45", "externalWebsiteConversions": 6})),
    ]}));
    let later = collector(&sdk, &second, &["500000001"], jan_4_later)
        .run()
        .await
        .unwrap();

    let summary = processor(&sdk, jan_4_evening, 3).run().await.unwrap();
    assert_eq!(summary.days, 2, "{summary:?}");
    assert_eq!((summary.rows_read, summary.rows_kept), (6, 4));
    assert_eq!(summary.creatives, 3);
    assert_eq!(summary.weeks, ["2026-W01"]);

    let jan_3 = parquet(
        &sdk,
        "processed/daily_aggregates/dt=2026-01-03/part-0.parquet",
    )
    .await;
    assert_eq!(jan_3.len(), 3);
    // The restated row wins; 30 clicks on 2000 impressions for 45 USD with 6 conversions.
    let text_ad = by_creative(&jan_3, "111");
    assert_eq!(text_ad["run_id"], later.run_id.as_str());
    assert_eq!(text_ad["date"], "2026-01-03");
    assert_eq!(text_ad["campaign_id"], "9001");
    assert_eq!(text_ad["conversions"], 6);
    assert_eq!(text_ad["ctr"], 0.015);
    assert_eq!(text_ad["cpc_usd"], 1.5);
    assert_eq!(text_ad["cpm_usd"], 22.5);
    assert_eq!(text_ad["conversion_rate"], 0.2);
    // The text ad's content and its features.
    assert_eq!(text_ad["headline"], "Ship ads 2x faster");
    assert_eq!(text_ad["description"], "Free guide for B2B marketers");
    assert_eq!(text_ad["call_to_action"], "LEARN_MORE");
    assert_eq!(
        (
            text_ad["headline_words"].as_i64(),
            text_ad["description_words"].as_i64()
        ),
        (Some(4), Some(5))
    );
    assert_eq!(text_ad["headline_length"], 18);
    assert_eq!(
        (&text_ad["has_number"], &text_ad["has_question"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(
        (
            &text_ad["kw_free"],
            &text_ad["kw_guide"],
            &text_ad["kw_webinar"]
        ),
        (&json!(true), &json!(true), &json!(false))
    );

    // The sponsored post: its title, commentary, call to action, landing page and image.
    let post = by_creative(&jan_3, "222");
    assert_eq!(post["ctr"], 0.005);
    assert_eq!(post["cpc_usd"], 2.5);
    assert_eq!(post["cpm_usd"], 12.5);
    assert_eq!(post["conversion_rate"], 0.0);
    assert_eq!(post["headline"], "The 2026 B2B benchmark report");
    assert_eq!(
        post["description"],
        "Is your funnel leaking? 1,200 B2B teams told us where their budget goes."
    );
    assert_eq!(post["call_to_action"], "DOWNLOAD");
    assert_eq!(post["landing_page"], "https://example.com/benchmark");
    assert_eq!(
        post["image_url"],
        "https://media.licdn.com/dms/image/fake/benchmark.png"
    );
    assert_eq!(
        (
            post["headline_words"].as_i64(),
            post["description_words"].as_i64()
        ),
        (Some(5), Some(13))
    );
    assert_eq!(
        (&post["has_number"], &post["has_question"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(
        (&post["kw_report"], &post["kw_you"]),
        (&json!(true), &json!(false))
    );

    // No impressions, no clicks: the ratios are null, not zero or NaN.
    let idle = by_creative(&jan_3, "333");
    assert_eq!(idle["status"], "PAUSED");
    for ratio in ["ctr", "cpc_usd", "cpm_usd", "conversion_rate"] {
        assert_eq!(idle[ratio], Value::Null, "{ratio}");
    }

    // The week sums Jan 2 and the restated Jan 3.
    let week = parquet(&sdk, "processed/weekly_summaries/2026-W01.parquet").await;
    let w = by_creative(&week, "111");
    assert_eq!(w["days"], 2);
    assert_eq!(
        (
            w["impressions"].as_i64(),
            w["clicks"].as_i64(),
            w["conversions"].as_i64()
        ),
        (Some(3000), Some(40), Some(7))
    );
    assert_eq!(w["spend_usd"], 65.5);
    assert_eq!(w["ctr"], 40.0 / 3000.0);
    assert_eq!(w["cpc_usd"], 1.6375);
    assert_eq!(w["conversion_rate"], 0.175);

    let metadata: Value =
        serde_json::from_slice(&get(&sdk, "processed/creative_metadata/all_creatives.json").await)
            .unwrap();
    let ids: Vec<&str> = metadata
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["creative_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["111", "222", "333"]);
    assert_eq!(
        metadata[1]["image_url"],
        "https://media.licdn.com/dms/image/fake/benchmark.png"
    );
    assert_eq!(metadata[1]["features"]["call_to_action"], "DOWNLOAD");
    assert_eq!(metadata[1]["run_id"], later.run_id.as_str());
}

fn raw(creative: &str, date: &str, run: &str, impressions: i64, clicks: i64) -> String {
    json!({
        "creative_id": creative, "account_id": "500000001", "campaign_id": "9001",
        "date": date, "impressions": impressions, "clicks": clicks, "cost_usd": 10.0,
        "conversions": 1, "run_id": run,
    })
    .to_string()
}

fn jan_5() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 6, 0, 0).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn iso_weeks_split_at_monday_across_the_year_and_reruns_change_nothing() {
    let moto = Moto::start();
    let sdk = setup(&moto).await;
    // Sunday 2025-12-28 closes 2025-W52; Monday 2025-12-29 opens 2026-W01.
    let early = "20251229T060000Z-aaaaaaaa";
    let late = "20251230T060000Z-bbbbbbbb";
    put(
        &sdk,
        &format!("raw/linkedin/ad_analytics/dt=2025-12-28/{early}.ndjson"),
        &format!("{}\n", raw("111", "2025-12-28", early, 100, 1)),
    )
    .await;
    put(
        &sdk,
        &format!("raw/linkedin/ad_analytics/dt=2025-12-29/{early}.ndjson"),
        &format!(
            "{}\n{}\nnot json\n",
            raw("111", "2025-12-29", early, 200, 2),
            raw("999", "2025-12-29", early, 50, 5)
        ),
    )
    .await;
    put(
        &sdk,
        &format!("raw/linkedin/ad_analytics/dt=2025-12-29/{late}.ndjson"),
        &format!("{}\n", raw("111", "2025-12-29", late, 300, 3)),
    )
    .await;
    put(
        &sdk,
        &format!("raw/linkedin/ad_analytics/dt=2026-01-04/{late}.ndjson"),
        &format!("{}\n", raw("111", "2026-01-04", late, 400, 4)),
    )
    .await;

    // Nine days back from Monday Jan 5 is Sunday Dec 28, whose week starts Monday Dec 22.
    let summary: ProcessSummary = processor(&sdk, jan_5, 9).run().await.unwrap();
    assert_eq!(summary.window.0.to_string(), "2025-12-22");
    assert_eq!(summary.weeks, ["2025-W52", "2026-W01"]);
    assert_eq!(
        (summary.days, summary.rows_kept, summary.malformed_rows),
        (3, 4, 1)
    );

    let w52 = parquet(&sdk, "processed/weekly_summaries/2025-W52.parquet").await;
    assert_eq!(w52.len(), 1);
    assert_eq!(
        (w52[0]["days"].as_i64(), w52[0]["impressions"].as_i64()),
        (Some(1), Some(100))
    );
    let w01 = parquet(&sdk, "processed/weekly_summaries/2026-W01.parquet").await;
    let w = by_creative(&w01, "111");
    // The later run's Dec 29 (300) plus Jan 4 (400); the earlier run's 200 is replaced.
    assert_eq!(
        (
            w["days"].as_i64(),
            w["impressions"].as_i64(),
            w["clicks"].as_i64()
        ),
        (Some(2), Some(700), Some(7))
    );
    assert_eq!(w["spend_usd"], 20.0);

    let dec_29 = parquet(
        &sdk,
        "processed/daily_aggregates/dt=2025-12-29/part-0.parquet",
    )
    .await;
    assert_eq!(by_creative(&dec_29, "111")["impressions"], 300);
    // A creative the collector never described: numbers, but no content.
    let unknown = by_creative(&dec_29, "999");
    assert_eq!(unknown["ctr"], 0.1);
    assert_eq!(
        (&unknown["headline"], &unknown["has_number"]),
        (&Value::Null, &Value::Null)
    );

    let before = get(
        &sdk,
        "processed/daily_aggregates/dt=2025-12-29/part-0.parquet",
    )
    .await;
    let again = processor(&sdk, jan_5, 9).run().await.unwrap();
    assert_eq!(again, summary);
    assert_eq!(
        get(
            &sdk,
            "processed/daily_aggregates/dt=2025-12-29/part-0.parquet"
        )
        .await,
        before
    );
    let metrics = aws_sdk_cloudwatch::Client::new(&sdk)
        .list_metrics()
        .namespace("LinkedInAds")
        .metric_name("RowsProcessed")
        .send()
        .await
        .unwrap();
    let dimensions = metrics.metrics()[0].dimensions();
    assert_eq!(
        (dimensions[0].name(), dimensions[0].value()),
        (Some("Environment"), Some("local"))
    );
}
