//! The S3 object store behind state, lock and journal: creates the state bucket on first use
//! (versioned, encrypted, public access blocked) and writes state with compare-and-swap.

use aws_sdk_s3::primitives::ByteStream;

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

    /// Creates the state bucket if it does not exist, then makes sure it is versioned,
    /// encrypted and closed to the public.
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
        if exists {
            return Ok(());
        }
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
