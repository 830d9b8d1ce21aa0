//! Rotation of the `linkedin-oauth` secret: Secrets Manager's four-step protocol
//! (`api-notes.md`, "Secrets Manager rotation protocol"), refreshing through LinkedIn's OAuth
//! endpoint and testing the new token through introspection.
//!
//! Every step first checks that rotation is enabled and that the request token is a version
//! staged `AWSPENDING`; a token already `AWSCURRENT` means the rotation is done. Each step is
//! idempotent: Secrets Manager retries failed steps. A refresh LinkedIn refuses fails the
//! rotation loudly and leaves `AWSCURRENT` as it was.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::Boxed;
use crate::credentials::{CredentialsError, LinkedInCredentials};
use crate::linkedin::oauth::{OAuthClient, OAuthError};

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    CreateSecret,
    SetSecret,
    TestSecret,
    FinishSecret,
}

impl std::str::FromStr for Step {
    type Err = RotationError;
    fn from_str(s: &str) -> Result<Step, RotationError> {
        match s {
            "createSecret" => Ok(Step::CreateSecret),
            "setSecret" => Ok(Step::SetSecret),
            "testSecret" => Ok(Step::TestSecret),
            "finishSecret" => Ok(Step::FinishSecret),
            other => Err(RotationError::UnknownStep(other.to_string())),
        }
    }
}

/// What a step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The token is already the current version: nothing left to do.
    AlreadyCurrent,
    /// A pending value for the token exists already (a retried step).
    AlreadyCreated,
    /// Refreshed the access token and stored it as the pending version.
    Created,
    /// Nothing to push anywhere for an OAuth refresh.
    NothingToSet,
    /// LinkedIn says the pending access token is active.
    Tested,
    /// The pending version is now current.
    Finished,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("unknown rotation step `{0}`")]
    UnknownStep(String),
    #[error("rotation is not enabled on secret {0}")]
    NotEnabled(String),
    #[error("version {token} is not a version of secret {secret}")]
    UnknownVersion { secret: String, token: String },
    #[error("version {token} of secret {secret} is not staged AWSPENDING")]
    NotPending { secret: String, token: String },
    #[error("secret {0} has no AWSCURRENT version")]
    NoCurrent(String),
    #[error(
        "the refresh token expired at {0}; a member must re-authorize the app and the secret be set again"
    )]
    RefreshTokenExpired(DateTime<Utc>),
    #[error("LinkedIn says the new access token is not active (status {0})")]
    Inactive(String),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("Secrets Manager {operation}: {code}: {message}")]
    Aws {
        operation: &'static str,
        code: String,
        message: String,
    },
}

impl RotationError {
    fn aws<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        operation: &'static str,
    ) -> impl FnOnce(SdkError<E, R>) -> RotationError {
        move |err| RotationError::Aws {
            operation,
            code: err.code().unwrap_or("Unknown").to_string(),
            message: err
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| DisplayErrorContext(&err).to_string()),
        }
    }
}

pub struct Rotator {
    pub secrets: Client,
    pub oauth: OAuthClient,
    pub clock: fn() -> DateTime<Utc>,
}

impl Rotator {
    pub fn new(secrets: Client, oauth: OAuthClient) -> Rotator {
        Rotator {
            secrets,
            oauth,
            clock: Utc::now,
        }
    }

    pub fn handle<'a>(
        &'a self,
        step: Step,
        secret: &'a str,
        token: &'a str,
    ) -> Boxed<'a, Result<Outcome, RotationError>> {
        Box::pin(self.take_step(step, secret, token))
    }

    async fn take_step(
        &self,
        step: Step,
        secret: &str,
        token: &str,
    ) -> Result<Outcome, RotationError> {
        let described = self
            .secrets
            .describe_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(RotationError::aws("DescribeSecret"))?;
        if described.rotation_enabled() != Some(true) {
            return Err(RotationError::NotEnabled(secret.to_string()));
        }
        let versions = described
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default();
        let Some(stages) = versions.get(token) else {
            return Err(RotationError::UnknownVersion {
                secret: secret.to_string(),
                token: token.to_string(),
            });
        };
        if stages.iter().any(|s| s == CURRENT) {
            return Ok(Outcome::AlreadyCurrent);
        }
        if !stages.iter().any(|s| s == PENDING) {
            return Err(RotationError::NotPending {
                secret: secret.to_string(),
                token: token.to_string(),
            });
        }
        match step {
            Step::CreateSecret => self.create(secret, token).await,
            Step::SetSecret => Ok(Outcome::NothingToSet),
            Step::TestSecret => self.test(secret, token).await,
            Step::FinishSecret => {
                let current = versions
                    .iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == CURRENT))
                    .map(|(id, _)| id.clone())
                    .ok_or_else(|| RotationError::NoCurrent(secret.to_string()))?;
                self.secrets
                    .update_secret_version_stage()
                    .secret_id(secret)
                    .version_stage(CURRENT)
                    .move_to_version_id(token)
                    .remove_from_version_id(current)
                    .send()
                    .await
                    .map_err(RotationError::aws("UpdateSecretVersionStage"))?;
                Ok(Outcome::Finished)
            }
        }
    }

    /// The value of a version, or `None` when it has none (a pending version Secrets
    /// Manager created for the rotation, before createSecret filled it).
    async fn value(
        &self,
        secret: &str,
        version: Option<&str>,
        stage: &str,
    ) -> Result<Option<String>, RotationError> {
        let answer = self
            .secrets
            .get_secret_value()
            .secret_id(secret)
            .set_version_id(version.map(str::to_string))
            .version_stage(stage)
            .send()
            .await;
        match answer {
            Ok(out) => Ok(out.secret_string().map(str::to_string)),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(RotationError::aws("GetSecretValue")(e)),
        }
    }

    async fn create(&self, secret: &str, token: &str) -> Result<Outcome, RotationError> {
        if self.value(secret, Some(token), PENDING).await?.is_some() {
            return Ok(Outcome::AlreadyCreated);
        }
        let current = self
            .value(secret, None, CURRENT)
            .await?
            .ok_or_else(|| RotationError::NoCurrent(secret.to_string()))?;
        let current = LinkedInCredentials::parse(&current)?;
        let now = (self.clock)();
        if current.refresh_token_expires_at <= now {
            return Err(RotationError::RefreshTokenExpired(
                current.refresh_token_expires_at,
            ));
        }
        let grant = self
            .oauth
            .refresh(
                &current.client_id,
                &current.client_secret,
                &current.refresh_token,
            )
            .await?;
        let next = current.refreshed(&grant, now);
        self.secrets
            .put_secret_value()
            .secret_id(secret)
            .client_request_token(token)
            .secret_string(next.to_json())
            .version_stages(PENDING)
            .send()
            .await
            .map_err(RotationError::aws("PutSecretValue"))?;
        tracing::info!(
            secret,
            version = token,
            access_token_expires_at = %next.access_token_expires_at,
            "stored the refreshed token as AWSPENDING"
        );
        Ok(Outcome::Created)
    }

    async fn test(&self, secret: &str, token: &str) -> Result<Outcome, RotationError> {
        let pending = self
            .value(secret, Some(token), PENDING)
            .await?
            .ok_or_else(|| RotationError::NotPending {
                secret: secret.to_string(),
                token: token.to_string(),
            })?;
        let pending = LinkedInCredentials::parse(&pending)?;
        let introspection = self
            .oauth
            .introspect(
                &pending.client_id,
                &pending.client_secret,
                &pending.access_token,
            )
            .await?;
        if !introspection.active {
            return Err(RotationError::Inactive(
                introspection.status.unwrap_or_else(|| "unknown".into()),
            ));
        }
        Ok(Outcome::Tested)
    }
}

/// A rotator from the function's configuration: `LINKEDIN_OAUTH_BASE_URL` (default LinkedIn's)
/// and the SDK's standard AWS configuration.
pub fn from_env() -> Boxed<'static, Result<Rotator, crate::config::ConfigError>> {
    Box::pin(load_from_env())
}

async fn load_from_env() -> Result<Rotator, crate::config::ConfigError> {
    let base = crate::config::base_url(
        "LINKEDIN_OAUTH_BASE_URL",
        crate::linkedin::oauth::DEFAULT_BASE_URL,
    )?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Ok(Rotator::new(Client::new(&sdk), OAuthClient::new(&base)))
}
