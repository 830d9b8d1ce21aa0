//! Packaging is machine-independent: no zip holds a path of this machine (the checkout, the
//! build folder, CARGO_HOME, HOME). That a build of another checkout gives the same bytes is
//! shown in `tests/source_edits.rs`, whose copy of the checkout shares the build folder (its
//! dependencies compile once, and what differs between the builds is the checkout's path,
//! which must not reach the bytes); `make test-packaging-cold` compares with a cold build in a
//! build folder of the copy's own, as on another machine.

use std::path::PathBuf;

use infra_core::package::{Artifact, Packager};
use stacks::linkedin_ads::FUNCTIONS as HANDLERS;
use testkit::{checkout_copy, holds, workspace_root, zip_bootstrap};

fn assert_same(here: &Artifact, there: &Artifact, handler: &str) {
    assert_eq!(
        here.code_sha256, there.code_sha256,
        "{handler}: same source, same CodeSha256"
    );
    assert_eq!(
        std::fs::read(&here.zip).unwrap(),
        std::fs::read(&there.zip).unwrap(),
        "{handler}"
    );
    assert_eq!(
        here.inputs, there.inputs,
        "{handler}: the inputs hash does not depend on the folder"
    );
}

#[test]
fn no_zip_holds_a_path_of_this_machine() {
    let root = workspace_root();
    let here = Packager::new(&root)
        .package(&HANDLERS, &|_| {})
        .expect("package in the workspace");
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_home = std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{home}/.cargo"));
    let machine_paths: Vec<String> = [
        root.to_string_lossy().into_owned(),
        Packager::new(&root)
            .build_dir
            .to_string_lossy()
            .into_owned(),
        cargo_home,
        home,
    ]
    .into_iter()
    .filter(|p| p.len() > 1)
    .collect();
    for handler in HANDLERS {
        let binary = zip_bootstrap(&here[handler].zip);
        for path in &machine_paths {
            assert!(
                !holds(&binary, path),
                "{handler}: the bootstrap holds the machine path {path}"
            );
        }
    }
}

/// The exhaustive variant: the copy compiles everything in a build folder of its own, as a
/// fresh clone on another machine would (several minutes: `make test-packaging-cold`).
#[test]
#[ignore = "a cold build of every dependency: make test-packaging-cold"]
fn a_cold_build_elsewhere_gives_identical_zips() {
    let root = workspace_root();
    let here = Packager::new(&root)
        .package(&["collector"], &|_| {})
        .expect("package in the workspace");
    let clone = checkout_copy();
    let mut packager = Packager::new(clone.path());
    packager.build_dir = PathBuf::from(clone.path()).join("target/lambda/build");
    let there = packager
        .package(&["collector"], &|_| {})
        .expect("package in the copy");
    assert_same(&here["collector"], &there["collector"], "collector");
}
