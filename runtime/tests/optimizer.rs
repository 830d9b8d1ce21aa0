//! The optimizer against moto (processed data from the real processor, the registry, earlier
//! decision files) and a fake LinkedIn API asserting each partial update: the expected pauses
//! and budget raises, every guardrail, dry-run sending no write and counted apart, a 401
//! mid-run recorded (what was sent, what failed, what was not tried), a dry run followed by
//! an acting run, and the creative scorer used once promoted, replaced on promotion and
//! restored on rollback.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use registry::{NewVersion, Registry};
use runtime::decisions::Thresholds;
use runtime::linkedin::api::ApiError;
use runtime::optimizer::{OptimizeError, Optimizer, OptimizerConfig};
use runtime::processor::{Processor, ProcessorConfig};
use runtime::retry::Backoff;
use runtime::training::SCORER_FEATURES;
use serde_json::{Value, json};
use testkit::Moto;
use testkit::fake_http::{FakeServer, Reply};

mod common;
use common::*;

fn jan_5() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 6, 0, 0).unwrap()
}

fn analytics(creative: &str, campaign: &str, impressions: i64, clicks: i64) -> String {
    analytics_on("2026-01-04", creative, campaign, impressions, clicks)
}

fn analytics_on(
    date: &str,
    creative: &str,
    campaign: &str,
    impressions: i64,
    clicks: i64,
) -> String {
    json!({
        "creative_id": creative, "account_id": "500000001", "campaign_id": campaign,
        "date": date, "impressions": impressions, "clicks": clicks, "cost_usd": 10.0,
        "conversions": 0, "run_id": "20260105T000000Z-00000001",
    })
    .to_string()
}

fn creative(id: &str, campaign: &str, status: &str) -> String {
    json!({
        "creative_id": id, "account_id": "500000001", "campaign_id": campaign, "status": status,
        "headline": format!("Headline {id}"), "description": "Read the guide",
        "run_id": "20260105T000000Z-00000001",
    })
    .to_string()
}

async fn put(sdk: &aws_types::SdkConfig, key: &str, body: String) {
    s3(sdk)
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(body.into_bytes().into())
        .send()
        .await
        .unwrap();
}

/// Jan 4 in three campaigns:
/// - 9001: 101 a clear winner (3%), 102 average (1.3%), 103 a clear loser (0.2%), 104 too new;
/// - 9002: 201 a loser but its campaign's last active creative (202 is paused);
/// - 9003: 301 a loser paused by an earlier run within the cooldown, 302 a clear winner.
async fn world(moto: &Moto) -> aws_types::SdkConfig {
    let sdk = setup(moto).await;
    let rows = [
        analytics("101", "9001", 10_000, 300),
        analytics("102", "9001", 10_000, 130),
        analytics("103", "9001", 10_000, 20),
        analytics("104", "9001", 500, 0),
        analytics("201", "9002", 10_000, 10),
        analytics("202", "9002", 10_000, 200),
        analytics("301", "9003", 10_000, 20),
        analytics("302", "9003", 10_000, 200),
    ];
    put(
        &sdk,
        "raw/linkedin/ad_analytics/dt=2026-01-04/20260105T000000Z-00000001.ndjson",
        rows.join("\n"),
    )
    .await;
    let creatives = [
        creative("101", "9001", "ACTIVE"),
        creative("102", "9001", "ACTIVE"),
        creative("103", "9001", "ACTIVE"),
        creative("104", "9001", "ACTIVE"),
        creative("201", "9002", "ACTIVE"),
        creative("202", "9002", "PAUSED"),
        creative("301", "9003", "ACTIVE"),
        creative("302", "9003", "ACTIVE"),
    ];
    put(
        &sdk,
        "raw/linkedin/creatives/dt=2026-01-05/20260105T000000Z-00000001.ndjson",
        creatives.join("\n"),
    )
    .await;
    Processor {
        config: ProcessorConfig {
            bucket: BUCKET.into(),
            namespace: "LinkedInAds".into(),
            environment: "local".into(),
            lookback_days: 3,
        },
        s3: s3(&sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        clock: jan_5,
    }
    .run()
    .await
    .unwrap();
    // Yesterday's run paused 301.
    put(
        &sdk,
        "decisions/dt=2026-01-04/20260104T060000Z-00000000.json",
        json!({
            "run_id": "20260104T060000Z-00000000", "decided_at": "2026-01-04T06:00:00Z",
            "dry_run": false, "scorer": "rules", "bid_model": "rules",
            "decisions": [{"action": "pause", "status": "executed", "account_id": "500000001",
                           "campaign_id": "9003", "creative_id": "301", "reason": "", "inputs": {}}],
        })
        .to_string(),
    )
    .await;
    sdk
}

/// A week (Dec 29 to Jan 4) of campaign 9100: creative 401 at 0.04% CTR (2,500 impressions
/// and one click a day) beside 402 to 404 at 0.4% (5,000 and 20 a day), none of them a clear
/// winner, so the one action is pausing 401 and no campaign settings are read.
async fn week(moto: &Moto) -> aws_types::SdkConfig {
    let sdk = setup(moto).await;
    let first = NaiveDate::from_ymd_opt(2025, 12, 29).unwrap();
    for day in first.iter_days().take(7) {
        let date = day.to_string();
        let rows = [
            ("401", 2_500, 1),
            ("402", 5_000, 20),
            ("403", 5_000, 20),
            ("404", 5_000, 20),
        ]
        .map(|(creative, impressions, clicks)| {
            analytics_on(&date, creative, "9100", impressions, clicks)
        });
        put(
            &sdk,
            &format!("raw/linkedin/ad_analytics/dt={date}/20260105T000000Z-00000001.ndjson"),
            rows.join("\n"),
        )
        .await;
    }
    let creatives = ["401", "402", "403", "404"].map(|id| creative(id, "9100", "ACTIVE"));
    put(
        &sdk,
        "raw/linkedin/creatives/dt=2026-01-05/20260105T000000Z-00000001.ndjson",
        creatives.join("\n"),
    )
    .await;
    Processor {
        config: ProcessorConfig {
            bucket: BUCKET.into(),
            namespace: "LinkedInAds".into(),
            environment: "local".into(),
            lookback_days: 7,
        },
        s3: s3(&sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        clock: jan_5,
    }
    .run()
    .await
    .unwrap();
    sdk
}

fn thresholds() -> Thresholds {
    Thresholds {
        min_impressions: 1000,
        confidence_z: 1.96,
        max_actions: 10,
        cooldown_hours: 72,
        max_bid_change_percent: 20.0,
        budget_increase_percent: 20.0,
    }
}

fn optimizer(
    sdk: &aws_types::SdkConfig,
    api: &FakeServer,
    dry_run: bool,
    thresholds: Thresholds,
) -> Optimizer {
    Optimizer {
        config: OptimizerConfig {
            bucket: BUCKET.into(),
            namespace: "LinkedInAds".into(),
            environment: "local".into(),
            secret_id: SECRET.into(),
            api_base_url: format!("{}/rest", api.url),
            version: "202511".into(),
            registry_prefix: "models".into(),
            dry_run,
            lookback_days: 3,
            thresholds,
        },
        s3: s3(sdk),
        secrets: aws_sdk_secretsmanager::Client::new(sdk),
        cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
        backoff: Backoff {
            attempts: 2,
            base: Duration::from_millis(10),
            max: Duration::from_millis(20),
        },
        clock: jan_5,
    }
}

fn campaign(budget: &str) -> Reply {
    Reply::json(
        200,
        json!({"id": 1, "dailyBudget": {"amount": budget, "currencyCode": "USD"},
               "unitCost": {"amount": "5.00", "currencyCode": "USD"}}),
    )
}

fn updated() -> Reply {
    Reply::json(204, Value::Null)
}

async fn decisions(sdk: &aws_types::SdkConfig, key: &str) -> Value {
    let body = s3(sdk)
        .get_object()
        .bucket(BUCKET)
        .key(key)
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

/// The sum of everything the optimizer emitted as `metric` (Environment `local`).
async fn metric_sum(sdk: &aws_types::SdkConfig, metric: &str) -> f64 {
    aws_sdk_cloudwatch::Client::new(sdk)
        .get_metric_statistics()
        .namespace("LinkedInAds")
        .metric_name(metric)
        .dimensions(
            aws_sdk_cloudwatch::types::Dimension::builder()
                .name("Environment")
                .value("local")
                .build(),
        )
        .start_time(aws_smithy_types::DateTime::from_secs(0))
        .end_time(aws_smithy_types::DateTime::from_secs(4_102_444_800))
        .period(86_400)
        .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
        .send()
        .await
        .unwrap()
        .datapoints()
        .iter()
        .filter_map(|d| d.sum())
        .sum()
}

fn decision<'a>(file: &'a Value, subject: &str) -> &'a Value {
    file["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| {
            d["creative_id"] == subject
                || (d["creative_id"].is_null() && d["campaign_id"] == subject)
        })
        .unwrap_or_else(|| panic!("no decision on {subject}: {file}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn losers_are_paused_and_winners_scaled_within_every_guardrail() {
    let moto = Moto::start();
    let sdk = world(&moto).await;
    let api = FakeServer::start(vec![
        campaign("100"),
        campaign("50"),
        updated(),
        updated(),
        updated(),
    ]);
    let summary = optimizer(&sdk, &api, false, thresholds())
        .run()
        .await
        .unwrap();
    assert_eq!(summary.scorer, "rules");
    assert_eq!(
        (
            summary.creatives_paused,
            summary.campaigns_scaled,
            summary.bids_adjusted
        ),
        (1, 2, 0)
    );
    assert_eq!(summary.skipped, 2, "201 (last active) and 301 (cooldown)");

    let requests = api.requests();
    assert_eq!(requests.len(), 5);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("GET", "/rest/adAccounts/500000001/adCampaigns/9001")
    );
    let pause = &requests[2];
    assert_eq!(pause.method, "POST");
    assert_eq!(
        pause.path,
        "/rest/adAccounts/500000001/creatives/urn%3Ali%3AsponsoredCreative%3A103"
    );
    assert_eq!(pause.header("x-restli-method"), Some("PARTIAL_UPDATE"));
    assert_eq!(pause.header("linkedin-version"), Some("202511"));
    assert_eq!(
        serde_json::from_str::<Value>(&pause.body).unwrap(),
        json!({"patch": {"$set": {"intendedStatus": "PAUSED"}}})
    );
    assert_eq!(
        requests[3].path,
        "/rest/adAccounts/500000001/adCampaigns/9001"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&requests[3].body).unwrap(),
        json!({"patch": {"$set": {"dailyBudget": {"amount": "120.00", "currencyCode": "USD"}}}})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&requests[4].body).unwrap(),
        json!({"patch": {"$set": {"dailyBudget": {"amount": "60.00", "currencyCode": "USD"}}}})
    );

    let file = decisions(&sdk, &summary.decisions_key).await;
    assert_eq!(file["scorer"], "rules");
    let paused = decision(&file, "103");
    assert_eq!(
        (paused["action"].as_str(), paused["status"].as_str()),
        (Some("pause"), Some("executed"))
    );
    assert!(
        paused["reason"]
            .as_str()
            .unwrap()
            .starts_with("CTR upper bound"),
        "{paused}"
    );
    assert_eq!(paused["inputs"]["impressions"], 10_000);
    assert!(
        paused["inputs"]["wilson_upper"].as_f64().unwrap()
            < paused["inputs"]["campaign_ctr"].as_f64().unwrap()
    );
    let last = decision(&file, "201");
    assert_eq!(last["status"], "skipped");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .ends_with("(held back: the campaign's last active creative)"),
        "{last}"
    );
    let cooled = decision(&file, "301");
    assert_eq!(cooled["status"], "skipped");
    assert!(
        cooled["reason"]
            .as_str()
            .unwrap()
            .contains("within the 72 h cooldown"),
        "{cooled}"
    );
    assert_eq!(decision(&file, "102")["action"], "keep");
    assert!(
        decision(&file, "104")["reason"]
            .as_str()
            .unwrap()
            .starts_with("500 impressions, fewer than the 1000")
    );
    let scaled = decision(&file, "9001");
    assert_eq!(
        (scaled["action"].as_str(), scaled["status"].as_str()),
        (Some("scale_budget"), Some("executed"))
    );
    assert_eq!(
        (
            scaled["inputs"]["current"].as_f64(),
            scaled["inputs"]["proposed"].as_f64()
        ),
        (Some(100.0), Some(120.0))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_action_cap_holds_back_the_weakest_and_dry_run_writes_nothing() {
    let moto = Moto::start();
    let sdk = world(&moto).await;
    let capped = Thresholds {
        max_actions: 2,
        ..thresholds()
    };
    let api = FakeServer::start(vec![campaign("100"), campaign("50"), updated(), updated()]);
    let summary = optimizer(&sdk, &api, false, capped).run().await.unwrap();
    assert_eq!((summary.creatives_paused, summary.campaigns_scaled), (1, 1));
    assert_eq!(api.requests().len(), 4);
    let file = decisions(&sdk, &summary.decisions_key).await;
    let held: Vec<&Value> = file["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["reason"]
                .as_str()
                .unwrap()
                .ends_with("(held back: at most 2 actions per run)")
        })
        .collect();
    assert_eq!(held.len(), 1, "{file}");
    assert_eq!(held[0]["action"], "scale_budget");

    // Dry-run: the same decisions, reads only, counted as dry-run actions and never as
    // executed ones.
    let moto = Moto::start();
    let sdk = world(&moto).await;
    let api = FakeServer::start(vec![campaign("100"), campaign("50")]);
    let summary = optimizer(&sdk, &api, true, thresholds())
        .run()
        .await
        .unwrap();
    assert_eq!(
        (
            summary.creatives_paused,
            summary.campaigns_scaled,
            summary.bids_adjusted,
            summary.dry_run_actions
        ),
        (0, 0, 0, 3)
    );
    assert!(
        api.requests().iter().all(|r| r.method == "GET"),
        "{:?}",
        api.requests()
    );
    let file = decisions(&sdk, &summary.decisions_key).await;
    assert_eq!(file["dry_run"], true);
    assert_eq!(decision(&file, "103")["status"], "dry_run");
    assert_eq!(decision(&file, "9001")["status"], "dry_run");
    assert_eq!(metric_sum(&sdk, "DryRunActions").await, 3.0);
    for executed in [
        "CreativesPaused",
        "CreativesScaled",
        "BidsAdjusted",
        "OptimizationActions",
    ] {
        assert_eq!(metric_sum(&sdk, executed).await, 0.0, "{executed}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_mid_run_is_recorded_and_the_next_run_does_not_repeat_what_was_sent() {
    let moto = Moto::start();
    let sdk = world(&moto).await;
    // The reads of 9001 and 9003, the pause of 103, then 401 to raising 9001's budget.
    let api = FakeServer::start(vec![
        campaign("100"),
        campaign("50"),
        updated(),
        Reply::json(
            401,
            json!({"status": 401, "message": "Invalid access token"}),
        ),
    ]);
    let err = optimizer(&sdk, &api, false, thresholds())
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(err, OptimizeError::Api(ApiError::Unauthorized { .. })),
        "{err}"
    );
    // Nothing after the 401: raising 9003's budget was not tried.
    let requests = api.requests();
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert_eq!(
        requests[2].path,
        "/rest/adAccounts/500000001/creatives/urn%3Ali%3AsponsoredCreative%3A103"
    );
    assert_eq!(
        requests[3].path,
        "/rest/adAccounts/500000001/adCampaigns/9001"
    );

    // The decisions file is there all the same, and says what happened to each action.
    let files = objects(&sdk, "decisions/dt=2026-01-05/").await;
    assert_eq!(files.len(), 1, "{files:?}");
    let (_, body) = &files[0];
    assert!(!body.contains("access-1"), "a token in the record: {body}");
    let file: Value = serde_json::from_str(body).unwrap();
    assert_eq!(file["dry_run"], false);
    let sent = decision(&file, "103");
    assert_eq!(
        (sent["action"].as_str(), sent["status"].as_str()),
        (Some("pause"), Some("executed"))
    );
    assert!(sent["error"].is_null(), "{sent}");
    let failed = decision(&file, "9001");
    assert_eq!(
        (failed["action"].as_str(), failed["status"].as_str()),
        (Some("scale_budget"), Some("failed"))
    );
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .starts_with("LinkedIn answered 401 to /adAccounts/500000001/adCampaigns/9001"),
        "{failed}"
    );
    let untried = decision(&file, "9003");
    assert_eq!(
        (untried["action"].as_str(), untried["status"].as_str()),
        (Some("scale_budget"), Some("not_tried"))
    );
    assert!(untried["error"].is_null(), "{untried}");
    assert!(
        file["error"]
            .as_str()
            .unwrap()
            .starts_with("LinkedIn answered 401"),
        "{file}"
    );
    // The metrics count what was sent.
    assert_eq!(metric_sum(&sdk, "CreativesPaused").await, 1.0);
    assert_eq!(metric_sum(&sdk, "CreativesScaled").await, 0.0);

    // The next run (the token rotated): 103, paused by the stopped run, is within the
    // cooldown; the two raises that were not made are sent now.
    let api = FakeServer::start(vec![campaign("100"), campaign("50"), updated(), updated()]);
    let summary = optimizer(&sdk, &api, false, thresholds())
        .run()
        .await
        .unwrap();
    assert_eq!((summary.creatives_paused, summary.campaigns_scaled), (0, 2));
    let requests = api.requests();
    let writes: Vec<(&str, Value)> = requests
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            (r.path.as_str(), body)
        })
        .collect();
    let raise = |amount: &str| {
        let budget = json!({"amount": amount, "currencyCode": "USD"});
        json!({"patch": {"$set": {"dailyBudget": budget}}})
    };
    assert_eq!(
        writes,
        [
            (
                "/rest/adAccounts/500000001/adCampaigns/9001",
                raise("120.00")
            ),
            (
                "/rest/adAccounts/500000001/adCampaigns/9003",
                raise("60.00")
            ),
        ]
    );
    let file = decisions(&sdk, &summary.decisions_key).await;
    let held = decision(&file, "103");
    assert_eq!(held["status"], "skipped");
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .contains("within the 72 h cooldown"),
        "{held}"
    );
    assert_eq!(file["error"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_dry_run_the_acting_run_acts_and_only_executed_actions_cool_down() {
    let moto = Moto::start();
    let sdk = week(&moto).await;
    let run = |dry_run: bool, script: Vec<Reply>| {
        let sdk = &sdk;
        async move {
            let api = FakeServer::start(script);
            let mut handler = optimizer(sdk, &api, dry_run, thresholds());
            handler.config.lookback_days = 7;
            let summary = handler.run().await.unwrap();
            let file = decisions(sdk, &summary.decisions_key).await;
            (summary, file, api.requests())
        }
    };

    // The roll-out starts dry: 401 would be paused, nothing is sent.
    let (summary, file, requests) = run(true, vec![]).await;
    assert!(requests.is_empty(), "{requests:?}");
    assert_eq!((summary.creatives_paused, summary.dry_run_actions), (0, 1));
    let dry = decision(&file, "401");
    assert_eq!(
        (dry["action"].as_str(), dry["status"].as_str()),
        (Some("pause"), Some("dry_run"))
    );
    assert_eq!(dry["inputs"]["impressions"], 17_500);
    assert_eq!(dry["inputs"]["clicks"], 7);
    for kept in ["402", "403", "404"] {
        assert_eq!(decision(&file, kept)["action"], "keep", "{kept}");
    }
    assert_eq!(metric_sum(&sdk, "DryRunActions").await, 1.0);
    assert_eq!(metric_sum(&sdk, "CreativesPaused").await, 0.0);
    assert_eq!(metric_sum(&sdk, "OptimizationActions").await, 0.0);

    // Switched to acting, same data, the 72 h cooldown: the dry run started no cooldown, so
    // 401 is paused now.
    let (summary, file, requests) = run(false, vec![updated()]).await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(
        requests[0].path,
        "/rest/adAccounts/500000001/creatives/urn%3Ali%3AsponsoredCreative%3A401"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&requests[0].body).unwrap(),
        json!({"patch": {"$set": {"intendedStatus": "PAUSED"}}})
    );
    assert_eq!((summary.creatives_paused, summary.dry_run_actions), (1, 0));
    assert_eq!(decision(&file, "401")["status"], "executed");
    assert_eq!(metric_sum(&sdk, "CreativesPaused").await, 1.0);
    assert_eq!(metric_sum(&sdk, "DryRunActions").await, 1.0);

    // The executed pause does start the cooldown: the next acting run leaves 401 alone.
    let (summary, file, requests) = run(false, vec![]).await;
    assert!(requests.is_empty(), "{requests:?}");
    assert_eq!((summary.creatives_paused, summary.skipped), (0, 1));
    assert!(
        decision(&file, "401")["reason"]
            .as_str()
            .unwrap()
            .contains("within the 72 h cooldown")
    );
}

fn scorer(bias: f64) -> Vec<u8> {
    let k = SCORER_FEATURES.len();
    serde_json::to_vec(&json!({
        "kind": "creative-scorer", "features": SCORER_FEATURES, "means": vec![0.0; k],
        "stds": vec![1.0; k], "weights": vec![0.0; k], "bias": bias,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_promoted_scorer_is_used_and_rollback_restores_the_previous_one() {
    let moto = Moto::start();
    let sdk = world(&moto).await;
    let no_cooldown = Thresholds {
        cooldown_hours: 0,
        ..thresholds()
    };
    let run = || async {
        let api = FakeServer::start(vec![campaign("100"), campaign("50")]);
        let summary = optimizer(&sdk, &api, true, no_cooldown)
            .run()
            .await
            .unwrap();
        let file = decisions(&sdk, &summary.decisions_key).await;
        (summary, file)
    };
    let (summary, file) = run().await;
    assert_eq!(summary.scorer, "rules");
    assert_eq!(decision(&file, "103")["action"], "pause");
    assert!(file["predictions"].as_object().unwrap().is_empty());

    let registry = Registry::new(s3(&sdk), BUCKET, "models");
    // v1 predicts a CTR of about 0.005% for any content: it agrees with every pause.
    registry
        .register(
            "creative-scorer",
            "model.json",
            scorer(-10.0),
            NewVersion::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    registry
        .promote("creative-scorer", 1, Utc::now())
        .await
        .unwrap();
    let (summary, file) = run().await;
    assert_eq!(summary.scorer, "creative-scorer v1");
    assert_eq!(decision(&file, "103")["action"], "pause");
    assert!(
        decision(&file, "103")["reason"]
            .as_str()
            .unwrap()
            .contains("and the model predicts 0.005%")
    );
    assert!(file["predictions"]["103"].as_f64().unwrap() < 0.001);

    // v2 predicts 50% for any content: it vetoes the pause.
    registry
        .register(
            "creative-scorer",
            "model.json",
            scorer(0.0),
            NewVersion::default(),
            Utc::now(),
        )
        .await
        .unwrap();
    registry
        .promote("creative-scorer", 2, Utc::now())
        .await
        .unwrap();
    let (summary, file) = run().await;
    assert_eq!(summary.scorer, "creative-scorer v2");
    let kept = decision(&file, "103");
    assert_eq!(kept["action"], "keep");
    assert!(
        kept["reason"]
            .as_str()
            .unwrap()
            .ends_with("but the model predicts 50.000% for its content: kept"),
        "{kept}"
    );
    // v1's predictions of the previous run, against Jan 4's actual CTRs.
    let accuracy = summary.prediction_accuracy.unwrap();
    assert!((0.0..0.1).contains(&accuracy), "{accuracy}");

    registry
        .rollback("creative-scorer", Utc::now())
        .await
        .unwrap();
    let (summary, file) = run().await;
    assert_eq!(summary.scorer, "creative-scorer v1");
    assert_eq!(decision(&file, "103")["action"], "pause");
}
