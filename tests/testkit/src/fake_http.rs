//! A local HTTP server standing in for an external API (LinkedIn, Anthropic): it answers from
//! a script of canned responses, in order, and records every request exactly as it arrived
//! (method, path, raw query string, headers, body) so that tests assert the real contract.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The query string exactly as sent (no decoding), without `?`.
    pub query: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

/// One canned answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    /// Further response headers, e.g. `retry-after`.
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }
}

#[derive(Default)]
struct Shared {
    script: Vec<Reply>,
    next: usize,
    requests: Vec<Recorded>,
}

pub struct FakeServer {
    server: Arc<tiny_http::Server>,
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
    pub url: String,
}

impl FakeServer {
    /// Starts on a free loopback port, answering `script` in order; a request beyond the
    /// script gets a 500 naming it, so an unexpected call fails the test visibly.
    pub fn start(script: Vec<Reply>) -> FakeServer {
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind a loopback port"));
        let url = format!(
            "http://{}",
            server.server_addr().to_ip().expect("an IP address")
        );
        let shared = Arc::new(Mutex::new(Shared {
            script,
            ..Shared::default()
        }));
        let thread = {
            let server = Arc::clone(&server);
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = std::io::Read::read_to_string(request.as_reader(), &mut body);
                    let (path, query) = match request.url().split_once('?') {
                        Some((p, q)) => (p.to_string(), q.to_string()),
                        None => (request.url().to_string(), String::new()),
                    };
                    let recorded = Recorded {
                        method: request.method().as_str().to_string(),
                        path,
                        query,
                        headers: request
                            .headers()
                            .iter()
                            .map(|h| {
                                (
                                    h.field.as_str().as_str().to_ascii_lowercase(),
                                    h.value.as_str().to_string(),
                                )
                            })
                            .collect(),
                        body,
                    };
                    let reply = {
                        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                        let reply = s.script.get(s.next).cloned().unwrap_or_else(|| Reply {
                            status: 500,
                            body: format!(
                                "unscripted request {} {}",
                                recorded.method, recorded.path
                            ),
                            content_type: "text/plain",
                            headers: Vec::new(),
                        });
                        s.next += 1;
                        s.requests.push(recorded);
                        reply
                    };
                    let header = tiny_http::Header::from_bytes("Content-Type", reply.content_type)
                        .expect("a valid header");
                    let mut response = tiny_http::Response::from_string(reply.body)
                        .with_status_code(reply.status)
                        .with_header(header);
                    for (name, value) in &reply.headers {
                        if let Ok(h) = tiny_http::Header::from_bytes(*name, value.as_bytes()) {
                            response = response.with_header(h);
                        }
                    }
                    let _ = request.respond(response);
                }
            })
        };
        FakeServer {
            server,
            shared,
            thread: Some(thread),
            url,
        }
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests
            .clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
