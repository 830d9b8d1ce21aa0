//! Review and operations workflows: the dependency graph, `plans/` kept current, the CI
//! workflows' commands, and ephemeral instances of an environment side by side on moto.
//! (Plan and drift renderings for pull requests are covered by the snapshot tests in
//! `infra/core/tests/plan_diff.rs` and the drift tests in `foundation.rs`.)

use testkit::infra;

const BIN: &str = env!("CARGO_BIN_EXE_infra");

#[test]
fn the_graph_draws_every_resource_and_dependency_as_dot_and_mermaid() {
    let dot = infra(BIN, None, &["graph", "--env", "local"]);
    assert_eq!(dot.code, 0, "{}", dot.all());
    assert!(
        dot.stdout.starts_with("digraph \"linkedin-ads-local\" {"),
        "{}",
        dot.stdout
    );
    assert!(
        dot.stdout
            .contains("  \"lambda.collector\" -> \"role.collector\";"),
        "{}",
        dot.stdout
    );
    assert!(dot.stdout.contains(
        "\"bucket.data\" [label=\"bucket.data\\nlinkedin-ads-local-data-123456789012\"];"
    ));
    // Every resource is a node: the local stack has 57.
    assert_eq!(dot.stdout.matches(" [label=").count(), 57);

    let mermaid = infra(
        BIN,
        None,
        &["graph", "--env", "local", "--format", "mermaid"],
    );
    assert_eq!(mermaid.code, 0, "{}", mermaid.all());
    assert!(mermaid.stdout.starts_with("flowchart LR\n"));
    assert!(
        mermaid
            .stdout
            .contains("  lambda_collector --> role_collector\n"),
        "{}",
        mermaid.stdout
    );
    assert!(
        !dot.stderr.contains("127.0.0.1:9"),
        "no AWS call: {}",
        dot.stderr
    );
}

#[test]
fn synth_check_fails_after_a_stack_change_until_plans_are_regenerated() {
    let root = testkit::workspace_root();
    let envs = testkit::envs_copy();
    let plans = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root.join("plans")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), plans.path().join(entry.file_name())).unwrap();
    }
    let (envs_dir, plans_dir, workspace) = (
        envs.path().to_str().unwrap().to_string(),
        plans.path().to_str().unwrap().to_string(),
        root.to_str().unwrap().to_string(),
    );
    let synth = |check: bool| {
        let mut args = vec![
            "--envs-dir",
            &envs_dir,
            "--workspace",
            &workspace,
            "synth",
            "--plans-dir",
            &plans_dir,
        ];
        if check {
            args.push("--check");
        }
        infra(BIN, None, &args)
    };
    let fresh = synth(true);
    assert_eq!(
        fresh.code,
        0,
        "the committed plans/ is current: {}",
        fresh.all()
    );

    let local = envs.path().join("local.toml");
    let text = std::fs::read_to_string(&local).unwrap();
    std::fs::write(
        &local,
        text.replace("retention_days = 14", "retention_days = 30"),
    )
    .unwrap();
    let stale = synth(true);
    assert_eq!(stale.code, 2, "{}", stale.all());
    assert!(
        stale.stderr.contains("local.json is out of date"),
        "{}",
        stale.stderr
    );
    assert!(
        !stale.stderr.contains("dev.json"),
        "only local changed: {}",
        stale.stderr
    );

    let written = synth(false);
    assert_eq!(written.code, 0, "{}", written.all());
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plans.path().join("local.json")).unwrap()).unwrap();
    let group = document["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "log_group.collector")
        .unwrap();
    assert_eq!(group["spec"]["retention_days"], 30);
    assert_eq!(synth(true).code, 0);
}

/// Each `./target/release/infra ...` command line of a workflow step, joined over `\`
/// continuations.
fn infra_commands(script: &str) -> Vec<String> {
    let joined = script.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| {
            l.split_once("./target/release/infra ")
                .map(|(_, rest)| rest.to_string())
        })
        .collect()
}

#[test]
fn ci_workflows_parse_and_call_only_commands_and_flags_infra_has() {
    let dir = testkit::workspace_root().join(".github/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["apply", "drift", "plan", "staging", "synth"]);
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let doc: serde_norway::Value = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
        let name = file.display();
        assert!(
            doc.get("name").is_some() && doc.get("on").is_some(),
            "{name}: name and on"
        );
        let jobs = doc["jobs"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{name}: jobs"));
        for (job_name, job) in jobs {
            assert!(
                job.get("runs-on").is_some(),
                "{name}: {job_name:?} has no runs-on"
            );
            let steps = job["steps"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{name}: steps"));
            for step in steps {
                assert!(
                    step.get("uses").is_some() != step.get("run").is_some(),
                    "{name}: a step has exactly one of uses and run: {step:?}"
                );
                let Some(script) = step.get("run").and_then(|r| r.as_str()) else {
                    continue;
                };
                for command in infra_commands(script) {
                    let words: Vec<&str> = command.split_whitespace().collect();
                    let global: Vec<&str> = words
                        .iter()
                        .copied()
                        .take_while(|w| w.starts_with("--"))
                        .collect();
                    let subcommand = words[global.len()];
                    let help = infra(BIN, None, &[subcommand, "--help"]);
                    assert_eq!(help.code, 0, "{name}: `infra {subcommand}` does not exist");
                    let top = infra(BIN, None, &["--help"]);
                    for flag in words.iter().filter(|w| w.starts_with("--")) {
                        let flag = flag.split('=').next().unwrap();
                        assert!(
                            help.stdout.contains(flag) || top.stdout.contains(flag),
                            "{name}: `infra {subcommand}` has no {flag}"
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 6, "the infra commands of the five workflows");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_staging_instances_coexist_and_destroying_one_leaves_the_other_intact() {
    let moto = testkit::Moto::start();
    // Staging pointed at the emulator's account.
    let envs = testkit::envs_copy();
    let staging = envs.path().join("staging.toml");
    let text = std::fs::read_to_string(&staging).unwrap();
    std::fs::write(&staging, text.replace("222222222222", "123456789012")).unwrap();
    let root = testkit::workspace_root();
    let (envs_dir, workspace) = (
        envs.path().to_str().unwrap().to_string(),
        root.to_str().unwrap().to_string(),
    );
    // Staging's region, as its workflow sets it: infra refuses a shell set to another.
    let run = |args: &[&str]| {
        let mut all = vec!["--envs-dir", &envs_dir, "--workspace", &workspace];
        all.extend_from_slice(args);
        let output = testkit::infra_command(BIN, Some(&moto), &all)
            .env("AWS_REGION", "us-east-2")
            .output()
            .unwrap();
        testkit::Run::from_output(output)
    };
    for instance in ["pr-1", "pr-2"] {
        let applied = run(&[
            "apply",
            "--env",
            "staging",
            "--instance",
            instance,
            "--auto-approve",
        ]);
        assert_eq!(applied.code, 0, "{instance}: {}", applied.all());
    }
    let sdk = moto.sdk_config().await;
    let s3 = testkit::s3_client(&sdk);
    let buckets = || async {
        let listed = s3.list_buckets().send().await.unwrap();
        let mut names: Vec<String> = listed
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .filter(|n| n.contains("-data-"))
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        buckets().await,
        [
            "linkedin-ads-staging-pr-1-data-123456789012",
            "linkedin-ads-staging-pr-2-data-123456789012"
        ]
    );

    let destroyed = run(&[
        "destroy",
        "--env",
        "staging",
        "--instance",
        "pr-1",
        "--purge-data",
        "--auto-approve",
    ]);
    assert_eq!(destroyed.code, 0, "{}", destroyed.all());
    assert_eq!(
        buckets().await,
        ["linkedin-ads-staging-pr-2-data-123456789012"]
    );
    let glue = aws_sdk_glue::Client::from_conf(
        aws_sdk_glue::config::Builder::from(&sdk)
            .region(aws_sdk_glue::config::Region::new("us-east-2"))
            .build(),
    );
    let databases = glue.get_databases().send().await.unwrap();
    let names: Vec<&str> = databases.database_list().iter().map(|d| d.name()).collect();
    assert_eq!(names, ["linkedin_ads_staging_pr_2"]);
    let plan = run(&[
        "plan",
        "--env",
        "staging",
        "--instance",
        "pr-2",
        "--detailed-exitcode",
    ]);
    assert_eq!(plan.code, 0, "pr-2 untouched: {}", plan.all());
    let drift = run(&["drift", "--env", "staging", "--instance", "pr-2"]);
    assert_eq!(
        drift.code,
        0,
        "no drift and no orphans in pr-2: {}",
        drift.all()
    );
}

/// `region = "..."` of env file `env`.
fn env_region(env: &str) -> String {
    let path = testkit::workspace_root().join(format!("stacks/envs/{env}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("region = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{}: no region", path.display()))
        .to_string()
}

/// infra refuses a shell set to another region than the env file's, so each workflow job
/// must give the credentials step the region of the env it runs.
#[test]
fn ci_workflows_set_the_region_of_each_env_they_run() {
    let dir = testkit::workspace_root().join(".github/workflows");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        let doc: serde_norway::Value =
            serde_norway::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let Some(jobs) = doc["jobs"].as_mapping() else {
            continue;
        };
        for (job_name, job) in jobs {
            let steps = job["steps"].as_sequence().cloned().unwrap_or_default();
            let Some(region) = steps.iter().find_map(|s| s["with"]["aws-region"].as_str()) else {
                continue;
            };
            // (env, region) pairs the job runs with.
            let pairs: Vec<(String, String)> = if region == "${{ matrix.region }}" {
                job["strategy"]["matrix"]["include"]
                    .as_sequence()
                    .unwrap_or_else(|| panic!("{}: {job_name:?} matrix.include", file.display()))
                    .iter()
                    .map(|e| {
                        (
                            e["env"].as_str().unwrap().to_string(),
                            e["region"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            } else {
                let scripts: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
                let env = scripts
                    .iter()
                    .flat_map(|s| infra_commands(s))
                    .find_map(|c| {
                        c.split_whitespace()
                            .skip_while(|w| *w != "--env")
                            .nth(1)
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| panic!("{}: {job_name:?}: no --env", file.display()));
                vec![(env, region.to_string())]
            };
            for (env, region) in pairs {
                assert_eq!(
                    region,
                    env_region(&env),
                    "{}: {job_name:?} runs env {env} in the wrong region",
                    file.display()
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 11,
        "dev, staging and prod in three workflows, and staging's two jobs"
    );
}
