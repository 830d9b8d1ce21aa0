//! The LinkedIn Marketing API client: versioned REST calls with the three headers every call
//! carries, 429 and 5xx retried with jittered backoff within a budget, 401 failing at once,
//! and GETs whose URL is too long sent through LinkedIn's POST query tunnel.
//! Paths come from `analytics` and `creatives`, already encoded; nothing here re-encodes.

use std::time::Duration;

use serde_json::Value;

use crate::retry::Backoff;

pub const DEFAULT_BASE_URL: &str = "https://api.linkedin.com/rest";

/// Longer URLs are tunnelled (LinkedIn rejects URLs of more than about 4000 characters).
pub const MAX_URL_LENGTH: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "LinkedIn answered 401 to {path}: the access token is invalid or expired (rotate the linkedin-oauth secret)"
    )]
    Unauthorized { path: String },
    #[error("LinkedIn answered HTTP {status} to {path}: {message}")]
    Rejected {
        path: String,
        status: u16,
        message: String,
    },
    #[error("LinkedIn {path}: still failing after {attempts} attempts (last: {last}); giving up")]
    GaveUp {
        path: String,
        attempts: u32,
        last: String,
    },
    #[error("LinkedIn {path}: the answer is not JSON")]
    NotJson { path: String },
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: String,
    version: String,
    token: String,
    backoff: Backoff,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.base_url)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn new(base_url: &str, version: &str, access_token: &str) -> ApiClient {
        ApiClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            version: version.to_string(),
            token: access_token.to_string(),
            backoff: Backoff::STANDARD,
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> ApiClient {
        self.backoff = backoff;
        self
    }

    /// GETs `path` (with its query string) and parses the JSON answer. A URL longer than
    /// [`MAX_URL_LENGTH`] goes as LinkedIn's query tunnel: a POST carrying the query as a
    /// form body and `X-HTTP-Method-Override: GET`.
    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base_url);
        match path.split_once('?') {
            Some((resource, query)) if url.len() > MAX_URL_LENGTH => {
                let url = format!("{}{resource}", self.base_url);
                self.send(path, || {
                    self.http
                        .post(&url)
                        .header("X-HTTP-Method-Override", "GET")
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .body(query.to_string())
                })
                .await
            }
            _ => self.send(path, || self.http.get(&url)).await,
        }
    }

    /// A Rest.li partial update of the entity at `path`: `POST` with
    /// `X-RestLi-Method: PARTIAL_UPDATE` and `{"patch": {"$set": set}}` (LinkedIn answers 204).
    pub async fn partial_update(&self, path: &str, set: Value) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.base_url);
        let body = serde_json::json!({ "patch": { "$set": set } });
        self.send(path, || {
            self.http
                .post(&url)
                .header("X-RestLi-Method", "PARTIAL_UPDATE")
                .json(&body)
        })
        .await
    }

    /// Sends the request `build` makes, with the headers every call carries, retrying 429,
    /// 5xx and connection failures within the budget. A 2xx answer is parsed as JSON (an
    /// empty body is `null`).
    async fn send(
        &self,
        path: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Value, ApiError> {
        // Only the path goes into errors and logs: the query can be long, never secret.
        let short = path.split('?').next().unwrap_or(path).to_string();
        let mut last = String::new();
        for attempt in 1..=self.backoff.attempts {
            if attempt > 1 {
                tokio::time::sleep(self.backoff.delay(attempt - 1)).await;
            }
            let sent = build()
                .bearer_auth(&self.token)
                .header("LinkedIn-Version", &self.version)
                .header("X-Restli-Protocol-Version", "2.0.0")
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = e.without_url().to_string();
                    continue;
                }
            };
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            match status {
                200..=299 if body.trim().is_empty() => return Ok(Value::Null),
                200..=299 => {
                    return serde_json::from_str(&body)
                        .map_err(|_| ApiError::NotJson { path: short });
                }
                401 => return Err(ApiError::Unauthorized { path: short }),
                429 => last = "HTTP 429 (throttled)".into(),
                s if s >= 500 => last = format!("HTTP {s}"),
                _ => {
                    let message = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v["message"].as_str().map(str::to_string))
                        .unwrap_or_else(|| "no message".into());
                    return Err(ApiError::Rejected {
                        path: short,
                        status,
                        message,
                    });
                }
            }
            tracing::warn!(path = %short, attempt, %last, "LinkedIn call failed; retrying");
        }
        Err(ApiError::GaveUp {
            path: short,
            attempts: self.backoff.attempts,
            last,
        })
    }
}
