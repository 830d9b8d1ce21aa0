//! LinkedIn OAuth 2.0: refreshing an access token and introspecting one (`api-notes.md`,
//! "LinkedIn OAuth 2.0"). Both are form posts to the `www` host. Errors never carry a token:
//! only LinkedIn's error code and description, or the HTTP status.

use std::time::Duration;

use serde::Deserialize;

use crate::retry::Backoff;

pub const DEFAULT_BASE_URL: &str = "https://www.linkedin.com/oauth/v2";

/// What a refresh returns. `refresh_token` may be absent: the old one stays valid.
#[derive(Clone, Deserialize)]
pub struct TokenGrant {
    pub access_token: String,
    /// Seconds.
    pub expires_in: i64,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub refresh_token_expires_in: Option<i64>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("expires_in", &self.expires_in)
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .finish_non_exhaustive()
    }
}

/// What introspection says of a token.
#[derive(Clone, Debug, Deserialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The refresh token is expired or revoked: a person must authorize the app again.
    #[error(
        "LinkedIn refused the refresh token (invalid_grant: {0}); a member must re-authorize the app"
    )]
    InvalidGrant(String),
    #[error("LinkedIn OAuth answered HTTP {status} to {call}: {error}")]
    Rejected {
        call: &'static str,
        status: u16,
        error: String,
    },
    #[error("LinkedIn OAuth {call}: still failing after {attempts} attempts (last: {last})")]
    GaveUp {
        call: &'static str,
        attempts: u32,
        last: String,
    },
    #[error("LinkedIn OAuth {call}: unexpected answer: {message}")]
    Malformed { call: &'static str, message: String },
}

#[derive(Clone, Debug)]
pub struct OAuthClient {
    http: reqwest::Client,
    base_url: String,
    backoff: Backoff,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl OAuthClient {
    pub fn new(base_url: &str) -> OAuthClient {
        OAuthClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            base_url: base_url.trim_end_matches('/').to_string(),
            backoff: Backoff::STANDARD,
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> OAuthClient {
        self.backoff = backoff;
        self
    }

    /// `POST /accessToken` with `grant_type=refresh_token`.
    pub async fn refresh(
        &self,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
    ) -> Result<TokenGrant, OAuthError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ];
        let body = self.post("accessToken", &form).await?;
        serde_json::from_str(&body).map_err(|e| OAuthError::Malformed {
            call: "accessToken",
            message: format!(
                "not a token grant (line {}, column {})",
                e.line(),
                e.column()
            ),
        })
    }

    /// `POST /introspectToken`.
    pub async fn introspect(
        &self,
        client_id: &str,
        client_secret: &str,
        token: &str,
    ) -> Result<Introspection, OAuthError> {
        let form = [
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("token", token),
        ];
        let body = self.post("introspectToken", &form).await?;
        serde_json::from_str(&body).map_err(|e| OAuthError::Malformed {
            call: "introspectToken",
            message: format!(
                "not an introspection (line {}, column {})",
                e.line(),
                e.column()
            ),
        })
    }

    /// Posts the form, retrying 429, 5xx and transport errors within the backoff budget.
    async fn post(&self, call: &'static str, form: &[(&str, &str)]) -> Result<String, OAuthError> {
        let url = format!("{}/{call}", self.base_url);
        let mut last = String::new();
        for attempt in 1..=self.backoff.attempts {
            if attempt > 1 {
                tokio::time::sleep(self.backoff.delay(attempt - 1)).await;
            }
            let response = match self.http.post(&url).form(form).send().await {
                Ok(r) => r,
                Err(e) => {
                    // Transport errors name the URL, which holds no secret (the form does).
                    last = e.without_url().to_string();
                    continue;
                }
            };
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if status == 200 {
                return Ok(body);
            }
            if status == 429 || status >= 500 {
                last = format!("HTTP {status}");
                continue;
            }
            let error: ErrorBody = serde_json::from_str(&body).unwrap_or(ErrorBody {
                error: String::new(),
                error_description: String::new(),
            });
            if error.error == "invalid_grant" {
                return Err(OAuthError::InvalidGrant(error.error_description));
            }
            return Err(OAuthError::Rejected {
                call,
                status,
                error: if error.error.is_empty() {
                    "no OAuth error in the answer".into()
                } else {
                    format!("{}: {}", error.error, error.error_description)
                },
            });
        }
        Err(OAuthError::GaveUp {
            call,
            attempts: self.backoff.attempts,
            last,
        })
    }
}
