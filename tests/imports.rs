//! Adopting what is already deployed (`[[import]]` in the env file). The Phase 1 account of
//! the seed (`../shared/seed/gap-analysis.md`, "Phase 1: Data Collection (Already Deployed)")
//! is built with plain SDK calls, as its shell scripts left it: names of its own, no lifecycle
//! rules, a broader collector policy, a secret with a value, objects under `raw/` (one with two
//! versions), three alarms. The env file's imports then adopt it: the plan imports and
//! updates, replaces and deletes nothing imported, the apply keeps every object version and
//! the secret's value byte for byte, and the next plan and drift are clean. Every way an
//! import can be wrong is refused before any write, naming the entry.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use testkit::{Moto, Run, infra};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const ACCOUNT: &str = "123456789012";
const REGION: &str = testkit::REGION;
const STATE_BUCKET: &str = "linkedin-ads-infra-state-123456789012";

/// What the Phase 1 scripts named things (not the names the stack would derive).
mod phase1 {
    pub const BUCKET: &str = "li-ads-phase1-data";
    pub const ROLE: &str = "li-ads-collector-role";
    pub const FUNCTION: &str = "li-ads-collector";
    pub const RULE: &str = "li-ads-collect-every-6h";
    pub const SECRET: &str = "li-ads/linkedin-oauth";
    pub const LOG_GROUP: &str = "/aws/lambda/li-ads-collector";
    pub const TOPIC: &str = "li-ads-alerts";
    pub const ERRORS_ALARM: &str = "li-ads-collector-errors";
    pub const SPEND_ALARM: &str = "li-ads-high-spend";
    pub const CTR_ALARM: &str = "li-ads-low-ctr";
    /// The OAuth tokens the secret holds (test values).
    pub const TOKENS: &str = r#"{"client_id":"phase1-client","client_secret":"phase1-client-secret","access_token":"phase1-access","refresh_token":"phase1-refresh","access_token_expires_at":"2099-01-01T00:00:00Z","refresh_token_expires_at":"2099-06-01T00:00:00Z"}"#;
}

/// The `[[import]]` entries that adopt the Phase 1 account: the README shows the same.
fn phase1_imports() -> String {
    let topic_arn = format!("arn:aws:sns:{REGION}:{ACCOUNT}:{}", phase1::TOPIC);
    [
        ("bucket.data", phase1::BUCKET.to_string()),
        ("role.collector", phase1::ROLE.to_string()),
        ("lambda.collector", phase1::FUNCTION.to_string()),
        ("rule.collector", phase1::RULE.to_string()),
        ("secret.linkedin-oauth", phase1::SECRET.to_string()),
        ("log_group.collector", phase1::LOG_GROUP.to_string()),
        ("topic.alerts", topic_arn),
        ("alarm.collector-errors", phase1::ERRORS_ALARM.to_string()),
        (
            "alarm.collector-high-spend",
            phase1::SPEND_ALARM.to_string(),
        ),
        ("alarm.collector-low-ctr", phase1::CTR_ALARM.to_string()),
    ]
    .iter()
    .map(|(address, id)| format!("\n[[import]]\naddress = \"{address}\"\nid = \"{id}\"\n"))
    .collect()
}

struct Clients {
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    lambda: aws_sdk_lambda::Client,
    events: aws_sdk_eventbridge::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    secrets: aws_sdk_secretsmanager::Client,
    sns: aws_sdk_sns::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
}

/// Clients of moto itself (the ground truth, not through the AWS-behaviour layer).
async fn clients(moto: &Moto) -> Clients {
    let cfg = moto.sdk_config().await;
    Clients {
        s3: testkit::s3_client(&cfg),
        iam: aws_sdk_iam::Client::new(&cfg),
        lambda: aws_sdk_lambda::Client::new(&cfg),
        events: aws_sdk_eventbridge::Client::new(&cfg),
        logs: aws_sdk_cloudwatchlogs::Client::new(&cfg),
        secrets: aws_sdk_secretsmanager::Client::new(&cfg),
        sns: aws_sdk_sns::Client::new(&cfg),
        cloudwatch: aws_sdk_cloudwatch::Client::new(&cfg),
    }
}

/// A zip holding one `bootstrap`: the Phase 1 function's code.
fn phase1_zip() -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    zip.start_file("bootstrap", options).unwrap();
    zip.write_all(b"#!/bin/sh\necho phase 1 collector\n")
        .unwrap();
    zip.finish().unwrap().into_inner()
}

/// Every object version under `raw/`: key, version id, bytes.
async fn raw_versions(c: &Clients) -> Vec<(String, String, Vec<u8>)> {
    let listed =
        c.s3.list_object_versions()
            .bucket(phase1::BUCKET)
            .prefix("raw/")
            .send()
            .await
            .unwrap();
    let mut all = Vec::new();
    for version in listed.versions() {
        let (key, id) = (version.key().unwrap(), version.version_id().unwrap());
        let object =
            c.s3.get_object()
                .bucket(phase1::BUCKET)
                .key(key)
                .version_id(id)
                .send()
                .await
                .unwrap();
        let bytes = object.body.collect().await.unwrap().into_bytes().to_vec();
        all.push((key.to_string(), id.to_string(), bytes));
    }
    all.sort();
    all
}

async fn secret_value(c: &Clients) -> String {
    c.secrets
        .get_secret_value()
        .secret_id(phase1::SECRET)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .secret_string()
        .unwrap()
        .to_string()
}

/// The account as the Phase 1 shell scripts left it.
async fn deploy_phase1(c: &Clients) {
    c.s3.create_bucket()
        .bucket(phase1::BUCKET)
        .send()
        .await
        .unwrap();
    c.s3.put_bucket_encryption()
        .bucket(phase1::BUCKET)
        .server_side_encryption_configuration(
            aws_sdk_s3::types::ServerSideEncryptionConfiguration::builder()
                .rules(
                    aws_sdk_s3::types::ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(
                            aws_sdk_s3::types::ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(aws_sdk_s3::types::ServerSideEncryption::Aes256)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    c.s3.put_bucket_versioning()
        .bucket(phase1::BUCKET)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // Months of collected data, in short; one object written twice (two versions).
    for (key, body) in [
        (
            "raw/linkedin/analytics/dt=2026-09-01/run-1.json",
            r#"{"rows":[{"creative":"urn:li:sponsoredCreative:1","impressions":1200,"clicks":9}]}"#,
        ),
        (
            "raw/linkedin/analytics/dt=2026-10-01/run-1.json",
            r#"{"rows":[{"creative":"urn:li:sponsoredCreative:2","impressions":800,"clicks":3}]}"#,
        ),
        (
            "raw/linkedin/creatives/dt=2026-10-01/creatives.json",
            r#"{"creatives":[{"id":1,"headline":"Phase 1 headline"}]}"#,
        ),
        (
            "raw/linkedin/creatives/dt=2026-10-01/creatives.json",
            r#"{"creatives":[{"id":1,"headline":"Phase 1 headline, rerun"}]}"#,
        ),
    ] {
        c.s3.put_object()
            .bucket(phase1::BUCKET)
            .key(key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .send()
            .await
            .unwrap();
    }

    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role = c
        .iam
        .create_role()
        .role_name(phase1::ROLE)
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    let role_arn = role.role().unwrap().arn().to_string();
    // Broader than the stack's least-privilege policy: the apply narrows it.
    c.iam
        .put_role_policy()
        .role_name(phase1::ROLE)
        .policy_name("collector-everything")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","secretsmanager:GetSecretValue","logs:*"],"Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap();

    c.logs
        .create_log_group()
        .log_group_name(phase1::LOG_GROUP)
        .send()
        .await
        .unwrap();
    c.logs
        .put_retention_policy()
        .log_group_name(phase1::LOG_GROUP)
        .retention_in_days(14)
        .send()
        .await
        .unwrap();

    let function = c
        .lambda
        .create_function()
        .function_name(phase1::FUNCTION)
        .role(&role_arn)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .timeout(300)
        .memory_size(512)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(phase1_zip()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let function_arn = function.function_arn().unwrap().to_string();

    c.events
        .put_rule()
        .name(phase1::RULE)
        .schedule_expression("rate(6 hours)")
        .send()
        .await
        .unwrap();
    c.events
        .put_targets()
        .rule(phase1::RULE)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("collector")
                .arn(&function_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    c.secrets
        .create_secret()
        .name(phase1::SECRET)
        .secret_string(phase1::TOKENS)
        .send()
        .await
        .unwrap();

    let topic = c
        .sns
        .create_topic()
        .name(phase1::TOPIC)
        .send()
        .await
        .unwrap();
    let topic_arn = topic.topic_arn().unwrap().to_string();
    c.sns
        .subscribe()
        .topic_arn(&topic_arn)
        .protocol("email")
        .endpoint("ads-oncall@example.com")
        .send()
        .await
        .unwrap();

    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
    for (name, namespace, metric, comparison, threshold) in [
        (
            phase1::ERRORS_ALARM,
            "AWS/Lambda",
            "Errors",
            ComparisonOperator::GreaterThanThreshold,
            0.0,
        ),
        (
            phase1::SPEND_ALARM,
            "LinkedInAds",
            "DailySpend",
            ComparisonOperator::GreaterThanThreshold,
            400.0,
        ),
        (
            phase1::CTR_ALARM,
            "LinkedInAds",
            "CTR",
            ComparisonOperator::LessThanThreshold,
            0.005,
        ),
    ] {
        c.cloudwatch
            .put_metric_alarm()
            .alarm_name(name)
            .namespace(namespace)
            .metric_name(metric)
            .dimensions(
                Dimension::builder()
                    .name("FunctionName")
                    .value(phase1::FUNCTION)
                    .build(),
            )
            .statistic(Statistic::Sum)
            .period(300)
            .evaluation_periods(1)
            .comparison_operator(comparison)
            .threshold(threshold)
            .alarm_actions(&topic_arn)
            .send()
            .await
            .unwrap();
    }
}

/// `infra ARGS` with the env files of `envs`.
fn infra_in(moto: &Moto, envs: &std::path::Path, args: &[&str]) -> Run {
    let envs = envs.to_str().unwrap();
    let mut all = vec!["--envs-dir", envs];
    all.extend_from_slice(args);
    infra(BIN, Some(moto), &all)
}

/// An env folder whose `local.toml` ends with `extra`.
fn envs_with(extra: &str) -> tempfile::TempDir {
    let envs = testkit::envs_copy();
    let file = envs.path().join("local.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}{extra}")).unwrap();
    envs
}

async fn state_written(c: &Clients) -> bool {
    c.s3.head_object()
        .bucket(STATE_BUCKET)
        .key("linkedin-ads/local/state.json")
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_phase_one_deployment_is_imported_without_losing_a_byte() {
    let moto = Moto::start();
    let c = clients(&moto).await;
    deploy_phase1(&c).await;
    let objects = raw_versions(&c).await;
    assert_eq!(objects.len(), 4, "four object versions under raw/");
    let tokens = secret_value(&c).await;
    let envs = envs_with(&phase1_imports());

    let run = infra_in(
        &moto,
        envs.path(),
        &["plan", "--env", "local", "--format", "json"],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(!run.all().contains("phase1-refresh"), "no secret in output");
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let changes: BTreeMap<String, &Value> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["address"].as_str().unwrap().to_string(), c))
        .collect();
    let imported: Vec<&str> = changes
        .iter()
        .filter(|(_, c)| c["import"] == true)
        .map(|(a, _)| a.as_str())
        .collect();
    assert_eq!(
        imported,
        [
            "alarm.collector-errors",
            "alarm.collector-high-spend",
            "alarm.collector-low-ctr",
            "bucket.data",
            "lambda.collector",
            "log_group.collector",
            "role.collector",
            "rule.collector",
            "secret.linkedin-oauth",
            "topic.alerts",
        ]
    );
    assert_eq!(plan["summary"]["import"], 10, "{}", plan["summary"]);
    assert_eq!(plan["summary"]["replace"], 0, "{}", plan["summary"]);
    assert_eq!(plan["summary"]["delete"], 0, "{}", plan["summary"]);
    for address in &imported {
        let change = changes[*address];
        assert!(
            matches!(change["action"].as_str(), Some("update" | "no-op")),
            "{address}: {change}"
        );
    }
    // Each keeps its own name, and what refers to it uses that name: the names the stack
    // would have derived for them appear nowhere in the plan (a quote or `:` ends each, so
    // that e.g. the collector's duration alarm, not imported, does not count).
    for derived in [
        "linkedin-ads-local-data-123456789012",
        "linkedin-ads-local-collector\"",
        "linkedin-ads-local-collector:",
        "linkedin-ads-local-linkedin-oauth",
        "linkedin-ads-local-alerts",
        "linkedin-ads-local-collector-errors",
        "linkedin-ads-local-collector-high-spend",
        "linkedin-ads-local-collector-low-ctr",
    ] {
        assert!(
            !run.stdout.contains(derived),
            "{derived} is still referred to: {}",
            run.stdout
        );
    }
    assert_eq!(
        changes["lambda.collector"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == "environment.LINKEDIN_SECRET_ID")
            .map(|f| f["after"].clone()),
        Some(Value::from(phase1::SECRET)),
        "the collector reads the imported secret"
    );
    assert_eq!(changes["bucket.data"]["physical_id"], phase1::BUCKET);
    assert_eq!(changes["topic.alerts"]["physical_id"], phase1::TOPIC);
    assert_eq!(
        changes["secret.linkedin-oauth"]["physical_id"],
        phase1::SECRET
    );
    let fields = |address: &str| -> Vec<String> {
        changes[address]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        fields("bucket.data")
            .iter()
            .any(|f| f.starts_with("lifecycle")),
        "the lifecycle rules are added: {:?}",
        fields("bucket.data")
    );
    assert!(
        fields("role.collector")
            .iter()
            .any(|f| f.contains("collector-everything")),
        "the broad policy goes: {:?}",
        fields("role.collector")
    );
    let new_role = changes["lambda.collector"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "role");
    assert!(
        new_role.is_none(),
        "the function keeps its imported role: {}",
        changes["lambda.collector"]
    );

    let text = infra_in(&moto, envs.path(), &["plan", "--env", "local"]);
    assert_eq!(text.code, 0, "{}", text.all());
    // The README's "Adopting an existing deployment" shows this plan.
    eprintln!("{}", text.stdout);
    assert!(
        text.stdout
            .contains("<= bucket.data  (import, then update)  li-ads-phase1-data"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("Plan: 10 to import, "),
        "{}",
        text.stdout
    );
    assert!(!state_written(&c).await, "planning writes no state");

    let applied = infra_in(
        &moto,
        envs.path(),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(applied.code, 0, "{}", applied.all());
    assert!(
        !applied.all().contains("phase1-refresh"),
        "no secret in output"
    );

    assert_eq!(
        raw_versions(&c).await,
        objects,
        "every object version is kept"
    );
    assert_eq!(secret_value(&c).await, tokens, "the secret's value is kept");
    let tags =
        c.s3.get_bucket_tagging()
            .bucket(phase1::BUCKET)
            .send()
            .await
            .unwrap();
    let tags: BTreeMap<&str, &str> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(tags.get("infra:address"), Some(&"bucket.data"), "{tags:?}");
    assert_eq!(tags.get("infra:env"), Some(&"local"), "{tags:?}");
    let policies = c
        .iam
        .list_role_policies()
        .role_name(phase1::ROLE)
        .send()
        .await
        .unwrap();
    assert_eq!(
        policies.policy_names(),
        ["collector"],
        "least privilege now"
    );
    for alarm in [phase1::ERRORS_ALARM, phase1::SPEND_ALARM, phase1::CTR_ALARM] {
        let found = c
            .cloudwatch
            .describe_alarms()
            .alarm_names(alarm)
            .send()
            .await
            .unwrap();
        assert_eq!(
            found.metric_alarms().len(),
            1,
            "{alarm} is kept under its name"
        );
    }

    let plan = infra_in(
        &moto,
        envs.path(),
        &["plan", "--env", "local", "--detailed-exitcode"],
    );
    assert_eq!(
        plan.code,
        0,
        "the entries stay and plan nothing: {}",
        plan.all()
    );
    let drift = infra_in(&moto, envs.path(), &["drift", "--env", "local"]);
    assert_eq!(drift.code, 0, "{}", drift.all());

    // State manages bucket.data now: an entry naming another bucket for it is refused.
    c.s3.create_bucket()
        .bucket("li-ads-other")
        .send()
        .await
        .unwrap();
    let other = envs_with(&phase1_imports().replace(
        &format!("id = \"{}\"", phase1::BUCKET),
        "id = \"li-ads-other\"",
    ));
    let run = infra_in(&moto, other.path(), &["plan", "--env", "local"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "field `import[0] (bucket.data)`: state already manages bucket.data as `{}`",
            phase1::BUCKET
        )),
        "{}",
        run.stderr
    );

    // Imported resources are destroyed like any other: the data only with --purge-data.
    let destroyed = infra_in(
        &moto,
        envs.path(),
        &[
            "destroy",
            "--env",
            "local",
            "--purge-data",
            "--auto-approve",
        ],
    );
    assert_eq!(destroyed.code, 0, "{}", destroyed.all());
    assert!(
        c.s3.head_bucket()
            .bucket(phase1::BUCKET)
            .send()
            .await
            .is_err(),
        "the imported bucket is destroyed"
    );
    let alarms = c
        .cloudwatch
        .describe_alarms()
        .alarm_names(phase1::ERRORS_ALARM)
        .send()
        .await
        .unwrap();
    assert!(
        alarms.metric_alarms().is_empty(),
        "the imported alarm is destroyed"
    );
}

/// Every way an `[[import]]` can be wrong is refused before any write, naming the entry's
/// file and line; live resources with the stack's own names that state does not hold are
/// listed with the entries that would adopt them.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_imports_are_refused_before_any_write_naming_the_entry() {
    let moto = Moto::start();
    let c = clients(&moto).await;
    let entry =
        |address: &str, id: &str| format!("\n[[import]]\naddress = \"{address}\"\nid = \"{id}\"\n");

    // Found in the env file alone: no AWS call is made for these.
    for (extra, says) in [
        (
            entry("bucket.data", "a") + &entry("bucket.data", "b"),
            "field `import[1].address`: bucket.data is imported twice (also at line",
        ),
        (
            entry("permission.collector-schedule", "x"),
            "field `import[0].id`: a permission is not imported on its own",
        ),
        (
            entry("topic.alerts", "arn:aws:sqs:us-east-1:123456789012:q"),
            "is not an ARN of a topic",
        ),
        (entry("bucket", "x"), "is not a resource address"),
        (
            entry("bucket.nope", "x"),
            "field `import[0] (bucket.nope)`: the stack has no bucket.nope to import into",
        ),
    ] {
        let envs = envs_with(&extra);
        let run = infra_in(&moto, envs.path(), &["plan", "--env", "local"]);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr.contains("local.toml:"),
            "names the file and line: {}",
            run.stderr
        );
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
    }

    // Found at plan time: an id that does not exist, a resource of another env.
    c.cloudwatch
        .put_metric_alarm()
        .alarm_name("staging-errors")
        .namespace("AWS/Lambda")
        .metric_name("Errors")
        .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
        .period(300)
        .evaluation_periods(1)
        .comparison_operator(aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanThreshold)
        .threshold(0.0)
        .tags(
            aws_sdk_cloudwatch::types::Tag::builder()
                .key("infra:stack")
                .value("linkedin-ads")
                .build(),
        )
        .tags(
            aws_sdk_cloudwatch::types::Tag::builder()
                .key("infra:env")
                .value("staging")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let envs = envs_with(
        &(entry("bucket.data", "no-such-bucket-anywhere")
            + &entry("alarm.collector-errors", "staging-errors")),
    );
    let run = infra_in(&moto, envs.path(), &["plan", "--env", "local"]);
    assert_eq!(run.code, 1, "{}", run.all());
    eprintln!("{}", run.stderr);
    for says in [
        "2 [[import]] entries cannot be done; nothing was written",
        "field `import[0] (bucket.data)`: no bucket named `no-such-bucket-anywhere` exists",
        "field `import[1] (alarm.collector-errors)`: `staging-errors` belongs to stack `linkedin-ads` env `staging`",
    ] {
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
    }
    let applied = infra_in(
        &moto,
        envs.path(),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(applied.code, 1, "{}", applied.all());
    assert!(!state_written(&c).await, "nothing was written");
    let alarm = c
        .cloudwatch
        .describe_alarms()
        .alarm_names("staging-errors")
        .send()
        .await
        .unwrap();
    assert_eq!(alarm.metric_alarms().len(), 1);

    // A role under another path: AWS cannot move a role, so importing it means replacing
    // it, which the plan refuses unless asked.
    c.iam
        .create_role()
        .role_name("li-ads-pathed-role")
        .path("/phase1/")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let envs = envs_with(&entry("role.processor", "li-ads-pathed-role"));
    let run = infra_in(&moto, envs.path(), &["plan", "--env", "local"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains(
            "field `import[0] (role.processor)`: the stack differs from `li-ads-pathed-role` in path"
        ) && run.stderr.contains("pass --replace-imported"),
        "{}",
        run.stderr
    );
    let run = infra_in(
        &moto,
        envs.path(),
        &["plan", "--env", "local", "--replace-imported"],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("<= role.processor  (import, then replace)  li-ads-pathed-role"),
        "{}",
        run.stdout
    );

    // Discovery: a log group with the stack's own name, made by hand, is listed with the
    // entry that adopts it; nothing is adopted by itself.
    let name = "/aws/lambda/linkedin-ads-local-collector";
    c.logs
        .create_log_group()
        .log_group_name(name)
        .send()
        .await
        .unwrap();
    let envs = envs_with("");
    let run = infra_in(&moto, envs.path(), &["plan", "--env", "local"]);
    assert_eq!(run.code, 1, "{}", run.all());
    eprintln!("{}", run.stderr);
    let suggested = format!("[[import]]\naddress = \"log_group.collector\"\nid = \"{name}\"\n");
    assert!(run.stderr.contains(&suggested), "{}", run.stderr);
    // Taking the suggestion imports it.
    let envs = envs_with(&format!("\n{suggested}"));
    let run = infra_in(&moto, envs.path(), &["plan", "--env", "local"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("<= log_group.collector  (import"),
        "{}",
        run.stdout
    );
}
