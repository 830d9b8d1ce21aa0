//! The state lock: an S3 object created with `If-None-Match: *`, so exactly one writer holds
//! it. It names its holder (owner, host, pid, command, start, expiry) so that whoever finds
//! it taken knows whom to ask.
//!
//! A held lock is renewed by a heartbeat (every quarter of its time to live), so it expires
//! only when its holder stops: a lock whose expiry has passed, or whose holder ran on this
//! host and is no longer running, is taken over. Every write after the first is conditional on
//! the ETag last seen (`If-Match`), so two processes can never both take over one lock, and a
//! holder whose lock was taken over learns it at its next heartbeat, and work under the lock
//! checks it before each step ([`LockWatch`]): a holder stops once its lock was taken, or once
//! its last renewal is about to expire. Release is a conditional delete, so a holder that
//! stalled past its expiry never deletes the lock of whoever took over.

use std::sync::{Arc, Mutex};
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

/// Why a holder may no longer act under its lock.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LockLost {
    /// A renewal found the lock changed: another process took it over.
    #[error("the state lock was taken over{}", match .holder {
        Some(holder) => format!(" by the {}", holder.describe()),
        None => String::new(),
    })]
    TakenOver { holder: Option<Box<LockInfo>> },
    /// The last renewal's expiry is (nearly) past: this process stalled or could not reach
    /// S3, and another may take the lock over at any moment.
    #[error(
        "the state lock was last renewed until {}, and that has (nearly) passed: this \
         process stalled or could not reach S3, so another may hold the lock now",
        .valid_until.format("%Y-%m-%d %H:%M:%S UTC")
    )]
    Expiring { valid_until: DateTime<Utc> },
}

/// What a holder knows of its lock, shared by the guard, its watches and the heartbeat.
#[derive(Debug)]
struct Holding {
    /// The ETag of this holder's last write of the lock.
    etag: String,
    /// The expiry of that write: until then no other process takes the lock over.
    valid_until: DateTime<Utc>,
    lost: Option<LockLost>,
}

/// A held lock. Release it with [`LockGuard::release`]; a guard dropped without release (the
/// process was killed) stops renewing, so the lock expires or is taken over as stale.
#[derive(Debug)]
pub struct LockGuard {
    pub info: LockInfo,
    /// Set when this lock was taken over from a stale holder.
    pub took_over: Option<TakenOver>,
    holding: Arc<Mutex<Holding>>,
    stop: Arc<tokio::sync::Notify>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    store: StateStore,
}

/// A cheap, cloneable view of a held lock, for work that must stop once the lock is lost.
#[derive(Clone, Debug)]
pub struct LockWatch {
    holding: Arc<Mutex<Holding>>,
    /// How long before the last renewal's expiry the holder stops starting work: room for
    /// clock skew between hosts and for the work's first call.
    margin: chrono::Duration,
}

impl LockWatch {
    /// `Ok` while this process may still act under the lock.
    pub fn check(&self) -> Result<(), LockLost> {
        let holding = lock_holding(&self.holding);
        if let Some(lost) = &holding.lost {
            return Err(lost.clone());
        }
        if Utc::now() + self.margin >= holding.valid_until {
            return Err(LockLost::Expiring {
                valid_until: holding.valid_until,
            });
        }
        Ok(())
    }
}

fn lock_holding(holding: &Mutex<Holding>) -> std::sync::MutexGuard<'_, Holding> {
    match holding.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl LockGuard {
    /// Whether another process has taken the lock (a heartbeat found it changed).
    pub fn lost(&self) -> bool {
        matches!(
            lock_holding(&self.holding).lost,
            Some(LockLost::TakenOver { .. })
        )
    }

    /// A view of this lock that work checks before each step.
    pub fn watch(&self) -> LockWatch {
        LockWatch {
            holding: Arc::clone(&self.holding),
            margin: self.info.ttl() / 4,
        }
    }

    /// Stops the heartbeat (waiting for a renewal in flight, so the ETag is current) and
    /// deletes the lock only if it is still this holder's write (`If-Match`): a holder whose
    /// lock was taken over never deletes the new holder's.
    pub async fn release(mut self) -> Result<(), StateError> {
        self.stop.notify_one();
        if let Some(mut heartbeat) = self.heartbeat.take() {
            // A renewal that hangs on S3 must not keep the process from ending: the delete
            // below checks the ETag anyway.
            let beat = (self.info.ttl() / 4)
                .to_std()
                .unwrap_or(Duration::from_secs(30));
            if tokio::time::timeout(beat, &mut heartbeat).await.is_err() {
                heartbeat.abort();
            }
        }
        let etag = lock_holding(&self.holding).etag.clone();
        release_if_match(&self.store, &self.info.id, &etag).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
    }
}

fn lock_key(store: &StateStore) -> String {
    store.key("lock.json")
}

/// The tag every lock object carries: the state bucket's lifecycle rule expires the
/// heartbeat's noncurrent versions of lock objects by it (lifecycle filters match key
/// prefixes, and each env's lock lives under its own prefix).
pub const LOCK_OBJECT_TAG: (&str, &str) = ("infra:object", "lock");

/// Writes `info` as the lock: only if there is none (`expected` `None`), or only if the
/// current lock still has ETag `expected`. Returns the new ETag, or `None` when the condition
/// failed (someone else holds or changed the lock). S3's 409 (a conditional write met another
/// in flight) is retried for at most `bound`.
async fn put(
    store: &StateStore,
    info: &LockInfo,
    expected: Option<&str>,
    bound: Duration,
) -> Result<Option<String>, StateError> {
    let body = serde_json::to_vec_pretty(info).unwrap_or_default();
    let key = lock_key(store);
    let tagging = format!("{}={}", LOCK_OBJECT_TAG.0, LOCK_OBJECT_TAG.1);
    let written = crate::eventual::retry(
        &key,
        bound,
        super::store::conditional_conflict as crate::eventual::Transient,
        || {
            let request = store
                .aws
                .s3
                .put_object()
                .bucket(&store.location.bucket)
                .key(&key)
                .content_type("application/json")
                .tagging(&tagging)
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

/// How long a lock write that meets S3's 409 (another conditional write in flight) is retried
/// at least, whatever the lock timeout.
pub const CONFLICT_GRACE: Duration = Duration::from_secs(5);

/// Takes the lock, waiting up to `timeout` for another holder to release it. A stale lock
/// (expired, or its holder gone from this host) is taken over at once. Every wait and retry
/// inside is bounded by the same deadline (409s by at least [`CONFLICT_GRACE`]).
pub async fn acquire(
    store: &StateStore,
    env: &str,
    mut info: LockInfo,
    timeout: Duration,
) -> Result<LockGuard, StateError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let remaining = || deadline.saturating_duration_since(tokio::time::Instant::now());
    // A 409 is a write in flight, not a holder: even `--lock-timeout 0` waits it out briefly.
    let conflict_bound = || remaining().max(CONFLICT_GRACE);
    let mut last_seen: Option<LockInfo> = None;
    // S3 answering 409 until the deadline is a timeout like any other wait for the lock.
    let timed_out = |e: StateError| match e {
        StateError::GaveUp(gave_up) => StateError::Locked(format!(
            "state s3://{}/{} could not be locked within the timeout (`--lock-timeout`): S3 \
             kept answering {} for {:.0?}",
            store.location.bucket,
            lock_key(store),
            gave_up.error,
            gave_up.waited,
        )),
        e => e,
    };
    let ttl = info.ttl();
    loop {
        // Each attempt writes a full time to live from now, however long the wait before it.
        info.started_at = Utc::now();
        info.expires_at = info.started_at + ttl;
        let first = put(store, &info, None, conflict_bound())
            .await
            .map_err(timed_out)?;
        if let Some(etag) = first {
            return Ok(held(store, info, etag, None));
        }
        if let Some((current, etag)) = read_with_etag(store).await? {
            // The SDK retried a create whose first answer was lost: the lock is ours.
            if current.id == info.id {
                return Ok(held(store, current, etag, None));
            }
            if let Some(reason) = current.stale(Utc::now()) {
                let taken = put(store, &info, Some(&etag), conflict_bound())
                    .await
                    .map_err(timed_out)?;
                if let Some(new_etag) = taken {
                    let took_over = TakenOver {
                        previous: current,
                        reason,
                    };
                    return Ok(held(store, info, new_etag, Some(took_over)));
                }
            }
            last_seen = Some(current);
        }
        // Taken, or released between the two calls, or changed by another taker first.
        if remaining().is_zero() {
            return Err(StateError::Locked(match last_seen {
                Some(current) => format!(
                    "state s3://{}/{} is locked: {}. Wait for it (`--lock-timeout`); a lock \
                     whose holder is gone is taken over once it expires, or release it with \
                     `infra state unlock --env {env} {}`",
                    store.location.bucket,
                    lock_key(store),
                    current.describe(),
                    current.id,
                ),
                None => format!(
                    "state s3://{}/{} could not be locked within the timeout",
                    store.location.bucket,
                    lock_key(store)
                ),
            }));
        }
        tokio::time::sleep(remaining().min(Duration::from_millis(500))).await;
    }
}

/// Starts the heartbeat of a lock just written with ETag `etag`.
fn held(
    store: &StateStore,
    info: LockInfo,
    etag: String,
    took_over: Option<TakenOver>,
) -> LockGuard {
    let holding = Arc::new(Mutex::new(Holding {
        etag,
        valid_until: info.expires_at,
        lost: None,
    }));
    let stop = Arc::new(tokio::sync::Notify::new());
    let heartbeat = tokio::spawn(heartbeat(
        store.clone(),
        info.clone(),
        Arc::clone(&holding),
        Arc::clone(&stop),
    ));
    LockGuard {
        info,
        took_over,
        holding,
        stop,
        heartbeat: Some(heartbeat),
        store: store.clone(),
    }
}

/// Renews the lock every quarter of its time to live, each time only if it is still the one
/// this process wrote. Stops when told to (release), or for good when it finds the lock
/// changed (taken over), recording who holds it now.
async fn heartbeat(
    store: StateStore,
    mut info: LockInfo,
    holding: Arc<Mutex<Holding>>,
    stop: Arc<tokio::sync::Notify>,
) {
    let ttl = info.ttl();
    let every = (ttl / 4).to_std().unwrap_or(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.notified() => return,
        }
        let etag = lock_holding(&holding).etag.clone();
        info.expires_at = Utc::now() + ttl;
        // A renewal's 409 retries end before the next beat is due.
        match put(&store, &info, Some(&etag), every).await {
            Ok(Some(new_etag)) => {
                let mut holding = lock_holding(&holding);
                holding.etag = new_etag;
                holding.valid_until = info.expires_at;
            }
            Ok(None) => {
                let current = read_with_etag(&store).await.ok().flatten();
                // The SDK retried a renewal whose first answer was lost: still ours.
                if let Some((current, etag)) = &current
                    && current.id == info.id
                {
                    let mut holding = lock_holding(&holding);
                    holding.etag = etag.clone();
                    holding.valid_until = current.expires_at;
                    continue;
                }
                let holder = current.map(|(holder, _)| holder);
                tracing::error!(
                    lock = %info.id,
                    holder = holder.as_ref().map(LockInfo::describe).unwrap_or_default(),
                    "the state lock was taken over by another process"
                );
                lock_holding(&holding).lost = Some(LockLost::TakenOver {
                    holder: holder.map(Box::new),
                });
                return;
            }
            // A failed renewal is retried at the next beat; the lock is still valid until
            // its expiry (and work stops before it: `LockWatch::check`).
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

/// Releases lock `id` (`infra state unlock`); refuses if the current lock has another id,
/// and deletes only the version it read, so a lock taken meanwhile stays.
pub async fn release(store: &StateStore, id: &str) -> Result<(), StateError> {
    match read_with_etag(store).await? {
        None => Err(StateError::NotHeld(id.to_string(), "none".to_string())),
        Some((current, _)) if current.id != id => {
            Err(StateError::NotHeld(id.to_string(), current.describe()))
        }
        Some((_, etag)) => release_if_match(store, id, &etag).await,
    }
}

/// Deletes the lock only if its current version is `etag` (S3 conditional delete).
async fn release_if_match(store: &StateStore, id: &str, etag: &str) -> Result<(), StateError> {
    let deleted = store
        .aws
        .s3
        .delete_object()
        .bucket(&store.location.bucket)
        .key(lock_key(store))
        .if_match(etag)
        .send()
        .await
        .map_err(failed("DeleteObject"));
    match deleted {
        Ok(_) => Ok(()),
        Err(e) if e.is("PreconditionFailed") || e.is("NoSuchKey") => {
            match read_with_etag(store).await? {
                // Still this holder's lock under another ETag (a renewal whose answer was
                // lost, or one that raced the heartbeat's stop): delete that version.
                Some((current, newer)) if current.id == id && newer != etag => {
                    Box::pin(release_if_match(store, id, &newer)).await
                }
                // Gone: this delete's first attempt went through and its answer was lost (the
                // SDK's retry then found nothing), or whoever held it since released it.
                None => Ok(()),
                Some((current, _)) => Err(StateError::NotHeld(id.to_string(), current.describe())),
            }
        }
        Err(e) => Err(e.into()),
    }
}
