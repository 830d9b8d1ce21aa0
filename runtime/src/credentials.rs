//! The handlers' secrets: reading a secret's current value, and the `linkedin-oauth` value
//! (the OAuth client and its tokens with their expiries). Its `Debug` shows no secret, and no
//! error quotes a value.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::linkedin::oauth::TokenGrant;

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedInCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub access_token: String,
    pub refresh_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token_expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for LinkedInCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedInCredentials")
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("refresh_token_expires_at", &self.refresh_token_expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("the linkedin-oauth value is not valid: {0}")]
pub struct CredentialsError(String);

#[derive(Debug, thiserror::Error)]
#[error("GetSecretValue {secret}: {message}")]
pub struct SecretError {
    pub secret: String,
    pub message: String,
}

/// The value staged `AWSCURRENT` of secret `id` (empty when it has no string value).
pub async fn current_value(
    secrets: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, SecretError> {
    let out = secrets
        .get_secret_value()
        .secret_id(id)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .map_err(|e| SecretError {
            secret: id.to_string(),
            message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
        })?;
    Ok(out.secret_string().unwrap_or_default().to_string())
}

/// The access token in the current value of the `linkedin-oauth` secret `id`.
pub async fn linkedin_access_token(
    secrets: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<String, CredentialsOrSecret> {
    let value = current_value(secrets, id).await?;
    Ok(LinkedInCredentials::parse(&value)?.access_token)
}

/// Reading the LinkedIn access token: the secret could not be read, or its value is invalid.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsOrSecret {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

impl LinkedInCredentials {
    pub fn parse(value: &str) -> Result<LinkedInCredentials, CredentialsError> {
        serde_json::from_str(value).map_err(|e| {
            // "missing field `x`" names a field only; other messages may quote the input.
            let message = e.to_string();
            CredentialsError(if message.starts_with("missing field") {
                message
            } else {
                format!(
                    "not the expected JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )
            })
        })
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and times always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The credentials after `grant`, received at `now`. LinkedIn may omit a new refresh
    /// token: the old one, and its expiry, stay.
    pub fn refreshed(&self, grant: &TokenGrant, now: DateTime<Utc>) -> LinkedInCredentials {
        let mut next = self.clone();
        next.access_token = grant.access_token.clone();
        next.access_token_expires_at = now + Duration::seconds(grant.expires_in);
        if let Some(refresh) = &grant.refresh_token {
            next.refresh_token = refresh.clone();
            if let Some(seconds) = grant.refresh_token_expires_in {
                next.refresh_token_expires_at = now + Duration::seconds(seconds);
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_errors_never_show_a_token() {
        let value = r#"{"client_id":"id","client_secret":"SECRET-1","access_token":"SECRET-2",
            "refresh_token":"SECRET-3","access_token_expires_at":"2027-01-01T00:00:00Z",
            "refresh_token_expires_at":"2027-06-01T00:00:00Z"}"#;
        let creds = LinkedInCredentials::parse(value).unwrap();
        assert!(!format!("{creds:?}").contains("SECRET"));
        let bad = value.replace("\"2027-01-01T00:00:00Z\"", "\"SECRET-when\"");
        let err = LinkedInCredentials::parse(&bad).unwrap_err().to_string();
        assert!(!err.contains("SECRET"), "{err}");
        let missing = LinkedInCredentials::parse(r#"{"client_id":"SECRET"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("missing field `client_secret`"),
            "{missing}"
        );
    }
}
