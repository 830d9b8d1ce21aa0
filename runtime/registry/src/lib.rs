//! The model registry in the data bucket, under the prefix the stack declares:
//!
//! ```text
//! <prefix>/<model>/v<N>/metadata.json   version, created at, training data range, metrics,
//!                                       hyperparameters, source revision, artifact name
//! <prefix>/<model>/v<N>/<artifact>      model.json or model.tar.gz
//! <prefix>/<model>/latest.json          the promoted version and the ones promoted before it
//! ```
//!
//! Registering claims version N by writing its metadata with `If-None-Match: *`: of two
//! concurrent registrations one gets 412 and claims N+1, so no two share a version, and an
//! artifact is written only under a version its writer owns (checked by reading back the
//! random claim token in the metadata); the artifact is written with `If-None-Match: *` too,
//! and a version whose artifact slot already holds other bytes is refused, never reported as
//! registered. The pointer moves with
//! `If-Match: <etag>` (or `If-None-Match: *` for the first promotion), so a promotion and a
//! rollback racing each other cannot both win: the loser is told to retry. Rollback returns to
//! the version promoted before the current one.

use std::collections::BTreeMap;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Registrations give up after losing this many races in a row.
const MAX_CLAIMS: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "model name `{0}`: use 1 to 64 lowercase letters, digits and `-`, starting with a letter"
    )]
    InvalidName(String),
    #[error("artifact name `{0}`: use model.json or model.tar.gz")]
    InvalidArtifact(String),
    #[error("model `{model}` has no version {version}")]
    NoSuchVersion { model: String, version: u32 },
    #[error("model `{model}` has no promoted version")]
    NotPromoted { model: String },
    #[error("model `{model}`: no version was promoted before v{current}, nothing to roll back to")]
    NothingToRollBack { model: String, current: u32 },
    #[error(
        "model `{model}`: its pointer changed while this command ran (another promotion or rollback); run it again"
    )]
    Conflict { model: String },
    #[error("model `{model}`: lost {MAX_CLAIMS} version races in a row; giving up")]
    TooManyRaces { model: String },
    #[error(
        "model `{model}` v{version}: s3://{bucket}/{key} already holds an artifact this registration did not write; v{version} is not usable, register again"
    )]
    ArtifactTaken {
        model: String,
        version: u32,
        bucket: String,
        key: String,
    },
    #[error("{operation} s3://{bucket}/{key}: {message}")]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    #[error("s3://{bucket}/{key}: not registry JSON: {message}")]
    Corrupt {
        bucket: String,
        key: String,
        message: String,
    },
}

/// The days of processed data a version was trained on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingData {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub rows: u64,
}

/// What a registration supplies besides the artifact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewVersion {
    #[serde(default)]
    pub training_data: TrainingData,
    /// Held-out metrics, by name.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, Value>,
    /// The commit the trainer was built from.
    #[serde(default)]
    pub source_revision: String,
}

/// `v<N>/metadata.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub model: String,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    /// The artifact's file name in the version's folder.
    pub artifact: String,
    /// A random token of the registration that claimed this version.
    #[serde(default)]
    pub claim: String,
    #[serde(flatten)]
    pub details: NewVersion,
}

/// `latest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pointer {
    pub model: String,
    pub version: u32,
    pub promoted_at: DateTime<Utc>,
    /// Versions promoted before, oldest first: rollback returns to the last.
    #[serde(default)]
    pub history: Vec<u32>,
}

/// A model's versions and which is promoted.
#[derive(Clone, Debug, PartialEq)]
pub struct Listing {
    pub versions: Vec<Metadata>,
    pub promoted: Option<Pointer>,
}

pub fn check_name(model: &str) -> Result<(), RegistryError> {
    let ok = (1..=64).contains(&model.len())
        && model.starts_with(|c: char| c.is_ascii_lowercase())
        && model
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName(model.to_string()))
    }
}

pub fn check_artifact(name: &str) -> Result<(), RegistryError> {
    match name {
        "model.json" | "model.tar.gz" => Ok(()),
        _ => Err(RegistryError::InvalidArtifact(name.to_string())),
    }
}

#[derive(Clone, Debug)]
pub struct Registry {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    /// Without a trailing `/`, e.g. `models`.
    pub prefix: String,
}

enum Condition {
    Absent,
    Etag(String),
}

impl Registry {
    pub fn new(s3: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Registry {
        Registry {
            s3,
            bucket: bucket.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    fn key(&self, model: &str, rest: &str) -> String {
        format!("{}/{model}/{rest}", self.prefix)
    }

    fn s3_error<E: std::error::Error + 'static>(
        &self,
        operation: &'static str,
        key: &str,
    ) -> impl FnOnce(E) -> RegistryError {
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        move |e| RegistryError::S3 {
            operation,
            bucket,
            key,
            message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
        }
    }

    /// The object's bytes and etag, or `None`.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, RegistryError> {
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(self.s3_error("GetObject", key))?;
                Ok(Some((body.into_bytes().to_vec(), etag)))
            }
            Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
                Ok(None)
            }
            Err(e) => Err(self.s3_error("GetObject", key)(e)),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, String)>, RegistryError> {
        let Some((body, etag)) = self.get(key).await? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&body).map_err(|e| RegistryError::Corrupt {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            message: e.to_string(),
        })?;
        Ok(Some((value, etag)))
    }

    /// Writes `body` at `key` if `condition` holds; `Ok(false)` when it does not (412). A 409
    /// `ConditionalRequestConflict` (another conditional write in flight) is not an answer:
    /// S3 says to retry it, which this does a few times with backoff.
    async fn put_if(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: Condition,
    ) -> Result<bool, RegistryError> {
        const ATTEMPTS: u32 = 6;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self
                .s3
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(body.clone().into());
            let request = match &condition {
                Condition::Absent => request.if_none_match("*"),
                Condition::Etag(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(_) => return Ok(true),
                Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 412 => {
                    return Ok(false);
                }
                Err(SdkError::ServiceError(e))
                    if e.raw().status().as_u16() == 409 && attempt < ATTEMPTS =>
                {
                    let wait = std::time::Duration::from_millis(100 << attempt);
                    tracing::info!(key, ?wait, "conditional write in conflict; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(self.s3_error("PutObject", key)(e)),
            }
        }
    }

    /// The models in the registry.
    pub async fn models(&self) -> Result<Vec<String>, RegistryError> {
        let prefix = format!("{}/", self.prefix);
        let mut models = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(self.s3_error("ListObjectsV2", &prefix))?;
            models.extend(page.common_prefixes().iter().filter_map(|p| {
                p.prefix()
                    .and_then(|p| p.strip_prefix(&prefix))
                    .map(|m| m.trim_end_matches('/').to_string())
            }));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        models.sort();
        Ok(models)
    }

    /// The version numbers registered for `model`, ascending.
    async fn version_numbers(&self, model: &str) -> Result<Vec<u32>, RegistryError> {
        let prefix = self.key(model, "v");
        let mut versions = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(self.s3_error("ListObjectsV2", &prefix))?;
            versions.extend(page.contents().iter().filter_map(|o| {
                o.key()?
                    .strip_prefix(&prefix)?
                    .strip_suffix("/metadata.json")?
                    .parse::<u32>()
                    .ok()
            }));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    pub async fn metadata(&self, model: &str, version: u32) -> Result<Metadata, RegistryError> {
        check_name(model)?;
        self.get_json(&self.key(model, &format!("v{version}/metadata.json")))
            .await?
            .map(|(m, _)| m)
            .ok_or(RegistryError::NoSuchVersion {
                model: model.to_string(),
                version,
            })
    }

    pub async fn list(&self, model: &str) -> Result<Listing, RegistryError> {
        check_name(model)?;
        let mut versions = Vec::new();
        for version in self.version_numbers(model).await? {
            versions.push(self.metadata(model, version).await?);
        }
        let promoted = self
            .get_json::<Pointer>(&self.key(model, "latest.json"))
            .await?
            .map(|(p, _)| p);
        Ok(Listing { versions, promoted })
    }

    /// Registers a new version of `model` with its artifact; returns its metadata.
    pub async fn register(
        &self,
        model: &str,
        artifact_name: &str,
        artifact: Vec<u8>,
        details: NewVersion,
        now: DateTime<Utc>,
    ) -> Result<Metadata, RegistryError> {
        check_name(model)?;
        check_artifact(artifact_name)?;
        let mut next = self
            .version_numbers(model)
            .await?
            .last()
            .copied()
            .unwrap_or(0)
            + 1;
        for _ in 0..MAX_CLAIMS {
            let metadata = Metadata {
                model: model.to_string(),
                version: next,
                created_at: now,
                artifact: artifact_name.to_string(),
                claim: format!("{:016x}", fastrand::u64(..)),
                details: details.clone(),
            };
            let body = serde_json::to_vec_pretty(&metadata).unwrap_or_default();
            let key = self.key(model, &format!("v{next}/metadata.json"));
            // The conditional write decides; reading the claim back also catches a store
            // whose conditional writes are not atomic (the local emulator under load).
            let won = self
                .put_if(&key, body, "application/json", Condition::Absent)
                .await?
                && self
                    .get_json::<Metadata>(&key)
                    .await?
                    .is_some_and(|(stored, _)| stored.claim == metadata.claim);
            if won {
                let content_type = if artifact_name.ends_with(".json") {
                    "application/json"
                } else {
                    "application/gzip"
                };
                let artifact_key = self.key(model, &format!("v{next}/{artifact_name}"));
                let written = self
                    .put_if(
                        &artifact_key,
                        artifact.clone(),
                        content_type,
                        Condition::Absent,
                    )
                    .await?;
                // 412: the slot is taken. Only the version's claimant writes there, so it is
                // this registration's own write answered late and retried (the same bytes), or
                // someone wrote outside the protocol: then the version's metadata is ours but
                // its artifact is not, and it must not be reported as registered.
                if !written {
                    let stored = self.get(&artifact_key).await?;
                    if !matches!(&stored, Some((bytes, _)) if *bytes == artifact) {
                        return Err(RegistryError::ArtifactTaken {
                            model: model.to_string(),
                            version: next,
                            bucket: self.bucket.clone(),
                            key: artifact_key,
                        });
                    }
                }
                return Ok(metadata);
            }
            next += 1;
        }
        Err(RegistryError::TooManyRaces {
            model: model.to_string(),
        })
    }

    /// Makes `version` the one the optimizer loads.
    pub async fn promote(
        &self,
        model: &str,
        version: u32,
        now: DateTime<Utc>,
    ) -> Result<Pointer, RegistryError> {
        let metadata = self.metadata(model, version).await?;
        let artifact_key = self.key(model, &format!("v{version}/{}", metadata.artifact));
        if self.get(&artifact_key).await?.is_none() {
            return Err(RegistryError::NoSuchVersion {
                model: model.to_string(),
                version,
            });
        }
        let key = self.key(model, "latest.json");
        let current = self.get_json::<Pointer>(&key).await?;
        let (pointer, condition) = match current {
            Some((p, _)) if p.version == version => return Ok(p),
            Some((p, etag)) => {
                let mut history = p.history;
                history.push(p.version);
                (
                    Pointer {
                        model: model.to_string(),
                        version,
                        promoted_at: now,
                        history,
                    },
                    Condition::Etag(etag),
                )
            }
            None => (
                Pointer {
                    model: model.to_string(),
                    version,
                    promoted_at: now,
                    history: Vec::new(),
                },
                Condition::Absent,
            ),
        };
        self.write_pointer(model, &key, &pointer, condition).await?;
        Ok(pointer)
    }

    /// Returns to the version promoted before the current one.
    pub async fn rollback(
        &self,
        model: &str,
        now: DateTime<Utc>,
    ) -> Result<Pointer, RegistryError> {
        check_name(model)?;
        let key = self.key(model, "latest.json");
        let (current, etag) =
            self.get_json::<Pointer>(&key)
                .await?
                .ok_or(RegistryError::NotPromoted {
                    model: model.to_string(),
                })?;
        let mut history = current.history;
        let previous = history.pop().ok_or(RegistryError::NothingToRollBack {
            model: model.to_string(),
            current: current.version,
        })?;
        let pointer = Pointer {
            model: model.to_string(),
            version: previous,
            promoted_at: now,
            history,
        };
        self.write_pointer(model, &key, &pointer, Condition::Etag(etag))
            .await?;
        Ok(pointer)
    }

    async fn write_pointer(
        &self,
        model: &str,
        key: &str,
        pointer: &Pointer,
        condition: Condition,
    ) -> Result<(), RegistryError> {
        let body = serde_json::to_vec_pretty(pointer).unwrap_or_default();
        if self
            .put_if(key, body, "application/json", condition)
            .await?
        {
            Ok(())
        } else {
            Err(RegistryError::Conflict {
                model: model.to_string(),
            })
        }
    }

    /// The promoted version of `model` and its artifact, or `None` when none is promoted.
    pub async fn load_promoted(
        &self,
        model: &str,
    ) -> Result<Option<(Metadata, Vec<u8>)>, RegistryError> {
        check_name(model)?;
        let Some((pointer, _)) = self
            .get_json::<Pointer>(&self.key(model, "latest.json"))
            .await?
        else {
            return Ok(None);
        };
        let metadata = self.metadata(model, pointer.version).await?;
        let key = self.key(
            model,
            &format!("v{}/{}", pointer.version, metadata.artifact),
        );
        let (artifact, _) = self.get(&key).await?.ok_or(RegistryError::NoSuchVersion {
            model: model.to_string(),
            version: pointer.version,
        })?;
        Ok(Some((metadata, artifact)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_call() {
        assert!(check_name("creative-scorer").is_ok());
        for bad in ["", "Creative", "1model", "a/b", "a_b", &"m".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_artifact("model.tar.gz").is_ok());
        assert!(check_artifact("../x").is_err());
    }
}
