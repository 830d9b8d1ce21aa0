//! Invalid env files fail before any AWS call (the endpoint here has nothing listening), and
//! the error names the file, line and field.

use testkit::{envs_copy, infra};

const BIN: &str = env!("CARGO_BIN_EXE_infra");

fn plan_with(edit: impl Fn(&str) -> String) -> testkit::Run {
    let dir = envs_copy();
    let path = dir.path().join("local.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(&text)).unwrap();
    let run = infra(
        BIN,
        None,
        &[
            "plan",
            "--env",
            "local",
            "--envs-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        !run.stderr.contains("DispatchFailure"),
        "no AWS call may be attempted: {}",
        run.all()
    );
    run
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap()
}

#[test]
fn unknown_key_names_file_line_and_field() {
    let original =
        std::fs::read_to_string(testkit::workspace_root().join("stacks/envs/local.toml")).unwrap();
    let run = plan_with(|t| {
        t.replace(
            "retention_days = 14",
            "retention_days = 14\nretention_dayz = 7",
        )
    });
    let line = line_of(&original, "retention_days = 14") + 1;
    assert!(
        run.stderr.contains(&format!("local.toml:{line}:")),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("retention_dayz"), "{}", run.all());
    assert!(run.stderr.contains("logs"), "{}", run.all());
}

#[test]
fn wrong_type_names_file_line_and_field() {
    let original =
        std::fs::read_to_string(testkit::workspace_root().join("stacks/envs/local.toml")).unwrap();
    let run = plan_with(|t| t.replace("daily_spend_usd = 500.0", "daily_spend_usd = \"lots\""));
    let line = line_of(&original, "daily_spend_usd");
    assert!(
        run.stderr.contains(&format!("local.toml:{line}:")),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("thresholds.daily_spend_usd"),
        "{}",
        run.all()
    );
}

#[test]
fn invalid_retention_names_file_line_and_field() {
    let original =
        std::fs::read_to_string(testkit::workspace_root().join("stacks/envs/local.toml")).unwrap();
    let run = plan_with(|t| t.replace("retention_days = 14", "retention_days = 15"));
    let line = line_of(&original, "retention_days = 14");
    assert!(
        run.stderr.contains(&format!("local.toml:{line}:")),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("logs.retention_days") && run.stderr.contains("15 days"),
        "{}",
        run.all()
    );
}

#[test]
fn invalid_bucket_name_names_file_line_and_field() {
    let original =
        std::fs::read_to_string(testkit::workspace_root().join("stacks/envs/local.toml")).unwrap();
    let run = plan_with(|t| {
        t.replace(
            "bucket = \"linkedin-ads-infra-state-123456789012\"",
            "bucket = \"Linkedin_Ads_State\"",
        )
    });
    let line = line_of(&original, "bucket = \"linkedin-ads-infra-state");
    assert!(
        run.stderr.contains(&format!("local.toml:{line}:")),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("state.bucket"), "{}", run.all());
}

#[test]
fn invalid_schedule_names_file_line_and_field() {
    let original =
        std::fs::read_to_string(testkit::workspace_root().join("stacks/envs/local.toml")).unwrap();
    let run = plan_with(|t| {
        t.replace(
            "collector = \"rate(6 hours)\"",
            "collector = \"rate(1 hours)\"",
        )
    });
    let line = line_of(&original, "collector = \"rate(6 hours)\"");
    assert!(
        run.stderr.contains(&format!("local.toml:{line}:")),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("schedules.collector") && run.stderr.contains("rate(1 hour)"),
        "{}",
        run.all()
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let run = plan_with(|t| {
        t.replace("retention_days = 14", "retention_days = 15")
            .replace("min_ctr = 0.004", "min_ctr = 4.0")
    });
    assert!(
        run.stderr.contains("logs.retention_days") && run.stderr.contains("thresholds.min_ctr"),
        "{}",
        run.all()
    );
}

#[test]
fn an_unknown_env_is_named_with_the_known_ones() {
    let run = infra(BIN, None, &["plan", "--env", "qa"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("qa.toml")
            && run
                .stderr
                .contains("no environment `qa`; the known ones are dev, local, prod, staging"),
        "{}",
        run.all()
    );
}

/// A command that needs AWS, with nothing listening at the endpoint: one line naming the
/// endpoint and the cause, not the connector's debug dump.
#[test]
fn an_unreachable_endpoint_is_named_in_one_line() {
    let run = infra(BIN, None, &["state", "list", "--env", "local"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let error = run.stderr.trim();
    assert_eq!(error.lines().count(), 1, "{}", run.all());
    assert!(
        error.contains("cannot reach AWS at http://127.0.0.1:9 (AWS_ENDPOINT_URL)")
            && error.contains("Connection refused")
            && !error.contains("ConnectorError"),
        "{}",
        run.all()
    );
}

#[test]
fn a_five_field_cron_names_file_line_and_field() {
    let original =
        std::fs::read_to_string(testkit::workspace_root().join("stacks/envs/local.toml")).unwrap();
    let run = plan_with(|t| {
        t.replace(
            "optimizer = \"cron(0 7 * * ? *)\"",
            "optimizer = \"cron(0 7 * * *)\"",
        )
    });
    let line = line_of(&original, "optimizer = \"cron(0 7 * * ? *)\"");
    assert!(
        run.stderr.contains(&format!("local.toml:{line}:")),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("schedules.optimizer") && run.stderr.contains("has 5 fields"),
        "{}",
        run.all()
    );
}

#[test]
fn function_limits_name_file_line_and_field() {
    let run = plan_with(|t| {
        t.replace(
            "processor = { memory_mb = 1024, timeout_seconds = 600 }",
            "processor = { memory_mb = 64, timeout_seconds = 901 }",
        )
    });
    assert!(
        run.stderr.contains("functions.processor.memory_mb") && run.stderr.contains("64 MB"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("functions.processor.timeout_seconds") && run.stderr.contains("901 s"),
        "{}",
        run.all()
    );
}

/// A workspace copy with `edit` applied to one view's SQL; only what the stack reads before
/// packaging is needed (the runtime manifest marks the workspace).
fn plan_with_view(name: &str, sql: &str) -> testkit::Run {
    let root = testkit::workspace_root();
    let copy = tempfile::tempdir().unwrap();
    for dir in [
        "runtime",
        "assets/athena/views",
        "assets/athena/queries",
        "stacks/envs",
    ] {
        std::fs::create_dir_all(copy.path().join(dir)).unwrap();
    }
    std::fs::copy(
        root.join("runtime/Cargo.toml"),
        copy.path().join("runtime/Cargo.toml"),
    )
    .unwrap();
    for dir in [
        "assets/athena/views",
        "assets/athena/queries",
        "stacks/envs",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.path().join(dir).join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(
        copy.path()
            .join("assets/athena/views")
            .join(format!("{name}.sql")),
        sql,
    )
    .unwrap();
    let envs = copy.path().join("stacks/envs");
    let run = infra(
        BIN,
        None,
        &[
            "plan",
            "--env",
            "local",
            "--envs-dir",
            envs.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        !run.stderr.contains("DispatchFailure") && !run.stderr.contains("Packaging"),
        "{}",
        run.all()
    );
    run
}

#[test]
fn a_view_with_a_syntax_error_fails_the_plan_naming_file_and_line() {
    let run = plan_with_view(
        "daily_summary",
        "-- summary\nSELECT date, campaign_id\nFROM raw_analytics\nGROUP BY",
    );
    assert!(
        run.stderr.contains("daily_summary.sql:4: "),
        "{}",
        run.all()
    );
}

#[test]
fn a_view_reading_an_undeclared_table_fails_the_plan_naming_file_and_line() {
    let run = plan_with_view(
        "daily_summary",
        "-- summary\nSELECT date, campaign_id\nFROM raw_clicks",
    );
    assert!(
        run.stderr
            .contains("daily_summary.sql:3: reads `raw_clicks`"),
        "{}",
        run.all()
    );
}

#[test]
fn an_alarm_with_a_negative_threshold_unknown_statistic_and_comparison_names_each_field() {
    let run = plan_with(|t| {
        t.replace("statistic = \"Sum\"", "statistic = \"Median\"")
            .replace(
                "comparison = \"GreaterThanThreshold\"",
                "comparison = \"Above\"",
            )
            .replace("threshold = 53687091200", "threshold = -1")
    });
    let original =
        std::fs::read_to_string(testkit::workspace_root().join("stacks/envs/local.toml")).unwrap();
    for (field, needle, message) in [
        (
            "alarms[0].statistic",
            "statistic = \"Sum\"",
            "unknown statistic `Median`",
        ),
        (
            "alarms[0].comparison",
            "comparison = \"GreaterThanThreshold\"",
            "unknown comparison `Above`",
        ),
        (
            "alarms[0].threshold",
            "threshold = 53687091200",
            "a threshold is not negative",
        ),
    ] {
        let line = line_of(&original, needle);
        let expected = format!("local.toml:{line}:");
        let found = run
            .stderr
            .lines()
            .any(|l| l.contains(&expected) && l.contains(field) && l.contains(message));
        assert!(found, "{field}: {}", run.all());
    }
}

#[test]
fn invalid_optimizer_guardrails_name_file_line_and_field() {
    let original =
        std::fs::read_to_string(testkit::workspace_root().join("stacks/envs/local.toml")).unwrap();
    let run = plan_with(|t| {
        t.replace("confidence_z = 1.96", "confidence_z = 0.0")
            .replace(
                "max_bid_change_percent = 20",
                "max_bid_change_percent = 250.0",
            )
    });
    assert_eq!(run.code, 1, "{}", run.all());
    for (text, field) in [
        ("confidence_z = 1.96", "optimizer.confidence_z"),
        (
            "max_bid_change_percent = 20",
            "optimizer.max_bid_change_percent",
        ),
    ] {
        let line = line_of(&original, text);
        assert!(
            run.stderr.contains(&format!("local.toml:{line}:")) && run.stderr.contains(field),
            "{field}: {}",
            run.all()
        );
    }
}

#[test]
fn a_policy_violation_fails_the_plan_naming_each_resource_and_the_rule() {
    // Retention 0 (keep forever) is a valid setting, but breaks LOGS-RETENTION.
    let run = plan_with(|t| t.replace("retention_days = 14", "retention_days = 0"));
    assert!(
        run.stderr.contains("5 policy violation(s)"),
        "{}",
        run.all()
    );
    for f in [
        "collector",
        "processor",
        "optimizer",
        "copy-generator",
        "token-rotation",
    ] {
        assert!(
            run.stderr
                .contains(&format!("log_group.{f} [LOGS-RETENTION]: log group")),
            "{}",
            run.all()
        );
    }
    assert!(
        run.stderr.contains("[[waivers]]"),
        "says how to waive: {}",
        run.all()
    );
}

#[test]
fn a_waiver_with_a_reason_lets_the_plan_through_and_is_shown() {
    let dir = envs_copy();
    let path = dir.path().join("local.toml");
    let mut text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("retention_days = 14", "retention_days = 0");
    for f in [
        "collector",
        "processor",
        "optimizer",
        "copy-generator",
        "token-rotation",
    ] {
        text.push_str(&format!(
            "\n[[waivers]]\nresource = \"log_group.{f}\"\nrule = \"LOGS-RETENTION\"\nreason = \"legal hold ADS-42\"\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    let run = infra(
        BIN,
        None,
        &[
            "synth",
            "--env",
            "local",
            "--envs-dir",
            dir.path().to_str().unwrap(),
            "--plans-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains("log_group.token-rotation [LOGS-RETENTION]: log group"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("(waived: legal hold ADS-42)"),
        "{}",
        run.all()
    );
}

#[test]
fn timeouts_out_of_range_or_unknown_name_file_line_and_field() {
    let run =
        plan_with(|t| format!("{t}\n[timeouts]\npropagation_seconds = 0\nready_seconds = 7200\n"));
    let edited_lines =
        std::fs::read_to_string(testkit::workspace_root().join("stacks/envs/local.toml"))
            .unwrap()
            .lines()
            .count();
    // The appended table starts after a blank line: its keys are the next two lines.
    for (offset, field, says) in [
        (3, "timeouts.propagation_seconds", "0 s"),
        (4, "timeouts.ready_seconds", "7200 s"),
    ] {
        let line = edited_lines + offset;
        assert!(
            run.stderr.contains(&format!("local.toml:{line}:"))
                && run.stderr.contains(field)
                && run.stderr.contains(says),
            "{field}: {}",
            run.all()
        );
    }
    let run = plan_with(|t| format!("{t}\n[timeouts]\npropagation = 30\n"));
    assert!(
        run.stderr.contains("propagation") && run.stderr.contains("timeouts"),
        "{}",
        run.all()
    );
}

/// An AWS endpoint that answers STS `GetCallerIdentity` for account 123456789012 once and
/// records every request: whatever else a command sends is seen (and answered with a 500).
fn sts_only() -> testkit::fake_http::FakeServer {
    let identity = testkit::fake_http::Reply {
        status: 200,
        body: "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
               <GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/ops</Arn>\
               <UserId>AIDAEXAMPLE</UserId><Account>123456789012</Account>\
               </GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId>\
               </ResponseMetadata></GetCallerIdentityResponse>"
            .to_string(),
        content_type: "text/xml",
        headers: Vec::new(),
    };
    testkit::fake_http::FakeServer::start(vec![identity])
}

/// Every command that reads or writes an env's AWS resources, with its arguments.
const ENV_COMMANDS: &[&[&str]] = &[
    &["plan", "--env", "local"],
    &["apply", "--env", "local", "--auto-approve"],
    &["drift", "--env", "local"],
    &["destroy", "--env", "local", "--auto-approve"],
    &["state", "list", "--env", "local"],
    &["state", "show", "--env", "local", "bucket.data"],
    &["state", "unlock", "--env", "local"],
    &["secret", "list", "--env", "local"],
    &["secret", "set", "--env", "local", "linkedin-oauth"],
    &["models", "list", "--env", "local"],
    &[
        "models",
        "promote",
        "--env",
        "local",
        "-m",
        "creative-scorer",
        "--version",
        "1",
    ],
    &[
        "models",
        "rollback",
        "--env",
        "local",
        "-m",
        "creative-scorer",
    ],
];

fn run_against(server: &testkit::fake_http::FakeServer, envs: &str, args: &[&str]) -> testkit::Run {
    let mut all = vec!["--envs-dir", envs];
    all.extend_from_slice(args);
    let output = testkit::infra_command(BIN, None, &all)
        .envs(testkit::endpoint_env(server.url.clone()))
        .output()
        .unwrap();
    testkit::Run::from_output(output)
}

#[test]
fn credentials_of_another_account_stop_every_env_command_after_one_identity_call() {
    let dir = envs_copy();
    let path = dir.path().join("local.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(
            "account_id = \"123456789012\"",
            "account_id = \"210987654321\"",
        ),
    )
    .unwrap();
    let envs = dir.path().to_str().unwrap();
    for args in ENV_COMMANDS {
        let server = sts_only();
        let run = run_against(&server, envs, args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.all());
        assert!(
            run.stderr.contains("account 210987654321")
                && run.stderr.contains("account 123456789012")
                && run.stderr.contains("local.toml"),
            "{args:?} names both accounts and the env file: {}",
            run.all()
        );
        let requests = server.requests();
        assert_eq!(
            requests.len(),
            1,
            "{args:?}: one call, nothing after it: {requests:?}"
        );
        assert!(
            requests[0].body.contains("Action=GetCallerIdentity"),
            "{args:?}: {requests:?}"
        );
    }
}

#[test]
fn a_shell_set_to_another_region_stops_every_env_command_before_any_aws_call() {
    let dir = envs_copy();
    let envs = dir.path().to_str().unwrap();
    for args in ENV_COMMANDS {
        let server = sts_only();
        let mut all = vec!["--envs-dir", envs];
        all.extend_from_slice(args);
        let output = testkit::infra_command(BIN, None, &all)
            .envs(testkit::endpoint_env(server.url.clone()))
            .env("AWS_REGION", "eu-west-1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("region us-east-1") && stderr.contains("AWS_REGION says eu-west-1"),
            "{args:?} names both regions: {stderr}"
        );
        assert_eq!(server.requests(), Vec::new(), "{args:?}: no AWS call");
    }
}
