//! Test harness shared by every test that needs AWS: starts a private moto server on a free
//! loopback port (one per [`Moto`] value) behind the AWS-behaviour layer
//! ([`aws_behaviour`]), gives SDK configuration for both, and runs the `infra` binary through
//! the layer with dummy credentials.

pub mod aws_behaviour;
pub mod fake_http;
pub mod fault_proxy;
pub mod lambda_runtime;
pub mod wire;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Dummy credentials: tests never reach real AWS.
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";

/// The workspace root (where `stacks/envs` and `.venv` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

/// `$MOTO_SERVER`, or the `moto_server` of the workspace's `.venv` (made by `make test`).
pub fn moto_server_path() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    workspace_root().join(".venv/bin/moto_server")
}

/// A moto server owned by this value, with the AWS-behaviour layer in front of it (unless
/// started bare); both stop on drop.
///
/// The engine under test (the `infra` binary through [`Moto::env_vars`], the library through
/// [`Moto::engine_sdk_config`]) talks to the layer, so it meets AWS's behaviours. A test's
/// own setup and checks use [`Moto::sdk_config`]: moto directly, the ground truth, with no
/// propagation windows or lagging listings in the way.
pub struct Moto {
    pub port: u16,
    child: Child,
    log: tempfile::NamedTempFile,
    layer: Option<aws_behaviour::AwsBehaviour>,
}

impl Moto {
    /// moto behind the layer with every rule on and the suites' short windows
    /// ([`aws_behaviour::Config::suite`]).
    pub fn start() -> Moto {
        Self::start_with(aws_behaviour::Config::suite())
    }

    /// moto behind the layer with `config`.
    pub fn start_with(config: aws_behaviour::Config) -> Moto {
        let mut moto = Self::start_bare();
        moto.layer = Some(aws_behaviour::AwsBehaviour::start(
            &moto.moto_endpoint(),
            config,
        ));
        moto
    }

    /// moto alone: for tests whose subject makes no control-plane calls the layer changes
    /// (the handlers' object reads and writes), where the caller says why.
    pub fn start_bare() -> Moto {
        let server = moto_server_path();
        assert!(
            server.exists(),
            "{} not found: run `make test` (it creates .venv with the pinned moto) or set MOTO_SERVER",
            server.display()
        );
        // moto binds a port the kernel picks (`-p 0`) and says which in its log: a port chosen
        // here and handed over would be free only until another test's server took it.
        for _attempt in 0..3 {
            let log = tempfile::NamedTempFile::new().expect("temp file for the moto log");
            let child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", "0"])
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("moto log"))
                .stderr(log.reopen().expect("moto log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
            let mut moto = Moto {
                port: 0,
                child,
                log,
                layer: None,
            };
            if moto.wait_ready(Duration::from_secs(30)) {
                return moto;
            }
            let _ = moto.child.kill();
            let _ = moto.child.wait();
        }
        panic!("moto did not start in 3 attempts");
    }

    /// Waits for moto to log the port it bound, then to answer on it.
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.port == 0 {
                self.port = std::fs::read_to_string(self.log.path())
                    .ok()
                    .and_then(|log| bound_port(&log))
                    .unwrap_or(0);
            }
            if self.port != 0 && self.http("GET", "/moto-api/", "").is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// What the engine talks to: the layer's endpoint (moto's when started bare).
    pub fn endpoint(&self) -> String {
        match &self.layer {
            Some(layer) => layer.endpoint(),
            None => self.moto_endpoint(),
        }
    }

    /// moto itself.
    pub fn moto_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS-behaviour layer in front of moto.
    pub fn layer(&self) -> &aws_behaviour::AwsBehaviour {
        self.layer
            .as_ref()
            .expect("this moto was started bare, without the AWS-behaviour layer")
    }

    /// Forgets every resource (`POST /moto-api/reset`), and what the layer remembers.
    pub fn reset(&self) {
        self.http("POST", "/moto-api/reset", "")
            .expect("moto reset");
        if let Some(layer) = &self.layer {
            layer.reset();
        }
    }

    /// A minimal HTTP/1.1 request to moto's own API; returns the body.
    pub fn http(&self, method: &str, path: &str, body: &str) -> std::io::Result<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        match response.split_once("\r\n\r\n") {
            Some((head, body))
                if head.starts_with("HTTP/1.1 2") || head.starts_with("HTTP/1.0 2") =>
            {
                Ok(body.to_string())
            }
            _ => Err(std::io::Error::other(format!(
                "unexpected answer: {response}"
            ))),
        }
    }

    /// SDK configuration for moto itself: a test's own setup and checks (the ground truth).
    pub async fn sdk_config(&self) -> aws_types::SdkConfig {
        sdk_config_at(self.moto_endpoint()).await
    }

    /// SDK configuration through the layer: for the engine's library under test.
    pub async fn engine_sdk_config(&self) -> aws_types::SdkConfig {
        sdk_config_at(self.endpoint()).await
    }

    /// Environment variables that point the SDK (and so `infra`) at the layer.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        endpoint_env(self.endpoint())
    }
}

/// SDK configuration for `endpoint` (e.g. a fault proxy in front of the layer) with the
/// harness's region and dummy credentials.
pub async fn sdk_config_at(endpoint: String) -> aws_types::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_types::sdk_config::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "testkit"),
        ))
        .load()
        .await
}

/// An S3 client for `sdk`, addressing buckets by path: the emulator is reached by IP address,
/// where virtual-hosted bucket names cannot resolve.
pub fn s3_client(sdk: &aws_types::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    )
}

/// Environment variables that point the SDK at `endpoint` with dummy credentials.
pub fn endpoint_env(endpoint: String) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.layer = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in werkzeug's start-up line, ` * Running on http://127.0.0.1:PORT`.
fn bound_port(log: &str) -> Option<u16> {
    let (_, rest) = log.split_once("Running on http://127.0.0.1:")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|port| *port != 0)
}

/// The result of one `infra` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The run a finished `infra` command (e.g. from [`infra_command`]) made.
    pub fn from_output(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the `infra` binary `bin` from the workspace root against `moto` (or, with `None`,
/// against an endpoint where nothing listens, proving that no AWS call is needed).
pub fn infra(bin: &str, moto: Option<&Moto>, args: &[&str]) -> Run {
    Run::from_output(infra_command(bin, moto, args).output().expect("run infra"))
}

/// Runs `infra` with `input` on its stdin.
pub fn infra_with_stdin(bin: &str, moto: Option<&Moto>, args: &[&str], input: &str) -> Run {
    use std::io::Write as _;
    let mut child = infra_command(bin, moto, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run infra");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    Run::from_output(child.wait_with_output().expect("wait for infra"))
}

/// `infra ARGS` from the workspace root, pointed at `moto` (through its layer) with dummy
/// credentials. Every `AWS_*` and `INFRA_*` setting of the developer's own environment (a
/// profile, a service's endpoint, config files, a log level) is left out, so that nothing of
/// theirs leaks into a test.
pub fn infra_command(bin: &str, moto: Option<&Moto>, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(workspace_root())
        .args(args)
        .stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("AWS_") || name.starts_with("INFRA_") {
            cmd.env_remove(name.as_ref());
        }
    }
    let vars = match moto {
        Some(m) => m.env_vars(),
        None => endpoint_env("http://127.0.0.1:9".to_string()),
    };
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// The `bootstrap` a Lambda zip holds (its one entry, checked as Lambda would see it).
pub fn zip_bootstrap(zip: &Path) -> Vec<u8> {
    use std::io::Read as _;
    let file = std::fs::File::open(zip).unwrap_or_else(|e| panic!("{}: {e}", zip.display()));
    let mut archive = zip::ZipArchive::new(file).expect("a zip");
    assert_eq!(archive.len(), 1, "{}: one entry", zip.display());
    let mut entry = archive.by_name("bootstrap").expect("its bootstrap");
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).expect("the bootstrap");
    bytes
}

/// Whether `haystack` holds the bytes of `needle` (a non-empty one).
pub fn holds(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

/// A copy of the checkout in a temp folder, as another clone of it would be (sources, assets,
/// env files; not `target/`, `.venv` or `.git`), with the checkout's venv linked in for its
/// build tools.
pub fn checkout_copy() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("a folder of the copy");
        for entry in std::fs::read_dir(from).expect("a folder of the checkout") {
            let entry = entry.expect("a folder entry");
            let name = entry.file_name();
            if name == "target" || name == ".venv" || name == ".git" {
                continue;
            }
            let (src, dst) = (entry.path(), to.join(&name));
            if entry.file_type().expect("an entry's type").is_dir() {
                copy(&src, &dst);
            } else {
                std::fs::copy(&src, &dst).expect("copy a file");
            }
        }
    }
    let root = workspace_root();
    let dir = tempfile::tempdir().expect("temp dir");
    copy(&root, dir.path());
    std::os::unix::fs::symlink(root.join(".venv"), dir.path().join(".venv"))
        .expect("link the venv");
    dir
}

/// A copy of `stacks/envs` in a temp folder, for tests that edit env files.
pub fn envs_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = workspace_root().join("stacks/envs");
    for entry in std::fs::read_dir(&src).expect("stacks/envs") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy env file");
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::bound_port;

    #[test]
    fn the_bound_port_is_read_from_werkzeugs_start_up_line() {
        let log = "\u{1b}[31mWARNING: This is a development server.\u{1b}[0m\n * Running on http://127.0.0.1:38727\nPress CTRL+C to quit\n";
        assert_eq!(bound_port(log), Some(38727));
        assert_eq!(bound_port(" * Running on http://127.0.0.1:"), None);
        assert_eq!(bound_port(" * Running on http://127.0.0.1:0\n"), None);
        assert_eq!(bound_port(""), None);
    }
}
