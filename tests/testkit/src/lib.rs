//! Test harness shared by every test that needs AWS: starts a private moto server on a free
//! loopback port (one per [`Moto`] value), gives SDK configuration pointing at it, and runs
//! the `infra` binary against it with dummy credentials.

pub mod fake_http;
pub mod fault_proxy;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
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

/// A moto server owned by this value; killed on drop.
pub struct Moto {
    pub port: u16,
    child: Child,
    _log: tempfile::NamedTempFile,
}

impl Moto {
    /// Starts moto with `MOTO_IAM_LOAD_MANAGED_POLICIES=true` on a free port and waits until
    /// it answers.
    pub fn start() -> Moto {
        let server = moto_server_path();
        assert!(
            server.exists(),
            "{} not found: run `make test` (it creates .venv with the pinned moto) or set MOTO_SERVER",
            server.display()
        );
        for _attempt in 0..5 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("temp file for the moto log");
            let child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("moto log"))
                .stderr(log.reopen().expect("moto log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
            let mut moto = Moto {
                port,
                child,
                _log: log,
            };
            if moto.wait_ready(Duration::from_secs(30)) {
                return moto;
            }
            let _ = moto.child.kill();
        }
        panic!("moto did not start on any of 5 ports");
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if self.http("GET", "/moto-api/", "").is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) {
        self.http("POST", "/moto-api/reset", "")
            .expect("moto reset");
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

    /// SDK configuration for this server.
    pub async fn sdk_config(&self) -> aws_types::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_types::region::Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_types::sdk_config::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    ACCESS_KEY, SECRET_KEY, None, None, "testkit",
                ),
            ))
            .load()
            .await
    }

    /// Environment variables that point the SDK (and so `infra`) at this server.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The result of one `infra` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(output: Output) -> Run {
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

pub fn infra_command(bin: &str, moto: Option<&Moto>, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(workspace_root())
        .args(args)
        .stdin(Stdio::null());
    let vars = match moto {
        Some(m) => m.env_vars(),
        None => vec![
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9".to_string()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
        ],
    };
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.env_remove("INFRA_ENVS_DIR");
    cmd
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
