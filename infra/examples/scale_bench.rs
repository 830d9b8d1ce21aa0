//! Scale benchmark: `make bench-scale` (or `cargo run --release -p infra --example
//! scale_bench -- [N ...]`, default 100 300 1000).
//!
//! For each N, on a private moto server reset in between: applies a synthetic stack of N
//! resources (`stacks::synthetic`), plans it three times with no changes (median time; calls
//! and memory of the last), measures moto's ceiling (trivial calls per second at the plan's
//! peak concurrency), and destroys the stack. Prints, per N: apply time, no-op plan time, AWS
//! calls per resource, peak memory of the plan (live heap, and the process's resident set),
//! the ceiling, the least time the plan's calls could take at it, and the ratio.
//!
//! Rate limits are lifted to the most an env file allows: the emulator and the engine are
//! measured, not the limiter. The least plan time at AWS's default limits is printed too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::ensure;
use infra::bench::{self, Measured, TrivialCall};
use infra_core::aws::Aws;
use infra_core::plan::PlanOptions;
use infra_core::rate_limit::SERVICES;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = 1024.0 * 1024.0;
const PLAN_RUNS: usize = 3;

/// Resets the process's peak resident set (Linux: `5` to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct Row {
    n: usize,
    apply: Measured,
    plan: Duration,
    last_plan: Measured,
    heap_mib: f64,
    rss_mib: Option<f64>,
    ceiling: f64,
    destroy: Measured,
}

impl Row {
    fn per_resource(&self) -> f64 {
        self.last_plan.calls as f64 / self.n as f64
    }
    /// The least time the plan's calls take at the emulator's ceiling.
    fn bound(&self) -> Duration {
        Duration::from_secs_f64(self.last_plan.calls as f64 / self.ceiling)
    }
    /// The least time the plan's calls take at AWS's default per-service rate limits.
    fn bound_at_aws_limits(&self) -> Duration {
        let mut per_service: BTreeMap<String, u64> = BTreeMap::new();
        for ((service, _), n) in &self.last_plan.by_operation {
            *per_service.entry(service.to_lowercase()).or_default() += n;
        }
        let seconds = per_service
            .iter()
            .map(|(service, n)| {
                let rate = SERVICES
                    .iter()
                    .find(|(name, signing, _)| {
                        service.replace([' ', '-'], "").contains(name)
                            || service.replace([' ', '-'], "").contains(signing)
                    })
                    .map_or(f64::INFINITY, |(_, _, rate)| *rate);
                *n as f64 / rate
            })
            .fold(0.0, f64::max);
        Duration::from_secs_f64(seconds)
    }
}

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.replace('_', "").parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![100, 300, 1000]
    } else {
        sizes
    };
    let moto = testkit::Moto::start();
    for (key, value) in moto.env_vars() {
        // SAFETY: no other thread exists yet; the runtime is started below.
        unsafe { std::env::set_var(key, value) };
    }
    let scratch = tempfile::tempdir()?;
    let artifact = bench::artifact(scratch.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &n in &sizes {
        moto.reset();
        let row = runtime.block_on(measure(n, &artifact))?;
        eprintln!(
            "N = {n}: apply {:.1} s, no-op plan {:.0} ms",
            row.apply.elapsed.as_secs_f64(),
            row.plan.as_secs_f64() * 1000.0
        );
        rows.push(row);
    }
    print_report(&rows);
    Ok(())
}

async fn measure(n: usize, artifact: &infra_core::package::Artifact) -> anyhow::Result<Row> {
    let target = bench::target(n, "123456789012", "us-east-1");
    let stack = stacks::synthetic::synthetic(target.clone(), n, artifact);
    infra_core::plan::validate(&stack)?;
    let aws = Aws::connect_limited(&target.region, &bench::unlimited()?).await;

    let (applied, apply) = bench::apply(&aws, &stack, PlanOptions::default()).await?;
    ensure!(
        applied == n,
        "apply made {applied} changes for {n} resources"
    );

    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..PLAN_RUNS {
        reset_peak_rss();
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
        let heap_before = LIVE.load(Ordering::Relaxed);
        let (plan, measured) = bench::plan(&aws, &stack, PlanOptions::default()).await?;
        ensure!(!plan.has_changes(), "the plan after apply is not a no-op");
        let heap = PEAK.load(Ordering::Relaxed).saturating_sub(heap_before) as f64 / MIB;
        times.push(measured.elapsed);
        last = Some((measured, heap, peak_rss_mib()));
        drop(plan);
    }
    times.sort();
    let Some((last_plan, heap_mib, rss_mib)) = last else {
        anyhow::bail!("no plan ran");
    };
    let ceiling_calls = (last_plan.calls as usize * 2).max(1000);
    let mut ceiling = 0.0_f64;
    for call in TrivialCall::ALL {
        let rate = bench::ceiling(&aws, call, last_plan.peak_in_flight, ceiling_calls).await?;
        eprintln!("  moto ceiling, {}: {rate:.0} calls/s", call.name());
        ceiling = ceiling.max(rate);
    }

    let destroy_options = PlanOptions {
        destroy: true,
        ..PlanOptions::default()
    };
    let (destroyed, destroy) = bench::apply(&aws, &stack, destroy_options).await?;
    ensure!(
        destroyed == n,
        "destroy made {destroyed} changes for {n} resources"
    );
    Ok(Row {
        n,
        apply,
        plan: times[times.len() / 2],
        last_plan,
        heap_mib,
        rss_mib,
        ceiling,
        destroy,
    })
}

fn print_report(rows: &[Row]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("Scale benchmark: synthetic stack against moto (rate limits lifted)\n");
    println!(
        "{:>6} {:>9} {:>9} {:>11} {:>10} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10} {:>6} {:>9}",
        "N",
        "apply s",
        "plan ms",
        "plan calls",
        "calls/res",
        "in fl.",
        "heap MiB",
        "RSS MiB",
        "moto c/s",
        "bound ms",
        "ratio",
        "ms/res",
        "destroy s"
    );
    for r in rows {
        println!(
            "{:>6} {:>9.1} {:>9.0} {:>11} {:>10.3} {:>8} {:>9.1} {:>9} {:>9.0} {:>10.0} {:>9.2}x {:>6.2} {:>9.1}",
            r.n,
            r.apply.elapsed.as_secs_f64(),
            ms(r.plan),
            r.last_plan.calls,
            r.per_resource(),
            r.last_plan.peak_in_flight,
            r.heap_mib,
            r.rss_mib
                .map_or_else(|| "?".to_string(), |m| format!("{m:.1}")),
            r.ceiling,
            ms(r.bound()),
            ms(r.plan) / ms(r.bound()),
            ms(r.plan) / r.n as f64,
            r.destroy.elapsed.as_secs_f64(),
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && last.n > first.n
    {
        println!(
            "\nGrowth {} -> {}: resources x{:.1}, plan time x{:.2}, plan calls x{:.2}",
            first.n,
            last.n,
            last.n as f64 / first.n as f64,
            ms(last.plan) / ms(first.plan),
            last.last_plan.calls as f64 / first.last_plan.calls.max(1) as f64
        );
    }
    for r in rows {
        println!(
            "\nN = {}: least no-op plan time at AWS's default rate limits: {:.1} s; apply {} \
             calls, destroy {} calls. No-op plan calls:",
            r.n,
            r.bound_at_aws_limits().as_secs_f64(),
            r.apply.calls,
            r.destroy.calls
        );
        for ((service, operation), count) in &r.last_plan.by_operation {
            println!("  {service:<24} {operation:<32} {count}");
        }
    }
}
