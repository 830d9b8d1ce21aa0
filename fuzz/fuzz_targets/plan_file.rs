//! Any bytes as a saved plan file (`infra apply PLANFILE`): parsing either fails or gives a
//! plan that renders as text, JSON and markdown and survives a JSON round trip.
#![no_main]

use infra_core::plan::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(plan) = Plan::parse(data) else {
        return;
    };
    let _ = infra_core::render::plan_text(&plan);
    let _ = infra_core::render::plan_markdown(&plan);
    let _ = infra_core::render::plan_json(&plan);
    let again = serde_json::to_vec(&plan).expect("a parsed plan serializes");
    let reparsed = Plan::parse(&again).expect("a serialized plan parses");
    assert_eq!(
        serde_json::to_value(&reparsed).ok(),
        serde_json::to_value(&plan).ok()
    );
});
