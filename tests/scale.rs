//! A small run of the scale benchmark's steps (`make bench-scale` runs them at N = 100, 300
//! and 1,000): a synthetic stack applied to moto, planned with no changes in at most half a
//! call per resource, with per-resource reads only for the kinds that have no batch read, and
//! destroyed without leaving anything live.

use std::collections::BTreeMap;

use infra::bench;
use infra_core::aws::Aws;
use infra_core::plan::{Action, PlanOptions};

/// The operations allowed to run once per resource: nothing answers for many at once.
/// GetFunction (reserved concurrency is in no listing), GetPolicy (a function's resource
/// policy), ListTargetsByRule, and EventBridge ListTagsForResource (AWS lists rules in the
/// tagging API, moto does not).
const PER_RESOURCE: [&str; 4] = [
    "GetFunction",
    "GetPolicy",
    "ListTargetsByRule",
    "ListTagsForResource",
];

const N: usize = 200;

#[tokio::test(flavor = "multi_thread")]
async fn synthetic_stack_plans_in_half_a_call_per_resource() -> anyhow::Result<()> {
    let moto = testkit::Moto::start();
    let aws = Aws::from_sdk_config(&moto.engine_sdk_config().await, testkit::REGION);
    let scratch = tempfile::tempdir()?;
    let artifact = bench::artifact(scratch.path())?;
    let target = bench::target(N, "123456789012", testkit::REGION);
    let stack = stacks::synthetic::synthetic(target, N, &artifact);
    assert_eq!(stack.resources.len(), N);
    infra_core::plan::validate(&stack)?;

    let (applied, _) = bench::apply(&aws, &stack, PlanOptions::default()).await?;
    assert_eq!(applied, N);

    // The steady state is measured: a plan once the tagging API lists what the apply made.
    // Seconds after an apply, the lagging listing costs a tag read per resource it misses
    // (handled and shown in tests/aws_behaviour.rs).
    moto.layer().wait_for_listings();
    let (plan, measured) = bench::plan(&aws, &stack, PlanOptions::default()).await?;
    assert!(!plan.has_changes(), "the plan after apply is not a no-op");
    let per_resource = measured.calls as f64 / N as f64;
    let report: String = measured
        .by_operation
        .iter()
        .map(|((service, op), n)| format!("  {service} {op} {n}\n"))
        .collect();
    assert!(
        per_resource <= 0.5,
        "{} calls for {N} resources ({per_resource:.2} per resource):\n{report}",
        measured.calls
    );
    let mut by_operation: BTreeMap<&str, u64> = BTreeMap::new();
    for ((_, operation), n) in &measured.by_operation {
        *by_operation.entry(operation.as_str()).or_default() += n;
    }
    // Anything else read per resource would show as at least one call per 20 resources
    // (every kind here has 20 or more).
    for (operation, n) in &by_operation {
        assert!(
            PER_RESOURCE.contains(operation) || *n < (N / 20) as u64,
            "{operation} ran {n} times for {N} resources: a batch read went per resource\n{report}"
        );
    }

    let destroy = PlanOptions {
        destroy: true,
        ..PlanOptions::default()
    };
    let (destroyed, _) = bench::apply(&aws, &stack, destroy).await?;
    assert_eq!(destroyed, N);
    // With empty state, a plan reads everything live again: nothing may be left.
    let (plan, _) = bench::plan(&aws, &stack, PlanOptions::default()).await?;
    let left: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Create)
        .map(|c| format!("{} ({:?})", c.address, c.action))
        .collect();
    assert!(left.is_empty(), "still live after destroy: {left:?}");
    Ok(())
}
