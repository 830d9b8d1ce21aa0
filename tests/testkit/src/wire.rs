//! HTTP/1.1 plumbing shared by the proxies between the AWS SDK and moto ([`crate::fault_proxy`],
//! [`crate::aws_behaviour`]): read one request from a client connection, forward it upstream on
//! a fresh connection, and write an answer back. Bodies are read whole (the SDK's requests and
//! moto's answers are small), chunked request bodies are re-sent with a length.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// Accepts connections on `listener` on a thread of its own until `stopped` says so (checked
/// at each connection: a last one wakes it), each served by `serve` on its own thread.
pub fn serve_connections<S: Send + Sync + 'static>(
    listener: TcpListener,
    shared: Arc<S>,
    stopped: fn(&S) -> bool,
    serve: fn(TcpStream, &S) -> std::io::Result<()>,
) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped(&shared) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let _ = serve(stream, &shared);
            });
        }
    });
}

/// A chunked body, whole.
fn read_chunked(reader: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size)? == 0 {
            break;
        }
        let n =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(body)
}

/// One request as received: request line, header lines and body bytes.
#[derive(Clone, Debug)]
pub struct Request {
    pub head: Vec<String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn method(&self) -> &str {
        self.head
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("GET")
    }

    /// The request target: path and query string, exactly as sent.
    pub fn target(&self) -> &str {
        self.head
            .first()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/")
    }

    /// Answers to HEAD carry headers only.
    pub fn is_head(&self) -> bool {
        self.method() == "HEAD"
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.head[self.head.len().min(1)..], name)
    }

    /// The SigV4 signing name of the service the request is for (`lambda`, `monitoring`, ...).
    pub fn service(&self) -> String {
        self.header("authorization")
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|scope| scope.split('/').nth(3))
            .unwrap_or_default()
            .to_string()
    }
}

/// An answer: status, header lines (without the status line) and body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<String>,
    pub body: Vec<u8>,
}

impl Response {
    /// A fresh answer with a content type; `Content-Length` is added when written.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            reason: reason(status).to_string(),
            headers: vec![format!("Content-Type: {content_type}")],
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push(format!("{name}: {value}"));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// Replaces the body (the length is recomputed when written).
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = body.into();
    }

    pub fn write_to(&self, client: &mut TcpStream, head_only: bool) -> std::io::Result<()> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason).into_bytes();
        for line in &self.headers {
            let lower = line.to_ascii_lowercase();
            // The client keeps its connection to the proxy; the length is ours to set.
            if lower.starts_with("connection:")
                || lower.starts_with("content-length:")
                || lower.starts_with("transfer-encoding:")
            {
                continue;
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if head_only {
            // A HEAD answer announces the length the GET would have had.
            if let Some(length) = header_of(&self.headers, "content-length") {
                out.extend_from_slice(format!("Content-Length: {length}\r\n\r\n").as_bytes());
            } else {
                out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            }
        } else {
            out.extend_from_slice(
                format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
            );
            out.extend_from_slice(&self.body);
        }
        client.write_all(&out)?;
        client.flush()
    }
}

fn header_of<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Reads the next request of a keep-alive connection; `None` when the client closed it.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let mut request = Request {
        head,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        // Re-sent with a length, so that the upstream sees one plain body.
        request.body = read_chunked(reader)?;
        request
            .head
            .retain(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding:"));
        let length = request.body.len();
        request.head.push(format!("Content-Length: {length}"));
    } else if let Some(n) = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
    {
        request.body = vec![0; n];
        reader.read_exact(&mut request.body)?;
    }
    Ok(Some(request))
}

/// Sends `request` to `upstream` (`host:port`) on a fresh connection and reads the whole answer.
pub fn forward(request: &Request, upstream: &str) -> std::io::Result<Response> {
    let mut server = TcpStream::connect(upstream)?;
    let mut head: Vec<String> = request
        .head
        .iter()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .cloned()
        .collect();
    head.push("Connection: close".into());
    let mut bytes = head.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(&request.body);
    server.write_all(&bytes)?;
    let mut reader = BufReader::new(server);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let mut parts = status_line.trim_end().splitn(3, ' ');
    let _version = parts.next();
    let status = parts
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .unwrap_or(502);
    let reason_text = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        headers.push(line);
    }
    let mut body = Vec::new();
    if request.is_head() || status == 204 || status == 304 {
        // No body follows, whatever the headers announce.
    } else if chunked {
        body = read_chunked(&mut reader)?;
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        reason: reason_text,
        headers,
        body,
    })
}
