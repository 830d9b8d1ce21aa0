//! The collector against moto (Secrets Manager, S3, CloudWatch) and a fake LinkedIn API that
//! records the exact requests: a multi-account, multi-chunk pull, throttling retried and
//! given up on, 401, empty answers, and restated rows across runs.

use runtime::collector::CollectError;
use runtime::features::{RawAnalytics, latest_per_creative_day};
use runtime::linkedin::api::ApiError;
use serde_json::json;
use testkit::Moto;
use testkit::fake_http::{FakeServer, Reply};

mod common;
use common::*;

const ANALYTICS_CHUNK_1: &str = "q=analytics&pivot=CREATIVE&timeGranularity=DAILY\
    &dateRange=(start:(year:2026,month:1,day:2),end:(year:2026,month:1,day:4))\
    &accounts=List(urn%3Ali%3AsponsoredAccount%3A500000001,urn%3Ali%3AsponsoredAccount%3A500000002)\
    &fields=dateRange,pivotValues,impressions,clicks,costInLocalCurrency,costInUsd,externalWebsiteConversions,likes";

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_account_multi_chunk_pull_writes_merged_rows_and_resolved_creatives() {
    let moto = Moto::start();
    let sdk = setup(&moto).await;
    let api = FakeServer::start(vec![
        sample("creatives-page-1.json"),
        sample("post.json"),
        sample("image.json"),
        sample("creatives-page-2.json"),
        Reply::json(200, json!({"elements": [], "metadata": {}})),
        Reply::json(
            200,
            json!({"elements": [
                element("111", 2, json!({"impressions": 1000, "clicks": 10, "costInLocalCurrency": "20.5", "costInUsd": "20.5", "externalWebsiteConversions": 1, "likes": 3})),
                element("111", 3, json!({"impressions": 2000, "clicks": 30, "costInLocalCurrency": "40.25", "costInUsd": "40.25", "externalWebsiteConversions": 2, "likes": 0})),
                element("222", 3, json!({"impressions": 500, "clicks": 1, "costInLocalCurrency": "5", "costInUsd": "5", "externalWebsiteConversions": 0, "likes": 1})),
            ]}),
        ),
        Reply::json(
            200,
            json!({"elements": [
                element("111", 2, json!({"comments": 4, "shares": 5, "follows": 6, "totalEngagements": 20, "landingPageClicks": 9, "videoViews": 0})),
                element("111", 3, json!({"comments": 0, "shares": 1, "follows": 0, "totalEngagements": 31, "landingPageClicks": 28, "videoViews": 0})),
                element("222", 3, json!({"comments": 0, "shares": 0, "follows": 0, "totalEngagements": 1, "landingPageClicks": 1, "videoViews": 0})),
            ]}),
        ),
        Reply::json(
            200,
            json!({"elements": [
                element("111", 2, json!({"oneClickLeads": 2})),
                element("111", 3, json!({"oneClickLeads": 0})),
                element("222", 3, json!({"oneClickLeads": 0})),
            ]}),
        ),
    ]);
    let mut c = collector(&sdk, &api, &["500000001", "500000002"], jan_4);
    // 8 fields a request: the 13 metrics take three chunks.
    c.field_limit = 8;
    let summary = c.run().await.unwrap();

    let requests = api.requests();
    assert_eq!(requests.len(), 8, "{requests:#?}");
    for r in &requests {
        assert_eq!(r.method, "GET");
        assert_eq!(r.header("authorization"), Some("Bearer access-1"));
        assert_eq!(r.header("linkedin-version"), Some("202511"));
        assert_eq!(r.header("x-restli-protocol-version"), Some("2.0.0"));
    }
    let calls: Vec<(String, String)> = requests
        .iter()
        .map(|r| (r.path.clone(), r.query.clone()))
        .collect();
    let creatives_query = "q=criteria&pageSize=100".to_string();
    assert_eq!(
        calls[..5],
        [
            (
                "/rest/adAccounts/500000001/creatives".into(),
                creatives_query.clone()
            ),
            (
                "/rest/posts/urn%3Ali%3Ashare%3A7000000000000000001".into(),
                String::new()
            ),
            (
                "/rest/images/urn%3Ali%3Aimage%3AC4E10AQFakeImage1".into(),
                String::new()
            ),
            (
                "/rest/adAccounts/500000001/creatives".into(),
                format!("{creatives_query}&pageToken=cursor-2")
            ),
            (
                "/rest/adAccounts/500000002/creatives".into(),
                creatives_query
            ),
        ]
    );
    assert_eq!(
        calls[5],
        ("/rest/adAnalytics".into(), ANALYTICS_CHUNK_1.into())
    );
    assert!(calls[6].1.ends_with(
        "&fields=dateRange,pivotValues,comments,shares,follows,totalEngagements,landingPageClicks,videoViews"
    ));
    assert!(
        calls[7]
            .1
            .ends_with("&fields=dateRange,pivotValues,oneClickLeads")
    );

    // Rows merged from the three chunks, one file per day.
    let analytics = objects(&sdk, "raw/linkedin/ad_analytics/").await;
    let keys: Vec<&str> = analytics.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!(
                "raw/linkedin/ad_analytics/dt=2026-01-02/{}.ndjson",
                summary.run_id
            ),
            format!(
                "raw/linkedin/ad_analytics/dt=2026-01-03/{}.ndjson",
                summary.run_id
            ),
        ]
    );
    let day2 = lines(&analytics[0].1);
    assert_eq!(
        day2,
        [json!({
            "creative_id": "111", "account_id": "500000001", "campaign_id": "9001",
            "date": "2026-01-02", "impressions": 1000, "clicks": 10, "cost_local": 20.5,
            "cost_usd": 20.5, "conversions": 1, "likes": 3, "comments": 4, "shares": 5,
            "follows": 6, "total_engagements": 20, "landing_page_clicks": 9, "video_views": 0,
            "one_click_leads": 2, "run_id": summary.run_id,
        })]
    );
    assert_eq!(lines(&analytics[1].1).len(), 2);

    // Creatives with their content resolved.
    let creatives = objects(&sdk, "raw/linkedin/creatives/").await;
    assert_eq!(creatives.len(), 1);
    assert_eq!(
        creatives[0].0,
        format!(
            "raw/linkedin/creatives/dt=2026-01-04/{}.ndjson",
            summary.run_id
        )
    );
    let rows = lines(&creatives[0].1);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["creative_id"], "222");
    assert_eq!(rows[1]["headline"], "The 2026 B2B benchmark report");
    assert_eq!(
        rows[1]["image_url"],
        "https://media.licdn.com/dms/image/fake/benchmark.png"
    );
    assert_eq!(rows[2]["status"], "PAUSED");

    // Yesterday's totals are what the alarms watch.
    assert_eq!(summary.analytics_rows, 3);
    assert_eq!(
        (summary.daily_spend_usd, summary.impressions, summary.clicks),
        (45.25, 2500.0, 31.0)
    );
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let metrics = cw
        .list_metrics()
        .namespace("LinkedInAds")
        .send()
        .await
        .unwrap();
    let mut names: Vec<&str> = metrics
        .metrics()
        .iter()
        .filter(|m| {
            m.dimensions()
                .iter()
                .any(|d| d.name() == Some("Environment") && d.value() == Some("local"))
        })
        .filter_map(|m| m.metric_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["Clicks", "DailySpend", "Impressions", "RowsCollected"]
    );
}

fn one_account_script(analytics: Vec<Reply>) -> Vec<Reply> {
    let mut script = vec![sample("creatives-page-2.json")];
    script.extend(analytics);
    script
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_then_given_up_on_without_writing_anything() {
    let moto = Moto::start();
    let sdk = setup(&moto).await;
    let throttled = || Reply::json(429, json!({"message": "Resource level throttle limit"}));
    let api = FakeServer::start(one_account_script(vec![
        throttled(),
        Reply::json(
            200,
            json!({"elements": [element("333", 3, json!({"impressions": 7}))]}),
        ),
    ]));
    let summary = collector(&sdk, &api, &["500000001"], jan_4)
        .run()
        .await
        .unwrap();
    assert_eq!(summary.analytics_rows, 1);
    assert_eq!(api.requests().len(), 3);

    let moto = Moto::start();
    let sdk = setup(&moto).await;
    let api = FakeServer::start(one_account_script(vec![
        throttled(),
        throttled(),
        throttled(),
    ]));
    let err = collector(&sdk, &api, &["500000001"], jan_4)
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(err, CollectError::Api(ApiError::GaveUp { attempts: 3, .. })),
        "{err}"
    );
    assert!(err.to_string().contains("giving up"), "{err}");
    assert_eq!(api.requests().len(), 4);
    assert!(
        objects(&sdk, "raw/").await.is_empty(),
        "nothing half-written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_fails_at_once_and_empty_answers_write_no_rows() {
    let moto = Moto::start();
    let sdk = setup(&moto).await;
    let api = FakeServer::start(vec![Reply::json(
        401,
        json!({"status": 401, "serviceErrorCode": 65600, "message": "Invalid access token"}),
    )]);
    let err = collector(&sdk, &api, &["500000001"], jan_4)
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(err, CollectError::Api(ApiError::Unauthorized { .. })),
        "{err}"
    );
    assert_eq!(api.requests().len(), 1, "a 401 is never retried");
    assert!(!err.to_string().contains("access-1"));

    let api = FakeServer::start(one_account_script(vec![Reply::json(
        200,
        json!({"paging": {"count": 10, "start": 0}, "elements": []}),
    )]));
    let summary = collector(&sdk, &api, &["500000001"], jan_4)
        .run()
        .await
        .unwrap();
    assert_eq!(summary.analytics_rows, 0);
    assert!(objects(&sdk, "raw/linkedin/ad_analytics/").await.is_empty());
    assert_eq!(objects(&sdk, "raw/linkedin/creatives/").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn restated_rows_win_downstream_without_duplicates() {
    let moto = Moto::start();
    let sdk = setup(&moto).await;
    let run = |conversions: i64| {
        one_account_script(vec![Reply::json(
            200,
            json!({"elements": [element("333", 3, json!({"impressions": 100, "clicks": 4, "externalWebsiteConversions": conversions}))]}),
        )])
    };
    let first = FakeServer::start(run(1));
    collector(&sdk, &first, &["500000001"], jan_4)
        .run()
        .await
        .unwrap();
    // Later that day LinkedIn restates the day: two late conversions arrived.
    let second = FakeServer::start(run(3));
    let later = collector(&sdk, &second, &["500000001"], jan_4_later)
        .run()
        .await
        .unwrap();

    let files = objects(&sdk, "raw/linkedin/ad_analytics/dt=2026-01-03/").await;
    assert_eq!(files.len(), 2, "each run writes its own object");
    let rows: Vec<RawAnalytics> = files
        .iter()
        .flat_map(|(_, text)| lines(text))
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let kept = latest_per_creative_day(rows);
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].conversions, kept[0].run_id.as_str()),
        (3, later.run_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_too_long_for_a_url_goes_through_the_post_tunnel() {
    let moto = Moto::start();
    let sdk = setup(&moto).await;
    // 100 accounts make the analytics URL about 5,000 characters long.
    let accounts: Vec<String> = (0..100).map(|i| format!("5000001{i:02}")).collect();
    let accounts: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let mut script: Vec<Reply> = accounts
        .iter()
        .map(|_| Reply::json(200, json!({"elements": [], "metadata": {}})))
        .collect();
    script.push(Reply::json(
        200,
        json!({"elements": [element("333", 3, json!({"impressions": 7}))]}),
    ));
    let api = FakeServer::start(script);
    let summary = collector(&sdk, &api, &accounts, jan_4).run().await.unwrap();
    assert_eq!(summary.analytics_rows, 1);

    let requests = api.requests();
    let short = &requests[0];
    assert_eq!(short.method, "GET", "short URLs stay GETs");
    let tunnel = requests.last().unwrap();
    assert_eq!(tunnel.method, "POST");
    assert_eq!(tunnel.path, "/rest/adAnalytics");
    assert_eq!(tunnel.query, "");
    assert_eq!(tunnel.header("x-http-method-override"), Some("GET"));
    assert_eq!(
        tunnel.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(tunnel.header("linkedin-version"), Some("202511"));
    assert_eq!(tunnel.header("x-restli-protocol-version"), Some("2.0.0"));
    assert!(tunnel.body.len() > 4000, "{}", tunnel.body.len());
    assert!(
        tunnel
            .body
            .starts_with("q=analytics&pivot=CREATIVE&timeGranularity=DAILY&dateRange=(start:(year:2026,month:1,day:2),end:(year:2026,month:1,day:4))&accounts=List(urn%3Ali%3AsponsoredAccount%3A500000100,urn%3Ali%3AsponsoredAccount%3A500000101,"),
        "{}",
        &tunnel.body[..200]
    );
    assert!(tunnel.body.contains(
        "urn%3Ali%3AsponsoredAccount%3A500000199)&fields=dateRange,pivotValues,impressions,"
    ));
}
