//! Packaging is deterministic: a clean build in another folder (as on a fresh clone) gives the
//! same zip bytes as the workspace's own build.

use std::path::Path;

use infra_core::package::Packager;
use testkit::workspace_root;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".venv" || name == ".git" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn a_clean_build_elsewhere_gives_identical_zips() {
    let root = workspace_root();
    let here = Packager::new(&root)
        .package(&["collector"], &|_| {})
        .expect("package in the workspace");

    let clone = tempfile::tempdir().unwrap();
    copy_dir(&root, clone.path());
    // The copy uses the workspace's build tooling (the venv is not copied).
    std::os::unix::fs::symlink(root.join(".venv"), clone.path().join(".venv")).unwrap();
    let there = Packager::new(clone.path())
        .package(&["collector"], &|_| {})
        .expect("package in the copy");

    let (a, b) = (&here["collector"], &there["collector"]);
    assert_eq!(a.code_sha256, b.code_sha256, "same source, same CodeSha256");
    assert_eq!(
        std::fs::read(&a.zip).unwrap(),
        std::fs::read(&b.zip).unwrap()
    );
    assert_eq!(
        a.inputs, b.inputs,
        "the inputs hash does not depend on the folder"
    );
}
