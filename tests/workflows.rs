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
