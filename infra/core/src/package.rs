//! Lambda packaging, owned by the engine: builds the runtime crate's handler binaries for
//! x86_64 Linux against glibc 2.34 (Amazon Linux 2023) with `cargo zigbuild`, and writes each
//! into its own zip whose only entry is `bootstrap` (mode 0755, fixed timestamp, no extra
//! metadata), so that the same source gives the same bytes on any machine and in any folder.
//!
//! A build is keyed on a hash of its inputs: the toolchain, target, profile and flags, and each
//! file of the workspace the handler is built from, by path and contents. Which files is
//! cargo's answer, not a list kept here: after a build, the dep-info file cargo writes next to
//! each binary (`<handler>.d`) names every source file of the handler and of the workspace
//! crates it links (`runtime/registry`, `runtime/datasets`, any added later), `include_str!`
//! inputs and what build scripts name with `rerun-if-changed`. Added to them are `Cargo.lock`,
//! the workspace's `Cargo.toml` and every member's (as `cargo metadata --no-deps` lists them)
//! and the workspace's `.cargo/config.toml` if there is one. Crates from a registry are pinned
//! by `Cargo.lock`; files the build generates (under the build folder or `target/`) are left
//! out. (A build script without `rerun-if-changed` lines, which cargo reruns on any change to
//! its package, adds nothing to the list: the workspace has none, and one added should name its
//! inputs.)
//!
//! A manifest next to each zip records those files (workspace-relative), their hash and the
//! zip's CodeSha256. A plan trusts the zip only if every listed file is still there and the
//! hash over them is the recorded one: then it neither builds nor reads the zip. Otherwise the
//! handler is rebuilt, including when the manifest is missing or from an older packager. A new
//! module or crate is named in a listed file (`mod`, a `Cargo.toml`), so it is caught. A file
//! changed while the build ran may or may not be in the binary: no manifest is written then, so
//! the next plan builds again.
//!
//! Rebuilding is not updating: the plan's `code_sha256` is the zip's, so only the functions
//! whose bytes changed show a change. An edit to one handler's source, or to code of a linked
//! crate that only some handlers call, updates exactly those functions.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The target triple, with the glibc version to link against.
pub const LAMBDA_TARGET: &str = "x86_64-unknown-linux-gnu.2.34";
/// Where cargo puts the binaries of [`LAMBDA_TARGET`] (the glibc suffix is not part of it).
const TARGET_DIR_NAME: &str = "x86_64-unknown-linux-gnu";
pub const PROFILE: &str = "lambda";
/// Bumped whenever the way zips are made or keyed changes, so old manifests are not trusted.
const PACKAGER_VERSION: &str = "2";

/// A packaged handler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub handler: String,
    /// The zip, under `target/lambda/`.
    pub zip: PathBuf,
    /// base64(SHA-256(zip)), as Lambda reports it.
    pub code_sha256: String,
    pub size: u64,
    /// Hash of the inputs the zip was built from.
    pub inputs: String,
}

/// Artifacts by handler name.
pub type Artifacts = BTreeMap<String, Artifact>;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cargo-zigbuild not found (looked for $INFRA_CARGO_ZIGBUILD, {venv} and PATH); \
         `make venv` installs it"
    )]
    NoZigbuild { venv: String },
    #[error(
        "building the Lambda handlers ({handlers}) failed with {status}; the build output is above"
    )]
    BuildFailed { handlers: String, status: String },
    #[error("the build did not produce {0}")]
    MissingBinary(PathBuf),
    /// Removing another checkout's builds of the workspace crates from a shared build folder.
    #[error("`cargo clean -p` of the workspace crates in {build_dir}: {message}")]
    Clean { build_dir: PathBuf, message: String },
    #[error("`{0}` is not a handler of the runtime crate (src/bin/{0}.rs)")]
    UnknownHandler(String),
    #[error("writing the zip: {0}")]
    Zip(String),
    /// Cargo's dep-info of a handler's binary, which names the files it is built from.
    #[error("{path} (cargo's list of the files the handler is built from): {message}")]
    DepInfo { path: PathBuf, message: String },
    #[error(
        "`cargo metadata --no-deps` in {workspace} (to list the workspace's manifests): {message}"
    )]
    Metadata { workspace: PathBuf, message: String },
}

/// In the build folder: the workspace that last built its workspace crates there (its resolved
/// path). `infra/scripts/warm-lambda-build.sh` writes it too, for a folder it made.
const WORKSPACE_MARKER: &str = ".infra-last-workspace";
/// In the build folder: locked by whoever builds there (packagers, and the demo's warm-up).
const BUILD_LOCK: &str = ".infra-package.lock";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Packages the handlers of one crate of a workspace.
#[derive(Clone, Debug)]
pub struct Packager {
    pub workspace: PathBuf,
    /// The crate holding the handlers, relative to the workspace (`runtime`).
    pub crate_dir: String,
    /// Zips and manifests: `<workspace>/target/lambda`.
    pub out_dir: PathBuf,
    /// Where cargo compiles the handlers: `$INFRA_LAMBDA_BUILD_DIR`, else
    /// `<workspace>/target/lambda/build`. Nothing in it reaches a zip (its path is remapped),
    /// so checkouts of one machine can share one and compile the dependencies once (each
    /// checkout's own crates are rebuilt when another built there last: `claim_build_dir`).
    pub build_dir: PathBuf,
}

/// `<handler>.json`, next to the zip.
#[derive(Serialize, Deserialize)]
struct Manifest {
    inputs: String,
    code_sha256: String,
    size: u64,
    /// The workspace files the zip's binary was built from, workspace-relative and sorted: the
    /// ones `inputs` hashes. Absent (a manifest of an older packager) or empty: not trusted.
    #[serde(default)]
    files: Vec<String>,
}

impl Packager {
    pub fn new(workspace: &Path) -> Packager {
        Packager {
            workspace: workspace.to_path_buf(),
            crate_dir: "runtime".into(),
            out_dir: workspace.join("target").join("lambda"),
            build_dir: std::env::var_os("INFRA_LAMBDA_BUILD_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace.join("target").join("lambda").join("build")),
        }
    }

    pub fn zip_path(&self, handler: &str) -> PathBuf {
        self.out_dir.join(format!("{handler}.zip"))
    }

    fn manifest_path(&self, handler: &str) -> PathBuf {
        self.out_dir.join(format!("{handler}.json"))
    }

    /// Packages `handlers`, building only those whose inputs changed since their zip was made.
    /// `on_build` is told which handlers are about to be built.
    pub fn package(
        &self,
        handlers: &[&str],
        on_build: &dyn Fn(&[&str]),
    ) -> Result<Artifacts, PackageError> {
        let toolchain = rustc_version(&self.cwd());
        let mut artifacts = Artifacts::new();
        let mut stale: Vec<&str> = Vec::new();
        for &handler in handlers {
            self.check_handler(handler)?;
            match self.cached(handler, &toolchain) {
                Some(artifact) => {
                    artifacts.insert(handler.to_string(), artifact);
                }
                None => stale.push(handler),
            }
        }
        if stale.is_empty() {
            return Ok(artifacts);
        }
        on_build(&stale);
        let (manifests, members) = self.workspace_manifests()?;
        // Checkouts sharing the build folder build binaries of the same names into the same
        // place: from this build until its binaries and their dep-info are read, the folder is
        // this packager's alone (cargo's own lock covers the build only).
        let _turn = self.lock_build_dir()?;
        // Another packager of this checkout may have built them while this one waited: look
        // again, so that a queue of waiting packagers builds once (and, in a shared folder,
        // does not take it back from another checkout for nothing).
        stale.retain(|&handler| match self.cached(handler, &toolchain) {
            Some(artifact) => {
                artifacts.insert(handler.to_string(), artifact);
                false
            }
            None => true,
        });
        if stale.is_empty() {
            return Ok(artifacts);
        }
        self.claim_build_dir(&members)?;
        let started = SystemTime::now();
        self.build(&stale)?;
        std::fs::create_dir_all(&self.out_dir).map_err(io(&self.out_dir))?;
        for handler in stale {
            let binary_path = self.binary_path(handler);
            let binary = std::fs::read(&binary_path)
                .map_err(|_| PackageError::MissingBinary(binary_path.clone()))?;
            let mut files = self.built_from(handler)?;
            files.extend(manifests.iter().cloned());
            files.sort();
            files.dedup();
            let (inputs, newest) = self.inputs_hash(handler, &toolchain, &files)?;
            let zip = write_zip(&binary)?;
            let artifact = Artifact {
                handler: handler.to_string(),
                zip: self.zip_path(handler),
                code_sha256: code_sha256(&zip),
                size: zip.len() as u64,
                inputs: inputs.clone(),
            };
            // The old manifest goes first, so that none ever vouches for a zip it was not
            // written with (an interrupted packaging leaves no manifest: the next one builds).
            let manifest_path = self.manifest_path(handler);
            remove_if_present(&manifest_path)?;
            write_atomically(&artifact.zip, &zip)?;
            // A file changed after the build started may or may not be in the binary: without
            // a manifest, the next plan builds again.
            if newest <= started {
                let manifest = Manifest {
                    inputs,
                    code_sha256: artifact.code_sha256.clone(),
                    size: artifact.size,
                    files,
                };
                let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
                write_atomically(&manifest_path, &manifest_bytes)?;
            }
            artifacts.insert(handler.to_string(), artifact);
        }
        Ok(artifacts)
    }

    /// Holds the build folder until dropped (an exclusive lock on a file in it).
    fn lock_build_dir(&self) -> Result<std::fs::File, PackageError> {
        let path = self.compile_dir().join(BUILD_LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    fn check_handler(&self, handler: &str) -> Result<(), PackageError> {
        let own = self
            .workspace
            .join(&self.crate_dir)
            .join("src")
            .join("bin")
            .join(format!("{handler}.rs"));
        if own.is_file() {
            Ok(())
        } else {
            Err(PackageError::UnknownHandler(handler.to_string()))
        }
    }

    /// The artifact recorded for `handler` if every file it was built from is still there with
    /// the same contents (under the same toolchain and flags) and its zip is there.
    fn cached(&self, handler: &str, toolchain: &str) -> Option<Artifact> {
        let bytes = std::fs::read(self.manifest_path(handler)).ok()?;
        let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
        let listed = !manifest.files.is_empty()
            && manifest
                .files
                .iter()
                .all(|file| is_plain_relative(Path::new(file)));
        if !listed {
            return None;
        }
        let (inputs, _) = self.inputs_hash(handler, toolchain, &manifest.files).ok()?;
        let zip = self.zip_path(handler);
        let size = std::fs::metadata(&zip).ok()?.len();
        (manifest.inputs == inputs && manifest.size == size).then(|| Artifact {
            handler: handler.to_string(),
            zip,
            code_sha256: manifest.code_sha256,
            size,
            inputs: manifest.inputs,
        })
    }

    fn binary_path(&self, handler: &str) -> PathBuf {
        self.compile_dir()
            .join(TARGET_DIR_NAME)
            .join(PROFILE)
            .join(handler)
    }

    /// The build folder as cargo is given it: one spelling of it (symlinks resolved), so that
    /// every checkout sharing it passes the same flags and reuses what was compiled.
    fn compile_dir(&self) -> PathBuf {
        let _ = std::fs::create_dir_all(&self.build_dir);
        self.build_dir
            .canonicalize()
            .unwrap_or_else(|_| self.build_dir.clone())
    }

    /// The workspace as a folder to run commands in and to read files under.
    fn cwd(&self) -> PathBuf {
        if self.workspace.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            self.workspace.clone()
        }
    }

    /// The workspace's absolute spellings: with symlinks resolved (as cargo, which runs in
    /// it, names its files) and as given.
    fn roots(&self) -> Vec<PathBuf> {
        let cwd = self.cwd();
        let resolved = cwd.canonicalize().ok();
        let given = std::path::absolute(cwd).ok();
        let mut roots: Vec<PathBuf> = Vec::new();
        for root in [resolved, given].into_iter().flatten() {
            let root = normalize(&root);
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        roots
    }

    /// Where the build writes, unless the workspace is inside: files there are generated.
    fn generated_dirs(&self, roots: &[PathBuf]) -> Vec<PathBuf> {
        let mut dirs = vec![normalize(&self.compile_dir())];
        dirs.extend(
            std::path::absolute(&self.build_dir)
                .ok()
                .map(|d| normalize(&d)),
        );
        dirs.extend(roots.iter().map(|root| root.join("target")));
        dirs.retain(|dir| !roots.iter().any(|root| root.starts_with(dir)));
        dirs
    }

    /// The files of the workspace `handler`'s binary was built from, workspace-relative and
    /// sorted, as the dep-info cargo wrote next to it names them. Read right after the build,
    /// with the build folder still held: the dep-info is this build's, of this checkout.
    fn built_from(&self, handler: &str) -> Result<Vec<String>, PackageError> {
        let path = self
            .compile_dir()
            .join(TARGET_DIR_NAME)
            .join(PROFILE)
            .join(format!("{handler}.d"));
        let text = std::fs::read_to_string(&path).map_err(|e| PackageError::DepInfo {
            path: path.clone(),
            message: format!("cargo did not write it ({e})"),
        })?;
        let roots = self.roots();
        let files = workspace_files(&parse_dep_info(&text), &roots, &self.generated_dirs(&roots));
        // The handler's own source is among them, or the paths are not this workspace's.
        let own = Path::new(&self.crate_dir)
            .join("src")
            .join("bin")
            .join(format!("{handler}.rs"));
        if !files.iter().any(|file| Path::new(file) == own) {
            return Err(PackageError::DepInfo {
                path,
                message: format!(
                    "it does not name {} in the workspace {}",
                    own.display(),
                    self.cwd().display()
                ),
            });
        }
        Ok(files)
    }

    /// `Cargo.lock`, the workspace's manifest, every member's manifest (as cargo lists them)
    /// and the workspace's cargo configuration if there is one: workspace-relative. With them,
    /// the members' names.
    fn workspace_manifests(&self) -> Result<(Vec<String>, Vec<String>), PackageError> {
        let cwd = self.cwd();
        let failed = |message: String| PackageError::Metadata {
            workspace: cwd.clone(),
            message,
        };
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("cargo"));
        let output = Command::new(&cargo)
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--offline",
            ])
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("cannot run {}: {e}", cargo.display())))?;
        if !output.status.success() {
            return Err(failed(format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).map_err(|e| failed(e.to_string()))?;
        let Some(members) = metadata["packages"].as_array().filter(|m| !m.is_empty()) else {
            return Err(failed("it lists no package".into()));
        };
        let roots = self.roots();
        let mut files = vec!["Cargo.lock".to_string(), "Cargo.toml".to_string()];
        let mut names = Vec::new();
        for member in members {
            let manifest = member["manifest_path"].as_str().unwrap_or_default();
            files.extend(relative_to(Path::new(manifest), &roots));
            names.extend(member["name"].as_str().map(str::to_string));
        }
        for config in [".cargo/config.toml", ".cargo/config"] {
            if cwd.join(config).is_file() {
                files.push(config.to_string());
            }
        }
        Ok((files, names))
    }

    /// Makes the build folder this workspace's before it builds there. Cargo tells whether a
    /// workspace crate is up to date by its files' times, under paths relative to the crate,
    /// so in a folder another checkout built in last, an older but different file of this
    /// checkout would pass for built: its binary would be the other checkout's. So when the
    /// folder was last this workspace's, nothing is done; otherwise the workspace crates'
    /// artifacts go (`cargo clean -p`, the dependencies stay) and the folder is marked as this
    /// workspace's. Called with the folder locked.
    fn claim_build_dir(&self, members: &[String]) -> Result<(), PackageError> {
        let marker = self.compile_dir().join(WORKSPACE_MARKER);
        let this = self
            .roots()
            .first()
            .map(|root| root.to_string_lossy().into_owned())
            .unwrap_or_default();
        if std::fs::read_to_string(&marker).is_ok_and(|last| last == this) {
            return Ok(());
        }
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("cargo"));
        let mut clean = Command::new(&cargo);
        clean
            .args([
                "clean",
                "--profile",
                PROFILE,
                "--target",
                TARGET_DIR_NAME,
                "--target-dir",
            ])
            .arg(self.compile_dir())
            .current_dir(self.cwd())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        for member in members {
            clean.args(["-p", member]);
        }
        let output = clean.output().map_err(io(&cargo))?;
        if !output.status.success() {
            return Err(PackageError::Clean {
                build_dir: self.compile_dir(),
                message: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        write_atomically(&marker, this.as_bytes())
    }

    /// Hash of what `handler`'s binary is built from: the build's settings, and each of `files`
    /// (workspace-relative) by path and contents. With it, the latest time one of the files
    /// was modified.
    fn inputs_hash(
        &self,
        handler: &str,
        toolchain: &str,
        files: &[String],
    ) -> Result<(String, SystemTime), PackageError> {
        let cwd = self.cwd();
        let mut hasher = Sha256::new();
        for part in [
            PACKAGER_VERSION,
            LAMBDA_TARGET,
            PROFILE,
            RUSTFLAGS_TEMPLATE,
            toolchain,
            handler,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let mut newest = SystemTime::UNIX_EPOCH;
        for file in files {
            let path = cwd.join(file);
            let contents = std::fs::read(&path).map_err(io(&path))?;
            // Taken after the read: a change in between shows as a later time.
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(io(&path))?;
            newest = newest.max(modified);
            hasher.update(file.as_bytes());
            hasher.update([0]);
            hasher.update((contents.len() as u64).to_le_bytes());
            hasher.update(contents);
        }
        Ok((hex::encode(hasher.finalize()), newest))
    }

    /// One `cargo zigbuild` for every stale handler.
    fn build(&self, handlers: &[&str]) -> Result<(), PackageError> {
        let zigbuild = self.zigbuild()?;
        let mut path = std::env::var_os("PATH").unwrap_or_default();
        // cargo-zigbuild finds zig through `python3 -m ziglang`: the venv's python first.
        if let Some(bin) = zigbuild.parent() {
            let mut dirs = vec![bin.to_path_buf()];
            dirs.extend(std::env::split_paths(&path));
            path = std::env::join_paths(dirs).unwrap_or(path);
        }
        let cargo_home = std::env::var("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|_| home_dir().join(".cargo"));
        let build_dir = self.compile_dir();
        let rustflags = RUSTFLAGS_TEMPLATE
            .replace("{cargo_home}", &cargo_home.to_string_lossy())
            .replace("{build_dir}", &build_dir.to_string_lossy());
        let mut command = Command::new(&zigbuild);
        command
            .arg("zigbuild")
            .args(["--profile", PROFILE, "--locked", "--target", LAMBDA_TARGET])
            .args(["-p", "runtime"])
            .arg("--target-dir")
            .arg(&build_dir)
            .current_dir(self.cwd())
            .env("PATH", path)
            .env("RUSTFLAGS", rustflags)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            // A workspace wrapper (`make test` lints with clippy-driver as one) changes the
            // crates' metadata hash, and with it the binary's bytes.
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER")
            .stdin(Stdio::null());
        for handler in handlers {
            command.args(["--bin", handler]);
        }
        // Build output goes to stderr, so that stdout stays a clean plan (text or JSON).
        let stderr = std::io::stderr();
        let _ = stderr.lock().flush();
        command.stdout(Stdio::from(
            std::os::fd::AsFd::as_fd(&stderr)
                .try_clone_to_owned()
                .map_err(io(Path::new("stderr")))?,
        ));
        let status = command.status().map_err(io(&zigbuild))?;
        if !status.success() {
            return Err(PackageError::BuildFailed {
                handlers: handlers.join(", "),
                status: status.to_string(),
            });
        }
        Ok(())
    }

    fn zigbuild(&self) -> Result<PathBuf, PackageError> {
        if let Ok(path) = std::env::var("INFRA_CARGO_ZIGBUILD") {
            return Ok(PathBuf::from(path));
        }
        let venv = self
            .workspace
            .join(".venv")
            .join("bin")
            .join("cargo-zigbuild");
        if venv.is_file() {
            return Ok(venv);
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join("cargo-zigbuild"))
            .find(|p| p.is_file())
            .ok_or_else(|| PackageError::NoZigbuild {
                venv: venv.display().to_string(),
            })
    }
}

/// Paths that differ between machines are remapped, so that the binary (panic locations,
/// debug strings) holds none of them; symbols are stripped. The checkout's own path needs no
/// remapping: cargo gives rustc the workspace's sources relative to its root, and leaving it
/// out keeps these flags the same for every checkout sharing a build folder (so the
/// dependencies compile once). `tests/packaging.rs` checks that no path leaks into a zip.
const RUSTFLAGS_TEMPLATE: &str = "--remap-path-prefix={build_dir}=/target --remap-path-prefix={cargo_home}=/cargo -C strip=symbols";

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `rustc -vV` as run in `dir`, so that the workspace's `rust-toolchain.toml` picks it, as it
/// picks the build's.
fn rustc_version(dir: &Path) -> String {
    Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .current_dir(dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The prerequisites of every rule of a Makefile-style dep-info file, as cargo writes one next
/// to each binary (`target: dep dep ...`, a space in a path written `\ `). A line ending in
/// `\` goes on on the next; comments (`#`) and rules without prerequisites add nothing.
fn parse_dep_info(text: &str) -> Vec<PathBuf> {
    let joined = text.replace("\\\r\n", " ").replace("\\\n", " ");
    let mut deps = Vec::new();
    for line in joined.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        if let Some(prerequisites) = prerequisites(line) {
            deps.extend(split_escaped(prerequisites).into_iter().map(PathBuf::from));
        }
    }
    deps
}

/// What follows a rule's target: the text after the first `:` that ends a word.
fn prerequisites(line: &str) -> Option<&str> {
    line.match_indices(':')
        .map(|(at, _)| at)
        .find(|&at| {
            line[at + 1..]
                .chars()
                .next()
                .is_none_or(char::is_whitespace)
        })
        .map(|at| &line[at + 1..])
}

/// The words of `text`, split at whitespace except an escaped space (`\ `).
fn split_escaped(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&' ') {
            chars.next();
            word.push(' ');
        } else if c.is_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The files of `deps` inside the workspace (`roots`: its absolute spellings) and not under
/// one of `skip` (where the build writes), workspace-relative, sorted, each once. A relative
/// path is taken as relative to the workspace (cargo writes one when `build.dep-info-basedir`
/// is set, and it is the workspace that sets it). Files outside are not inputs to key on:
/// crates from a registry are pinned by `Cargo.lock`, the toolchain is keyed on by version.
fn workspace_files(deps: &[PathBuf], roots: &[PathBuf], skip: &[PathBuf]) -> Vec<String> {
    let skip: Vec<PathBuf> = skip.iter().map(|dir| normalize(dir.as_path())).collect();
    let mut files: Vec<String> = deps
        .iter()
        .filter_map(|dep| {
            let dep = match roots.first() {
                Some(root) if dep.is_relative() => normalize(&root.join(dep)),
                _ => normalize(dep),
            };
            if skip.iter().any(|dir| dep.starts_with(dir)) {
                return None;
            }
            relative_to(&dep, roots)
        })
        .collect();
    files.sort();
    files.dedup();
    files
}

/// `path` relative to the first of `roots` it is under, if it is under one.
fn relative_to(path: &Path, roots: &[PathBuf]) -> Option<String> {
    let path = normalize(path);
    roots.iter().find_map(|root| {
        let relative = path.strip_prefix(normalize(root)).ok()?;
        if is_plain_relative(relative) {
            relative.to_str().map(str::to_string)
        } else {
            None
        }
    })
}

/// `path` with its `.` and `..` resolved by name (symlinks are not followed).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let after_a_name =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if after_a_name {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// A path with at least one component, all of them names: it stays inside the folder it is
/// joined to.
fn is_plain_relative(path: &Path) -> bool {
    path.components().next().is_some()
        && path
            .components()
            .all(|component| matches!(component, Component::Normal(_)))
}

fn remove_if_present(path: &Path) -> Result<(), PackageError> {
    match std::fs::remove_file(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(PackageError::Io {
            path: path.to_path_buf(),
            source,
        }),
        _ => Ok(()),
    }
}

/// A zip with one entry, `bootstrap`: deflated, mode 0755, timestamp 1980-01-01 00:00, no
/// extra fields. The same binary always gives the same bytes.
pub fn write_zip(binary: &[u8]) -> Result<Vec<u8>, PackageError> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755)
        .last_modified_time(zip::DateTime::default());
    writer
        .start_file("bootstrap", options)
        .map_err(|e| PackageError::Zip(e.to_string()))?;
    writer
        .write_all(binary)
        .map_err(|e| PackageError::Zip(e.to_string()))?;
    let cursor = writer
        .finish()
        .map_err(|e| PackageError::Zip(e.to_string()))?;
    Ok(cursor.into_inner())
}

/// base64(SHA-256(bytes)): Lambda's CodeSha256.
pub fn code_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_binary_gives_the_same_zip() {
        let binary = b"\x7fELF not really, but bytes".repeat(1000);
        let a = write_zip(&binary).unwrap();
        let b = write_zip(&binary).unwrap();
        assert_eq!(a, b);
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        assert_eq!(archive.len(), 1);
        let entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name(), "bootstrap");
        assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(0o755));
        assert!(entry.extra_data().is_none_or(|d| d.is_empty()));
    }

    /// `make demo` compiles the runtime's binaries ahead with the packager's target and flags,
    /// and marks the folder it made as the packager does; if they drift apart, packaging would
    /// compile everything again.
    #[test]
    fn the_demo_warms_the_build_with_the_packagers_target_and_flags() {
        let script = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/warm-lambda-build.sh"),
        )
        .expect("infra/scripts/warm-lambda-build.sh");
        assert!(
            script.contains(&format!("LAMBDA_TARGET=\"{LAMBDA_TARGET}\"")),
            "the script's target is not {LAMBDA_TARGET}"
        );
        assert!(
            script.contains(&format!("RUSTFLAGS_TEMPLATE=\"{RUSTFLAGS_TEMPLATE}\"")),
            "the script's flags are not {RUSTFLAGS_TEMPLATE}"
        );
        assert!(
            script.contains(&format!("PROFILE=\"{PROFILE}\""))
                && script.contains("--profile \"$PROFILE\""),
            "the script does not build with the profile {PROFILE}"
        );
        assert!(
            script.contains(&format!("exec 9>\"$build_dir/{BUILD_LOCK}\"")),
            "the script does not take the packager's lock ({BUILD_LOCK})"
        );
        assert!(
            script.contains(&format!("marker=\"$build_dir/{WORKSPACE_MARKER}\"")),
            "the script does not mark the folder it made as the packager does ({WORKSPACE_MARKER})"
        );
    }

    #[test]
    fn dep_info_gives_every_prerequisite_with_escaped_spaces_and_continued_lines() {
        let text = "/shared/my\\ build/x86_64-unknown-linux-gnu/release/optimizer: \
                    /ws/runtime/src/bin/optimizer.rs /ws/runtime/src/lib.rs \\\n  \
                    /ws/My\\ Crate/src/lib.rs \\\r\n\t\
                    /home/u/.cargo/registry/src/index/serde-1.0.0/src/lib.rs\n\
                    \n\
                    # size:12 sha256:0123\n\
                    /ws/runtime/src/lib.rs:\n";
        assert_eq!(
            parse_dep_info(text),
            [
                "/ws/runtime/src/bin/optimizer.rs",
                "/ws/runtime/src/lib.rs",
                "/ws/My Crate/src/lib.rs",
                "/home/u/.cargo/registry/src/index/serde-1.0.0/src/lib.rs",
            ]
            .map(PathBuf::from)
        );
        assert!(parse_dep_info("").is_empty());
        assert!(parse_dep_info("/build/release/collector:\n").is_empty());
    }

    #[test]
    fn only_the_workspaces_own_files_are_kept_relative_to_it() {
        // The workspace as cargo names it (symlinks resolved) and as given.
        let roots = [PathBuf::from("/ws"), PathBuf::from("/link/ws")];
        let generated = [PathBuf::from("/ws/target"), PathBuf::from("/shared/build")];
        let deps = [
            "/ws/runtime/src/lib.rs",
            "/link/ws/runtime/registry/src/lib.rs",
            "/ws/runtime/src/../datasets/src/./lib.rs",
            "/ws/runtime/src/lib.rs",
            "/ws/My Crate/src/lib.rs",
            // Relative: `build.dep-info-basedir` set to the workspace.
            "runtime/src/bin/optimizer.rs",
            // A registry crate (pinned by Cargo.lock), a sibling folder, a way out.
            "/home/u/.cargo/registry/src/index/serde-1.0.0/src/lib.rs",
            "/wsx/other/src/lib.rs",
            "/ws/../elsewhere/src/lib.rs",
            // Generated by the build, in the default build folder and a shared one.
            "/ws/target/lambda/build/x86_64-unknown-linux-gnu/release/build/a-1/out/gen.rs",
            "/shared/build/x86_64-unknown-linux-gnu/release/build/b-2/out/gen.rs",
        ]
        .map(PathBuf::from);
        assert_eq!(
            workspace_files(&deps, &roots, &generated),
            vec![
                "My Crate/src/lib.rs",
                "runtime/datasets/src/lib.rs",
                "runtime/registry/src/lib.rs",
                "runtime/src/bin/optimizer.rs",
                "runtime/src/lib.rs",
            ]
        );
        assert!(is_plain_relative(Path::new("runtime/src/lib.rs")));
        for path in ["", "/etc/passwd", "../x", "runtime/../../x", "./runtime"] {
            assert!(!is_plain_relative(Path::new(path)), "{path}");
        }
    }

    /// A scratch folder, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("infra-package-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_zip_is_trusted_only_while_every_file_it_was_built_from_is_unchanged() {
        let scratch = Scratch::new("cached");
        let workspace = &scratch.0;
        let packager = Packager {
            workspace: workspace.clone(),
            crate_dir: "runtime".into(),
            out_dir: workspace.join("target/lambda"),
            build_dir: workspace.join("target/lambda/build"),
        };
        let write = |relative: &str, contents: &str| {
            let path = workspace.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        };
        write("Cargo.lock", "lock");
        write("runtime/src/bin/optimizer.rs", "fn main() {}");
        write("runtime/registry/src/lib.rs", "pub const M: &str = \"a\";");
        write("target/lambda/optimizer.zip", "zip bytes");
        let files: Vec<String> = [
            "Cargo.lock",
            "runtime/registry/src/lib.rs",
            "runtime/src/bin/optimizer.rs",
        ]
        .map(String::from)
        .to_vec();
        let (inputs, _) = packager
            .inputs_hash("optimizer", "rustc 1", &files)
            .unwrap();
        let manifest = serde_json::to_vec(&Manifest {
            inputs: inputs.clone(),
            code_sha256: "sha".into(),
            size: "zip bytes".len() as u64,
            files,
        })
        .unwrap();
        std::fs::write(packager.manifest_path("optimizer"), manifest).unwrap();
        assert!(packager.cached("optimizer", "rustc 1").is_some());
        assert!(
            packager.cached("optimizer", "rustc 2").is_none(),
            "toolchain"
        );

        // A linked crate's source changes, comes back, goes.
        write("runtime/registry/src/lib.rs", "pub const M: &str = \"b\";");
        assert!(packager.cached("optimizer", "rustc 1").is_none(), "changed");
        write("runtime/registry/src/lib.rs", "pub const M: &str = \"a\";");
        assert!(packager.cached("optimizer", "rustc 1").is_some(), "back");
        std::fs::remove_file(workspace.join("runtime/registry/src/lib.rs")).unwrap();
        assert!(packager.cached("optimizer", "rustc 1").is_none(), "gone");

        // A manifest of the packager before, which did not list its files.
        write("runtime/registry/src/lib.rs", "pub const M: &str = \"a\";");
        std::fs::write(
            packager.manifest_path("optimizer"),
            format!(r#"{{"inputs": "{inputs}", "code_sha256": "sha", "size": 9}}"#),
        )
        .unwrap();
        assert!(
            packager.cached("optimizer", "rustc 1").is_none(),
            "old manifest"
        );
    }

    #[test]
    fn code_sha256_is_base64_of_sha256() {
        assert_eq!(
            code_sha256(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
