//! Replays every committed fuzz input (`fuzz/corpus/<target>/`) through the checks of its
//! fuzz target, so inputs that once crashed stay fixed without building the fuzzer.

use std::path::{Path, PathBuf};

use infra_core::plan::Plan;
use infra_core::state::StateDoc;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has inputs", dir.display());
    files
}

#[test]
fn env_file_inputs() {
    let parsed = inputs("env_file")
        .iter()
        .filter_map(|(_, bytes)| std::str::from_utf8(bytes).ok())
        .filter(|text| stacks::fuzz::check_env_text(text))
        .count();
    assert!(parsed >= 4, "the committed env files are among the seeds");
}

#[test]
fn plan_file_inputs() {
    for (path, bytes) in inputs("plan_file") {
        let Ok(plan) = Plan::parse(&bytes) else {
            continue;
        };
        let _ = infra_core::render::plan_text(&plan);
        let _ = infra_core::render::plan_markdown(&plan);
        let _ = infra_core::render::plan_json(&plan);
        let again = serde_json::to_vec(&plan).unwrap();
        let reparsed = Plan::parse(&again).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            serde_json::to_value(&reparsed).ok(),
            serde_json::to_value(&plan).ok(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn state_file_inputs() {
    for (path, bytes) in inputs("state_file") {
        let Ok(doc) = StateDoc::parse(&bytes) else {
            continue;
        };
        let again =
            StateDoc::parse(&doc.to_bytes()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(again, doc, "{}", path.display());
    }
}
