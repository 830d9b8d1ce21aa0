//! Benchmark: Lambda packaging times and zip sizes.
//!
//! Packages the five handlers into a fresh output folder (a cold build: every dependency is
//! compiled), then again (warm: nothing changed, nothing is built), and prints both times and
//! each zip's size and CodeSha256. Run with `make bench-package`.

use std::time::Instant;

use infra_core::package::Packager;
use stacks::linkedin_ads::FUNCTIONS as HANDLERS;

fn main() -> anyhow::Result<()> {
    let workspace = testkit::workspace_root();
    let scratch = tempfile::tempdir()?;
    let mut packager = Packager::new(&workspace);
    packager.out_dir = scratch.path().join("lambda");

    let t0 = Instant::now();
    let cold = packager.package(&HANDLERS, &|h| eprintln!("building {}", h.join(", ")))?;
    let cold_time = t0.elapsed();

    let t0 = Instant::now();
    let warm = packager.package(&HANDLERS, &|h| {
        eprintln!("unexpected rebuild of {}", h.join(", "))
    })?;
    let warm_time = t0.elapsed();
    anyhow::ensure!(
        cold == warm,
        "a warm run must reuse the cold run's packages"
    );

    println!(
        "Lambda packaging of {} handlers (cargo zigbuild, {})",
        HANDLERS.len(),
        infra_core::package::LAMBDA_TARGET
    );
    println!(
        "  cold (clean build folder): {:.1} s",
        cold_time.as_secs_f64()
    );
    println!(
        "  warm (nothing changed):    {:.3} s",
        warm_time.as_secs_f64()
    );
    for (handler, artifact) in &cold {
        println!(
            "  {handler:<15} {:>9} bytes  {}",
            artifact.size, artifact.code_sha256
        );
    }
    Ok(())
}
