//! Helpers shared by the runtime's tests against moto: the data bucket and the LinkedIn
//! secret, clients, reading objects back, fixtures, and a collector wired to a fake API.
#![allow(dead_code)] // Each test file uses its own subset.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use runtime::collector::{Collector, CollectorConfig};
use runtime::retry::Backoff;
use serde_json::{Value, json};
use testkit::Moto;
use testkit::fake_http::{FakeServer, Reply};

pub const BUCKET: &str = "linkedin-ads-local-data-123456789012";
pub const SECRET: &str = "linkedin-ads-local-linkedin-oauth";

pub fn jan_4() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 4, 6, 0, 0).unwrap()
}

pub fn jan_4_later() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 4, 12, 0, 0).unwrap()
}

pub fn sample(name: &str) -> Reply {
    let path = format!(
        "{}/../assets/samples/linkedin/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    Reply::json(200, serde_json::from_str(&text).unwrap())
}

pub fn range(day: u32) -> Value {
    json!({"start": {"year": 2026, "month": 1, "day": day}, "end": {"year": 2026, "month": 1, "day": day}})
}

pub fn element(creative: &str, day: u32, metrics: Value) -> Value {
    let mut e = json!({"pivotValues": [format!("urn:li:sponsoredCreative:{creative}")], "dateRange": range(day)});
    for (k, v) in metrics.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

pub async fn setup(moto: &Moto) -> aws_types::SdkConfig {
    let sdk = moto.sdk_config().await;
    let s3 = s3(&sdk);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(SECRET)
        .secret_string(
            json!({
                "client_id": "client-1", "client_secret": "client-secret-1",
                "access_token": "access-1", "refresh_token": "refresh-1",
                "access_token_expires_at": "2026-02-01T00:00:00Z",
                "refresh_token_expires_at": "2026-12-01T00:00:00Z",
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    sdk
}

pub fn s3(sdk: &aws_types::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

pub fn collector(
    sdk: &aws_types::SdkConfig,
    api: &FakeServer,
    accounts: &[&str],
    clock: fn() -> DateTime<Utc>,
) -> Collector {
    Collector {
        config: CollectorConfig {
            bucket: BUCKET.into(),
            namespace: "LinkedInAds".into(),
            environment: "local".into(),
            secret_id: SECRET.into(),
            api_base_url: format!("{}/rest", api.url),
            version: "202511".into(),
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
            lookback_days: 3,
        },
        s3: s3(sdk),
        secrets: aws_sdk_secretsmanager::Client::new(sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        backoff: Backoff {
            attempts: 3,
            base: Duration::from_millis(10),
            max: Duration::from_millis(20),
        },
        field_limit: 20,
        clock,
    }
}

pub async fn objects(sdk: &aws_types::SdkConfig, prefix: &str) -> Vec<(String, String)> {
    let s3 = s3(sdk);
    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_string();
        let body = s3
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        out.push((key, String::from_utf8(bytes.to_vec()).unwrap()));
    }
    out
}

pub fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
