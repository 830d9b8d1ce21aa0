//! Lambda packaging, owned by the engine: builds the runtime crate's handler binaries for
//! x86_64 Linux against glibc 2.34 (Amazon Linux 2023) with `cargo zigbuild`, and writes each
//! into its own zip whose only entry is `bootstrap` (mode 0755, fixed timestamp, no extra
//! metadata), so that the same source gives the same bytes on any machine and in any folder.
//!
//! A build is keyed on a hash of its inputs (toolchain, target, profile, flags, Cargo.lock,
//! manifests, the runtime's shared sources and the handler's own source). A manifest next to
//! each zip records that key with the zip's CodeSha256, so a plan whose inputs are unchanged
//! neither builds nor reads the zip, and a change to one handler's source rebuilds, and
//! updates, only that handler.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The target triple, with the glibc version to link against.
pub const LAMBDA_TARGET: &str = "x86_64-unknown-linux-gnu.2.34";
/// Where cargo puts the binaries of [`LAMBDA_TARGET`] (the glibc suffix is not part of it).
const TARGET_DIR_NAME: &str = "x86_64-unknown-linux-gnu";
pub const PROFILE: &str = "release";
/// Bumped whenever the way zips are made changes, so old manifests are not trusted.
const PACKAGER_VERSION: &str = "1";

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
    #[error("`{0}` is not a handler of the runtime crate (src/bin/{0}.rs)")]
    UnknownHandler(String),
    #[error("writing the zip: {0}")]
    Zip(String),
}

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
    /// so checkouts of one machine can share one and compile the dependencies once.
    pub build_dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    inputs: String,
    code_sha256: String,
    size: u64,
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
        let toolchain = rustc_version();
        let mut artifacts = Artifacts::new();
        let mut stale: Vec<(&str, String)> = Vec::new();
        for handler in handlers {
            let inputs = self.inputs_hash(handler, &toolchain)?;
            match self.cached(handler, &inputs) {
                Some(artifact) => {
                    artifacts.insert(handler.to_string(), artifact);
                }
                None => stale.push((handler, inputs)),
            }
        }
        if stale.is_empty() {
            return Ok(artifacts);
        }
        let names: Vec<&str> = stale.iter().map(|(h, _)| *h).collect();
        on_build(&names);
        // Checkouts sharing the build folder build binaries of the same names into the same
        // place: from this build until its binaries are read, the folder is this packager's
        // alone (cargo's own lock covers the build only).
        let _turn = self.lock_build_dir()?;
        self.build(&names)?;
        std::fs::create_dir_all(&self.out_dir).map_err(io(&self.out_dir))?;
        for (handler, inputs) in stale {
            let binary_path = self.binary_path(handler);
            let binary = std::fs::read(&binary_path)
                .map_err(|_| PackageError::MissingBinary(binary_path.clone()))?;
            let zip = write_zip(&binary)?;
            let artifact = Artifact {
                handler: handler.to_string(),
                zip: self.zip_path(handler),
                code_sha256: code_sha256(&zip),
                size: zip.len() as u64,
                inputs: inputs.clone(),
            };
            write_atomically(&artifact.zip, &zip)?;
            let manifest = Manifest {
                inputs,
                code_sha256: artifact.code_sha256.clone(),
                size: artifact.size,
            };
            let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
            write_atomically(&self.manifest_path(handler), &manifest_bytes)?;
            artifacts.insert(handler.to_string(), artifact);
        }
        Ok(artifacts)
    }

    /// Holds the build folder until dropped (an exclusive lock on a file in it).
    fn lock_build_dir(&self) -> Result<std::fs::File, PackageError> {
        let path = self.compile_dir().join(".infra-package.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    /// The artifact recorded for `handler` if its inputs are `inputs` and its zip is there.
    fn cached(&self, handler: &str, inputs: &str) -> Option<Artifact> {
        let bytes = std::fs::read(self.manifest_path(handler)).ok()?;
        let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
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

    /// Hash of everything the handler's binary is built from.
    pub fn inputs_hash(&self, handler: &str, toolchain: &str) -> Result<String, PackageError> {
        let crate_root = self.workspace.join(&self.crate_dir);
        let own = crate_root
            .join("src")
            .join("bin")
            .join(format!("{handler}.rs"));
        if !own.is_file() {
            return Err(PackageError::UnknownHandler(handler.to_string()));
        }
        let mut files = vec![
            self.workspace.join("Cargo.toml"),
            self.workspace.join("Cargo.lock"),
            crate_root.join("Cargo.toml"),
        ];
        collect_sources(
            &crate_root.join("src"),
            &crate_root.join("src").join("bin"),
            &mut files,
        )?;
        files.push(own);
        files.sort();
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
        for file in files {
            let relative = file.strip_prefix(&self.workspace).unwrap_or(&file);
            hasher.update(relative.to_string_lossy().as_bytes());
            hasher.update([0]);
            hasher.update(std::fs::read(&file).map_err(io(&file))?);
            hasher.update([0]);
        }
        Ok(hex::encode(hasher.finalize()))
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
            .args(["--release", "--locked", "--target", LAMBDA_TARGET])
            .args(["-p", "runtime"])
            .arg("--target-dir")
            .arg(&build_dir)
            .current_dir(&self.workspace)
            .env("PATH", path)
            .env("RUSTFLAGS", rustflags)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
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

fn rustc_version() -> String {
    Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Every file under `dir` except those under `skip`.
fn collect_sources(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) -> Result<(), PackageError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if path == skip {
            continue;
        }
        if path.is_dir() {
            collect_sources(&path, skip, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
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

    /// `make demo` compiles the handlers' dependencies ahead with the packager's target and
    /// flags; if they drift apart, packaging would compile everything again.
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
    }

    #[test]
    fn code_sha256_is_base64_of_sha256() {
        assert_eq!(
            code_sha256(b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
