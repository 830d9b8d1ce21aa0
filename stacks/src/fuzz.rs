//! The env-file fuzz target's checks, shared with the test that replays its corpus
//! (`fuzz/fuzz_targets/env_file.rs`, `stacks/tests/fuzz_corpus.rs`). Not an API.

use std::path::Path;

/// Parses `text` as an env file and, if it parses, builds, validates, policy-checks and
/// renders its stack; anything may fail, nothing may panic. Whether it parsed.
pub fn check_env_text(text: &str) -> bool {
    let Ok(env) = crate::Env::parse(Path::new(&file_name(text)), text) else {
        return false;
    };
    let inputs = crate::Inputs {
        artifacts: Default::default(),
        views: Vec::new(),
        queries: Vec::new(),
    };
    if let Ok(stack) = crate::linkedin_ads(&env, &inputs) {
        let _ = infra_core::plan::validate(&stack);
        let _ = infra_core::compliance::check(&stack);
        let _ = infra_core::plan::desired_document(&stack);
    }
    true
}

/// Env files must be named after their `env`: the name is taken from the text, so that valid
/// inputs get past that check and into the stack.
fn file_name(text: &str) -> String {
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("env = \""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("local");
    format!("{name}.toml")
}
