//! Review and operations workflows that need no emulator: the dependency graph drawn for
//! review. (Plan and drift renderings for pull requests are covered by the snapshot tests in
//! `infra/core/tests/plan_diff.rs` and the drift test in `foundation.rs`.)

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
