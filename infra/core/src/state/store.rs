//! The S3 object store behind state, lock and journal: creates the state bucket on first use
//! (versioned, encrypted, public access blocked, with lifecycle rules that bound the versions
//! it keeps) and writes state with compare-and-swap.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, Tag,
};

use super::StateDoc;
use crate::aws::{Aws, AwsError, failed};
use crate::kinds::bucket::{self, BucketSpec, Encryption, PublicAccessBlock};
use crate::model::StateLocation;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("state s3://{bucket}/{key} is not valid: {message}")]
    Corrupt {
        bucket: String,
        key: String,
        message: String,
    },
    #[error(
        "state s3://{bucket}/{key} changed while this command ran (another writer?); nothing \
         was overwritten. Re-run the command."
    )]
    Conflict { bucket: String, key: String },
    #[error("{0}")]
    Locked(String),
    #[error("lock {0} is not held (the current lock is {1})")]
    NotHeld(String, String),
    #[error("could not prepare the state bucket: {0}")]
    Bootstrap(String),
    #[error(transparent)]
    GaveUp(#[from] crate::eventual::GaveUp),
}

impl From<crate::eventual::RetryError> for StateError {
    fn from(err: crate::eventual::RetryError) -> Self {
        match err {
            crate::eventual::RetryError::Aws(e) => StateError::Aws(e),
            crate::eventual::RetryError::GaveUp(g) => StateError::GaveUp(g),
        }
    }
}

/// S3 answers a conditional write (`If-Match`, `If-None-Match`) that meets another one in
/// flight with 409 `ConditionalRequestConflict`, and says to retry it (S3 user guide,
/// conditional requests): it is not a lost race, which is 412 `PreconditionFailed`.
pub(crate) fn conditional_conflict(e: &AwsError) -> Option<&'static str> {
    e.is("ConditionalRequestConflict")
        .then_some("S3 reported a conflicting conditional write in progress")
}

/// How many days the state bucket keeps earlier versions of state and journal objects: the
/// history to restore a state from (S3 keeps the current version for ever).
pub const STATE_HISTORY_DAYS: i32 = 90;

/// How many days it keeps earlier versions of a lock object: the heartbeat writes one every
/// 30 seconds, which nobody needs once the apply is over.
pub const LOCK_HISTORY_DAYS: i32 = 1;

/// The state bucket's own lifecycle rules. Lock objects (one per env, under the env's prefix)
/// are told apart by their tag, as lifecycle filters match key prefixes only; where both rules
/// apply, S3 acts on the shorter expiry.
fn lifecycle_rules() -> Result<Vec<LifecycleRule>, aws_sdk_s3::error::BuildError> {
    let (tag_key, tag_value) = super::lock::LOCK_OBJECT_TAG;
    Ok(vec![
        LifecycleRule::builder()
            .id("infra-lock-versions")
            .filter(
                LifecycleRuleFilter::builder()
                    .tag(Tag::builder().key(tag_key).value(tag_value).build()?)
                    .build(),
            )
            .status(ExpirationStatus::Enabled)
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(LOCK_HISTORY_DAYS)
                    .build(),
            )
            .build()?,
        LifecycleRule::builder()
            .id("infra-state-history")
            .filter(LifecycleRuleFilter::builder().prefix("").build())
            .status(ExpirationStatus::Enabled)
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(STATE_HISTORY_DAYS)
                    .build(),
            )
            // A released lock or checkpointed journal leaves a delete marker; once the
            // versions behind it have expired, the marker goes too.
            .expiration(
                LifecycleExpiration::builder()
                    .expired_object_delete_marker(true)
                    .build(),
            )
            .build()?,
    ])
}

/// Whether live rule `live` is rule `wanted` (the parts this engine sets).
fn same_rule(live: &LifecycleRule, wanted: &LifecycleRule) -> bool {
    let noncurrent_days = |r: &LifecycleRule| {
        r.noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days())
    };
    let tag = |r: &LifecycleRule| {
        r.filter()
            .and_then(|f| f.tag())
            .map(|t| (t.key().to_string(), t.value().to_string()))
    };
    live.id() == wanted.id()
        && live.status() == wanted.status()
        && noncurrent_days(live) == noncurrent_days(wanted)
        && tag(live) == tag(wanted)
}

/// A state document and the ETag it was read with (`None`: no state yet).
#[derive(Clone, Debug)]
pub struct Stored {
    pub doc: Option<StateDoc>,
    pub etag: Option<String>,
}

#[derive(Clone, Debug)]
pub struct StateStore {
    pub aws: Aws,
    pub location: StateLocation,
}

impl StateStore {
    pub fn new(aws: Aws, location: StateLocation) -> StateStore {
        StateStore { aws, location }
    }

    pub fn key(&self, name: &str) -> String {
        let prefix = self.location.prefix.trim_matches('/');
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        }
    }

    pub fn state_key(&self) -> String {
        self.key("state.json")
    }

    /// Creates the state bucket (versioned, encrypted, closed to the public) if it does not
    /// exist, and gives it the lifecycle rules that bound its history.
    pub async fn ensure_bucket(&self) -> Result<(), StateError> {
        let name = &self.location.bucket;
        let exists = match self
            .aws
            .s3
            .head_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(failed("HeadBucket"))
        {
            Ok(_) => true,
            // HEAD answers carry no body: S3's one not-found told by status alone
            // (aws-behaviors.md, aws_s3_bucket).
            Err(e) if e.http_status == Some(404) || e.is("NotFound") || e.is("NoSuchBucket") => {
                false
            }
            Err(e) => return Err(e.into()),
        };
        if !exists {
            self.create_bucket().await?;
            return self.ensure_lifecycle().await;
        }
        match self.ensure_lifecycle().await {
            // A bucket made before these rules, by credentials that may not manage its
            // lifecycle: the rules bound its history, they do not guard the state.
            Err(StateError::Aws(e)) if e.is("AccessDenied") => {
                tracing::warn!(
                    bucket = %name,
                    error = %e,
                    "cannot set the state bucket's lifecycle rules (old lock and state versions are kept until someone can)"
                );
                Ok(())
            }
            other => other,
        }
    }

    async fn create_bucket(&self) -> Result<(), StateError> {
        let name = &self.location.bucket;
        let spec = BucketSpec {
            name: name.clone(),
            encryption: Encryption::SseS3,
            public_access_block: PublicAccessBlock::ALL,
            versioning: true,
            lifecycle_rules: Vec::new(),
            tags: [
                ("managed-by".to_string(), "infra".to_string()),
                ("infra:purpose".to_string(), "state".to_string()),
            ]
            .into(),
        };
        let target = crate::model::Target {
            stack: String::new(),
            project: String::new(),
            env: String::new(),
            account_id: String::new(),
            region: self.aws.region.clone(),
            protected: false,
            state: self.location.clone(),
        };
        bucket::create(&self.aws, &target, &spec)
            .await
            .map_err(|e| StateError::Bootstrap(e.to_string()))
    }

    /// Adds the state bucket's lifecycle rules where they are missing or differ, keeping any
    /// other rule the bucket has (one bucket can hold the state of many envs, and its owner
    /// may add rules of their own).
    async fn ensure_lifecycle(&self) -> Result<(), StateError> {
        let name = &self.location.bucket;
        // A bucket created a moment ago may not be visible to every S3 host yet.
        let bound = self.aws.patience.propagation;
        let settling = bucket::new_bucket_settling as crate::eventual::Transient;
        let read = crate::eventual::retry(name, bound, settling, || async {
            self.aws
                .s3
                .get_bucket_lifecycle_configuration()
                .bucket(name)
                .send()
                .await
                .map_err(failed("GetBucketLifecycleConfiguration"))
        })
        .await;
        let (current, minimum_size) = match read {
            Ok(out) => (
                out.rules().to_vec(),
                out.transition_default_minimum_object_size().cloned(),
            ),
            Err(crate::eventual::RetryError::Aws(e)) if e.is("NoSuchLifecycleConfiguration") => {
                (Vec::new(), None)
            }
            Err(e) => return Err(e.into()),
        };
        let wanted = lifecycle_rules().map_err(|e| StateError::Bootstrap(e.to_string()))?;
        if wanted
            .iter()
            .all(|w| current.iter().any(|c| same_rule(c, w)))
        {
            return Ok(());
        }
        let ours = |rule: &LifecycleRule| wanted.iter().any(|w| w.id() == rule.id());
        let mut rules: Vec<LifecycleRule> = current.iter().filter(|r| !ours(r)).cloned().collect();
        rules.extend(wanted.iter().cloned());
        let configuration = BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| StateError::Bootstrap(e.to_string()))?;
        crate::eventual::retry(name, bound, settling, || async {
            self.aws
                .s3
                .put_bucket_lifecycle_configuration()
                .bucket(name)
                .set_transition_default_minimum_object_size(minimum_size.clone())
                .lifecycle_configuration(configuration.clone())
                .send()
                .await
                .map_err(failed("PutBucketLifecycleConfiguration"))
        })
        .await?;
        Ok(())
    }

    /// Reads the state; no bucket or no object means no state yet.
    pub async fn load(&self) -> Result<Stored, StateError> {
        let key = self.state_key();
        let out = self
            .aws
            .s3
            .get_object()
            .bucket(&self.location.bucket)
            .key(&key)
            .send()
            .await
            .map_err(failed("GetObject"));
        let out = match out {
            Ok(out) => out,
            Err(e) if e.is("NoSuchKey") || e.is("NoSuchBucket") => {
                return Ok(Stored {
                    doc: None,
                    etag: None,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let etag = out.e_tag().map(str::to_string);
        let bytes = self.collect(out.body, &key).await?;
        let doc = StateDoc::parse(&bytes).map_err(|e| StateError::Corrupt {
            bucket: self.location.bucket.clone(),
            key: key.clone(),
            message: e.to_string(),
        })?;
        Ok(Stored {
            doc: Some(doc),
            etag,
        })
    }

    /// Writes `doc` only if the stored state is still the one read with `expected`
    /// (`None`: only if there is none). Returns the new ETag.
    pub async fn save(&self, doc: &StateDoc, expected: Option<&str>) -> Result<String, StateError> {
        let key = self.state_key();
        let bytes = doc.to_bytes();
        let written = crate::eventual::retry(
            &key,
            self.aws.patience.propagation,
            conditional_conflict as crate::eventual::Transient,
            || {
                let mut request = self
                    .aws
                    .s3
                    .put_object()
                    .bucket(&self.location.bucket)
                    .key(&key)
                    .content_type("application/json")
                    .body(ByteStream::from(bytes.clone()));
                request = match expected {
                    Some(etag) => request.if_match(etag),
                    None => request.if_none_match("*"),
                };
                async move { request.send().await.map_err(failed("PutObject")) }
            },
        )
        .await;
        match written {
            Ok(out) => Ok(out.e_tag().unwrap_or_default().to_string()),
            Err(crate::eventual::RetryError::Aws(e)) if e.is("PreconditionFailed") => {
                Err(StateError::Conflict {
                    bucket: self.location.bucket.clone(),
                    key,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn collect(&self, body: ByteStream, key: &str) -> Result<Vec<u8>, StateError> {
        body.collect()
            .await
            .map(|b| b.into_bytes().to_vec())
            .map_err(|e| StateError::Corrupt {
                bucket: self.location.bucket.clone(),
                key: key.to_string(),
                message: format!("could not read the object: {e}"),
            })
    }
}
