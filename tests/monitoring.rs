//! End-to-end tests of monitoring and secrets against a fresh moto server: every alarm (names
//! and metrics), the dashboard, the failure rules, both secrets and the rotation of
//! `linkedin-oauth`; drift on an alarm threshold; secret values that never leak.

use std::collections::BTreeSet;

use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, MetricAlarm, Statistic};
use serde_json::Value;
use testkit::{Moto, Run, infra, infra_with_stdin};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const PREFIX: &str = "linkedin-ads-local-";
const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:linkedin-ads-local-alerts";
const FUNCTIONS: [&str; 5] = [
    "collector",
    "processor",
    "optimizer",
    "copy-generator",
    "token-rotation",
];

fn run_ok(moto: &Moto, args: &[&str]) -> Run {
    let run = infra(BIN, Some(moto), args);
    assert_eq!(run.code, 0, "{args:?}: {}", run.all());
    run
}

fn apply(moto: &Moto) -> Run {
    run_ok(moto, &["apply", "--env", "local", "--auto-approve"])
}

async fn alarms(moto: &Moto) -> Vec<MetricAlarm> {
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    cw.describe_alarms()
        .alarm_name_prefix(PREFIX)
        .send()
        .await
        .unwrap()
        .metric_alarms()
        .to_vec()
}

fn find<'a>(alarms: &'a [MetricAlarm], short: &str) -> &'a MetricAlarm {
    let name = format!("{PREFIX}{short}");
    alarms
        .iter()
        .find(|a| a.alarm_name() == Some(name.as_str()))
        .unwrap_or_else(|| panic!("no alarm {name}"))
}

fn dimensions(alarm: &MetricAlarm) -> Vec<(String, String)> {
    alarm
        .dimensions()
        .iter()
        .map(|d| {
            (
                d.name().unwrap_or_default().to_string(),
                d.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_creates_every_alarm_the_dashboard_failure_rules_and_rotated_secrets() {
    let moto = Moto::start();
    apply(&moto);
    let sdk = moto.sdk_config().await;

    // Alarms: names, metrics, thresholds, actions.
    let alarms = alarms(&moto).await;
    let names: BTreeSet<String> = alarms
        .iter()
        .map(|a| {
            a.alarm_name()
                .unwrap()
                .trim_start_matches(PREFIX)
                .to_string()
        })
        .collect();
    let mut expected: BTreeSet<String> = FUNCTIONS
        .iter()
        .flat_map(|f| [format!("{f}-errors"), format!("{f}-duration")])
        .collect();
    expected.extend(
        [
            "collector-high-spend",
            "collector-low-ctr",
            "athena-scanned-bytes",
        ]
        .map(String::from),
    );
    assert_eq!(names, expected);
    for alarm in &alarms {
        assert_eq!(alarm.alarm_actions(), [TOPIC], "{:?}", alarm.alarm_name());
        assert_eq!(alarm.ok_actions(), [TOPIC], "{:?}", alarm.alarm_name());
    }
    for function in FUNCTIONS {
        let errors = find(&alarms, &format!("{function}-errors"));
        assert_eq!(
            (errors.namespace(), errors.metric_name()),
            (Some("AWS/Lambda"), Some("Errors"))
        );
        assert_eq!(errors.statistic(), Some(&Statistic::Sum));
        assert_eq!(
            dimensions(errors),
            [("FunctionName".to_string(), format!("{PREFIX}{function}"))]
        );
        assert_eq!(
            errors.comparison_operator(),
            Some(&ComparisonOperator::GreaterThanThreshold)
        );
        assert_eq!(errors.threshold(), Some(0.0));
        let duration = find(&alarms, &format!("{function}-duration"));
        assert_eq!(duration.metric_name(), Some("Duration"));
        assert_eq!(duration.statistic(), Some(&Statistic::Maximum));
    }
    // 80% of the collector's 300 s timeout, in milliseconds.
    assert_eq!(
        find(&alarms, "collector-duration").threshold(),
        Some(240_000.0)
    );
    let spend = find(&alarms, "collector-high-spend");
    assert_eq!(
        (spend.namespace(), spend.metric_name(), spend.threshold()),
        (Some("LinkedInAds"), Some("DailySpend"), Some(500.0))
    );
    assert_eq!(
        dimensions(spend),
        [("Environment".to_string(), "local".to_string())]
    );
    let ctr = find(&alarms, "collector-low-ctr");
    assert_eq!(
        ctr.comparison_operator(),
        Some(&ComparisonOperator::LessThanThreshold)
    );
    assert_eq!(ctr.threshold(), Some(0.004));
    let queries = ctr.metrics();
    let expression = queries
        .iter()
        .find_map(|q| q.expression())
        .expect("a math expression");
    assert_eq!(expression, "IF(impressions > 1000, clicks / impressions)");
    let read: BTreeSet<(&str, &str)> = queries
        .iter()
        .filter_map(|q| {
            let metric = q.metric_stat()?.metric()?;
            Some((q.id()?, metric.metric_name()?))
        })
        .collect();
    assert_eq!(
        read,
        BTreeSet::from([("clicks", "Clicks"), ("impressions", "Impressions")])
    );
    let athena = find(&alarms, "athena-scanned-bytes");
    assert_eq!(athena.threshold(), Some(53_687_091_200.0));

    // The dashboard: every function, the collector's and the optimizer's metrics.
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let dashboard = cw
        .get_dashboard()
        .dashboard_name(format!("{PREFIX}pipeline"))
        .send()
        .await
        .unwrap();
    let body: Value = serde_json::from_str(dashboard.dashboard_body().unwrap()).unwrap();
    let text = body.to_string();
    for function in FUNCTIONS {
        for widget in ["invocations", "errors", "duration (ms)"] {
            assert!(
                text.contains(&format!("{PREFIX}{function}: {widget}")),
                "{function} {widget}"
            );
        }
    }
    for metric in [
        "DailySpend",
        "Impressions",
        "Clicks",
        "CreativesPaused",
        "CreativesScaled",
        "BidsAdjusted",
        "OptimizationActions",
        "PredictionAccuracy",
    ] {
        assert!(
            text.contains(&format!(
                "[\"LinkedInAds\",\"{metric}\",\"Environment\",\"local\""
            )),
            "{metric}"
        );
    }

    // Failure rules: crawler state Failed and rotation failures, to the alerts topic.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    for (rule, needle) in [
        ("crawler-failed", "\"Glue Crawler State Change\""),
        ("secret-rotation-failed", "\"RotationFailed\""),
    ] {
        let name = format!("{PREFIX}{rule}");
        let described = events.describe_rule().name(&name).send().await.unwrap();
        assert!(
            described.event_pattern().unwrap().contains(needle),
            "{rule}"
        );
        let targets = events
            .list_targets_by_rule()
            .rule(&name)
            .send()
            .await
            .unwrap();
        let arns: Vec<&str> = targets.targets().iter().map(|t| t.arn()).collect();
        assert_eq!(arns, [TOPIC], "{rule}");
    }
    let crawler_rule = events
        .describe_rule()
        .name(format!("{PREFIX}crawler-failed"))
        .send()
        .await
        .unwrap();
    let pattern: Value = serde_json::from_str(crawler_rule.event_pattern().unwrap()).unwrap();
    assert_eq!(pattern["detail"]["crawlerName"][0], format!("{PREFIX}raw"));
    assert_eq!(pattern["detail"]["state"][0], "Failed");

    // The topic lets CloudWatch and EventBridge publish.
    let sns = aws_sdk_sns::Client::new(&sdk);
    let attributes = sns
        .get_topic_attributes()
        .topic_arn(TOPIC)
        .send()
        .await
        .unwrap();
    let policy = &attributes.attributes().unwrap()["Policy"];
    assert!(policy.contains("cloudwatch.amazonaws.com") && policy.contains("events.amazonaws.com"));

    // Both secrets, without values; rotation on linkedin-oauth only.
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let oauth = sm
        .describe_secret()
        .secret_id(format!("{PREFIX}linkedin-oauth"))
        .send()
        .await
        .unwrap();
    assert_eq!(oauth.rotation_enabled(), Some(true));
    assert_eq!(
        oauth
            .rotation_rules()
            .and_then(|r| r.automatically_after_days()),
        Some(60)
    );
    assert_eq!(
        oauth.rotation_lambda_arn(),
        Some("arn:aws:lambda:us-east-1:123456789012:function:linkedin-ads-local-token-rotation")
    );
    let anthropic = sm
        .describe_secret()
        .secret_id(format!("{PREFIX}anthropic-api-key"))
        .send()
        .await
        .unwrap();
    assert_ne!(anthropic.rotation_enabled(), Some(true));

    // Once the tagging API lists what the apply made: nothing to change, and all alarms read in
    // one DescribeAlarms call. (Seconds after an apply the lagging listing misses the newest
    // resources and each costs a tag read; tests/aws_behaviour.rs shows that path.)
    moto.layer().wait_for_listings();
    let plan = run_ok(
        &moto,
        &["--stats", "plan", "--env", "local", "--detailed-exitcode"],
    );
    assert!(plan.stdout.contains("No changes."), "{}", plan.all());
    let describe_calls: u64 = plan
        .stderr
        .lines()
        .find(|l| l.contains(" DescribeAlarms "))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no DescribeAlarms count: {}", plan.all()));
    assert_eq!(describe_calls, 1, "{}", plan.all());
    // Their tags come from one tagging listing too: at most one call per resource in all.
    let per_resource: f64 = plan
        .stderr
        .lines()
        .find(|l| l.contains("per resource"))
        .and_then(|l| l.split_whitespace().nth_back(2))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no per-resource figure: {}", plan.all()));
    assert!(per_resource <= 1.0, "{}", plan.all());
    assert!(
        !plan
            .stderr
            .contains("CloudWatch             ListTagsForResource"),
        "{}",
        plan.all()
    );
    assert!(
        plan.stdout.contains(
            "secret.linkedin-oauth  NOT SET: `infra secret set --env local linkedin-oauth`"
        ),
        "{}",
        plan.all()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_threshold_changed_out_of_band_is_drift_and_apply_restores_it() {
    let moto = Moto::start();
    apply(&moto);
    let cw = aws_sdk_cloudwatch::Client::new(&moto.sdk_config().await);
    // Someone raises the spend threshold in the console.
    cw.put_metric_alarm()
        .alarm_name(format!("{PREFIX}collector-high-spend"))
        .alarm_description("Daily LinkedIn Ads spend above 500 USD")
        .namespace("LinkedInAds")
        .metric_name("DailySpend")
        .dimensions(
            Dimension::builder()
                .name("Environment")
                .value("local")
                .build(),
        )
        .statistic(Statistic::Maximum)
        .period(21_600)
        .evaluation_periods(1)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .threshold(5000.0)
        .treat_missing_data("notBreaching")
        .alarm_actions(TOPIC)
        .ok_actions(TOPIC)
        .send()
        .await
        .unwrap();

    let drift = infra(BIN, Some(&moto), &["drift", "--env", "local"]);
    assert_eq!(drift.code, 2, "{}", drift.all());
    assert!(
        drift
            .stdout
            .contains("~ alarm.collector-high-spend  (changed: live -> desired)"),
        "{}",
        drift.all()
    );
    assert!(
        drift.stdout.contains("threshold: 5000.0 -> 500.0"),
        "{}",
        drift.all()
    );
    let json = infra(
        BIN,
        Some(&moto),
        &["drift", "--env", "local", "--format", "json"],
    );
    assert_eq!(json.code, 2, "{}", json.all());
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["drifted"], 1);
    assert_eq!(report["resources"][0]["fields"][0]["field"], "threshold");

    let restored = apply(&moto);
    assert!(
        restored
            .all()
            .contains("alarm.collector-high-spend: updated"),
        "{}",
        restored.all()
    );
    run_ok(&moto, &["drift", "--env", "local"]);
    let alarms = alarms(&moto).await;
    assert_eq!(
        find(&alarms, "collector-high-spend").threshold(),
        Some(500.0)
    );

    // A tag added out of band is drift too, though tags are read from the tagging listing.
    let alarm_arn = find(&alarms, "collector-high-spend")
        .alarm_arn()
        .unwrap()
        .to_string();
    cw.tag_resource()
        .resource_arn(&alarm_arn)
        .tags(
            aws_sdk_cloudwatch::types::Tag::builder()
                .key("owner")
                .value("someone")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let drift = infra(BIN, Some(&moto), &["drift", "--env", "local"]);
    assert_eq!(drift.code, 2, "{}", drift.all());
    assert!(drift.stdout.contains("tags.owner"), "{}", drift.all());
}

/// A value whose every member carries a marker no output may contain.
const MARKER: &str = "tok-LEAK-CHECK-5e9d31";

fn oauth_value() -> String {
    serde_json::json!({
        "client_id": format!("client-{MARKER}"),
        "client_secret": format!("secret-{MARKER}"),
        "access_token": format!("access-{MARKER}"),
        "refresh_token": format!("refresh-{MARKER}"),
        "access_token_expires_at": "2027-01-25T00:00:00Z",
        "refresh_token_expires_at": "2027-11-26T00:00:00Z",
    })
    .to_string()
}

fn assert_no_marker(what: &str, text: &str) {
    assert!(
        !text.contains(MARKER) && !text.contains("LEAK-CHECK"),
        "{what} contains the secret value:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_value_set_through_the_cli_appears_in_no_output_plan_or_state() {
    let moto = Moto::start();
    let mut outputs = vec![("apply", apply(&moto))];
    let sdk = moto.sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret_id = format!("{PREFIX}linkedin-oauth");

    // A value that is not what the secret declares is refused, without being quoted.
    let bad = serde_json::json!({ "client_id": MARKER, "access_token": MARKER }).to_string();
    let refused = infra_with_stdin(
        BIN,
        Some(&moto),
        &["secret", "set", "--env", "local", "linkedin-oauth"],
        &bad,
    );
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("lacks `client_secret`, `refresh_token`"),
        "{}",
        refused.all()
    );
    outputs.push(("refused secret set", refused));
    let versions = sm
        .list_secret_version_ids()
        .secret_id(&secret_id)
        .send()
        .await
        .unwrap();
    assert!(
        !versions
            .versions()
            .iter()
            .any(|v| v.version_stages().iter().any(|s| s == "AWSCURRENT")),
        "a refused value must not be written"
    );

    let value = oauth_value();
    let set = infra_with_stdin(
        BIN,
        Some(&moto),
        &["secret", "set", "--env", "local", "linkedin-oauth"],
        &format!("{value}\n"),
    );
    assert_eq!(set.code, 0, "{}", set.all());
    outputs.push(("secret set", set));
    let stored = sm
        .get_secret_value()
        .secret_id(&secret_id)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap();
    assert_eq!(stored.secret_string(), Some(value.as_str()));

    let plan_file = tempfile::NamedTempFile::new().unwrap();
    let plan_path = plan_file.path().to_str().unwrap();
    let plan = run_ok(
        &moto,
        &[
            "plan",
            "--env",
            "local",
            "--detailed-exitcode",
            "--out",
            plan_path,
        ],
    );
    assert!(
        plan.stdout.contains("secret.linkedin-oauth  set"),
        "{}",
        plan.all()
    );
    assert!(
        plan.stdout.contains("secret.anthropic-api-key  NOT SET"),
        "{}",
        plan.all()
    );
    outputs.push(("plan", plan));
    let plan_json = run_ok(&moto, &["plan", "--env", "local", "--format", "json"]);
    let parsed: Value = serde_json::from_str(&plan_json.stdout).unwrap();
    let statuses: Vec<(String, bool)> = parsed["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap().to_string(),
                s["value_set"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("secret.linkedin-oauth".to_string(), true),
            ("secret.anthropic-api-key".to_string(), false)
        ]
    );
    outputs.push(("plan json", plan_json));
    outputs.push((
        "apply of the saved plan",
        run_ok(
            &moto,
            &["apply", "--env", "local", "--auto-approve", plan_path],
        ),
    ));
    outputs.push(("drift", run_ok(&moto, &["drift", "--env", "local"])));
    outputs.push((
        "drift json",
        run_ok(&moto, &["drift", "--env", "local", "--format", "json"]),
    ));
    let list = run_ok(&moto, &["secret", "list", "--env", "local"]);
    assert!(
        list.stdout.contains("value set, rotates every 60 days"),
        "{}",
        list.all()
    );
    outputs.push(("secret list", list));
    outputs.push((
        "state show",
        run_ok(
            &moto,
            &["state", "show", "--env", "local", "secret.linkedin-oauth"],
        ),
    ));

    for (what, run) in &outputs {
        assert_no_marker(what, &run.stdout);
        assert_no_marker(what, &run.stderr);
    }
    assert_no_marker(
        "saved plan file",
        &std::fs::read_to_string(plan_file.path()).unwrap(),
    );
    // Every object under the state prefix: state, lock, journal.
    let s3 = testkit::s3_client(&sdk);
    let bucket = "linkedin-ads-infra-state-123456789012";
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("linkedin-ads/local/")
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert!(keys.iter().any(|k| k.ends_with("state.json")), "{keys:?}");
    for key in keys {
        let object = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let bytes = object.body.collect().await.unwrap().into_bytes();
        assert_no_marker(&key, &String::from_utf8_lossy(&bytes));
    }
}
