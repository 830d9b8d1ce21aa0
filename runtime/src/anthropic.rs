//! The Anthropic Messages API client: `POST /v1/messages` with the version pinned to
//! `2023-06-01` (a newer one rejects sampling parameters), 429 retried after the `retry-after`
//! the API asks for, 529 and 5xx retried with jittered backoff, every other 4xx failing at
//! once. The API key goes only into its header: never into errors or logs.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::retry::Backoff;

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const API_VERSION: &str = "2023-06-01";
/// A `retry-after` longer than this is not waited out: the run would outlive its timeout.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum AnthropicError {
    #[error("Anthropic answered HTTP {status} ({error_type}): {message}")]
    Rejected {
        status: u16,
        error_type: String,
        message: String,
    },
    #[error("Anthropic asked to retry after {seconds} s, longer than this run can wait")]
    RetryTooLate { seconds: u64 },
    #[error("Anthropic: still failing after {attempts} attempts (last: {last}); giving up")]
    GaveUp { attempts: u32, last: String },
    #[error("Anthropic: the answer is not a Messages API answer: {0}")]
    Answer(String),
}

impl AnthropicError {
    /// The credentials are refused: every further call would be refused too.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            AnthropicError::Rejected {
                status: 401 | 403,
                ..
            }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// The request body of `POST /v1/messages`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub messages: Vec<Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
}

/// What an answer says: its text blocks joined, why it stopped, and the tokens used.
#[derive(Clone, Debug, PartialEq)]
pub struct MessagesAnswer {
    pub text: String,
    pub stop_reason: String,
    pub usage: Usage,
}

#[derive(Clone)]
pub struct AnthropicClient {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    backoff: Backoff,
}

impl std::fmt::Debug for AnthropicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnthropicClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl AnthropicClient {
    pub fn new(base_url: &str, api_key: &str) -> AnthropicClient {
        AnthropicClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            backoff: Backoff::STANDARD,
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> AnthropicClient {
        self.backoff = backoff;
        self
    }

    pub async fn messages(
        &self,
        request: &MessagesRequest,
    ) -> Result<MessagesAnswer, AnthropicError> {
        let url = format!("{}/v1/messages", self.base_url);
        let mut last = String::new();
        let mut wait = Duration::ZERO;
        for attempt in 1..=self.backoff.attempts {
            if attempt > 1 {
                tokio::time::sleep(wait).await;
            }
            let sent = self
                .http
                .post(&url)
                .header("x-api-key", &self.api_key)
                .header("anthropic-version", API_VERSION)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .json(request)
                .send()
                .await;
            let response = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = e.without_url().to_string();
                    wait = self.backoff.delay(attempt);
                    continue;
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0);
            let body = response.text().await.unwrap_or_default();
            let error = serde_json::from_str::<Value>(&body).ok();
            let error_type = error
                .as_ref()
                .and_then(|e| e["error"]["type"].as_str())
                .unwrap_or("unknown")
                .to_string();
            match status {
                200 => return parse_answer(&body),
                429 => {
                    last = format!("HTTP 429 ({error_type})");
                    wait = match retry_after {
                        Some(s) if s > MAX_RETRY_AFTER.as_secs_f64() => {
                            return Err(AnthropicError::RetryTooLate { seconds: s as u64 });
                        }
                        Some(s) => Duration::from_secs_f64(s),
                        None => self.backoff.delay(attempt),
                    };
                }
                s if s == 529 || s >= 500 => {
                    last = format!("HTTP {s} ({error_type})");
                    wait = self.backoff.delay(attempt);
                }
                _ => {
                    let message = error
                        .as_ref()
                        .and_then(|e| e["error"]["message"].as_str())
                        .unwrap_or("no message")
                        .to_string();
                    return Err(AnthropicError::Rejected {
                        status,
                        error_type,
                        message,
                    });
                }
            }
            tracing::warn!(attempt, %last, wait_ms = wait.as_millis() as u64, "Anthropic call failed; retrying");
        }
        Err(AnthropicError::GaveUp {
            attempts: self.backoff.attempts,
            last,
        })
    }
}

fn parse_answer(body: &str) -> Result<MessagesAnswer, AnthropicError> {
    #[derive(Deserialize)]
    struct Block {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        text: String,
    }
    #[derive(Deserialize)]
    struct Answer {
        content: Vec<Block>,
        #[serde(default)]
        stop_reason: Option<String>,
        #[serde(default)]
        usage: Usage,
    }
    let answer: Answer =
        serde_json::from_str(body).map_err(|e| AnthropicError::Answer(e.to_string()))?;
    Ok(MessagesAnswer {
        text: answer
            .content
            .iter()
            .filter(|b| b.kind == "text")
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join(""),
        stop_reason: answer.stop_reason.unwrap_or_default(),
        usage: answer.usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_blocks_are_joined_and_usage_read() {
        let answer = parse_answer(
            r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"{\"a\":"},{"type":"text","text":"1}"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":7}}"#,
        )
        .unwrap();
        assert_eq!(answer.text, "{\"a\":1}");
        assert_eq!(answer.stop_reason, "end_turn");
        assert_eq!(
            answer.usage,
            Usage {
                input_tokens: 12,
                output_tokens: 7
            }
        );
        assert!(parse_answer("{}").is_err());
    }
}
