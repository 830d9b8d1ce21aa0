//! `sample-linkedin [--port N]`: a local stand-in for LinkedIn's Marketing API serving the
//! synthetic sample account (`runtime::sample`: 24 text-ad creatives in 4 campaigns, daily
//! analytics for any date range), so that the collector runs end to end without LinkedIn:
//! `LINKEDIN_API_BASE_URL=http://127.0.0.1:N/rest`. For demos; not packaged for Lambda.
//!
//! It answers `GET /rest/adAccounts/{account}/creatives` and `GET /rest/adAnalytics`
//! (the `dateRange` of the query, every metric), and 404 otherwise, printing one line per
//! request.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

use chrono::NaiveDate;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "sample-linkedin",
    about = "A local LinkedIn Marketing API serving the sample account"
)]
struct Args {
    /// The loopback port to listen on (0: any free one, printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The seed of the sample analytics (the same seed gives the same numbers).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// `(year:2026,month:11,day:25)` after `key:` in a Rest.li `dateRange`.
fn restli_date(query: &str, key: &str) -> Option<NaiveDate> {
    let rest = &query[query.find(&format!("{key}:(year:"))? + key.len() + 7..];
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .take(3)
        .map(|p| p.parse::<u32>().ok());
    let (year, month, day) = (numbers.next()??, numbers.next()??, numbers.next()??);
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)
}

fn answer(path: &str, query: &str, seed: u64) -> (u16, String) {
    if path.starts_with("/rest/adAccounts/") && path.ends_with("/creatives") {
        return (200, runtime::sample::api_creatives().to_string());
    }
    if path == "/rest/adAnalytics" {
        let query = percent_decode(query);
        return match (restli_date(&query, "start"), restli_date(&query, "end")) {
            (Some(start), Some(end)) => (
                200,
                runtime::sample::api_analytics(start, end, seed).to_string(),
            ),
            _ => (400, r#"{"message":"no dateRange in the query"}"#.into()),
        };
    }
    (
        404,
        format!(r#"{{"message":"the sample API has no {path}"}}"#),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (other, _) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve(stream: TcpStream, seed: u64) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // The rest of the head; GET requests have no body.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (status, body) = answer(path, query, seed);
    println!("sample-linkedin: GET {path} -> {status}");
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    )?;
    stream.flush()
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let listener = match TcpListener::bind(("127.0.0.1", args.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return std::process::ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(args.port);
    println!("sample-linkedin: listening on http://127.0.0.1:{port}/rest");
    for stream in listener.incoming().flatten() {
        let seed = args.seed;
        std::thread::spawn(move || {
            let _ = serve(stream, seed);
        });
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_range_is_read_from_a_restli_query() {
        let query = "q=analytics&dateRange=(start:(year:2026,month:11,day:25),end:(year:2026,month:12,day:1))&fields=x";
        assert_eq!(
            restli_date(query, "start"),
            NaiveDate::from_ymd_opt(2026, 11, 25)
        );
        assert_eq!(
            restli_date(query, "end"),
            NaiveDate::from_ymd_opt(2026, 12, 1)
        );
        let (status, body) = answer("/rest/adAnalytics", query, 7);
        assert_eq!(status, 200);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["elements"].as_array().unwrap().len(), 24 * 7);
    }
}
