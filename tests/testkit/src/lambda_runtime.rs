//! Lambda as a packaged handler meets it: a local Lambda Runtime API (the documented
//! `2018-06-01` interface a custom runtime's `bootstrap` polls), a way to run a packaged
//! `bootstrap` under it with the environment Lambda gives a function, and EventBridge's input
//! transformer, so that tests feed the handlers the exact payloads AWS delivers.
//!
//! The Runtime API: a test queues invocations ([`RuntimeApi::invoke`]); the bootstrap fetches
//! each from `GET /2018-06-01/runtime/invocation/next` with the `Lambda-Runtime-*` headers and
//! answers through `POST .../invocation/{id}/response` or `.../error` (202 either way);
//! failures before the loop starts arrive at `POST /2018-06-01/runtime/init/error`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How an invocation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The handler's result (`/response`).
    Response(Value),
    /// An error report (`/error` or `/init/error`): the `Lambda-Runtime-Function-Error-Type`
    /// header and the body (`errorType`, `errorMessage`).
    Error { error_type: String, body: Value },
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, String)>,
    outcomes: HashMap<String, Outcome>,
    init_error: Option<Outcome>,
    next_id: u64,
    /// How many times the bootstrap asked for the next invocation.
    polls: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    match shared.state.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A Runtime API on a free loopback port; stops when dropped.
pub struct RuntimeApi {
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` carries it.
    pub address: String,
    /// The function ARN the invocations carry.
    pub function_arn: String,
}

const PREFIX: &str = "/2018-06-01/runtime";
/// What an invocation's `Lambda-Runtime-Deadline-Ms` allows.
const DEADLINE: Duration = Duration::from_secs(300);

impl RuntimeApi {
    pub fn start(function_arn: &str) -> RuntimeApi {
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind the Runtime API"));
        let address = server
            .server_addr()
            .to_ip()
            .expect("an IP address")
            .to_string();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (accept, state, arn) = (
            Arc::clone(&server),
            Arc::clone(&shared),
            function_arn.to_string(),
        );
        std::thread::spawn(move || {
            for request in accept.incoming_requests() {
                let shared = Arc::clone(&state);
                let arn = arn.clone();
                std::thread::spawn(move || serve(request, &shared, &arn));
            }
        });
        RuntimeApi {
            server,
            shared,
            address,
            function_arn: function_arn.to_string(),
        }
    }

    /// Queues an invocation with `event` as its payload; returns its request id.
    pub fn invoke(&self, event: &Value) -> String {
        let mut state = lock(&self.shared);
        state.next_id += 1;
        let id = format!("00000000-0000-4000-8000-{:012}", state.next_id);
        state.queue.push_back((id.clone(), event.to_string()));
        self.shared.changed.notify_all();
        id
    }

    /// The outcome of invocation `id`, waiting up to `timeout` for it.
    pub fn outcome(&self, id: &str, timeout: Duration) -> Option<Outcome> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared);
        loop {
            if let Some(outcome) = state.outcomes.get(id) {
                return Some(outcome.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// What the bootstrap reported at `/runtime/init/error`, if anything.
    pub fn init_error(&self) -> Option<Outcome> {
        lock(&self.shared).init_error.clone()
    }

    /// How many times the bootstrap asked for an invocation.
    pub fn polls(&self) -> u64 {
        lock(&self.shared).polls
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        self.server.unblock();
    }
}

fn reply(request: tiny_http::Request, status: u16, body: &str) {
    let header =
        tiny_http::Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    let _ = request.respond(
        tiny_http::Response::from_string(body)
            .with_status_code(status)
            .with_header(header),
    );
}

fn serve(mut request: tiny_http::Request, shared: &Shared, function_arn: &str) {
    let url = request.url().to_string();
    let method = request.method().as_str().to_string();
    let Some(path) = url.strip_prefix(PREFIX) else {
        return reply(request, 404, r#"{"errorMessage":"unknown path"}"#);
    };
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let error_type = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Lambda-Runtime-Function-Error-Type"))
        .map(|h| h.value.as_str().to_string())
        .unwrap_or_default();
    let parsed = || serde_json::from_str(&body).unwrap_or(Value::String(body.clone()));
    match (method.as_str(), path) {
        ("GET", "/invocation/next") => {
            let mut state = lock(shared);
            state.polls += 1;
            let (id, event) = loop {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(next) = state.queue.pop_front() {
                    break next;
                }
                state = match shared
                    .changed
                    .wait_timeout(state, Duration::from_millis(200))
                {
                    Ok((g, _)) => g,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            };
            drop(state);
            let deadline = std::time::SystemTime::now() + DEADLINE;
            let deadline_ms = deadline
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            let mut response = tiny_http::Response::from_string(event).with_status_code(200);
            for (name, value) in [
                ("Content-Type", "application/json".to_string()),
                ("Lambda-Runtime-Aws-Request-Id", id.clone()),
                ("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn",
                    function_arn.to_string(),
                ),
                (
                    "Lambda-Runtime-Trace-Id",
                    format!(
                        "Root=1-00000000-{:024};Parent=0000000000000000;Sampled=0",
                        1
                    ),
                ),
            ] {
                if let Ok(h) = tiny_http::Header::from_bytes(name, value.as_bytes()) {
                    response = response.with_header(h);
                }
            }
            let _ = request.respond(response);
        }
        ("POST", "/init/error") => {
            lock(shared).init_error = Some(Outcome::Error {
                error_type,
                body: parsed(),
            });
            shared.changed.notify_all();
            reply(request, 202, r#"{"status":"OK"}"#);
        }
        ("POST", rest) => {
            let Some(rest) = rest.strip_prefix("/invocation/") else {
                return reply(request, 404, r#"{"errorMessage":"unknown path"}"#);
            };
            let outcome = match rest.rsplit_once('/') {
                Some((id, "response")) => Some((id, Outcome::Response(parsed()))),
                Some((id, "error")) => Some((
                    id,
                    Outcome::Error {
                        error_type,
                        body: parsed(),
                    },
                )),
                _ => None,
            };
            match outcome {
                Some((id, outcome)) => {
                    lock(shared).outcomes.insert(id.to_string(), outcome);
                    shared.changed.notify_all();
                    reply(request, 202, r#"{"status":"OK"}"#);
                }
                None => reply(request, 404, r#"{"errorMessage":"unknown path"}"#),
            }
        }
        _ => reply(request, 405, r#"{"errorMessage":"method not allowed"}"#),
    }
}

/// A packaged `bootstrap` running under a [`RuntimeApi`]; killed when dropped.
pub struct Bootstrap {
    child: Child,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Bootstrap {
    /// Extracts `bootstrap` from the function's zip and starts it as Lambda would: in its task
    /// root, with Lambda's variables (`AWS_LAMBDA_RUNTIME_API`, the function's name, memory,
    /// version, log group and stream, region, `_HANDLER`, ...) and the function's own
    /// `environment`, and nothing else from this process's environment.
    pub fn start(
        zip: &Path,
        api: &RuntimeApi,
        function_name: &str,
        memory_mb: i32,
        environment: &BTreeMap<String, String>,
    ) -> Bootstrap {
        let dir = tempfile::tempdir().expect("a task root");
        let file = std::fs::File::open(zip).unwrap_or_else(|e| panic!("{}: {e}", zip.display()));
        let mut archive = zip::ZipArchive::new(file).expect("a zip");
        assert_eq!(archive.len(), 1, "the zip holds one entry");
        let mut entry = archive.by_index(0).expect("its entry");
        assert_eq!(entry.name(), "bootstrap");
        assert_eq!(entry.unix_mode().map(|m| m & 0o777), Some(0o755));
        let binary = dir.path().join("bootstrap");
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("the bootstrap");
        std::fs::write(&binary, bytes).expect("write the bootstrap");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
        let log = dir.path().join("bootstrap.log");
        let out = std::fs::File::create(&log).expect("the log");
        let err = out.try_clone().expect("the log");
        let mut command = Command::new(&binary);
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "en_US.UTF-8")
            .env("TZ", ":UTC")
            .env("LAMBDA_TASK_ROOT", dir.path())
            .env("LAMBDA_RUNTIME_DIR", dir.path())
            .env("_HANDLER", "bootstrap")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/12/01/[$LATEST]00000000000000000000000000000000",
            )
            .env("AWS_REGION", crate::REGION)
            .env("AWS_DEFAULT_REGION", crate::REGION)
            // The execution role's credentials, as Lambda provides them.
            .env("AWS_ACCESS_KEY_ID", crate::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", crate::SECRET_KEY)
            .env("AWS_SESSION_TOKEN", "lambda-session")
            .envs(environment)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = command.spawn().expect("start the bootstrap");
        Bootstrap {
            child,
            _dir: dir,
            log,
        }
    }

    /// Whether the process is still running (a bootstrap that fails an invocation keeps
    /// serving; one that exits would be restarted by Lambda in a loop).
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What it wrote to stdout and stderr (CloudWatch Logs, in Lambda).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The payload EventBridge delivers to a target with an input transformer: each `<name>` of
/// `template` replaced by the value `paths[name]` selects in `event` (a JSONPath of plain
/// keys, e.g. `$.detail-type`). As EventBridge documents it: outside quotes the value goes in
/// as JSON (a string quoted), inside quotes its text goes in unescaped; a path that selects
/// nothing leaves `null`.
pub fn input_transformer(
    event: &Value,
    paths: &BTreeMap<String, String>,
    template: &str,
) -> Result<Value, String> {
    let select = |path: &str| -> Value {
        let mut value = event;
        for key in path
            .trim_start_matches('$')
            .split('.')
            .filter(|k| !k.is_empty())
        {
            match value.get(key) {
                Some(v) => value = v,
                None => return Value::Null,
            }
        }
        value.clone()
    };
    let mut out = String::with_capacity(template.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
            && let Some(path) = paths.get(&rest[1..end])
        {
            let value = select(path);
            match (&value, in_string) {
                (Value::String(s), true) => out.push_str(s),
                _ => out.push_str(&value.to_string()),
            }
            rest = &rest[end + 1..];
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    serde_json::from_str(&out)
        .map_err(|e| format!("the transformed input is not JSON ({e}): {out}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_transformer_quotes_outside_strings_and_not_inside() {
        let event =
            json!({"id": "abc", "detail-type": "Scheduled Event", "resources": ["r1"], "n": 3});
        let paths: BTreeMap<String, String> = [
            ("id", "$.id"),
            ("kind", "$.detail-type"),
            ("resources", "$.resources"),
            ("missing", "$.nope"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let out = input_transformer(
            &event,
            &paths,
            r#"{"id":<id>,"text":"kind is <kind>","resources":<resources>,"gone":<missing>,"lit":"<x>"}"#,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"id": "abc", "text": "kind is Scheduled Event", "resources": ["r1"], "gone": null, "lit": "<x>"})
        );
    }
}
