//! Every committed env file parses, and the stack built from it is valid and least-privilege.

use std::path::Path;

use infra_core::model::{Kind, Spec};
use infra_core::package::{Artifact, Artifacts};
use serde_json::Value;
use stacks::{Env, linkedin_ads};

const ENVS: [&str; 4] = ["local", "dev", "staging", "prod"];

/// Packages as the engine would describe them; these tests look at the stack, not the code.
fn artifacts() -> Artifacts {
    stacks::linkedin_ads::FUNCTIONS
        .iter()
        .map(|f| {
            let artifact = Artifact {
                handler: f.to_string(),
                zip: format!("target/lambda/{f}.zip").into(),
                code_sha256: format!("sha-of-{f}"),
                size: 1,
                inputs: String::new(),
            };
            (f.to_string(), artifact)
        })
        .collect()
}

fn stack(env: &Env) -> infra_core::model::Stack {
    let views_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/athena/views");
    let inputs = stacks::Inputs {
        artifacts: artifacts(),
        views: infra_core::sql::load_dir(&views_dir).unwrap(),
        queries: infra_core::sql::load_dir(&views_dir.join("../queries")).unwrap(),
    };
    linkedin_ads(env, &inputs).unwrap_or_else(|e| panic!("{e}"))
}

fn env(name: &str) -> Env {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("envs");
    Env::load_named(&dir, name).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_env_file_parses_and_gives_a_valid_stack() {
    for name in ENVS {
        let env = env(name);
        let stack = stack(&env);
        infra_core::plan::validate(&stack).unwrap_or_else(|e| panic!("{name}: {e}"));
        let policy = infra_core::compliance::check(&stack);
        assert!(
            policy.passed() && policy.waived.is_empty() && policy.unused_waivers.is_empty(),
            "{name}: {policy:?}"
        );
        assert_eq!(stack.target.env, name);
        let count = |kind: Kind| {
            stack
                .resources
                .iter()
                .filter(|r| r.address.kind == kind)
                .count()
        };
        let counts = [
            Kind::Bucket,
            Kind::Topic,
            Kind::Role,
            Kind::LogGroup,
            Kind::Lambda,
            Kind::Rule,
            Kind::Permission,
            Kind::FunctionUrl,
            Kind::Dashboard,
            Kind::Secret,
            Kind::SecretRotation,
        ]
        .map(count);
        assert_eq!(counts, [1, 1, 7, 5, 5, 6, 5, 1, 1, 2, 1], "{name}");
        // Errors and duration per function, spend, CTR, two per SageMaker endpoint, and the
        // env's own.
        let alarms = 5 * 2 + 2 + 2 * env.sagemaker.endpoints.len() + env.alarms.len();
        assert_eq!(count(Kind::Alarm), alarms, "{name}");
    }
}

#[test]
fn only_prod_is_protected_and_its_data_bucket_too() {
    for name in ENVS {
        let env = env(name);
        let stack = stack(&env);
        let bucket = stack
            .resources
            .iter()
            .find(|r| r.address.kind == Kind::Bucket)
            .unwrap();
        assert_eq!(env.protected, name == "prod", "{name}");
        assert_eq!(bucket.protected, name == "prod", "{name}");
    }
}

#[test]
fn physical_names_carry_project_and_env() {
    let stack = stack(&env("dev"));
    for r in &stack.resources {
        assert!(
            // Catalog names use `_`: Athena wants them so.
            r.physical_id.contains("linkedin-ads-dev-")
                || r.physical_id.starts_with("linkedin_ads_dev"),
            "{}: {}",
            r.address,
            r.physical_id
        );
    }
    let bucket = stack
        .resources
        .iter()
        .find(|r| r.address.kind == Kind::Bucket)
        .unwrap();
    assert_eq!(bucket.physical_id, "linkedin-ads-dev-data-111111111111");
}

#[test]
fn role_policies_are_least_privilege() {
    let stack = stack(&env("local"));
    for r in &stack.resources {
        let Spec::Role(role) = &r.spec else { continue };
        for policy in role.inline_policies.values() {
            for s in policy.canonical()["Statement"].as_array().unwrap() {
                let actions: Vec<&str> = s["Action"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                assert!(
                    actions.iter().all(|a| !a.contains('*')),
                    "{}: wildcard action in {s}",
                    r.address
                );
                let resources: Vec<&Value> = s["Resource"].as_array().unwrap().iter().collect();
                // `*` resources only where AWS has no resource type for the action.
                if resources.iter().any(|v| *v == "*") && actions != ["ecr:GetAuthorizationToken"] {
                    assert_eq!(
                        actions,
                        ["cloudwatch:PutMetricData"],
                        "{}: `*` resource only where AWS requires it",
                        r.address
                    );
                    assert!(
                        s.get("Condition").is_some(),
                        "{}: PutMetricData scoped by namespace",
                        r.address
                    );
                }
            }
        }
    }
}

#[test]
fn each_function_role_reaches_only_its_own_prefixes_and_secret() {
    let stack = stack(&env("local"));
    let policy_of = |name: &str| {
        let r = stack
            .resources
            .iter()
            .find(|r| r.address.to_string() == format!("role.{name}"))
            .unwrap();
        let Spec::Role(role) = &r.spec else {
            unreachable!()
        };
        role.inline_policies[name].canonical().to_string()
    };
    let collector = policy_of("collector");
    assert!(collector.contains("/raw/linkedin/*") && collector.contains("linkedin-oauth"));
    assert!(!collector.contains("anthropic") && !collector.contains("/processed/"));
    let copy = policy_of("copy-generator");
    assert!(copy.contains("anthropic-api-key") && !copy.contains("linkedin-oauth"));
    let rotation = policy_of("token-rotation");
    assert!(
        rotation.contains("secretsmanager:UpdateSecretVersionStage") && !rotation.contains("s3:")
    );
}

#[test]
fn roles_depend_on_the_resources_their_policies_name() {
    let stack = stack(&env("local"));
    let role = stack
        .resources
        .iter()
        .find(|r| r.address.to_string() == "role.collector")
        .unwrap();
    let deps: Vec<String> = role.depends_on.iter().map(ToString::to_string).collect();
    assert_eq!(
        deps,
        [
            "bucket.data",
            "log_group.collector",
            "secret.linkedin-oauth"
        ]
    );
}

#[test]
fn a_public_function_url_is_rejected_before_any_call() {
    let mut stack = stack(&env("local"));
    for r in &mut stack.resources {
        if let Spec::FunctionUrl(url) = &mut r.spec {
            url.auth_type = "NONE".into();
        }
    }
    let err = infra_core::plan::validate(&stack).unwrap_err().to_string();
    assert!(
        err.contains(
            "function_url.collector: auth_type: NONE makes the function callable by anyone"
        ),
        "{err}"
    );
}

#[test]
fn every_function_waits_for_its_role_and_log_group_and_every_schedule_for_its_function() {
    let stack = stack(&env("local"));
    let deps = |address: &str| -> Vec<String> {
        let r = stack
            .resources
            .iter()
            .find(|r| r.address.to_string() == address)
            .unwrap();
        r.depends_on.iter().map(ToString::to_string).collect()
    };
    assert_eq!(
        deps("lambda.collector"),
        ["role.collector", "log_group.collector"]
    );
    assert_eq!(deps("rule.optimizer"), ["lambda.optimizer"]);
    assert_eq!(
        deps("permission.optimizer-schedule"),
        ["lambda.optimizer", "rule.optimizer"]
    );
    assert_eq!(
        deps("permission.token-rotation-secrets-manager"),
        ["lambda.token-rotation"]
    );
    assert_eq!(deps("function_url.collector"), ["lambda.collector"]);
}

#[test]
fn staging_creates_its_schedules_disabled_but_keeps_its_failure_alerts() {
    let stack = stack(&env("staging"));
    for r in &stack.resources {
        if let Spec::Rule(rule) = &r.spec {
            let schedule = rule.schedule_expression.is_some();
            assert_eq!(rule.enabled, !schedule, "{}", r.address);
        }
    }
}

fn spec_of<'a>(stack: &'a infra_core::model::Stack, address: &str) -> &'a Spec {
    &stack
        .resources
        .iter()
        .find(|r| r.address.to_string() == address)
        .unwrap_or_else(|| panic!("no {address}"))
        .spec
}

#[test]
fn every_function_has_an_errors_and_a_duration_alarm_to_the_alerts_topic() {
    let env = env("local");
    let stack = stack(&env);
    let topic = "arn:aws:sns:us-east-1:123456789012:linkedin-ads-local-alerts";
    for function in stacks::linkedin_ads::FUNCTIONS {
        let Spec::Alarm(errors) = spec_of(&stack, &format!("alarm.{function}-errors")) else {
            unreachable!()
        };
        assert_eq!(errors.comparison, "GreaterThanThreshold");
        assert_eq!(errors.threshold, 0.0);
        assert!(errors.alarm_actions.contains(topic) && errors.ok_actions.contains(topic));
        let Spec::Alarm(duration) = spec_of(&stack, &format!("alarm.{function}-duration")) else {
            unreachable!()
        };
        let timeout = *env
            .functions
            .get(function)
            .unwrap()
            .timeout_seconds
            .get_ref();
        assert_eq!(
            duration.threshold,
            f64::from(timeout) * 1000.0 * 0.8,
            "{function}"
        );
    }
}

#[test]
fn the_low_ctr_alarm_is_metric_math_gated_on_impressions() {
    let stack = stack(&env("local"));
    let Spec::Alarm(alarm) = spec_of(&stack, "alarm.collector-low-ctr") else {
        unreachable!()
    };
    let infra_core::model::AlarmMetric::Math {
        expression,
        metrics,
        ..
    } = &alarm.metric
    else {
        panic!("not a math alarm")
    };
    assert_eq!(expression, "IF(impressions > 1000, clicks / impressions)");
    assert_eq!(metrics["clicks"].namespace, "LinkedInAds");
    assert_eq!(metrics["impressions"].dimensions["Environment"], "local");
    assert_eq!(
        (alarm.comparison.as_str(), alarm.threshold),
        ("LessThanThreshold", 0.004)
    );
}

#[test]
fn prod_alarms_on_its_sagemaker_endpoint() {
    let stack = stack(&env("prod"));
    let Spec::Alarm(latency) = spec_of(
        &stack,
        "alarm.sagemaker-linkedin-ads-prod-creative-scorer-model-latency",
    ) else {
        unreachable!()
    };
    // ModelLatency is in microseconds; the env file says milliseconds.
    assert_eq!(latency.threshold, 1_000_000.0);
}

#[test]
fn linkedin_oauth_rotates_every_60_days_through_token_rotation_only() {
    let stack = stack(&env("local"));
    let rotation = stack
        .resources
        .iter()
        .find(|r| r.address.to_string() == "secret_rotation.linkedin-oauth")
        .unwrap();
    let Spec::SecretRotation(spec) = &rotation.spec else {
        unreachable!()
    };
    assert_eq!(spec.after_days, 60);
    assert_eq!(
        spec.function_arn,
        "arn:aws:lambda:us-east-1:123456789012:function:linkedin-ads-local-token-rotation"
    );
    let deps: Vec<String> = rotation
        .depends_on
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        deps,
        [
            "lambda.token-rotation",
            "permission.token-rotation-secrets-manager",
            "secret.linkedin-oauth"
        ]
    );
    // The rotation role may touch only that one secret.
    let Spec::Role(role) = spec_of(&stack, "role.token-rotation") else {
        unreachable!()
    };
    let policy = serde_json::to_string(&role.inline_policies).unwrap();
    assert!(policy.contains(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:linkedin-ads-local-linkedin-oauth-??????"
    ));
    assert!(!policy.contains("anthropic") && !policy.contains("secret:*"));
}

#[test]
fn the_dashboard_covers_every_function_and_the_optimizer_metrics() {
    let stack = stack(&env("local"));
    let Spec::Dashboard(dashboard) = spec_of(&stack, "dashboard.pipeline") else {
        unreachable!()
    };
    let body = dashboard.body.to_string();
    for function in stacks::linkedin_ads::FUNCTIONS {
        assert!(body.contains(&format!("linkedin-ads-local-{function}: duration")));
    }
    for metric in
        stacks::monitoring::OPTIMIZER_METRICS
            .iter()
            .chain(&["DailySpend", "Impressions", "Clicks"])
    {
        assert!(body.contains(&format!("\"{metric}\"")), "{metric}");
    }
    assert!(body.contains("clicks / impressions"));
    assert!(infra_core::kinds::dashboard::validate(dashboard).is_empty());
}

#[test]
fn the_catalog_has_projected_raw_tables_and_the_views() {
    let stack = stack(&env("local"));
    let table = |name: &str| {
        let r = stack
            .resources
            .iter()
            .find(|r| r.address.to_string() == format!("glue_table.{name}"))
            .unwrap();
        let Spec::GlueTable(t) = &r.spec else {
            unreachable!()
        };
        (t.clone(), r.depends_on.clone())
    };
    let (raw, deps) = table("raw_analytics");
    assert_eq!(raw.database, "linkedin_ads_local");
    assert_eq!(raw.parameters["projection.enabled"], "true");
    assert_eq!(raw.parameters["projection.dt.type"], "date");
    assert_eq!(
        raw.parameters["storage.location.template"],
        "s3://linkedin-ads-local-data-123456789012/raw/linkedin/ad_analytics/dt=${dt}/"
    );
    assert_eq!(
        raw.storage.unwrap().serde_library,
        "org.apache.hive.hcatalog.data.JsonSerDe"
    );
    assert!(deps.iter().any(|d| d.to_string() == "bucket.data"));
    let (view, deps) = table("creative_performance");
    assert!(view.view.unwrap().sql.starts_with("WITH latest_rows AS"));
    assert!(
        deps.iter()
            .any(|d| d.to_string() == "glue_table.raw_creatives")
    );
    let (summary, _) = table("daily_summary");
    assert_eq!(summary.columns.last().unwrap().name, "active_creatives");

    // The processor's Parquet: daily partitions projected like the raw ones; weekly files in
    // one folder. Their columns are the ones the processor writes (`datasets`).
    let (daily, _) = table("daily_aggregates");
    assert_eq!(daily.parameters["classification"], "parquet");
    assert_eq!(
        daily.parameters["storage.location.template"],
        "s3://linkedin-ads-local-data-123456789012/processed/daily_aggregates/dt=${dt}/"
    );
    let storage = daily.storage.unwrap();
    assert_eq!(
        storage.serde_library,
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
    assert_eq!(
        daily.columns.len(),
        datasets::DAILY_AGGREGATES.columns.len()
    );
    let (weekly, _) = table("weekly_summaries");
    assert!(weekly.partition_keys.is_empty());
    assert!(!weekly.parameters.contains_key("projection.enabled"));
    assert_eq!(
        weekly.storage.unwrap().location,
        "s3://linkedin-ads-local-data-123456789012/processed/weekly_summaries/"
    );
}

#[test]
fn a_view_with_a_syntax_error_or_an_unknown_table_fails_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("daily_summary.sql"),
        "-- broken\nSELECT date,\nFROM raw_analytics WHERE",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("creative_performance.sql"),
        "SELECT creative_id\nFROM raw_clicks",
    )
    .unwrap();
    let inputs = stacks::Inputs {
        artifacts: artifacts(),
        views: infra_core::sql::load_dir(dir.path()).unwrap(),
        queries: Vec::new(),
    };
    let err = linkedin_ads(&env("local"), &inputs)
        .unwrap_err()
        .to_string();
    assert!(err.contains("daily_summary.sql:3: "), "{err}");
    assert!(
        err.contains("creative_performance.sql:2: reads `raw_clicks`"),
        "{err}"
    );
}

/// Every rule fires on a stack that breaks it, naming the resource; a waiver with a reason in
/// the env file is the only way past, and it stays visible.
#[test]
fn policy_rules_fire_and_only_a_waiver_with_a_reason_passes_them() {
    use infra_core::compliance::{Rule, check};
    use infra_core::kinds::bucket::{Encryption, PublicAccessBlock};
    use infra_core::model::{Address, PolicyDocument, Statement};

    let base = env("local");
    let mut broken = stack(&base);
    let violations_of = |stack: &infra_core::model::Stack| -> Vec<(String, &'static str)> {
        check(stack)
            .violations
            .iter()
            .map(|v| (v.address.to_string(), v.rule.id()))
            .collect()
    };
    assert!(violations_of(&broken).is_empty());
    for r in &mut broken.resources {
        match (&mut r.spec, r.address.to_string().as_str()) {
            (Spec::Bucket(b), "bucket.data") => {
                b.encryption = Encryption::None;
                b.public_access_block = PublicAccessBlock {
                    block_public_policy: false,
                    ..PublicAccessBlock::ALL
                };
            }
            (Spec::LogGroup(g), "log_group.processor") => g.retention_days = None,
            (Spec::FunctionUrl(u), _) => u.auth_type = "NONE".into(),
            (Spec::SecretRotation(rotation), _) => {
                rotation.function_arn =
                    "arn:aws:lambda:us-east-1:123456789012:function:elsewhere".into()
            }
            (Spec::Role(role), "role.optimizer") => {
                role.managed_policies
                    .insert("arn:aws:iam::aws:policy/AdministratorAccess".into());
                role.inline_policies.insert(
                    "extra".into(),
                    PolicyDocument::new(vec![
                        Statement::allow(["s3:*"])
                            .sid("Everything")
                            .on("arn:aws:s3:::x/*"),
                        Statement::allow(["s3:GetObject"]).sid("Anywhere").on("*"),
                    ]),
                );
            }
            _ => {}
        }
    }
    // The optimizer's errors alarm goes: its function is left unwatched.
    broken
        .resources
        .retain(|r| r.address.to_string() != "alarm.optimizer-errors");
    let found = violations_of(&broken);
    let expected: Vec<(String, &str)> = [
        ("bucket.data", Rule::BucketEncrypted),
        ("bucket.data", Rule::BucketPublicAccessBlocked),
        ("role.optimizer", Rule::IamNoWildcardAction),
        ("role.optimizer", Rule::IamWildcardResource),
        ("role.optimizer", Rule::IamAwsManagedPolicy),
        ("log_group.processor", Rule::LogGroupRetention),
        ("lambda.optimizer", Rule::LambdaErrorsAlarm),
        ("function_url.collector", Rule::FunctionUrlAuth),
        (
            "secret_rotation.linkedin-oauth",
            Rule::SecretRotationFunction,
        ),
    ]
    .iter()
    .map(|(a, r)| (a.to_string(), r.id()))
    .collect();
    let mut sorted_found = found.clone();
    sorted_found.sort();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    assert_eq!(sorted_found, sorted_expected, "every rule, exactly once");
    assert_eq!(Rule::ALL.len(), expected.len());

    // An env file that keeps logs forever, with waivers for all but one log group.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("envs/local.toml"))
            .unwrap()
            .replace("retention_days = 14", "retention_days = 0");
    let mut waived = text.clone();
    for f in ["collector", "processor", "optimizer", "copy-generator"] {
        waived.push_str(&format!(
            "\n[[waivers]]\nresource = \"log_group.{f}\"\nrule = \"LOGS-RETENTION\"\nreason = \"kept for the audit of ticket ADS-42\"\n"
        ));
    }
    let path = Path::new("envs/local.toml");
    let env = Env::parse(path, &waived).unwrap_or_else(|e| panic!("{e}"));
    let report = check(&stack(&env));
    assert_eq!(
        report
            .violations
            .iter()
            .map(|v| (v.address.clone(), v.rule))
            .collect::<Vec<_>>(),
        vec![(
            "log_group.token-rotation".parse::<Address>().unwrap(),
            Rule::LogGroupRetention
        )]
    );
    assert_eq!(report.waived.len(), 4);
    assert!(
        report
            .waived
            .iter()
            .all(|(_, why)| why == "kept for the audit of ticket ADS-42")
    );

    // Bad waivers are rejected by the env file's checks, naming the field.
    let bad = format!(
        "{text}\n[[waivers]]\nresource = \"log_group\"\nrule = \"NO-SUCH-RULE\"\nreason = \"\"\n"
    );
    let err = Env::parse(path, &bad).unwrap_err().to_string();
    for field in [
        "waivers[0].resource",
        "waivers[0].rule",
        "waivers[0].reason",
    ] {
        assert!(err.contains(field), "{field} in {err}");
    }
    assert!(
        err.contains("LOGS-RETENTION"),
        "the known rules are listed: {err}"
    );
    // A waiver of a resource the stack does not have fails when the stack is built.
    let unknown = format!(
        "{text}\n[[waivers]]\nresource = \"log_group.nothing\"\nrule = \"LOGS-RETENTION\"\nreason = \"no such group exists here\"\n"
    );
    let env = Env::parse(path, &unknown).unwrap_or_else(|e| panic!("{e}"));
    let views_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/athena/views");
    let inputs = stacks::Inputs {
        artifacts: artifacts(),
        views: infra_core::sql::load_dir(&views_dir).unwrap(),
        queries: infra_core::sql::load_dir(&views_dir.join("../queries")).unwrap(),
    };
    let err = linkedin_ads(&env, &inputs).unwrap_err().to_string();
    assert!(
        err.contains("envs/local.toml:")
            && err.contains("waivers[0].resource")
            && err.contains("log_group.nothing"),
        "{err}"
    );
}

/// Normalization is stable on every real resource: its canonical fields diff empty with
/// themselves and with those of the resource after a JSON round trip (as state and saved
/// plans store it).
#[test]
fn every_resource_diffs_empty_with_itself_and_after_a_round_trip() {
    use infra_core::kinds::fields;
    use infra_core::plan::field_changes;
    for name in ENVS {
        let stack = stack(&env(name));
        for r in &stack.resources {
            let kind = r.address.kind;
            let own = fields(&r.spec);
            assert!(field_changes(kind, &own, &own.clone()).is_empty());
            let text = serde_json::to_string(r).unwrap();
            let back: infra_core::model::Resource = serde_json::from_str(&text).unwrap();
            let changes = field_changes(kind, &own, &fields(&back.spec));
            assert!(changes.is_empty(), "{name} {}: {changes:?}", r.address);
        }
    }
}
