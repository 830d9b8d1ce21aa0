//! The state lock: an S3 object created with `If-None-Match: *`, so exactly one writer holds
//! it. It names its holder (owner, host, pid, command, start, expiry) so that whoever finds
//! it taken knows whom to ask.
//!
//! A held lock is renewed by a heartbeat (every quarter of its time to live), so it expires
//! only when its holder stops: a lock whose expiry has passed, or whose holder ran on this
//! host and is no longer running, is taken over. Every write after the first is conditional on
//! the ETag last seen (`If-Match`), so two processes can never both take over one lock, and a
//! holder whose lock was taken over learns it at its next heartbeat.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::{StateError, StateStore};
use crate::aws::failed;

/// How long a lock is valid without being renewed. The heartbeat renews it four times as
/// often, so a live holder never lets it lapse; a crashed one on another host blocks others
/// for at most this long.
pub const LOCK_TTL: Duration = Duration::from_secs(120);

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
    /// A lock for this process running `command`, valid for [`LOCK_TTL`] unless renewed.
    pub fn for_this_process(command: &str) -> LockInfo {
        let now = Utc::now();
        LockInfo {
            id: uuid::Uuid::new_v4().to_string(),
            owner: std::env::var("USER")
                .or_else(|_| std::env::var("USERNAME"))
                .unwrap_or_else(|_| "unknown".into()),
            host: this_host(),
            pid: std::process::id(),
            command: command.to_string(),
            started_at: now,
            expires_at: now + chrono::Duration::from_std(LOCK_TTL).unwrap_or_default(),
        }
    }

    /// The same lock, valid for `ttl` from its start unless renewed.
    pub fn with_ttl(mut self, ttl: Duration) -> LockInfo {
        self.expires_at = self.started_at + chrono::Duration::from_std(ttl).unwrap_or_default();
        self
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

    fn ttl(&self) -> chrono::Duration {
        (self.expires_at - self.started_at).max(chrono::Duration::seconds(1))
    }

    /// Why this lock may be taken over now, if it may.
    pub fn stale(&self, now: DateTime<Utc>) -> Option<Takeover> {
        if self.host == this_host() && self.pid != std::process::id() && !process_alive(self.pid) {
            Some(Takeover::HolderGone)
        } else if now > self.expires_at {
            Some(Takeover::Expired)
        } else {
            None
        }
    }
}

/// Why a lock was taken over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// Its holder ran on this host and is no longer running.
    HolderGone,
    /// Its expiry passed without a heartbeat.
    Expired,
}

/// A lock that was taken over, for the holder's message.
#[derive(Clone, Debug)]
pub struct TakenOver {
    pub previous: LockInfo,
    pub reason: Takeover,
}

impl TakenOver {
    pub fn describe(&self) -> String {
        let why = match self.reason {
            Takeover::HolderGone => "its process is no longer running on this host",
            Takeover::Expired => "it expired without a heartbeat",
        };
        format!("took over the {}: {why}", self.previous.describe())
    }
}

fn this_host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// Whether process `pid` is running on this host. Only what can be proven counts as gone:
/// without `/proc` (not Linux) every process is assumed alive, and the lock waits for expiry.
pub fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    if !proc.join("self").exists() {
        return true;
    }
    match std::fs::read_to_string(proc.join(pid.to_string()).join("stat")) {
        // A zombie has exited; only its exit status is left to collect.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A held lock. Release it with [`LockGuard::release`]; a guard dropped without release (the
/// process was killed) stops renewing, so the lock expires or is taken over as stale.
#[derive(Debug)]
pub struct LockGuard {
    pub info: LockInfo,
    /// Set when this lock was taken over from a stale holder.
    pub took_over: Option<TakenOver>,
    lost: Arc<AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
    store: StateStore,
}

impl LockGuard {
    /// Whether another process has taken the lock (a heartbeat found it changed).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub async fn release(self) -> Result<(), StateError> {
        self.heartbeat.abort();
        release(&self.store, &self.info.id).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

fn lock_key(store: &StateStore) -> String {
    store.key("lock.json")
}

/// Writes `info` as the lock: only if there is none (`expected` `None`), or only if the
/// current lock still has ETag `expected`. Returns the new ETag, or `None` when the condition
/// failed (someone else holds or changed the lock).
async fn put(
    store: &StateStore,
    info: &LockInfo,
    expected: Option<&str>,
) -> Result<Option<String>, StateError> {
    let body = serde_json::to_vec_pretty(info).unwrap_or_default();
    let key = lock_key(store);
    let written = crate::eventual::retry(
        &key,
        store.aws.patience.propagation,
        super::store::conditional_conflict as crate::eventual::Transient,
        || {
            let request = store
                .aws
                .s3
                .put_object()
                .bucket(&store.location.bucket)
                .key(&key)
                .content_type("application/json")
                .body(ByteStream::from(body.clone()));
            let request = match expected {
                None => request.if_none_match("*"),
                Some(etag) => request.if_match(etag),
            };
            async move { request.send().await.map_err(failed("PutObject")) }
        },
    )
    .await;
    match written {
        Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
        // The condition failed: someone else holds the lock, or changed or removed it.
        Err(crate::eventual::RetryError::Aws(e))
            if e.is("PreconditionFailed") || e.is("NoSuchKey") =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes the lock, waiting up to `timeout` for another holder to release it. A stale lock
/// (expired, or its holder gone from this host) is taken over at once.
pub async fn acquire(
    store: &StateStore,
    env: &str,
    mut info: LockInfo,
    timeout: Duration,
) -> Result<LockGuard, StateError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(etag) = put(store, &info, None).await? {
            return Ok(held(store, info, etag, None));
        }
        let current = read_with_etag(store).await?;
        // Neither taken nor readable (released between the two calls): try again, within
        // the timeout like any other wait.
        if current.is_none() && tokio::time::Instant::now() >= deadline {
            return Err(StateError::Locked(format!(
                "state s3://{}/{} could not be locked within the timeout",
                store.location.bucket,
                lock_key(store)
            )));
        }
        if let Some((current, etag)) = current {
            if let Some(reason) = current.stale(Utc::now()) {
                let ttl = info.ttl();
                info.started_at = Utc::now();
                info.expires_at = info.started_at + ttl;
                if let Some(new_etag) = put(store, &info, Some(&etag)).await? {
                    let took_over = TakenOver {
                        previous: current,
                        reason,
                    };
                    return Ok(held(store, info, new_etag, Some(took_over)));
                }
                // Someone else changed it first: look again.
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StateError::Locked(format!(
                    "state s3://{}/{} is locked: {}. Wait for it (`--lock-timeout`); a lock \
                     whose holder is gone is taken over once it expires, or release it with \
                     `infra state unlock --env {env} {}`",
                    store.location.bucket,
                    lock_key(store),
                    current.describe(),
                    current.id,
                )));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Starts the heartbeat of a lock just written with ETag `etag`.
fn held(
    store: &StateStore,
    info: LockInfo,
    etag: String,
    took_over: Option<TakenOver>,
) -> LockGuard {
    let lost = Arc::new(AtomicBool::new(false));
    let heartbeat = tokio::spawn(heartbeat(
        store.clone(),
        info.clone(),
        etag,
        Arc::clone(&lost),
    ));
    LockGuard {
        info,
        took_over,
        lost,
        heartbeat,
        store: store.clone(),
    }
}

/// Renews the lock every quarter of its time to live, each time only if it is still the one
/// this process wrote. Stops for good when it finds the lock changed (taken over).
async fn heartbeat(store: StateStore, mut info: LockInfo, mut etag: String, lost: Arc<AtomicBool>) {
    let ttl = info.ttl();
    let every = (ttl / 4).to_std().unwrap_or(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        info.expires_at = Utc::now() + ttl;
        match put(&store, &info, Some(&etag)).await {
            Ok(Some(new_etag)) => etag = new_etag,
            Ok(None) => {
                lost.store(true, Ordering::SeqCst);
                tracing::error!(lock = %info.id, "the state lock was taken over by another process");
                return;
            }
            // A failed renewal is retried at the next beat; the lock is still valid until
            // its expiry.
            Err(e) => tracing::warn!(error = %e, "renewing the state lock failed"),
        }
    }
}

/// The current lock and its ETag, if any.
async fn read_with_etag(store: &StateStore) -> Result<Option<(LockInfo, String)>, StateError> {
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
            let etag = out.e_tag().unwrap_or_default().to_string();
            let bytes = store.collect(out.body, &key).await?;
            let info = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                bucket: store.location.bucket.clone(),
                key,
                message: e.to_string(),
            })?;
            Ok(Some((info, etag)))
        }
        Err(e) if e.is("NoSuchKey") || e.is("NoSuchBucket") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The current lock, if any.
pub async fn read(store: &StateStore) -> Result<Option<LockInfo>, StateError> {
    Ok(read_with_etag(store).await?.map(|(info, _)| info))
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
