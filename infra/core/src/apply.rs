//! Apply: interprets a [`Plan`]. Walks the changes in dependency order (creates and updates
//! after what they depend on, deletes before what they depended on), at most `parallelism`
//! at a time. Every create is journaled before it starts; every outcome is journaled and
//! written to state (compare-and-swap; outcomes that arrive while a write is in flight share
//! the next) before its change counts as done. On the first error no new work starts, work
//! in flight finishes and is recorded, and the error names the resource. The same happens
//! when the state lock is lost (taken over, or about to expire unrenewed): the lock is
//! checked before each change starts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::aws::Aws;
use crate::kinds::{self, DeleteOptions, OpError};
use crate::model::{Address, Target};
use crate::plan::{Action, Change, Plan};
use crate::state::{Journal, LockLost, LockWatch, StateDoc, StateError, StateStore};

/// The state document being written during an apply, with the ETag of its last write.
#[derive(Debug)]
pub struct StateSession {
    pub store: StateStore,
    pub doc: StateDoc,
    pub etag: Option<String>,
}

impl StateSession {
    /// Writes the document (serial + 1) if the stored one is still ours.
    pub async fn commit(&mut self) -> Result<(), StateError> {
        self.doc.serial += 1;
        match self.store.save(&self.doc, self.etag.as_deref()).await {
            Ok(etag) => {
                self.etag = Some(etag);
                Ok(())
            }
            Err(e) => {
                self.doc.serial -= 1;
                Err(e)
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub parallelism: usize,
    pub delete: DeleteOptions,
    /// The state lock this apply runs under: no change starts once it is lost.
    pub lock: Option<LockWatch>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 8,
            delete: DeleteOptions::default(),
            lock: None,
        }
    }
}

/// Progress of an apply, for whoever prints it.
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        address: Address,
        action: Action,
    },
    Finished {
        address: Address,
        action: Action,
        elapsed: Duration,
    },
    Failed {
        address: Address,
        action: Action,
        error: String,
    },
    Skipped {
        address: Address,
        because: Address,
    },
}

#[derive(Debug, Default)]
pub struct ApplyReport {
    pub applied: Vec<(Address, Action)>,
    pub failed: Vec<(Address, String)>,
    pub skipped: Vec<Address>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{} failed:\n{}{}",
        if .failed.len() == 1 { "1 change" } else { "changes" },
        .failed.iter().map(|(a, e)| format!("  {a}: {e}")).collect::<Vec<_>>().join("\n"),
        if .skipped.is_empty() { String::new() } else { format!("\nnot started: {}", .skipped.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) })]
    Failed {
        failed: Vec<(Address, String)>,
        skipped: Vec<Address>,
    },
    #[error("recording state failed; re-run apply to converge: {0}")]
    State(#[from] StateError),
    /// The lock was lost: nothing new was started, what was in flight finished and is in
    /// state.
    #[error("stopped: {lost}. {} change(s) finished and are recorded in state; not started: {}",
        .applied.len(),
        if .not_started.is_empty() { "none".to_string() } else { .not_started.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ") })]
    LockLost {
        lost: LockLost,
        applied: Vec<(Address, Action)>,
        not_started: Vec<Address>,
    },
}

/// The state session shared by the apply's tasks.
pub type SharedSession = Arc<Mutex<StateSession>>;
type Shared = SharedSession;

/// Applies `plan`. State is updated through `session` as outcomes arrive.
pub async fn apply(
    aws: &Aws,
    plan: &Plan,
    session: SharedSession,
    journal: Arc<Journal>,
    options: ApplyOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<ApplyReport, ApplyError> {
    run(aws, plan, session, journal, options, on_event).await
}

async fn run(
    aws: &Aws,
    plan: &Plan,
    session: Shared,
    journal: Arc<Journal>,
    options: ApplyOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> Result<ApplyReport, ApplyError> {
    let work: BTreeMap<Address, &Change> = plan
        .changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| (c.address.clone(), c))
        .collect();
    let prerequisites = prerequisites(&work);

    let mut report = ApplyReport::default();
    let recorder = Arc::new(Recorder::new(session.clone()));
    let mut done: BTreeSet<Address> = BTreeSet::new();
    let mut failed: BTreeSet<Address> = BTreeSet::new();
    let mut started: BTreeSet<Address> = BTreeSet::new();
    let mut tasks: JoinSet<(Address, Action, Result<Duration, String>)> = JoinSet::new();
    let mut task_addresses: BTreeMap<tokio::task::Id, (Address, Action)> = BTreeMap::new();
    let parallelism = options.parallelism.max(1);
    let mut lost: Option<LockLost> = None;

    loop {
        if failed.is_empty() && lost.is_none() {
            for (address, change) in &work {
                if tasks.len() >= parallelism {
                    break;
                }
                if started.contains(address) {
                    continue;
                }
                let ready = prerequisites
                    .get(address)
                    .is_none_or(|pre| pre.iter().all(|p| done.contains(p)));
                if !ready {
                    continue;
                }
                if let Some(Err(lock_lost)) = options.lock.as_ref().map(LockWatch::check) {
                    lost = Some(lock_lost);
                    break;
                }
                started.insert(address.clone());
                on_event(Event::Started {
                    address: address.clone(),
                    action: change.action,
                });
                let aws = aws.clone();
                let target = plan.target.clone();
                let change = (*change).clone();
                let action = change.action;
                let recorder = recorder.clone();
                let journal = journal.clone();
                let delete = options.delete;
                let handle = tasks.spawn(async move {
                    let t0 = Instant::now();
                    let result = execute(&aws, &target, &change, &recorder, &journal, delete).await;
                    (
                        change.address.clone(),
                        change.action,
                        result.map(|_| t0.elapsed()).map_err(|e| e.to_string()),
                    )
                });
                task_addresses.insert(handle.id(), (address.clone(), action));
            }
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (address, action, result) = match joined {
            Ok(outcome) => outcome,
            // A panicking task is a bug; record it against its resource and keep going so
            // that what did finish is recorded.
            Err(join_error) => match task_addresses.get(&join_error.id()) {
                Some((address, action)) => (
                    address.clone(),
                    *action,
                    Err(format!("internal error: {join_error}")),
                ),
                None => continue,
            },
        };
        match result {
            Ok(elapsed) => {
                on_event(Event::Finished {
                    address: address.clone(),
                    action,
                    elapsed,
                });
                report.applied.push((address.clone(), action));
                done.insert(address);
            }
            Err(error) => {
                on_event(Event::Failed {
                    address: address.clone(),
                    action,
                    error: error.clone(),
                });
                report.failed.push((address.clone(), error));
                failed.insert(address);
            }
        }
    }

    for address in work.keys() {
        if !started.contains(address) && lost.is_none() {
            let because = prerequisites
                .get(address)
                .and_then(|pre| pre.iter().find(|p| failed.contains(*p)))
                .cloned()
                .or_else(|| failed.iter().next().cloned());
            if let Some(because) = because {
                on_event(Event::Skipped {
                    address: address.clone(),
                    because,
                });
            }
            report.skipped.push(address.clone());
        } else if !started.contains(address) {
            report.skipped.push(address.clone());
        }
    }

    // Unchanged resources are recorded too: an adoption, a new hash or protection flag
    // (not under a lost lock: only what was in flight is written then).
    if lost.is_none() {
        let mut session = session.lock().await;
        let before = session.doc.clone();
        for change in plan.changes.iter().filter(|c| c.action == Action::NoOp) {
            if let Some(desired) = &change.desired {
                session.doc.record(desired);
            }
        }
        if session.doc.resources != before.resources {
            session.commit().await?;
        }
    }

    if let Some(lost) = lost {
        return Err(ApplyError::LockLost {
            lost,
            applied: report.applied,
            not_started: report.skipped,
        });
    }
    if !report.failed.is_empty() {
        return Err(ApplyError::Failed {
            failed: report.failed,
            skipped: report.skipped,
        });
    }
    Ok(report)
}

/// For every change, the changes that must finish before it starts.
fn prerequisites(work: &BTreeMap<Address, &Change>) -> BTreeMap<Address, BTreeSet<Address>> {
    let mut pre: BTreeMap<Address, BTreeSet<Address>> = BTreeMap::new();
    for (address, change) in work {
        match change.action {
            Action::Create | Action::Update | Action::Replace => {
                if let Some(desired) = &change.desired {
                    for dep in &desired.depends_on {
                        if work.get(dep).is_some_and(|d| d.action != Action::Delete) {
                            pre.entry(address.clone()).or_default().insert(dep.clone());
                        }
                    }
                }
            }
            Action::Delete => {
                // Whatever depended on this resource and is deleted too goes first.
                for (other, other_change) in work {
                    if other_change.action == Action::Delete
                        && other_change.depends_on.contains(address)
                    {
                        pre.entry(address.clone())
                            .or_default()
                            .insert(other.clone());
                    }
                }
            }
            Action::NoOp => {}
        }
    }
    pre
}

#[derive(Debug, thiserror::Error)]
enum ExecError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    State(#[from] StateError),
}

async fn execute(
    aws: &Aws,
    target: &Target,
    change: &Change,
    recorder: &Recorder,
    journal: &Journal,
    delete_options: DeleteOptions,
) -> Result<(), ExecError> {
    let address = &change.address;
    let operation = change.action.as_str();
    let result: Result<(), ExecError> = async {
        match change.action {
            Action::Create => {
                let desired = desired_of(change)?;
                journal
                    .intent(address, operation, &desired.physical_id)
                    .await?;
                kinds::create(aws, target, desired).await?;
                recorder.record(|doc| doc.record(desired)).await?;
            }
            Action::Update => {
                let desired = desired_of(change)?;
                if change.import {
                    // An import is recorded before anything is sent: once the update starts,
                    // state must know the resource, so that a failure leaves it managed (and
                    // destroy sees it) and a re-run plans an ordinary update.
                    recorder.record(|doc| doc.record(desired)).await?;
                }
                // `adopt` alone means an interrupted apply created it moments ago; an imported
                // resource is old.
                let just_created = change.adopt && !change.import;
                match &change.live {
                    Some(live) => kinds::update(aws, target, desired, live, just_created).await?,
                    None => kinds::create(aws, target, desired).await?,
                }
                recorder.record(|doc| doc.record(desired)).await?;
            }
            Action::Replace => {
                let desired = desired_of(change)?;
                journal
                    .intent(address, operation, &desired.physical_id)
                    .await?;
                kinds::delete(
                    aws,
                    target,
                    address.kind,
                    &change.physical_id,
                    delete_options,
                )
                .await?;
                recorder.record(|doc| doc.forget(address)).await?;
                kinds::create(aws, target, desired).await?;
                recorder.record(|doc| doc.record(desired)).await?;
            }
            Action::Delete => {
                if change.live.is_some() {
                    kinds::delete(
                        aws,
                        target,
                        address.kind,
                        &change.physical_id,
                        delete_options,
                    )
                    .await?;
                }
                recorder.record(|doc| doc.forget(address)).await?;
            }
            Action::NoOp => {}
        }
        Ok(())
    }
    .await;
    let error_text = result.as_ref().err().map(ToString::to_string);
    journal.outcome(address, operation, error_text).await?;
    result
}

fn desired_of(change: &Change) -> Result<&crate::model::Resource, ExecError> {
    change.desired.as_ref().ok_or_else(|| {
        ExecError::Op(OpError::Refused(format!(
            "the plan has no desired properties for {}",
            change.address
        )))
    })
}

/// Records outcomes in state with group commit: an outcome changes the document in memory at
/// once, then waits for a write that includes it. Writes are one at a time (compare-and-swap
/// on the last ETag), and each carries every outcome recorded before it started, so while one
/// write is in flight the outcomes arriving meanwhile share the next, instead of each paying
/// for its own write of the whole document.
struct Recorder {
    session: Shared,
    /// Outcomes applied to the in-memory document so far.
    updates: AtomicU64,
    /// Held for the length of a write; holds how many outcomes state has.
    written: Mutex<u64>,
}

impl Recorder {
    fn new(session: Shared) -> Recorder {
        Recorder {
            session,
            updates: AtomicU64::new(0),
            written: Mutex::new(0),
        }
    }

    /// Returns once state holds `update` (or the write that would have carried it failed).
    async fn record(&self, update: impl FnOnce(&mut StateDoc)) -> Result<(), StateError> {
        let mine = {
            let mut session = self.session.lock().await;
            update(&mut session.doc);
            self.updates.fetch_add(1, Ordering::SeqCst) + 1
        };
        let mut written = self.written.lock().await;
        if *written >= mine {
            return Ok(());
        }
        let (mut doc, etag, store, upto) = {
            let session = self.session.lock().await;
            (
                session.doc.clone(),
                session.etag.clone(),
                session.store.clone(),
                self.updates.load(Ordering::SeqCst),
            )
        };
        doc.serial += 1;
        let new_etag = store.save(&doc, etag.as_deref()).await?;
        let mut session = self.session.lock().await;
        session.doc.serial = doc.serial;
        session.etag = Some(new_etag);
        *written = upto;
        Ok(())
    }
}
