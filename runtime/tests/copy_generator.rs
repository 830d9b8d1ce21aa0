//! The copy generator against moto (processed data written by the real processor, the
//! Anthropic key in Secrets Manager) and a fake Anthropic API that records each request:
//! success with one over-long variant, 429 with retry-after, 529, 400 and 401.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use runtime::copy_generator::{CopyConfig, CopyError, CopyGenerator};
use runtime::processor::{Processor, ProcessorConfig};
use runtime::retry::Backoff;
use serde_json::{Value, json};
use testkit::Moto;
use testkit::fake_http::{FakeServer, Reply};

mod common;
use common::*;

const KEY_SECRET: &str = "linkedin-ads-local-anthropic-api-key";
const API_KEY: &str = "sk-ant-test-0123456789";
const MODEL: &str = "claude-sonnet-4-5";

fn jan_5() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 6, 0, 0).unwrap()
}

fn analytics(creative: &str, campaign: &str, impressions: i64, clicks: i64) -> String {
    json!({
        "creative_id": creative, "account_id": "500000001", "campaign_id": campaign,
        "date": "2026-01-04", "impressions": impressions, "clicks": clicks, "cost_usd": 50.0,
        "conversions": 1, "run_id": "20260105T000000Z-00000001",
    })
    .to_string()
}

fn creative(id: &str, campaign: &str, status: &str, headline: &str, image: &str) -> String {
    json!({
        "creative_id": id, "account_id": "500000001", "campaign_id": campaign, "status": status,
        "headline": headline, "description": format!("About {headline}"),
        "call_to_action": if image.is_empty() { "LEARN_MORE" } else { "DOWNLOAD" },
        "landing_page": if image.is_empty() { "" } else { "https://example.com/lp" },
        "image_url": image, "run_id": "20260105T000000Z-00000001",
    })
    .to_string()
}

/// Moto with the key and processed data of Jan 4: 222 (a sponsored post, CTR 0.1%) and 111
/// (a text ad, 0.2%) are the weakest active creatives; 333 is weaker but paused; 444 does well;
/// 555 has too few impressions to judge.
async fn world(moto: &Moto) -> aws_types::SdkConfig {
    let sdk = setup(moto).await;
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(KEY_SECRET)
        .secret_string(format!("{API_KEY}\n"))
        .send()
        .await
        .unwrap();
    let s3 = s3(&sdk);
    let put = |key: &'static str, lines: Vec<String>| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket(BUCKET)
                .key(key)
                .body(lines.join("\n").into_bytes().into())
                .send()
                .await
                .unwrap();
        }
    };
    put(
        "raw/linkedin/ad_analytics/dt=2026-01-04/20260105T000000Z-00000001.ndjson",
        vec![
            analytics("111", "9001", 10_000, 20),
            analytics("222", "9001", 20_000, 20),
            analytics("333", "9001", 10_000, 1),
            analytics("444", "9002", 10_000, 300),
            analytics("555", "9002", 100, 0),
        ],
    )
    .await;
    put(
        "raw/linkedin/creatives/dt=2026-01-05/20260105T000000Z-00000001.ndjson",
        vec![
            creative("111", "9001", "ACTIVE", "Ship ads 2x faster", ""),
            creative(
                "222",
                "9001",
                "ACTIVE",
                "The 2026 B2B benchmark report",
                "https://media.example.com/b.png",
            ),
            creative("333", "9001", "PAUSED", "Old news", ""),
            creative("444", "9002", "ACTIVE", "Winner", ""),
            creative("555", "9002", "ACTIVE", "Too new", ""),
        ],
    )
    .await;
    Processor {
        config: ProcessorConfig {
            bucket: BUCKET.into(),
            namespace: "LinkedInAds".into(),
            environment: "local".into(),
            lookback_days: 7,
        },
        s3: s3.clone(),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        clock: jan_5,
    }
    .run()
    .await
    .unwrap();
    sdk
}

fn generator(sdk: &aws_types::SdkConfig, api: &FakeServer, max: usize) -> CopyGenerator {
    CopyGenerator {
        config: CopyConfig {
            bucket: BUCKET.into(),
            namespace: "LinkedInAds".into(),
            environment: "local".into(),
            secret_id: KEY_SECRET.into(),
            base_url: api.url.clone(),
            model: MODEL.into(),
            lookback_days: 7,
            max_creatives: max,
            min_impressions: 1000,
            variants: 2,
        },
        s3: s3(sdk),
        secrets: aws_sdk_secretsmanager::Client::new(sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        backoff: Backoff {
            attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_millis(20),
        },
        clock: jan_5,
    }
}

fn answer(variants: Value) -> Reply {
    Reply::json(
        200,
        json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "text", "text": json!({"variants": variants}).to_string()}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 120, "output_tokens": 45},
        }),
    )
}

fn error(status: u16, kind: &str) -> Reply {
    Reply::json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": format!("{kind} happened")}}),
    )
}

async fn draft(sdk: &aws_types::SdkConfig, creative: &str) -> Value {
    let body = s3(sdk)
        .get_object()
        .bucket(BUCKET)
        .key(format!("generated/copy/dt=2026-01-05/{creative}.json"))
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_weakest_active_creatives_get_drafts_checked_against_linkedin_limits() {
    let moto = Moto::start();
    let sdk = world(&moto).await;
    let api = FakeServer::start(vec![
        answer(json!([
            {"headline": "Where does your B2B budget go?", "description": "1,200 teams answered. Get the benchmark."},
            {"headline": "Benchmark your funnel", "description": "See how 1,200 B2B teams spend."},
        ])),
        answer(json!([
            {"headline": "Ads shipped in half the time", "description": "Free guide for B2B marketers"},
            {"headline": "Faster ads, free guide", "description": "The playbook B2B marketers use to ship ads in days."},
        ])),
    ]);
    let summary = generator(&sdk, &api, 2).run().await.unwrap();
    assert_eq!(
        summary.creatives,
        ["222", "111"],
        "lowest CTR first, paused 333 and thin 555 skipped"
    );
    assert_eq!(
        (summary.copies_generated, summary.rejected_variants),
        (3, 1)
    );
    assert_eq!(
        (summary.usage.input_tokens, summary.usage.output_tokens),
        (240, 90)
    );

    let requests = api.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v1/messages")
        );
        assert_eq!(
            r.header("x-api-key"),
            Some(API_KEY),
            "the key without its newline"
        );
        assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    let body: Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["max_tokens"], 1024);
    assert_eq!(body["messages"][0]["role"], "user");
    let prompt = body["messages"][0]["content"].as_str().unwrap();
    assert!(
        prompt.starts_with(
            "Rewrite this underperforming LinkedIn sponsored content ad. Write 2 variants.\n"
        ),
        "{prompt}"
    );
    assert!(prompt.contains("Limits: headline at most 200 characters; introductory text (description) at most 600 characters."), "{prompt}");
    assert!(
        prompt.contains("Current headline: The 2026 B2B benchmark report\n"),
        "{prompt}"
    );
    assert!(
        prompt.contains("20000 impressions, 20 clicks, CTR 0.10% (campaign average 0.10%)"),
        "{prompt}"
    );
    let text_ad: Value = serde_json::from_str(&requests[1].body).unwrap();
    assert!(
        text_ad["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("headline at most 25 characters; description at most 75 characters")
    );

    let post = draft(&sdk, "222").await;
    assert_eq!(post["status"], "pending_review");
    assert_eq!(post["format"], "sponsored_content");
    assert_eq!(post["variants"].as_array().unwrap().len(), 2);
    let ad = draft(&sdk, "111").await;
    assert_eq!(ad["format"], "text_ad");
    assert_eq!(ad["variants"].as_array().unwrap().len(), 1);
    assert_eq!(ad["variants"][0]["headline"], "Faster ads, free guide");
    assert_eq!(
        ad["rejected"][0]["problems"],
        json!(["headline is 28 characters, LinkedIn allows 25"])
    );
    assert_eq!(ad["source"]["headline"], "Ship ads 2x faster");
    assert_eq!(ad["performance"]["ctr"], 0.002);
    for d in [&post, &ad] {
        assert!(!d.to_string().contains(API_KEY));
    }
    assert!(!serde_json::to_string(&summary).unwrap().contains(API_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_waits_for_retry_after_and_overload_backs_off() {
    let moto = Moto::start();
    let sdk = world(&moto).await;
    let ok = || answer(json!([{"headline": "Short one", "description": "Fine"}]));
    let api = FakeServer::start(vec![
        error(429, "rate_limit_error").with_header("retry-after", "1"),
        ok(),
        error(529, "overloaded_error"),
        ok(),
    ]);
    let started = Instant::now();
    let summary = generator(&sdk, &api, 2).run().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry-after honoured"
    );
    assert_eq!(api.requests().len(), 4);
    assert_eq!(summary.copies_generated, 2);
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);

    // Throttled past the budget: the run stops with a clear error.
    let api = FakeServer::start(vec![
        error(529, "overloaded_error"),
        error(529, "overloaded_error"),
        error(529, "overloaded_error"),
    ]);
    let err = generator(&sdk, &api, 2).run().await.unwrap_err();
    assert!(matches!(err, CopyError::Anthropic(_)));
    assert_eq!(
        err.to_string(),
        "Anthropic: still failing after 3 attempts (last: HTTP 529 (overloaded_error)); giving up"
    );
    assert_eq!(api.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_400_is_not_retried_and_a_401_stops_the_run() {
    let moto = Moto::start();
    let sdk = world(&moto).await;
    let api = FakeServer::start(vec![
        error(400, "invalid_request_error"),
        answer(json!([{"headline": "Short one", "description": "Fine"}])),
    ]);
    let summary = generator(&sdk, &api, 2).run().await.unwrap();
    assert_eq!(
        api.requests().len(),
        2,
        "one call per creative: the 400 is not retried"
    );
    assert_eq!(
        summary.failed["222"],
        "Anthropic answered HTTP 400 (invalid_request_error): invalid_request_error happened"
    );
    assert_eq!(summary.objects, ["generated/copy/dt=2026-01-05/111.json"]);

    let api = FakeServer::start(vec![error(401, "authentication_error")]);
    let err = generator(&sdk, &api, 2).run().await.unwrap_err();
    assert_eq!(api.requests().len(), 1);
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert!(!err.to_string().contains(API_KEY));
}
