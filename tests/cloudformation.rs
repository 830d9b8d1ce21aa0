//! CloudFormation as the second engine: every env's template, as `infra synth --format
//! cloudformation` writes it, is deterministic, holds every resource of the stack as its
//! CloudFormation types with no secret value, and passes `cfn-lint` (pinned in
//! requirements-dev.txt) with nothing to report. Then the engine itself against moto, through
//! the AWS-behaviour layer (change sets and stack operations take time, as in AWS): a stack
//! of the kinds moto's CloudFormation implements is planned, created, planned with no changes,
//! updated, and destroyed without leaving anything tagged for its env; and through the CLI,
//! the whole LinkedIn Ads stack plans as creates and a protected env is refused.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use testkit::{infra, workspace_root};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const ENVS: [&str; 4] = ["local", "dev", "staging", "prod"];

fn synth(env: &str, out: &Path) -> Value {
    let out_arg = out.to_str().unwrap();
    let run = infra(
        BIN,
        None,
        &[
            "synth",
            "--env",
            env,
            "--format",
            "cloudformation",
            "--out",
            out_arg,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

#[test]
fn every_env_synthesizes_a_template_cfn_lint_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let mut types = BTreeSet::new();
    let mut files = Vec::new();
    for env in ENVS {
        let path = dir.path().join(format!("{env}.json"));
        let template = synth(env, &path);
        // The same sources give the same bytes.
        let again = dir.path().join(format!("{env}-again.json"));
        synth(env, &again);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap(),
            "{env}: two runs wrote different templates"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for word in ["SecretString", "GenerateSecretString"] {
            assert!(!text.contains(word), "{env}: the template holds {word}");
        }
        assert_eq!(template.get("Parameters"), None, "{env}: no parameters");
        let resources = template["Resources"].as_object().unwrap();
        for (id, resource) in resources {
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{env}: logical id {id}"
            );
            types.insert(resource["Type"].as_str().unwrap().to_string());
            let Some(tags) = resource["Properties"]["Tags"].as_array() else {
                continue;
            };
            let keys: Vec<&str> = tags.iter().filter_map(|t| t["Key"].as_str()).collect();
            for key in ["managed-by", "infra:stack", "infra:env", "infra:address"] {
                assert!(keys.contains(&key), "{env}: {id} lacks the tag {key}");
            }
        }
        // Lambda code is in the assets bucket under the hash of its zip.
        let collector = &resources["LambdaCollector"]["Properties"]["Code"];
        assert_eq!(
            collector["S3Bucket"],
            template["Metadata"]["infra"]["account_id"]
                .as_str()
                .map(|account| format!(
                    "infra-assets-{account}-{}",
                    template["Metadata"]["infra"]["region"].as_str().unwrap()
                ))
                .unwrap()
        );
        let key = collector["S3Key"].as_str().unwrap();
        assert!(
            key.starts_with("lambda/collector/") && key.len() == "lambda/collector/".len() + 64 + 4,
            "{key}"
        );
        // Dependencies follow the stack's graph: a reference is an intrinsic, any other edge
        // a `DependsOn`. Protection is kept by CloudFormation too.
        let function = &resources["LambdaCollector"];
        assert_eq!(
            function["Properties"]["Role"],
            serde_json::json!({"Fn::GetAtt": ["RoleCollector", "Arn"]})
        );
        assert_eq!(
            function["DependsOn"],
            serde_json::json!(["LogGroupCollector"])
        );
        if env == "prod" {
            assert_eq!(resources["BucketData"]["DeletionPolicy"], "Retain");
        }
        files.push(path);
    }
    let expected = [
        "AWS::Athena::NamedQuery",
        "AWS::Athena::WorkGroup",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::Events::Rule",
        "AWS::Glue::Crawler",
        "AWS::Glue::Database",
        "AWS::Glue::Table",
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::Lambda::Permission",
        "AWS::Lambda::Url",
        "AWS::Logs::LogGroup",
        "AWS::S3::Bucket",
        "AWS::SNS::Subscription",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::SecretsManager::RotationSchedule",
        "AWS::SecretsManager::Secret",
    ];
    assert_eq!(
        types.iter().map(String::as_str).collect::<Vec<_>>(),
        expected
    );

    // cfn-lint, with the checks of .cfnlintrc (each exception explained there).
    let lint = Command::new(workspace_root().join(".venv/bin/cfn-lint"))
        .current_dir(workspace_root())
        .args(&files)
        .output()
        .expect("run .venv/bin/cfn-lint (make venv installs it)");
    assert!(
        lint.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}

/// The engine's whole cycle on a stack of scheduled functions (log group, role, function,
/// rule, permission: types moto's CloudFormation creates, see infra/core/MOTO-CLOUDFORMATION.md),
/// large enough that its template goes through the assets bucket.
#[tokio::test(flavor = "multi_thread")]
async fn the_engine_creates_updates_and_destroys_a_stack_through_change_sets() {
    use infra_core::aws::Aws;
    use infra_core::cloudformation_engine::{Engine, EngineError, StackAction, StackOperation};
    use infra_core::model::Spec;
    use testkit::aws_behaviour::Rule;

    const JOBS: usize = 12;
    let moto = testkit::Moto::start();
    let aws = Aws::from_sdk_config(&moto.engine_sdk_config().await, testkit::REGION);
    let truth = moto.sdk_config().await;
    let lambda = aws_sdk_lambda::Client::new(&truth);
    let scratch = tempfile::tempdir().unwrap();
    let artifact = infra::bench::artifact(scratch.path()).unwrap();
    let target = infra::bench::target(JOBS, "123456789012", testkit::REGION);
    let mut stack = stacks::synthetic::scheduled_functions(target, JOBS, &artifact);
    infra_core::plan::validate(&stack).unwrap();
    let resources = stack.resources.len();
    assert_eq!(resources, JOBS * 5);

    // A plan creates a change set, reads it and deletes it, and the empty stack with it.
    let engine = Engine::new(&aws, &stack);
    let plan = engine.plan(None).await.unwrap();
    assert_eq!(plan.operation, StackOperation::Create);
    assert_eq!(plan.changes.len(), resources, "{plan:#?}");
    assert!(plan.changes.iter().all(|c| c.action == StackAction::Create));
    assert!(
        plan.changes.iter().all(|c| c.address.is_some()),
        "{plan:#?}"
    );
    assert!(
        plan.template_via_assets,
        "{} bytes went inline; the test means the S3 route",
        plan.template_bytes
    );
    assert_eq!(
        plan.uploaded.len(),
        2,
        "the code and the template: {:?}",
        plan.uploaded
    );
    assert_eq!(plan.change_set, None);
    let text = infra_core::render::change_set_text(&plan);
    assert!(
        text.contains(&format!(
            "Plan: {resources} to create, 0 to update, 0 to replace, 0 to delete."
        )),
        "{text}"
    );
    assert!(
        text.contains("+   lambda.job0000 (LambdaJob0000)"),
        "{text}"
    );
    let json = infra_core::render::change_set_json(&plan);
    assert_eq!(json["summary"]["create"], resources);
    assert!(
        engine.describe().await.unwrap().is_none(),
        "the plan left a stack behind"
    );

    // Apply: a kept change set, executed; the stack's events stream.
    let plan = engine.plan(Some("first-apply")).await.unwrap();
    assert_eq!(plan.uploaded, Vec::<String>::new(), "nothing new to upload");
    let mut events = Vec::new();
    let outcome = engine
        .execute(&plan, &mut |e| events.push(e.clone()))
        .await
        .unwrap();
    assert_eq!(outcome.status, "CREATE_COMPLETE");
    assert!(
        events.iter().any(|e| e.status == "CREATE_COMPLETE"),
        "{events:#?}"
    );
    let live = lambda
        .get_function_configuration()
        .function_name("bench-n12-job0000")
        .send()
        .await
        .unwrap();
    assert_eq!(live.memory_size(), Some(256));

    let again = engine.plan(None).await.unwrap();
    assert!(!again.has_changes(), "{again:#?}");
    assert_eq!(again.operation, StackOperation::Update);
    assert!(
        infra_core::render::change_set_text(&again).contains("No changes."),
        "{again:#?}"
    );

    // A changed property is an update of that resource alone, and applies.
    for resource in &mut stack.resources {
        if let Spec::Lambda(spec) = &mut resource.spec
            && spec.name == "bench-n12-job0000"
        {
            spec.memory_mb = 512;
        }
    }
    let engine = Engine::new(&aws, &stack);
    // Planned twice under one name: the second change set replaces the first.
    engine.plan(Some("memory")).await.unwrap();
    let plan = engine.plan(Some("memory")).await.unwrap();
    let changes: Vec<(Option<&str>, StackAction)> = plan
        .changes
        .iter()
        .map(|c| (c.address.as_deref(), c.action))
        .collect();
    assert_eq!(changes, [(Some("lambda.job0000"), StackAction::Update)]);
    let outcome = engine.execute(&plan, &mut |_| {}).await.unwrap();
    assert_eq!(outcome.status, "UPDATE_COMPLETE");
    let live = lambda
        .get_function_configuration()
        .function_name("bench-n12-job0000")
        .send()
        .await
        .unwrap();
    assert_eq!(live.memory_size(), Some(512));
    assert!(!engine.plan(None).await.unwrap().has_changes());

    // Drift detection is CloudFormation's; moto does not implement it, and the engine says so.
    let drift = engine.drift().await.unwrap_err();
    assert!(
        matches!(drift, EngineError::DriftUnavailable { .. }),
        "{drift}"
    );
    assert!(drift.to_string().contains("moto"), "{drift}");

    // The engine waited for CloudFormation as AWS makes it wait.
    let waits = moto.layer().hits_of(Rule::CloudFormationInProgress);
    for what in ["change set", "stack"] {
        assert!(
            waits.iter().any(|h| h.what.starts_with(what)),
            "no {what} wait: {}",
            moto.layer().report()
        );
    }

    // Destroy: the stack goes, and with it everything tagged for the env.
    let outcome = engine.destroy(false, &mut |_| {}).await.unwrap();
    assert_eq!(
        outcome.map(|o| o.status).as_deref(),
        Some("DELETE_COMPLETE")
    );
    assert!(engine.describe().await.unwrap().is_none());
    let tagging = aws_sdk_resourcegroupstagging::Client::new(&truth);
    let left = tagging
        .get_resources()
        .tag_filters(
            aws_sdk_resourcegroupstagging::types::TagFilter::builder()
                .key("infra:env")
                .values("n12")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arns: Vec<&str> = left
        .resource_tag_mapping_list()
        .iter()
        .filter_map(|m| m.resource_arn())
        .collect();
    assert!(arns.is_empty(), "left tagged for the env: {arns:?}");
    let functions = lambda.list_functions().send().await.unwrap();
    assert!(functions.functions().is_empty(), "functions left");
    let iam = aws_sdk_iam::Client::new(&truth);
    let roles = iam.list_roles().send().await.unwrap();
    assert!(
        roles
            .roles()
            .iter()
            .all(|r| !r.role_name().starts_with("bench-n12-")),
        "roles left"
    );
}

/// Through the CLI: the whole LinkedIn Ads stack plans as creates of every resource (moto
/// lists a change set of types it cannot create), with the native plan's exit codes; a
/// protected env's destroy and the native engine's plan file are refused before any call.
#[test]
fn the_cli_plans_through_a_change_set_and_refuses_what_the_engine_cannot_do() {
    let moto = testkit::Moto::start();
    let run = infra(
        BIN,
        Some(&moto),
        &[
            "plan",
            "--env",
            "local",
            "--engine",
            "cloudformation",
            "--format",
            "json",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(run.code, 2, "{}", run.all());
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["engine"], "cloudformation");
    assert_eq!(plan["operation"], "create");
    assert_eq!(plan["stack_name"], "linkedin-ads-local");
    let changes = plan["changes"].as_array().unwrap();
    assert!(changes.iter().all(|c| c["action"] == "create"), "{plan:#}");
    let addresses: BTreeSet<&str> = changes
        .iter()
        .filter_map(|c| c["address"].as_str())
        .collect();
    for address in [
        "bucket.data",
        "lambda.collector",
        "secret.linkedin-oauth",
        "alarm.collector-errors",
    ] {
        assert!(
            addresses.contains(address),
            "{address} missing: {addresses:?}"
        );
    }
    assert!(!run.stdout.contains("SecretString"), "{}", run.stdout);

    // Refusals that need no AWS call: no endpoint is given at all.
    let destroy = infra(
        BIN,
        None,
        &[
            "destroy",
            "--env",
            "prod",
            "--engine",
            "cloudformation",
            "--auto-approve",
        ],
    );
    assert_eq!(destroy.code, 1, "{}", destroy.all());
    assert!(destroy.stderr.contains("is protected"), "{}", destroy.all());
    let saved = infra(
        BIN,
        None,
        &[
            "plan",
            "--env",
            "local",
            "--engine",
            "cloudformation",
            "--out",
            "plan.json",
        ],
    );
    assert_eq!(saved.code, 1, "{}", saved.all());
    assert!(
        saved.stderr.contains("--change-set NAME"),
        "{}",
        saved.all()
    );
    let bad_name = infra(
        BIN,
        None,
        &[
            "plan",
            "--env",
            "local",
            "--engine",
            "cloudformation",
            "--change-set",
            "9-lives",
        ],
    );
    assert_ne!(bad_name.code, 0, "{}", bad_name.all());
    assert!(
        bad_name.stderr.contains("not a change set name"),
        "{}",
        bad_name.all()
    );
}

/// The whole LinkedIn Ads stack through the CLI with `engine = "cloudformation"` in its env
/// file: apply (moto creates the 8 types it implements and skips the rest), a plan with no
/// changes, a destroy, each with the native commands' exit codes and the stack's events.
#[test]
fn an_env_file_choosing_cloudformation_applies_replans_and_destroys_through_the_cli() {
    let moto = testkit::Moto::start();
    let envs = testkit::envs_copy();
    let file = envs.path().join("local.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "protected = false\n",
            "protected = false\nengine = \"cloudformation\"\n",
        ),
    )
    .unwrap();
    let envs_dir = envs.path().to_str().unwrap().to_string();
    let workspace = workspace_root().to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["--envs-dir", &envs_dir, "--workspace", &workspace];
        all.extend_from_slice(args);
        infra(BIN, Some(&moto), &all)
    };

    let applied = run(&["apply", "--env", "local", "--auto-approve"]);
    assert_eq!(applied.code, 0, "{}", applied.all());
    for said in [
        "CloudFormation stack linkedin-ads-local, a new stack",
        "+   lambda.collector (LambdaCollector)",
        "AWS::CloudFormation::Stack",
        "Apply complete: stack linkedin-ads-local is CREATE_COMPLETE.",
    ] {
        assert!(
            applied.stdout.contains(said),
            "apply does not say `{said}`:\n{}",
            applied.all()
        );
    }
    let plan = run(&["plan", "--env", "local", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("No changes."), "{}", plan.all());
    // A saved plan file is the native engine's; this env's engine refuses it by name.
    let native_flag = run(&["plan", "--env", "local", "--out", "plan.json"]);
    assert_eq!(native_flag.code, 1, "{}", native_flag.all());
    assert!(
        native_flag.stderr.contains("--change-set NAME"),
        "{}",
        native_flag.all()
    );

    let destroyed = run(&["destroy", "--env", "local", "--auto-approve"]);
    assert_eq!(destroyed.code, 0, "{}", destroyed.all());
    assert!(
        destroyed
            .stdout
            .contains("Destroy complete: stack linkedin-ads-local is DELETE_COMPLETE."),
        "{}",
        destroyed.all()
    );
    let again = run(&["destroy", "--env", "local", "--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stdout.contains("does not exist: nothing to destroy"),
        "{}",
        again.all()
    );
}
