//! An HTTP proxy between the AWS SDK and moto that injects faults into a configurable share of
//! calls: throttling errors (in each protocol's own error format), 500s, connections dropped
//! before the call reaches moto, and slow answers. Everything else is forwarded byte for byte.

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wire::{Request, forward, read_request};

/// What happened to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    Throttled,
    ServerError,
    Dropped,
    Slow,
}

/// Calls seen and faults injected so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub calls: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub dropped: u64,
    pub slow: u64,
}

impl FaultCounts {
    /// Faults that failed a call (slow answers still succeed).
    pub fn failed(&self) -> u64 {
        self.throttled + self.server_errors + self.dropped
    }
}

struct Shared {
    upstream: String,
    share: f64,
    kinds: Vec<Fault>,
    slow: Duration,
    rng: Mutex<u64>,
    counts: Mutex<FaultCounts>,
    /// When each call arrived, and its service (the SigV4 signing name).
    arrivals: Mutex<Vec<(std::time::Instant, String)>>,
    stop: AtomicBool,
}

pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Proxies to `upstream` (`host:port`), injecting a fault into `share` (0.0 to 1.0) of
    /// calls, drawn from `seed`. The four kinds are equally likely.
    pub fn start(upstream: &str, share: f64, seed: u64) -> FaultProxy {
        Self::start_with(
            upstream,
            share,
            seed,
            &[
                Fault::Throttled,
                Fault::ServerError,
                Fault::Dropped,
                Fault::Slow,
            ],
        )
    }

    /// As [`FaultProxy::start`], with only the fault kinds `kinds` (equally likely).
    pub fn start_with(upstream: &str, share: f64, seed: u64, kinds: &[Fault]) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_string(),
            share,
            kinds: kinds.to_vec(),
            slow: Duration::from_millis(1500),
            rng: Mutex::new(seed.max(1)),
            counts: Mutex::new(FaultCounts::default()),
            arrivals: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        crate::wire::serve_connections(
            listener,
            Arc::clone(&shared),
            |s| s.stop.load(Ordering::SeqCst),
            serve,
        );
        FaultProxy { port, shared }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn counts(&self) -> FaultCounts {
        lock(&self.shared.counts).clone()
    }

    /// Arrival times (seconds, from the first call) of the calls to `service` (its SigV4
    /// signing name, e.g. `monitoring` for CloudWatch), in order.
    pub fn arrivals(&self, service: &str) -> Vec<f64> {
        let arrivals = lock(&self.shared.arrivals);
        let Some(first) = arrivals.first().map(|(t, _)| *t) else {
            return Vec::new();
        };
        arrivals
            .iter()
            .filter(|(_, s)| s == service)
            .map(|(t, _)| t.duration_since(first).as_secs_f64())
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    fn draw(&self) -> f64 {
        let mut state = lock(&self.rng);
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    fn choose(&self) -> Option<Fault> {
        if self.draw() >= self.share {
            return None;
        }
        let pick = (self.draw() * self.kinds.len() as f64) as usize;
        self.kinds.get(pick).or(self.kinds.last()).copied()
    }

    fn count(&self, fault: Option<Fault>) {
        let mut c = lock(&self.counts);
        c.calls += 1;
        match fault {
            Some(Fault::Throttled) => c.throttled += 1,
            Some(Fault::ServerError) => c.server_errors += 1,
            Some(Fault::Dropped) => c.dropped += 1,
            Some(Fault::Slow) => c.slow += 1,
            None => {}
        }
    }
}

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    while let Some(request) = read_request(&mut reader)? {
        let service = request.service();
        lock(&shared.arrivals).push((std::time::Instant::now(), service));
        let fault = shared.choose();
        shared.count(fault);
        match fault {
            Some(Fault::Dropped) => {
                // The call never reaches moto; the client sees the connection reset.
                let _ = client.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::Throttled) => {
                client.write_all(&throttling_response(&request))?;
                continue;
            }
            Some(Fault::ServerError) => {
                let body = if request.is_head() {
                    ""
                } else {
                    "internal error injected by the test proxy"
                };
                let response = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                client.write_all(response.as_bytes())?;
                continue;
            }
            Some(Fault::Slow) => std::thread::sleep(shared.slow),
            None => {}
        }
        forward(&request, &shared.upstream)?.write_to(&mut client, request.is_head())?;
    }
    Ok(())
}

/// A throttling error in the format of the protocol the request uses, so the SDK classifies
/// it as throttling (and retries with backoff) as it would a real one.
fn throttling_response(request: &Request) -> Vec<u8> {
    let path = request.target();
    // REST-JSON services (Lambda) version their paths by date: `/2015-03-31/functions`.
    let rest_json = path.get(1..11).is_some_and(|d| {
        d.len() == 10 && d.as_bytes()[4] == b'-' && d[..4].bytes().all(|b| b.is_ascii_digit())
    });
    let (status, content_type, error_type, body) = if request.header("x-amz-target").is_some() {
        (
            "400 Bad Request",
            "application/x-amz-json-1.1",
            "ThrottlingException",
            r#"{"__type":"ThrottlingException","message":"Rate exceeded (injected)"}"#,
        )
    } else if request
        .header("content-type")
        .is_some_and(|c| c.contains("x-www-form-urlencoded"))
    {
        (
            "400 Bad Request",
            "text/xml",
            "Throttling",
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded (injected)</Message></Error><RequestId>injected</RequestId></ErrorResponse>",
        )
    } else if rest_json {
        (
            "429 Too Many Requests",
            "application/json",
            "TooManyRequestsException",
            r#"{"Type":"User","message":"Rate exceeded (injected)"}"#,
        )
    } else {
        (
            "503 Slow Down",
            "application/xml",
            "SlowDown",
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate (injected)</Message></Error>",
        )
    };
    let body = if request.is_head() { "" } else { body };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nx-amzn-ErrorType: {error_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
