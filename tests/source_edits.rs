//! Edits to the workspace's sources show up in the plan: one handler's source updates that
//! function's code and nothing else; a view's SQL shows as a unified diff and is applied.
//! These tests edit files of the workspace (restored on drop), so they live in their own test
//! binary (cargo runs test binaries one after another) and take turns through `EDITING`.

use serde_json::Value;
use testkit::{Moto, infra, workspace_root};

const BIN: &str = env!("CARGO_BIN_EXE_infra");

static EDITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Restores a file's original text when dropped, even if the test fails.
struct Restore {
    path: std::path::PathBuf,
    original: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.original);
    }
}

fn updates(plan: &Value) -> Vec<(String, Vec<String>)> {
    plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no-op")
        .map(|c| {
            (
                c["address"].as_str().unwrap().to_string(),
                c["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["field"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn editing_one_handler_updates_only_its_function() {
    let _turn = EDITING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let moto = Moto::start();
    let applied = infra(
        BIN,
        Some(&moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(applied.code, 0, "{}", applied.all());

    let path = workspace_root().join("runtime/src/bin/optimizer.rs");
    let original = std::fs::read_to_string(&path).unwrap();
    let restore = Restore {
        path: path.clone(),
        original: original.clone(),
    };
    let edited = original.replace("\"optimization run done\"", "\"optimization run finished\"");
    assert_ne!(edited, original, "the edit must change the handler");
    std::fs::write(&path, edited).unwrap();

    let plan = infra(
        BIN,
        Some(&moto),
        &["plan", "--env", "local", "--format", "json"],
    );
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(
        plan.stderr
            .contains("Packaging Lambda handlers (optimizer)"),
        "only optimizer rebuilt: {}",
        plan.all()
    );
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(
        updates(&plan),
        vec![(
            "lambda.optimizer".to_string(),
            vec!["code_sha256".to_string()]
        )]
    );

    let applied = infra(
        BIN,
        Some(&moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(applied.code, 0, "{}", applied.all());
    assert_eq!(
        infra(
            BIN,
            Some(&moto),
            &["plan", "--env", "local", "--detailed-exitcode"]
        )
        .code,
        0
    );

    // Back to the original source: the rebuild gives the original bytes again, so the plan
    // shows the original CodeSha256 coming back.
    drop(restore);
    let plan = infra(
        BIN,
        Some(&moto),
        &["plan", "--env", "local", "--format", "json"],
    );
    assert_eq!(plan.code, 0, "{}", plan.all());
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(
        updates(&plan),
        vec![(
            "lambda.optimizer".to_string(),
            vec!["code_sha256".to_string()]
        )]
    );
}

#[test]
fn editing_a_view_shows_a_sql_diff_and_apply_updates_it() {
    let _turn = EDITING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let moto = Moto::start();
    let applied = infra(
        BIN,
        Some(&moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(applied.code, 0, "{}", applied.all());

    let path = workspace_root().join("assets/athena/views/daily_summary.sql");
    let original = std::fs::read_to_string(&path).unwrap();
    let restore = Restore {
        path: path.clone(),
        original: original.clone(),
    };
    let edited = original.replace(
        "WHERE rank_in_day = 1",
        "WHERE rank_in_day = 1 AND impressions >= 0",
    );
    assert_ne!(edited, original);
    std::fs::write(&path, edited).unwrap();

    let plan = infra(BIN, Some(&moto), &["plan", "--env", "local"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(
        plan.stdout.contains("glue_table.daily_summary  (update)"),
        "{}",
        plan.all()
    );
    assert!(
        plan.stdout.contains("-WHERE rank_in_day = 1\n"),
        "{}",
        plan.all()
    );
    assert!(
        plan.stdout
            .contains("+WHERE rank_in_day = 1 AND impressions >= 0"),
        "{}",
        plan.all()
    );
    assert!(
        plan.stdout.contains("Plan: 0 to create, 1 to update"),
        "only the view: {}",
        plan.all()
    );

    let applied = infra(
        BIN,
        Some(&moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(applied.code, 0, "{}", applied.all());
    assert_eq!(
        infra(
            BIN,
            Some(&moto),
            &["plan", "--env", "local", "--detailed-exitcode"]
        )
        .code,
        0
    );
    drop(restore);
}
