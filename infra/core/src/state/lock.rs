//! The state lock: an S3 object created with `If-None-Match: *`, so exactly one writer holds
//! it. It names its holder (owner, host, pid, command, start, expiry) so that whoever finds
//! it taken knows whom to ask.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::{StateError, StateStore};
use crate::aws::failed;

/// How long a lock is valid without being renewed.
pub const LOCK_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl LockInfo {
    /// A lock for this process running `command`.
    pub fn for_this_process(command: &str) -> LockInfo {
        let now = Utc::now();
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            owner: std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .unwrap_or_else(|_| "unknown".into()),
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".into()),
            pid: std::process::id(),
            command: command.to_string(),
            started_at: now,
            expires_at: now + chrono::Duration::from_std(LOCK_TTL).unwrap_or_default(),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "lock {} held by {}@{} (pid {}, `{}`) since {}, expires {}",
            self.id,
            self.owner,
            self.host,
            self.pid,
            self.command,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.expires_at.format("%Y-%m-%d %H:%M:%S UTC"),
        )
    }
}

/// A held lock. Release it with [`LockGuard::release`]; a guard dropped without release
/// leaves the lock to expire (e.g. the process was killed).
#[derive(Debug)]
pub struct LockGuard {
    pub info: LockInfo,
    store: StateStore,
}

impl LockGuard {
    pub async fn release(self) -> Result<(), StateError> {
        release(&self.store, &self.info.id).await
    }
}

fn lock_key(store: &StateStore) -> String {
    store.key("lock.json")
}

/// Takes the lock, waiting up to `timeout` for another holder to release it.
pub async fn acquire(
    store: &StateStore,
    env: &str,
    info: LockInfo,
    timeout: Duration,
) -> Result<LockGuard, StateError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let body = serde_json::to_vec_pretty(&info).unwrap_or_default();
    loop {
        let put = store
            .aws
            .s3
            .put_object()
            .bucket(&store.location.bucket)
            .key(lock_key(store))
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .map_err(failed("PutObject"));
        match put {
            Ok(_) => {
                return Ok(LockGuard {
                    info,
                    store: store.clone(),
                });
            }
            Err(e) if e.http_status == Some(412) || e.http_status == Some(409) => {
                if tokio::time::Instant::now() >= deadline {
                    let holder = match read(store).await? {
                        Some(holder) => holder.describe(),
                        None => "a lock that was just released".to_string(),
                    };
                    return Err(StateError::Locked(format!(
                        "state s3://{}/{} is locked: {holder}. Wait for it (`--lock-timeout`), or if \
                         that process is gone, release it with `infra state unlock --env {env} <lock id>`",
                        store.location.bucket,
                        lock_key(store),
                    )));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The current lock, if any.
pub async fn read(store: &StateStore) -> Result<Option<LockInfo>, StateError> {
    let key = lock_key(store);
    let out = store
        .aws
        .s3
        .get_object()
        .bucket(&store.location.bucket)
        .key(&key)
        .send()
        .await
        .map_err(failed("GetObject"));
    match out {
        Ok(out) => {
            let bytes = store.collect(out.body, &key).await?;
            let info = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                bucket: store.location.bucket.clone(),
                key,
                message: e.to_string(),
            })?;
            Ok(Some(info))
        }
        Err(e) if e.is("NoSuchKey") || e.is("NoSuchBucket") || e.http_status == Some(404) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Releases lock `id`; refuses if the current lock has another id.
pub async fn release(store: &StateStore, id: &str) -> Result<(), StateError> {
    match read(store).await? {
        None => Err(StateError::NotHeld(id.to_string(), "none".to_string())),
        Some(current) if current.id != id => {
            Err(StateError::NotHeld(id.to_string(), current.describe()))
        }
        Some(_) => {
            store
                .aws
                .s3
                .delete_object()
                .bucket(&store.location.bucket)
                .key(lock_key(store))
                .send()
                .await
                .map_err(failed("DeleteObject"))?;
            Ok(())
        }
    }
}
