//! Any text as an env file: parsing either fails with located errors or gives an env whose
//! stack builds, validates and is policy-checked without panicking.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(env) = stacks::Env::parse(Path::new(&file_name(text)), text) else {
        return;
    };
    let inputs = stacks::Inputs {
        artifacts: Default::default(),
        views: Vec::new(),
        queries: Vec::new(),
    };
    if let Ok(stack) = stacks::linkedin_ads(&env, &inputs) {
        let _ = infra_core::plan::validate(&stack);
        let _ = infra_core::compliance::check(&stack);
        let _ = infra_core::plan::desired_document(&stack);
    }
});

/// Env files must be named after their `env`: take the name from the text, so that valid
/// inputs get past that check and into the stack.
fn file_name(text: &str) -> String {
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("env = \""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("local");
    format!("{name}.toml")
}
