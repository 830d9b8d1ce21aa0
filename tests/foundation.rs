//! End-to-end tests of the engine foundation: the real `infra` binary against a private moto
//! server, checked with the AWS SDK.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;
use testkit::{Moto, infra};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const DATA_BUCKET: &str = "linkedin-ads-local-data-123456789012";
const STATE_BUCKET: &str = "linkedin-ads-infra-state-123456789012";
/// Every resource of the local stack.
const RESOURCES: usize = 57;
const FUNCTIONS: [&str; 5] = [
    "collector",
    "processor",
    "optimizer",
    "copy-generator",
    "token-rotation",
];
const ROLES: [&str; 7] = [
    "collector",
    "processor",
    "optimizer",
    "copy-generator",
    "token-rotation",
    "glue-crawler",
    "sagemaker",
];

struct Clients {
    s3: aws_sdk_s3::Client,
    iam: aws_sdk_iam::Client,
    sns: aws_sdk_sns::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    lambda: aws_sdk_lambda::Client,
    events: aws_sdk_eventbridge::Client,
}

async fn clients(moto: &Moto) -> Clients {
    let cfg = moto.sdk_config().await;
    Clients {
        s3: testkit::s3_client(&cfg),
        iam: aws_sdk_iam::Client::new(&cfg),
        sns: aws_sdk_sns::Client::new(&cfg),
        logs: aws_sdk_cloudwatchlogs::Client::new(&cfg),
        lambda: aws_sdk_lambda::Client::new(&cfg),
        events: aws_sdk_eventbridge::Client::new(&cfg),
    }
}

fn apply(moto: &Moto) {
    let run = infra(
        BIN,
        Some(moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(run.code, 0, "apply failed: {}", run.all());
}

fn assert_ownership(tags: &BTreeMap<String, String>, address: &str) {
    let expected = [
        ("managed-by", "infra"),
        ("infra:stack", "linkedin-ads"),
        ("infra:env", "local"),
        ("infra:address", address),
    ];
    for (k, v) in expected {
        assert_eq!(
            tags.get(k).map(String::as_str),
            Some(v),
            "{address}: tag {k} in {tags:?}"
        );
    }
}

fn decode(doc: &str) -> Value {
    let text = if doc.trim_start().starts_with('{') {
        doc.to_string()
    } else {
        percent_decode(doc)
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("policy is not JSON ({e}): {text}"))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_creates_the_stack_then_plan_is_a_no_op() {
    let moto = Moto::start();
    apply(&moto);
    let c = clients(&moto).await;

    // Data bucket: encryption, all four public access block flags, versioning, lifecycle.
    let enc =
        c.s3.get_bucket_encryption()
            .bucket(DATA_BUCKET)
            .send()
            .await
            .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let pab =
        c.s3.get_public_access_block()
            .bucket(DATA_BUCKET)
            .send()
            .await
            .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let versioning =
        c.s3.get_bucket_versioning()
            .bucket(DATA_BUCKET)
            .send()
            .await
            .unwrap();
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    let lifecycle =
        c.s3.get_bucket_lifecycle_configuration()
            .bucket(DATA_BUCKET)
            .send()
            .await
            .unwrap();
    let rules: BTreeMap<String, &aws_sdk_s3::types::LifecycleRule> = lifecycle
        .rules()
        .iter()
        .map(|r| (r.id().unwrap().to_string(), r))
        .collect();
    let raw = rules["raw-expiry"];
    assert_eq!(raw.filter().and_then(|f| f.prefix()), Some("raw/"));
    assert_eq!(raw.expiration().and_then(|e| e.days()), Some(90));
    let processed = rules["processed-tiering"];
    assert_eq!(
        processed.filter().and_then(|f| f.prefix()),
        Some("processed/")
    );
    let transitions: Vec<(i32, String)> = processed
        .transitions()
        .iter()
        .map(|t| {
            (
                t.days().unwrap(),
                t.storage_class().unwrap().as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        [(30, "STANDARD_IA".to_string()), (90, "GLACIER".to_string())]
    );
    let athena = rules["athena-results-expiry"];
    assert_eq!(
        athena.filter().and_then(|f| f.prefix()),
        Some("athena-results/")
    );
    assert!(athena.expiration().and_then(|e| e.days()).is_some());
    let tags: BTreeMap<String, String> =
        c.s3.get_bucket_tagging()
            .bucket(DATA_BUCKET)
            .send()
            .await
            .unwrap()
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
    assert_ownership(&tags, "bucket.data");

    // Roles: trust policy, inline policy, tags.
    for role in ROLES {
        let name = format!("linkedin-ads-local-{role}");
        let got = c.iam.get_role().role_name(&name).send().await.unwrap();
        let got = got.role().unwrap();
        let trust = decode(got.assume_role_policy_document().unwrap());
        assert_eq!(
            trust["Statement"][0]["Action"], "sts:AssumeRole",
            "{name}: {trust}"
        );
        let inline = c
            .iam
            .list_role_policies()
            .role_name(&name)
            .send()
            .await
            .unwrap();
        assert_eq!(
            inline.policy_names().len(),
            1,
            "{name} has one inline policy"
        );
        let doc = c
            .iam
            .get_role_policy()
            .role_name(&name)
            .policy_name(&inline.policy_names()[0])
            .send()
            .await
            .unwrap();
        let doc = decode(doc.policy_document());
        let statements = doc["Statement"].as_array().unwrap();
        assert!(!statements.is_empty());
        for s in statements {
            assert_ne!(s["Action"], "*", "{name}: no `*` action");
            // `*` resources only for actions without resource-level permissions.
            if s["Resource"] == "*" {
                assert!(
                    s["Action"] == "cloudwatch:PutMetricData"
                        || s["Action"] == "ecr:GetAuthorizationToken",
                    "{name}: {s}"
                );
            }
        }
        let tags: BTreeMap<String, String> = c
            .iam
            .list_role_tags()
            .role_name(&name)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect();
        assert_ownership(&tags, &format!("role.{role}"));
    }
    let crawler = c
        .iam
        .list_attached_role_policies()
        .role_name("linkedin-ads-local-glue-crawler")
        .send()
        .await
        .unwrap();
    assert!(
        crawler.attached_policies().is_empty(),
        "the crawler's grants are inline, scoped to its catalog and data: {crawler:?}"
    );

    // Log groups: 14-day retention, tags.
    for function in FUNCTIONS {
        let name = format!("/aws/lambda/linkedin-ads-local-{function}");
        let groups = c
            .logs
            .describe_log_groups()
            .log_group_name_prefix(&name)
            .send()
            .await
            .unwrap();
        let group = groups
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(&name))
            .unwrap();
        assert_eq!(group.retention_in_days(), Some(14), "{name}");
        let arn = format!("arn:aws:logs:us-east-1:123456789012:log-group:{name}");
        let tags = c
            .logs
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap();
        let tags: BTreeMap<String, String> = tags
            .tags()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert_ownership(&tags, &format!("log_group.{function}"));
    }

    // Alerts topic: e-mail subscription from the env file, policy, tags.
    let topic = "arn:aws:sns:us-east-1:123456789012:linkedin-ads-local-alerts";
    let subs = c
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(topic)
        .send()
        .await
        .unwrap();
    let emails: Vec<&str> = subs
        .subscriptions()
        .iter()
        .filter_map(|s| s.endpoint())
        .collect();
    assert_eq!(emails, ["ads-oncall@example.com"]);
    let attributes = c
        .sns
        .get_topic_attributes()
        .topic_arn(topic)
        .send()
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(&attributes.attributes().unwrap()["Policy"]).unwrap();
    assert!(
        policy.to_string().contains("cloudwatch.amazonaws.com"),
        "{policy}"
    );
    let tags = c
        .sns
        .list_tags_for_resource()
        .resource_arn(topic)
        .send()
        .await
        .unwrap();
    let tags: BTreeMap<String, String> = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_ownership(&tags, "topic.alerts");

    // The state bucket is created private, encrypted and versioned.
    let versioning =
        c.s3.get_bucket_versioning()
            .bucket(STATE_BUCKET)
            .send()
            .await
            .unwrap();
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    assert!(
        c.s3.get_bucket_encryption()
            .bucket(STATE_BUCKET)
            .send()
            .await
            .is_ok()
    );

    // A second plan finds nothing to do.
    let plan = infra(
        BIN,
        Some(&moto),
        &["plan", "--env", "local", "--detailed-exitcode"],
    );
    assert_eq!(plan.code, 0, "no-op plan expected: {}", plan.all());
    assert!(plan.stdout.contains("No changes"), "{}", plan.all());

    // The JSON plan has the documented keys.
    let json = infra(
        BIN,
        Some(&moto),
        &["plan", "--env", "local", "--format", "json"],
    );
    assert_eq!(json.code, 0, "{}", json.all());
    let plan: Value = serde_json::from_str(&json.stdout).expect("plan JSON");
    assert_eq!(plan["env"], "local");
    for key in ["create", "update", "replace", "delete"] {
        assert_eq!(plan["summary"][key], 0, "{key} in {}", plan["summary"]);
    }
    let changes = plan["changes"].as_array().unwrap();
    assert_eq!(changes.len(), RESOURCES);
    for change in changes {
        assert!(
            change["address"].is_string()
                && change["action"] == "no-op"
                && change["fields"].is_array()
        );
    }

    // State lists every resource.
    let list = infra(BIN, Some(&moto), &["state", "list", "--env", "local"]);
    assert_eq!(list.code, 0, "{}", list.all());
    assert_eq!(list.stdout.lines().count(), RESOURCES, "{}", list.all());
    let show = infra(
        BIN,
        Some(&moto),
        &["state", "show", "--env", "local", "bucket.data"],
    );
    assert!(show.stdout.contains(DATA_BUCKET), "{}", show.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_names_out_of_band_changes_and_apply_restores_them() {
    let moto = Moto::start();
    apply(&moto);
    let c = clients(&moto).await;

    // Out of band: a retention changed, a lifecycle rule deleted, a tag removed.
    c.logs
        .put_retention_policy()
        .log_group_name("/aws/lambda/linkedin-ads-local-collector")
        .retention_in_days(30)
        .send()
        .await
        .unwrap();
    let lifecycle =
        c.s3.get_bucket_lifecycle_configuration()
            .bucket(DATA_BUCKET)
            .send()
            .await
            .unwrap();
    let kept: Vec<_> = lifecycle
        .rules()
        .iter()
        .filter(|r| r.id() != Some("raw-expiry"))
        .cloned()
        .collect();
    c.s3.put_bucket_lifecycle_configuration()
        .bucket(DATA_BUCKET)
        .lifecycle_configuration(
            aws_sdk_s3::types::BucketLifecycleConfiguration::builder()
                .set_rules(Some(kept))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    c.iam
        .untag_role()
        .role_name("linkedin-ads-local-optimizer")
        .tag_keys("infra:env")
        .send()
        .await
        .unwrap();

    let drift = infra(
        BIN,
        Some(&moto),
        &["drift", "--env", "local", "--format", "json"],
    );
    assert_eq!(drift.code, 2, "drift expected: {}", drift.all());
    let report: Value = serde_json::from_str(&drift.stdout).unwrap();
    let mut found: Vec<(String, Vec<String>)> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_string(),
                r["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["field"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            (
                "bucket.data".to_string(),
                vec!["lifecycle_rules.raw-expiry".to_string()]
            ),
            (
                "log_group.collector".to_string(),
                vec!["retention_days".to_string()]
            ),
            (
                "role.optimizer".to_string(),
                vec!["tags.infra:env".to_string()]
            ),
        ]
    );
    // One run: markdown on stdout (for a pull-request comment), text and JSON into files.
    let dir = tempfile::tempdir().unwrap();
    let (text_file, json_file) = (dir.path().join("drift.txt"), dir.path().join("drift.json"));
    let markdown = infra(
        BIN,
        Some(&moto),
        &[
            "drift",
            "--env",
            "local",
            "--format",
            "markdown",
            "--out-text",
            text_file.to_str().unwrap(),
            "--out-json",
            json_file.to_str().unwrap(),
        ],
    );
    assert_eq!(markdown.code, 2, "{}", markdown.all());
    assert!(
        markdown
            .stdout
            .contains("| checked | changed | missing live |")
            && markdown.stdout.contains("- `retention_days`: `30` → `14`"),
        "{}",
        markdown.stdout
    );
    let text = std::fs::read_to_string(&text_file).unwrap();
    assert!(text.contains("retention_days: 30 -> 14"), "{text}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json_file).unwrap()).unwrap();
    assert_eq!(report["drifted"], 3);

    apply(&moto);
    let after = infra(BIN, Some(&moto), &["drift", "--env", "local"]);
    assert_eq!(after.code, 0, "no drift after apply: {}", after.all());

    // An orphan: made out of band with the stack's tags, unknown to state.
    c.logs
        .create_log_group()
        .log_group_name("/aws/lambda/linkedin-ads-local-stray")
        .tags("managed-by", "infra")
        .tags("infra:stack", "linkedin-ads")
        .tags("infra:env", "local")
        .tags("infra:address", "log_group.stray")
        .send()
        .await
        .unwrap();
    // The tagging API lists a new resource only after a while (as AWS does).
    moto.layer().wait_for_listings();
    let orphaned = infra(
        BIN,
        Some(&moto),
        &["drift", "--env", "local", "--format", "json"],
    );
    assert_eq!(orphaned.code, 2, "{}", orphaned.all());
    let report: Value = serde_json::from_str(&orphaned.stdout).unwrap();
    assert_eq!(report["drifted"], 0);
    let orphans = report["orphans"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "only the stray group: {orphans:?}");
    assert_eq!(orphans[0]["address"], "log_group.stray");
    assert!(
        orphans[0]["arn"]
            .as_str()
            .unwrap()
            .contains("linkedin-ads-local-stray")
    );
    c.logs
        .delete_log_group()
        .log_group_name("/aws/lambda/linkedin-ads-local-stray")
        .send()
        .await
        .unwrap();

    // A resource deleted out of band is drift too, and apply re-creates it.
    c.logs
        .delete_log_group()
        .log_group_name("/aws/lambda/linkedin-ads-local-processor")
        .send()
        .await
        .unwrap();
    let missing = infra(BIN, Some(&moto), &["drift", "--env", "local"]);
    assert_eq!(missing.code, 2, "{}", missing.all());
    assert!(
        missing.stdout.contains("log_group.processor") && missing.stdout.contains("missing live"),
        "{}",
        missing.all()
    );
    apply(&moto);
    assert_eq!(
        infra(BIN, Some(&moto), &["drift", "--env", "local"]).code,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_stops_a_second_apply_and_state_stays_valid() {
    let moto = Moto::start();
    apply(&moto);
    let c = clients(&moto).await;

    // Another process holds the lock.
    let holder = serde_json::json!({
        "id": "11111111-2222-3333-4444-555555555555", "owner": "ci", "host": "build-7", "pid": 4242,
        "command": "infra apply --env local", "started_at": "2026-11-26T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z"
    });
    c.s3.put_object()
        .bucket(STATE_BUCKET)
        .key("linkedin-ads/local/lock.json")
        .if_none_match("*")
        .body(ByteStream::from(holder.to_string().into_bytes()))
        .send()
        .await
        .unwrap();
    let blocked = infra(
        BIN,
        Some(&moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(blocked.code, 1, "{}", blocked.all());
    for needle in [
        "locked",
        "ci@build-7",
        "pid 4242",
        "11111111-2222-3333-4444-555555555555",
    ] {
        assert!(
            blocked.stderr.contains(needle),
            "`{needle}` in {}",
            blocked.all()
        );
    }

    // With a lock timeout it waits for the holder to finish.
    let waiting = testkit::infra_command(
        BIN,
        Some(&moto),
        &[
            "apply",
            "--env",
            "local",
            "--auto-approve",
            "--lock-timeout",
            "30s",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let unlock = infra(
        BIN,
        Some(&moto),
        &[
            "state",
            "unlock",
            "--env",
            "local",
            "11111111-2222-3333-4444-555555555555",
        ],
    );
    assert_eq!(unlock.code, 0, "{}", unlock.all());
    let waited = waiting.wait_with_output().unwrap();
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );

    // Two applies at once on a fresh env: while the first holds the lock, the second stops
    // at once naming it and changes nothing; the first completes, and state is whole.
    moto.reset();
    let spawn = || {
        testkit::infra_command(
            BIN,
            Some(&moto),
            &["apply", "--env", "local", "--auto-approve"],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    };
    let first = spawn();
    let c = clients(&moto).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let held =
            c.s3.get_object()
                .bucket(STATE_BUCKET)
                .key("linkedin-ads/local/lock.json")
                .send()
                .await;
        if let Ok(out) = held {
            let bytes = out.body.collect().await.unwrap().into_bytes();
            let lock: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(lock["pid"], first.id(), "the first apply holds the lock");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first apply never took the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let second = spawn().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "the second stops: {stderr}");
    assert!(
        stderr.contains("is locked") && stderr.contains(&format!("pid {}", first.id())),
        "the second names the first as the holder: {stderr}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let plan = infra(
        BIN,
        Some(&moto),
        &["plan", "--env", "local", "--detailed-exitcode"],
    );
    assert_eq!(plan.code, 0, "{}", plan.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_purges_data_and_leaves_nothing_tagged_for_the_env() {
    let moto = Moto::start();
    apply(&moto);
    let c = clients(&moto).await;
    for i in 0..3 {
        for key in [
            "raw/linkedin/ad_analytics/dt=2026-11-01/a.ndjson",
            "processed/x.parquet",
        ] {
            c.s3.put_object()
                .bucket(DATA_BUCKET)
                .key(key)
                .body(ByteStream::from(format!("version {i}").into_bytes()))
                .send()
                .await
                .unwrap();
        }
    }
    c.s3.delete_object()
        .bucket(DATA_BUCKET)
        .key("processed/x.parquet")
        .send()
        .await
        .unwrap();

    // Without --purge-data the non-empty bucket stops the destroy, and says how to go on.
    let refused = infra(
        BIN,
        Some(&moto),
        &["destroy", "--env", "local", "--auto-approve"],
    );
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("--purge-data"), "{}", refused.all());
    // What could be deleted was, and state says so: a re-run converges.
    let destroyed = infra(
        BIN,
        Some(&moto),
        &[
            "destroy",
            "--env",
            "local",
            "--auto-approve",
            "--purge-data",
        ],
    );
    assert_eq!(destroyed.code, 0, "{}", destroyed.all());

    let buckets = c.s3.list_buckets().send().await.unwrap();
    let names: Vec<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, [STATE_BUCKET], "only the state bucket remains");
    let state_tags =
        c.s3.get_bucket_tagging()
            .bucket(STATE_BUCKET)
            .send()
            .await
            .unwrap();
    assert!(state_tags.tag_set().iter().all(|t| t.key() != "infra:env"));
    let roles = c.iam.list_roles().send().await.unwrap();
    assert!(
        roles
            .roles()
            .iter()
            .all(|r| !r.role_name().starts_with("linkedin-ads-local-")),
        "roles left"
    );
    let groups = c.logs.describe_log_groups().send().await.unwrap();
    assert!(
        groups.log_groups().is_empty(),
        "log groups left: {:?}",
        groups.log_groups()
    );
    let topics = c.sns.list_topics().send().await.unwrap();
    assert!(topics.topics().is_empty(), "topics left");
    let functions = c.lambda.list_functions().send().await.unwrap();
    assert!(functions.functions().is_empty(), "functions left");
    let rules = c.events.list_rules().send().await.unwrap();
    assert!(rules.rules().is_empty(), "rules left");
    let glue = aws_sdk_glue::Client::new(&moto.sdk_config().await);
    let databases = glue.get_databases().send().await.unwrap();
    assert!(
        databases.database_list().is_empty(),
        "catalog databases left"
    );
    let list = infra(BIN, Some(&moto), &["state", "list", "--env", "local"]);
    assert_eq!(list.stdout.trim(), "", "state is empty: {}", list.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_plan_applies_exactly_and_a_stale_one_is_refused() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.plan");
    let stale = dir.path().join("stale.plan");
    let plan = infra(
        BIN,
        Some(&moto),
        &["plan", "--env", "local", "--out", first.to_str().unwrap()],
    );
    assert_eq!(plan.code, 0, "{}", plan.all());
    let copy = infra(
        BIN,
        Some(&moto),
        &["plan", "--env", "local", "--out", stale.to_str().unwrap()],
    );
    assert_eq!(copy.code, 0);
    let applied = infra(
        BIN,
        Some(&moto),
        &[
            "apply",
            "--env",
            "local",
            "--auto-approve",
            first.to_str().unwrap(),
        ],
    );
    assert_eq!(applied.code, 0, "{}", applied.all());
    assert!(
        applied
            .stdout
            .contains(&format!("{RESOURCES} changes applied")),
        "{}",
        applied.all()
    );
    let again = infra(
        BIN,
        Some(&moto),
        &[
            "apply",
            "--env",
            "local",
            "--auto-approve",
            stale.to_str().unwrap(),
        ],
    );
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(again.stderr.contains("stale"), "{}", again.all());

    // A plan saved, then a resource it changes is changed out of band: refused, naming it,
    // nothing applied.
    let c = clients(&moto).await;
    let retention = |days: i32| {
        c.logs
            .put_retention_policy()
            .log_group_name("/aws/lambda/linkedin-ads-local-collector")
            .retention_in_days(days)
            .send()
    };
    retention(30).await.unwrap();
    let collector_retention = || async {
        let groups = c
            .logs
            .describe_log_groups()
            .log_group_name_prefix("/aws/lambda/linkedin-ads-local-collector")
            .send()
            .await
            .unwrap();
        groups.log_groups()[0].retention_in_days()
    };
    let fix = dir.path().join("fix.plan");
    let planned = infra(
        BIN,
        Some(&moto),
        &["plan", "--env", "local", "--out", fix.to_str().unwrap()],
    );
    assert_eq!(planned.code, 0, "{}", planned.all());
    retention(60).await.unwrap();
    let refused = infra(
        BIN,
        Some(&moto),
        &[
            "apply",
            "--env",
            "local",
            "--auto-approve",
            fix.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("changed live since it was made (log_group.collector)"),
        "{}",
        refused.all()
    );
    assert_eq!(collector_retention().await, Some(60), "nothing applied");
    let saved: Value = serde_json::from_slice(&std::fs::read(&fix).unwrap()).unwrap();
    assert_eq!(
        saved["fingerprints"].as_object().unwrap().len(),
        RESOURCES,
        "every resource read is fingerprinted"
    );
    let other_env = infra(
        BIN,
        Some(&moto),
        &[
            "apply",
            "--env",
            "dev",
            "--auto-approve",
            first.to_str().unwrap(),
        ],
    );
    assert_eq!(other_env.code, 1);
    assert!(
        other_env.stderr.contains("not linkedin-ads / dev"),
        "{}",
        other_env.all()
    );

    // An edited plan file is held to the same rules as `infra plan`: an invalid resource and
    // a policy violation are refused (a waiver written into the file counts for nothing), and
    // nothing is applied.
    let fresh = dir.path().join("fresh.plan");
    let planned = infra(
        BIN,
        Some(&moto),
        &["plan", "--env", "local", "--out", fresh.to_str().unwrap()],
    );
    assert_eq!(planned.code, 0, "{}", planned.all());
    let tampered = |edit: &dyn Fn(&mut Value)| {
        let mut plan: Value = serde_json::from_slice(&std::fs::read(&fresh).unwrap()).unwrap();
        edit(&mut plan);
        let path = dir.path().join("tampered.plan");
        std::fs::write(&path, serde_json::to_vec(&plan).unwrap()).unwrap();
        infra(
            BIN,
            Some(&moto),
            &[
                "apply",
                "--env",
                "local",
                "--auto-approve",
                path.to_str().unwrap(),
            ],
        )
    };
    fn desired<'a>(plan: &'a mut Value, address: &str) -> &'a mut Value {
        let change = plan["changes"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["address"] == address)
            .unwrap();
        &mut change["desired"]
    }
    let public_url = tampered(&|plan| {
        let resource = desired(plan, "function_url.collector");
        resource["spec"]["auth_type"] = "NONE".into();
    });
    assert_eq!(public_url.code, 1, "{}", public_url.all());
    assert!(
        public_url.stderr.contains("the saved plan is not valid")
            && public_url.stderr.contains("function_url.collector"),
        "{}",
        public_url.all()
    );
    let short_retention = tampered(&|plan| {
        let resource = desired(plan, "log_group.collector");
        resource["spec"]["retention_days"] = Value::Null;
        resource["waivers"] = serde_json::json!({"LOGS-RETENTION": "written into the file"});
    });
    assert_eq!(short_retention.code, 1, "{}", short_retention.all());
    assert!(
        short_retention.stderr.contains("breaks the policy rules")
            && short_retention.stderr.contains("LOGS-RETENTION")
            && short_retention.stderr.contains("log_group.collector"),
        "{}",
        short_retention.all()
    );
    // A plan file made into a destroy, or marking a protected resource's delete as allowed.
    let destroy = tampered(&|plan| plan["mode"] = "destroy".into());
    assert_eq!(destroy.code, 1, "{}", destroy.all());
    assert!(
        destroy.stderr.contains("not an apply plan"),
        "{}",
        destroy.all()
    );
    let protected_delete = tampered(&|plan| {
        let change = plan["changes"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c["address"] == "alarm.collector-high-spend")
            .unwrap();
        change["action"] = "delete".into();
        change["protected"] = true.into();
        change["desired"] = Value::Null;
    });
    assert_eq!(protected_delete.code, 1, "{}", protected_delete.all());
    assert!(
        protected_delete
            .stderr
            .contains("deletes or replaces protected resources (alarm.collector-high-spend)"),
        "{}",
        protected_delete.all()
    );
    assert_eq!(collector_retention().await, Some(60), "nothing applied");
}

#[test]
fn a_protected_env_refuses_destroy_before_any_aws_call() {
    // No moto: the refusal must come before anything reaches AWS.
    let run = infra(BIN, None, &["destroy", "--env", "prod", "--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("protected") && run.stderr.contains("--allow-protected"),
        "{}",
        run.all()
    );
}

/// S3 clients of another account (moto maps assumed-role credentials to the role's account).
async fn other_account_s3(moto: &Moto) -> aws_sdk_s3::Client {
    let cfg = moto.sdk_config().await;
    let sts = aws_sdk_sts::Client::new(&cfg);
    let assumed = sts
        .assume_role()
        .role_arn("arn:aws:iam::999999999999:role/squatter")
        .role_session_name("squatter")
        .send()
        .await
        .unwrap();
    let c = assumed.credentials().unwrap();
    let credentials = aws_credential_types::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "other-account",
    );
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&cfg)
            .credentials_provider(credentials)
            .force_path_style(true)
            .build(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_apply_records_what_finished_and_a_rerun_converges() {
    let moto = Moto::start();
    // Another account holds the data bucket's name: CreateBucket fails at apply time.
    let squatter = other_account_s3(&moto).await;
    squatter
        .create_bucket()
        .bucket(DATA_BUCKET)
        .send()
        .await
        .unwrap();

    let failed = infra(
        BIN,
        Some(&moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(
        failed.stderr.contains("bucket.data") && failed.stderr.contains("BucketAlreadyExists"),
        "{}",
        failed.all()
    );
    // Roles whose policies name the bucket wait for it, so they were not started.
    assert!(
        failed
            .stderr
            .contains("role.collector: not started (bucket.data failed)"),
        "{}",
        failed.all()
    );

    // What did finish is in state; what did not is not.
    let list = infra(BIN, Some(&moto), &["state", "list", "--env", "local"]);
    let recorded: Vec<&str> = list
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        recorded.contains(&"topic.alerts") && recorded.contains(&"log_group.collector"),
        "{}",
        list.all()
    );
    assert!(
        !recorded.contains(&"bucket.data") && !recorded.contains(&"role.collector"),
        "{}",
        list.all()
    );
    // After the failure nothing new started: the roles wait on their log groups, started later.
    assert!(
        !recorded.iter().any(|a| a.starts_with("role.")),
        "{}",
        list.all()
    );

    // The cause removed, a re-run converges.
    squatter
        .delete_bucket()
        .bucket(DATA_BUCKET)
        .send()
        .await
        .unwrap();
    let rerun = infra(
        BIN,
        Some(&moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(rerun.code, 0, "{}", rerun.all());
    let missing = RESOURCES - recorded.len();
    assert!(
        rerun
            .stdout
            .contains(&format!("Plan: {missing} to create, 0 to update")),
        "only what was missing: {}",
        rerun.all()
    );
    assert_eq!(
        infra(
            BIN,
            Some(&moto),
            &["plan", "--env", "local", "--detailed-exitcode"]
        )
        .code,
        0
    );
    assert_eq!(
        infra(BIN, Some(&moto), &["drift", "--env", "local"]).code,
        0
    );
}
