//! Benchmark: wall time and AWS calls of a no-op plan of the local stack.
//!
//! Starts a private moto server, applies the local stack once, then plans it `RUNS` times
//! (default 20; first argument overrides) and prints the wall-time distribution and the AWS
//! calls one plan makes, per operation. Run with `make bench`.

use std::time::{Duration, Instant};

use clap::Parser;
use infra::cli::{Cli, Context, EnvArg, Packaging, Paths};
use infra_core::plan::PlanOptions;

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20);
    let moto = testkit::Moto::start();
    for (key, value) in moto.env_vars() {
        // SAFETY: no other thread exists yet; the runtime is started below.
        unsafe { std::env::set_var(key, value) };
    }
    let envs = testkit::workspace_root().join("stacks/envs");
    let envs = envs.to_string_lossy().into_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let apply = Cli::parse_from([
            "infra",
            "--envs-dir",
            &envs,
            "apply",
            "--env",
            "local",
            "--auto-approve",
        ]);
        let t0 = Instant::now();
        let code = infra::cli::run(apply).await?;
        anyhow::ensure!(code == 0, "apply failed");
        let apply_time = t0.elapsed();

        let paths = Paths {
            envs_dir: Some(envs.clone().into()),
            workspace: None,
        };
        let local = EnvArg {
            name: "local".into(),
            instance: None,
        };
        let ctx = Context::load(&paths, &local, Packaging::Build).await?;
        let mut times = Vec::with_capacity(runs);
        let mut calls = 0;
        let mut resources = 0;
        let mut breakdown = String::new();
        for _ in 0..runs {
            ctx.aws.calls.reset();
            let t0 = Instant::now();
            let stored = ctx.store.load().await?;
            let plan = ctx.plan(&stored, PlanOptions::default()).await?;
            times.push(t0.elapsed());
            anyhow::ensure!(!plan.has_changes(), "the plan after apply is not a no-op");
            calls = ctx.aws.calls.total();
            resources = plan.changes.len();
            breakdown = ctx.aws.calls.report();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len().max(1) as f64;
        println!(
            "no-op plan of linkedin-ads/local against moto ({} resources, {runs} runs)",
            resources
        );
        println!(
            "  apply (first, creates everything): {:.0} ms",
            ms(apply_time)
        );
        println!(
            "  plan wall time: min {:.1} ms, median {:.1} ms, mean {:.1} ms, max {:.1} ms",
            ms(times[0]),
            ms(times[times.len() / 2]),
            mean,
            ms(times[times.len() - 1])
        );
        println!(
            "  AWS calls per plan: {calls} ({:.2} per resource)",
            calls as f64 / resources.max(1) as f64
        );
        print!("{breakdown}");
        Ok(())
    })
}
