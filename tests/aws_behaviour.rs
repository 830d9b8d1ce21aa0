//! The engine against AWS's own behaviour: every end-to-end step through the AWS-behaviour
//! layer (`testkit::aws_behaviour`) with every rule on, each rule asserted to have fired and
//! the engine to have handled it (a retry, a wait, a direct read, a refusal), so that taking
//! the handling away fails a test.

use std::time::{Duration, Instant};

use infra::bench;
use infra_core::aws::Aws;
use infra_core::kinds::lambda::LambdaSpec;
use infra_core::kinds::permission::PermissionSpec;
use infra_core::kinds::role::RoleSpec;
use infra_core::model::{Address, Kind, Stack};
use infra_core::plan::PlanOptions;
use testkit::aws_behaviour::{Config, Rule, Windows};
use testkit::{Moto, Run, infra};

const BIN: &str = env!("CARGO_BIN_EXE_infra");

fn run(moto: &Moto, args: &[&str]) -> (Run, Duration) {
    let started = Instant::now();
    let run = infra(BIN, Some(moto), args);
    (run, started.elapsed())
}

fn run_in(moto: &Moto, envs: &std::path::Path, args: &[&str]) -> Run {
    let envs = envs.to_string_lossy().into_owned();
    let mut all = vec!["--envs-dir", envs.as_str()];
    all.extend_from_slice(args);
    infra(BIN, Some(moto), &all)
}

fn assert_exit(run: &Run, code: i32, what: &str, moto: &Moto) {
    assert_eq!(
        run.code,
        code,
        "{what}: {}\n--- what the AWS-behaviour layer did\n{}",
        run.all(),
        moto.layer().report()
    );
}

/// Issue 16's "done when": with every rule on and windows of at least 8 s, apply from
/// nothing, a no-op plan, no drift, destroy then apply at once, and a no-op plan again.
/// Listings lag a minute, longer than an apply, so that the commands after one meet it.
#[tokio::test(flavor = "multi_thread")]
async fn the_stack_meets_every_rule_from_nothing_to_destroy_and_back() {
    let config = Config {
        windows: Windows {
            listing_lag: Duration::from_secs(60),
            ..Windows::at_least(8)
        },
        ..Config::every_rule(8)
    };
    let moto = Moto::start_with(config);
    let layer = moto.layer();

    let (apply, took) = run(&moto, &["apply", "--env", "local", "--auto-approve"]);
    assert_exit(&apply, 0, "apply from nothing", &moto);
    eprintln!("apply from nothing through every rule: {took:.1?}");
    // The waits are told, with the time waited.
    for said in [
        "IAM propagation: role not yet assumable by Lambda",
        "IAM propagation: role not yet assumable by Glue",
        "waiting until the function is ready (Pending)",
        "EventBridge reported a concurrent modification",
        "the rotation function's invoke permission is not effective yet",
        "permissions on the new topic are propagating (ABAC)",
        "permissions on the new log group are propagating (ABAC)",
        "S3 eventual consistency: the new bucket is not visible yet",
        "S3 reported a conflicting conditional write in progress",
    ] {
        assert!(
            apply.stderr.contains(said),
            "apply does not say `{said}`:\n{}",
            apply.stderr
        );
    }
    assert!(apply.stderr.contains("waited"), "{}", apply.stderr);

    let (plan, _) = run(&moto, &["plan", "--env", "local", "--detailed-exitcode"]);
    assert_exit(&plan, 0, "plan right after apply", &moto);
    let (drift, _) = run(&moto, &["drift", "--env", "local"]);
    assert_exit(&drift, 0, "drift right after apply", &moto);

    let (destroy, _) = run(
        &moto,
        &[
            "destroy",
            "--env",
            "local",
            "--auto-approve",
            "--purge-data",
        ],
    );
    assert_exit(&destroy, 0, "destroy", &moto);
    for said in [
        "EventBridge reported a concurrent modification",
        "EventBridge eventual consistency: targets just removed are still seen",
        "IAM propagation: the role's policies were detached moments ago",
        "a conflicting operation on the log group is in progress",
    ] {
        assert!(
            destroy.stderr.contains(said),
            "destroy does not say `{said}`:\n{}",
            destroy.stderr
        );
    }
    // Deleted moments ago, still in the tagging API's listing: not orphans.
    let (drift, _) = run(&moto, &["drift", "--env", "local"]);
    assert_exit(&drift, 0, "drift right after destroy", &moto);
    assert!(!drift.stdout.contains("orphan"), "{}", drift.all());

    let (again, _) = run(&moto, &["apply", "--env", "local", "--auto-approve"]);
    assert_exit(&again, 0, "apply right after destroy", &moto);
    for said in [
        "the name of a secret deleted moments ago is not free yet",
        "the name of a bucket deleted moments ago is not free yet",
    ] {
        assert!(
            again.stderr.contains(said),
            "apply does not say `{said}`:\n{}",
            again.stderr
        );
    }
    let (plan, _) = run(&moto, &["plan", "--env", "local", "--detailed-exitcode"]);
    assert_exit(&plan, 0, "plan after destroy and apply", &moto);

    // Every rule this sequence can meet fired.
    let report = layer.report();
    for rule in Rule::ALL {
        let hits = layer.hits_of(rule);
        match rule {
            // Updates, parallel permission writes and a create that finds the workgroup
            // exist are the subject of the tests below.
            Rule::LambdaUpdateInProgress | Rule::AthenaAlreadyCreated => {}
            // The native engine never calls CloudFormation (tests/cloudformation.rs does).
            Rule::CloudFormationInProgress => assert!(hits.is_empty(), "{report}"),
            // Permission writes to one function never overlap: nothing was lost.
            Rule::LambdaPolicyRace => assert!(hits.is_empty(), "{report}"),
            _ => assert!(!hits.is_empty(), "rule {rule} never fired:\n{report}"),
        }
    }
    // The engine waited for Pending functions rather than being refused by them.
    assert!(
        layer
            .hits_of(Rule::LambdaPending)
            .iter()
            .all(|h| h.what == "read as Pending"),
        "{report}"
    );
    for (rule, what) in [
        (Rule::SecretsListLag, "created moments ago: not listed yet"),
        (Rule::SecretsListLag, "deleted moments ago: still listed"),
        (Rule::TaggingListLag, "created moments ago: not listed yet"),
        (Rule::TaggingListLag, "deleted moments ago: still listed"),
        (Rule::IamDeleteConflict, "policies detached moments ago"),
        (
            Rule::S3BucketSettling,
            "name of a bucket deleted moments ago",
        ),
        (Rule::S3BucketSettling, "new bucket not yet visible"),
    ] {
        assert!(
            layer.hits_of(rule).iter().any(|h| h.what == what),
            "{rule} never did `{what}`:\n{report}"
        );
    }
}

/// With a rule that never clears, apply gives up within its stated bound, naming the resource
/// and AWS's error; once the cause clears, a re-run converges.
#[tokio::test(flavor = "multi_thread")]
async fn retries_are_bounded_and_a_rerun_converges_once_the_cause_clears() {
    let moto = Moto::start_with(Config::only(&[Rule::IamPropagation], Windows::suite()));
    let envs = testkit::envs_copy();
    let file = envs.path().join("local.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{text}\n[timeouts]\npropagation_seconds = 6\n"),
    )
    .unwrap();
    moto.layer().never_clear(Rule::IamPropagation);
    // Packaging first (it may wait for other builds), so that the apply below is timed alone.
    let plan = run_in(&moto, envs.path(), &["plan", "--env", "local"]);
    assert_exit(&plan, 0, "plan", &moto);

    let started = Instant::now();
    let failed = run_in(
        &moto,
        envs.path(),
        &["apply", "--env", "local", "--auto-approve"],
    );
    let took = started.elapsed();
    assert_exit(&failed, 1, "apply while IAM never propagates", &moto);
    for said in [
        "  lambda.",
        "CreateFunction: InvalidParameterValueException: The role defined for the function cannot be assumed by Lambda.",
        "still failing after waiting",
        "for IAM propagation: role not yet assumable by Lambda",
    ] {
        assert!(
            failed.stderr.contains(said),
            "the error does not say `{said}`:\n{}",
            failed.all()
        );
    }
    // The bound is 6 s; the rest of the apply (roles, buckets, packaging done) takes seconds.
    assert!(
        took < Duration::from_secs(90),
        "gave up only after {took:?}"
    );

    moto.layer().clear(Rule::IamPropagation);
    let rerun = run_in(
        &moto,
        envs.path(),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_exit(&rerun, 0, "apply once IAM has propagated", &moto);
    let plan = run_in(
        &moto,
        envs.path(),
        &["plan", "--env", "local", "--detailed-exitcode"],
    );
    assert_exit(&plan, 0, "plan after the re-run", &moto);
}

/// Two applies back to back, each changing a function's configuration: the second meets the
/// first's update still in progress and waits for it.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_waits_for_the_one_before_it() {
    let moto = Moto::start();
    let envs = testkit::envs_copy();
    let apply = run_in(
        &moto,
        envs.path(),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_exit(&apply, 0, "apply", &moto);

    let file = envs.path().join("local.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    for memory in ["640", "768"] {
        let edited = original.replace(
            "collector = { memory_mb = 512, timeout_seconds = 300 }",
            &format!("collector = {{ memory_mb = {memory}, timeout_seconds = 300 }}"),
        );
        assert_ne!(edited, original);
        std::fs::write(&file, edited).unwrap();
        let update = run_in(
            &moto,
            envs.path(),
            &["apply", "--env", "local", "--auto-approve"],
        );
        assert_exit(&update, 0, "apply of a memory change", &moto);
    }
    let report = moto.layer().report();
    assert!(
        moto.layer()
            .hits_of(Rule::LambdaUpdateInProgress)
            .iter()
            .any(|h| h.what == "read as InProgress"),
        "{report}"
    );
    let plan = run_in(
        &moto,
        envs.path(),
        &["plan", "--env", "local", "--detailed-exitcode"],
    );
    assert_exit(&plan, 0, "plan after the updates", &moto);
    let lambda = aws_sdk_lambda::Client::new(&moto.sdk_config().await);
    let config = lambda
        .get_function_configuration()
        .function_name("linkedin-ads-local-collector")
        .send()
        .await
        .unwrap();
    assert_eq!(config.memory_size(), Some(768));
}

/// Four invoke permissions on one function, applied with a parallelism of eight: AWS loses
/// permission changes sent to one function in parallel, so the engine sends them one at a
/// time and all four are there.
#[tokio::test(flavor = "multi_thread")]
async fn permission_changes_to_one_function_go_one_at_a_time() -> anyhow::Result<()> {
    let moto = Moto::start();
    let aws = Aws::from_sdk_config(&moto.engine_sdk_config().await, testkit::REGION);
    let scratch = tempfile::tempdir()?;
    let artifact = bench::artifact(scratch.path())?;
    let target = bench::target(4, "123456789012", testkit::REGION);
    let mut stack = Stack::new(target);
    let role = stack.add(
        "job",
        RoleSpec::for_service(
            stack.target.name("job"),
            "lambda.amazonaws.com",
            "Execution role",
        ),
    );
    let function = stack.add(
        "job",
        LambdaSpec::rust(stack.target.name("job"), &role, &artifact),
    );
    for i in 0..4 {
        stack.add(
            &format!("invoke-{i}"),
            PermissionSpec::invoke_for_account(
                &function,
                &format!("Invoke{i}"),
                "events.amazonaws.com",
                "123456789012",
            ),
        );
    }
    infra_core::plan::validate(&stack)?;
    bench::apply(&aws, &stack, PlanOptions::default()).await?;

    let lambda = aws_sdk_lambda::Client::new(&moto.sdk_config().await);
    let policy = lambda
        .get_policy()
        .function_name(stack.target.name("job"))
        .send()
        .await?;
    let statements =
        serde_json::from_str::<serde_json::Value>(policy.policy().unwrap_or("{}"))?["Statement"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0);
    let report = moto.layer().report();
    assert_eq!(statements, 4, "a permission was lost:\n{report}");
    assert!(
        moto.layer().hits_of(Rule::LambdaPolicyRace).is_empty(),
        "{report}"
    );
    let (plan, _) = bench::plan(&aws, &stack, PlanOptions::default()).await?;
    assert!(!plan.has_changes(), "{report}");
    let permissions = plan
        .changes
        .iter()
        .filter(|c| c.address.kind == Kind::Permission)
        .count();
    assert_eq!(permissions, 4);
    Ok(())
}

/// Athena's own answers: a missing workgroup is a 400 that says "is not found" (read and
/// delete take it as missing), and creating one that exists says "is already created" (the
/// create converges on it).
#[tokio::test(flavor = "multi_thread")]
async fn athena_not_found_and_already_created_are_taken_as_aws_says_them() -> anyhow::Result<()> {
    use infra_core::kinds::workgroup::{self, WorkgroupSpec};
    let moto = Moto::start();
    let aws = Aws::from_sdk_config(&moto.engine_sdk_config().await, testkit::REGION);
    let target = bench::target(1, "123456789012", testkit::REGION);
    let spec = WorkgroupSpec {
        name: "behaviour-analytics".into(),
        description: "Results of the behaviour test".into(),
        output_location: "s3://behaviour-results/athena/".into(),
        result_encryption: "SSE_S3".into(),
        enforce_configuration: true,
        bytes_scanned_cutoff: Some(workgroup::MIN_BYTES_SCANNED_CUTOFF),
        publish_metrics: true,
        named_queries: Default::default(),
        tags: [("owner".to_string(), "tests".to_string())].into(),
        references: Default::default(),
    };
    let read = |aws: &Aws| {
        let aws = aws.clone();
        let target = target.clone();
        async move {
            let t = infra_core::kinds::ReadTarget {
                address: Address::new(Kind::Workgroup, "analytics"),
                physical_id: "behaviour-analytics".into(),
                known: false,
            };
            infra_core::kinds::read(&aws, &target, &[t], None).await
        }
    };
    let before = read(&aws).await?;
    assert_eq!(
        before.values().next(),
        Some(&None),
        "missing reads as missing"
    );
    workgroup::delete(&aws, &spec.name).await?;

    workgroup::create(&aws, &target, &spec).await?;
    workgroup::create(&aws, &target, &spec).await?;
    let after = read(&aws).await?;
    assert!(matches!(after.values().next(), Some(Some(_))));

    let report = moto.layer().report();
    let hits = moto.layer().hits_of(Rule::AthenaNotFound);
    for operation in ["GetWorkGroup", "DeleteWorkGroup"] {
        assert!(hits.iter().any(|h| h.operation == operation), "{report}");
    }
    assert!(
        !moto.layer().hits_of(Rule::AthenaAlreadyCreated).is_empty(),
        "{report}"
    );
    Ok(())
}

/// `make bench-aws-behaviour`: the wall time the rules add to an apply from nothing, the same
/// apply against bare moto and through every rule with 8-second windows (listings lagging a
/// minute). Two runs of each; packaging is warmed first so that neither pays for it.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: make bench-aws-behaviour"]
async fn bench_apply_from_nothing_with_and_without_the_rules() {
    let warm = Moto::start_with(Config::none());
    let (plan, _) = run(&warm, &["plan", "--env", "local"]);
    assert_exit(&plan, 0, "warm-up plan", &warm);
    let every_rule = || Config {
        windows: Windows {
            listing_lag: Duration::from_secs(60),
            ..Windows::at_least(8)
        },
        ..Config::every_rule(8)
    };
    let mut lines = Vec::new();
    for round in 1..=2 {
        for (label, config) in [
            ("bare moto (no rule)", Config::none()),
            ("every rule, 8 s windows", every_rule()),
        ] {
            let moto = Moto::start_with(config);
            let (apply, took) = run(&moto, &["apply", "--env", "local", "--auto-approve"]);
            assert_exit(&apply, 0, label, &moto);
            let waits = apply.stderr.matches("infra::wait").count();
            lines.push(format!(
                "round {round}: {label:<26} apply from nothing {:>6.1} s ({waits} waits logged)",
                took.as_secs_f64()
            ));
        }
    }
    println!("\n{}", lines.join("\n"));
}
