//! Another checkout of the same sources (a copy in another folder, as a fresh clone is)
//! packages the same zip bytes as this one; and edits to its sources show up in the plan: one
//! handler's source updates that function's code and nothing else, an edit to a workspace
//! crate the handlers link (`runtime/registry`, `runtime/datasets`) updates the code of exactly
//! the functions using what was edited, a view's SQL shows as a unified diff and is applied.
//! The copy is edited, never the checkout itself (other tests read it meanwhile); it packages
//! in the checkout's build folder, so only its own crates compile.

use std::path::PathBuf;

use infra_core::package::Packager;
use serde_json::Value;
use stacks::linkedin_ads::FUNCTIONS as HANDLERS;
use testkit::{Moto, Run, workspace_root};

const BIN: &str = env!("CARGO_BIN_EXE_infra");

/// A copy of the checkout (sources, assets, env files; not `target/` or `.git`).
struct Checkout {
    dir: tempfile::TempDir,
}

impl Checkout {
    fn new() -> Checkout {
        Checkout {
            dir: testkit::checkout_copy(),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Replaces `from` with `to` in one file of the copy.
    fn edit(&self, relative: &str, from: &str, to: &str) {
        let path = self.path(relative);
        let original = std::fs::read_to_string(&path).unwrap();
        let edited = original.replace(from, to);
        assert_ne!(edited, original, "the edit must change {relative}");
        std::fs::write(&path, edited).unwrap();
    }

    /// `infra ARGS` on this copy, against `moto`.
    fn infra(&self, moto: &Moto, args: &[&str]) -> Run {
        let envs = self.path("stacks/envs");
        let mut all = vec!["--envs-dir", envs.to_str().unwrap()];
        all.extend_from_slice(args);
        let output = testkit::infra_command(BIN, Some(moto), &all)
            .env(
                "INFRA_LAMBDA_BUILD_DIR",
                Packager::new(&workspace_root()).build_dir,
            )
            .output()
            .expect("run infra");
        Run::from_output(output)
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

/// One copy of the checkout for everything here: its handlers compile once (a copy is a
/// checkout of its own to cargo); its zips are compared with the checkout's, then each edit is
/// planned, applied and planned again. An edit to a linked crate compiles the runtime library
/// again (every handler links it): one such build per crate, since each crate's set of
/// changed functions can only be seen on its own.
#[test]
fn another_checkout_packages_the_same_bytes_and_edits_show_as_exactly_those_changes() {
    let checkout = Checkout::new();
    let moto = Moto::start();
    let applied = checkout.infra(&moto, &["apply", "--env", "local", "--auto-approve"]);
    assert_eq!(applied.code, 0, "{}", applied.all());
    the_copy_packaged_the_same_bytes(&checkout);
    a_view_shows_a_sql_diff_and_apply_updates_it(&checkout, &moto);
    one_handler_updates_only_its_function(&checkout, &moto);
    a_linked_crate_updates_exactly_the_functions_using_the_edit(&checkout, &moto);
}

fn the_copy_packaged_the_same_bytes(checkout: &Checkout) {
    let here = Packager::new(&workspace_root())
        .package(&HANDLERS, &|_| {})
        .expect("package in the checkout");
    let copy = Packager::new(checkout.dir.path());
    for handler in HANDLERS {
        let there = std::fs::read(copy.zip_path(handler)).expect("the copy's zip");
        assert_eq!(
            std::fs::read(&here[handler].zip).unwrap(),
            there,
            "{handler}: same source in another folder, other zip bytes"
        );
    }
}

fn a_view_shows_a_sql_diff_and_apply_updates_it(checkout: &Checkout, moto: &Moto) {
    checkout.edit(
        "assets/athena/views/daily_summary.sql",
        "WHERE rank_in_day = 1",
        "WHERE rank_in_day = 1 AND impressions >= 0",
    );

    let plan = checkout.infra(moto, &["plan", "--env", "local"]);
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

    let applied = checkout.infra(moto, &["apply", "--env", "local", "--auto-approve"]);
    assert_eq!(applied.code, 0, "{}", applied.all());
    let plan = checkout.infra(moto, &["plan", "--env", "local", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
}

fn one_handler_updates_only_its_function(checkout: &Checkout, moto: &Moto) {
    let handler = "runtime/src/bin/optimizer.rs";
    let (done, finished) = ("\"optimization run done\"", "\"optimization run finished\"");
    checkout.edit(handler, done, finished);

    let plan = checkout.infra(moto, &["plan", "--env", "local", "--format", "json"]);
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

    let applied = checkout.infra(moto, &["apply", "--env", "local", "--auto-approve"]);
    assert_eq!(applied.code, 0, "{}", applied.all());
    let plan = checkout.infra(moto, &["plan", "--env", "local", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // Back to the original source: the rebuild gives the original bytes again, so the plan
    // shows the original CodeSha256 coming back.
    checkout.edit(handler, finished, done);
    let plan = checkout.infra(moto, &["plan", "--env", "local", "--format", "json"]);
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

/// The crates the handlers link from elsewhere in the workspace are part of what they are
/// built from. One edit in each, planned together (each plan after such an edit costs a
/// release build of the runtime and a link of every handler): every handler is rebuilt, the
/// plan updates the code of exactly the functions using what was edited, and each edit's new
/// bytes are in exactly the functions expected of it, which tells the two crates' edits apart.
fn a_linked_crate_updates_exactly_the_functions_using_the_edit(checkout: &Checkout, moto: &Moto) {
    // The previous step planned the optimizer's original source back: deploy it, so that the
    // edits below are seen alone.
    let applied = checkout.infra(moto, &["apply", "--env", "local", "--auto-approve"]);
    assert_eq!(applied.code, 0, "{}", applied.all());
    let plan = checkout.infra(moto, &["plan", "--env", "local", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // The registry: of the packaged handlers only the optimizer uses it (it loads the promoted
    // models, `Registry::load_promoted`, whose reads report an object they cannot parse with
    // this message); the trainer that registers models is not packaged.
    let registry = (
        "runtime/registry/src/lib.rs",
        "not registry JSON",
        "not Registry JSON",
    );
    // The datasets: where the raw creatives land, written by the collector and read by the
    // processor; the other handlers read processed data only. (Same lengths, so that only
    // these bytes move.)
    let datasets = (
        "runtime/datasets/src/lib.rs",
        "\"raw/linkedin/creatives\"",
        "\"raw/linkedin/Creatives\"",
    );
    for (file, from, to) in [registry, datasets] {
        checkout.edit(file, from, to);
    }
    plan_updates_the_code_of(checkout, moto, &["collector", "optimizer", "processor"]);
    let copy = Packager::new(checkout.dir.path());
    for (edit, users) in [
        ("not Registry JSON", vec!["optimizer"]),
        ("raw/linkedin/Creatives", vec!["collector", "processor"]),
    ] {
        let mut holding: Vec<&str> = HANDLERS
            .iter()
            .copied()
            .filter(|h| testkit::holds(&testkit::zip_bootstrap(&copy.zip_path(h)), edit))
            .collect();
        holding.sort();
        assert_eq!(holding, users, "whose code holds the edit {edit:?}");
    }
}

/// Plans after an edit to a crate every handler links: every handler is rebuilt, and the plan
/// updates the code of exactly `functions`.
fn plan_updates_the_code_of(checkout: &Checkout, moto: &Moto, functions: &[&str]) {
    let run = checkout.infra(moto, &["plan", "--env", "local", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "Packaging Lambda handlers ({})",
            HANDLERS.join(", ")
        )),
        "every handler links the edited crate, so every one is rebuilt: {}",
        run.all()
    );
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let mut changed = updates(&plan);
    changed.sort();
    let mut expected: Vec<(String, Vec<String>)> = functions
        .iter()
        .map(|f| (format!("lambda.{f}"), vec!["code_sha256".to_string()]))
        .collect();
    expected.sort();
    assert_eq!(changed, expected, "{}", run.stderr);
}
