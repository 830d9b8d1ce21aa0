//! The scale benchmark's steps: a synthetic stack of N resources (`stacks::synthetic`)
//! applied, planned with no changes and destroyed through the same engine calls the CLI makes,
//! each measured (time, AWS calls, peak calls in flight); and the emulator's own ceiling, the
//! rate at which it answers a trivial call at a given concurrency. `examples/scale_bench.rs`
//! runs them at N = 100, 300 and 1,000 and prints the figures; `tests/scale.rs` runs them
//! small.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use infra_core::apply::ApplyOptions;
use infra_core::aws::Aws;
use infra_core::kinds::DeleteOptions;
use infra_core::model::{Stack, StateLocation, Target};
use infra_core::package::{self, Artifact};
use infra_core::plan::{Plan, PlanOptions};
use infra_core::rate_limit::{MAX_RATE, RateLimits, SERVICES};
use infra_core::state::StateStore;

use crate::cli::{apply_plan, plan_stack};

/// What one step cost.
#[derive(Clone, Debug)]
pub struct Measured {
    pub elapsed: Duration,
    /// AWS operations (retries not counted again).
    pub calls: u64,
    pub by_operation: BTreeMap<(String, String), u64>,
    /// The most operations in flight at once.
    pub peak_in_flight: usize,
}

impl Measured {
    async fn of<T, F>(aws: &Aws, step: F) -> anyhow::Result<(T, Measured)>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        aws.calls.reset();
        let started = Instant::now();
        let out = Box::pin(step).await?;
        let measured = Measured {
            elapsed: started.elapsed(),
            calls: aws.calls.total(),
            by_operation: aws.calls.snapshot(),
            peak_in_flight: aws.calls.peak_in_flight(),
        };
        Ok((out, measured))
    }
}

/// The benchmark stack's target for size `n`: stack and project `bench`, env `n<N>`.
pub fn target(n: usize, account_id: &str, region: &str) -> Target {
    Target {
        stack: "bench".into(),
        project: "bench".into(),
        env: format!("n{n}"),
        account_id: account_id.into(),
        region: region.into(),
        protected: false,
        state: StateLocation {
            bucket: format!("bench-state-{account_id}"),
            prefix: format!("bench/n{n}"),
        },
    }
}

/// Every service limited only at the highest rate an env file may set, so that a run
/// measures the emulator and the engine, not the limiter.
pub fn unlimited() -> anyhow::Result<RateLimits> {
    let rates = SERVICES
        .iter()
        .map(|(service, _, _)| (service.to_string(), MAX_RATE))
        .collect();
    RateLimits::new(&rates).map_err(anyhow::Error::msg)
}

/// The code every synthetic function gets: a real zip of a one-line `bootstrap` (the
/// emulator stores it and never runs it), written into `dir`.
pub fn artifact(dir: &Path) -> anyhow::Result<Artifact> {
    let bytes = package::write_zip(b"#!/bin/sh\necho synthetic\n")?;
    let zip = dir.join("bench.zip");
    std::fs::write(&zip, &bytes).with_context(|| format!("writing {}", zip.display()))?;
    Ok(Artifact {
        handler: "bench".into(),
        zip,
        code_sha256: package::code_sha256(&bytes),
        size: bytes.len() as u64,
        inputs: String::new(),
    })
}

fn store(aws: &Aws, stack: &Stack) -> StateStore {
    StateStore::new(aws.clone(), stack.target.state.clone())
}

/// Plans `stack` against its state, as `infra plan` does (state read, refresh, journal, diff).
pub async fn plan(
    aws: &Aws,
    stack: &Stack,
    options: PlanOptions,
) -> anyhow::Result<(Plan, Measured)> {
    let store = store(aws, stack);
    Measured::of(aws, async {
        let stored = store.load().await?;
        plan_stack(aws, stack, &store, &stored, options, None).await
    })
    .await
}

/// Plans and applies `stack` (a destroy if `options.destroy`), as `infra apply
/// --auto-approve` does without the lock; returns the number of changes applied.
pub async fn apply(
    aws: &Aws,
    stack: &Stack,
    options: PlanOptions,
) -> anyhow::Result<(usize, Measured)> {
    let store = store(aws, stack);
    Measured::of(aws, async {
        store.ensure_bucket().await?;
        let stored = store.load().await?;
        let plan = plan_stack(aws, stack, &store, &stored, options, None).await?;
        let apply_options = ApplyOptions {
            delete: DeleteOptions { purge_data: true },
            ..ApplyOptions::default()
        };
        let (report, _) = apply_plan(aws, &store, &stored, &plan, apply_options, &|_| {}).await?;
        ensure!(
            report.failed.is_empty() && report.skipped.is_empty(),
            "{} changes failed, {} not started",
            report.failed.len(),
            report.skipped.len()
        );
        Ok(report.applied.len())
    })
    .await
}

/// A call the emulator answers with next to no work, to measure its own ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrivialCall {
    /// SNS ListTopics (query protocol, XML).
    SnsListTopics,
    /// S3 ListBuckets (REST, XML).
    S3ListBuckets,
    /// CloudWatch Logs DescribeLogGroups for a prefix nothing has (JSON protocol).
    LogsDescribeNone,
    /// Glue GetDatabase of a database that does not exist (JSON protocol, an error answer).
    GlueGetMissing,
}

impl TrivialCall {
    pub const ALL: [TrivialCall; 4] = [
        TrivialCall::SnsListTopics,
        TrivialCall::S3ListBuckets,
        TrivialCall::LogsDescribeNone,
        TrivialCall::GlueGetMissing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TrivialCall::SnsListTopics => "SNS ListTopics",
            TrivialCall::S3ListBuckets => "S3 ListBuckets",
            TrivialCall::LogsDescribeNone => "Logs DescribeLogGroups (no match)",
            TrivialCall::GlueGetMissing => "Glue GetDatabase (not found)",
        }
    }

    async fn send(self, aws: &Aws) -> anyhow::Result<()> {
        match self {
            TrivialCall::SnsListTopics => {
                aws.sns.list_topics().send().await?;
            }
            TrivialCall::S3ListBuckets => {
                aws.s3.list_buckets().send().await?;
            }
            TrivialCall::LogsDescribeNone => {
                aws.logs
                    .describe_log_groups()
                    .log_group_name_prefix("/no-such-group/")
                    .send()
                    .await?;
            }
            TrivialCall::GlueGetMissing => {
                let _ = aws
                    .glue
                    .get_database()
                    .name("no_such_database")
                    .send()
                    .await;
            }
        }
        Ok(())
    }
}

/// How many `call`s per second the emulator answers with `concurrency` in flight, over
/// `calls` calls through the same clients.
pub async fn ceiling(
    aws: &Aws,
    call: TrivialCall,
    concurrency: usize,
    calls: usize,
) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (aws, next) = (aws.clone(), next.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < calls {
                call.send(&aws)
                    .await
                    .with_context(|| format!("{} (emulator ceiling)", call.name()))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}
