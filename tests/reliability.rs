//! Reliability of the engine against a private moto server: state locks (expiry, heartbeat,
//! takeover of a stale holder, `infra state unlock`) and compare-and-swap state writes.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use infra_core::aws::Aws;
use infra_core::model::{Address, Kind, StateLocation};
use infra_core::state::{LockInfo, StateDoc, StateEntry, StateError, StateStore, lock};
use testkit::{Moto, infra};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const STATE_BUCKET: &str = "linkedin-ads-infra-state-123456789012";
const STATE_PREFIX: &str = "linkedin-ads/local";

async fn store(moto: &Moto, prefix: &str) -> StateStore {
    let aws = Aws::from_sdk_config(&moto.sdk_config().await, "us-east-1");
    let store = StateStore::new(
        aws,
        StateLocation {
            bucket: STATE_BUCKET.into(),
            prefix: prefix.into(),
        },
    );
    store.ensure_bucket().await.expect("state bucket");
    store
}

/// Puts a lock object as another process would have left it.
async fn plant_lock(store: &StateStore, holder: &LockInfo) {
    store
        .aws
        .s3
        .put_object()
        .bucket(STATE_BUCKET)
        .key(store.key("lock.json"))
        .body(ByteStream::from(serde_json::to_vec(holder).unwrap()))
        .send()
        .await
        .unwrap();
}

fn holder(host: &str, pid: u32, expires_in: chrono::Duration) -> LockInfo {
    let started_at = Utc::now() - chrono::Duration::minutes(10);
    LockInfo {
        id: uuid_like(pid),
        owner: "ci".into(),
        host: host.into(),
        pid,
        command: "infra apply --env local".into(),
        started_at,
        expires_at: Utc::now() + expires_in,
    }
}

fn uuid_like(pid: u32) -> String {
    format!("00000000-0000-4000-8000-{pid:012}")
}

fn this_host() -> String {
    hostname::get().unwrap().to_string_lossy().into_owned()
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// `infra destroy` of an env with no state: takes the lock, finds nothing, releases it.
fn locked_command(moto: &Moto) -> testkit::Run {
    infra(
        BIN,
        Some(moto),
        &["destroy", "--env", "local", "--auto-approve"],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_whose_holder_is_gone_from_this_host_is_taken_over_at_once() {
    let moto = Moto::start();
    let store = store(&moto, STATE_PREFIX).await;
    let gone = holder(&this_host(), dead_pid(), chrono::Duration::minutes(30));
    plant_lock(&store, &gone).await;

    let run = locked_command(&moto);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("took over the lock {}", gone.id))
            && run.stderr.contains(&format!("pid {}", gone.pid))
            && run.stderr.contains("no longer running on this host"),
        "names the old holder: {}",
        run.all()
    );
    assert_eq!(lock::read(&store).await.unwrap(), None, "released after");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_lock_is_taken_over_and_a_live_one_is_not() {
    let moto = Moto::start();
    let store = store(&moto, STATE_PREFIX).await;

    // Another host, still within its expiry: refused, naming the holder and how to unlock.
    let live = holder("build-17.example.com", 4242, chrono::Duration::minutes(30));
    plant_lock(&store, &live).await;
    let run = locked_command(&moto);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("build-17.example.com")
            && run
                .stderr
                .contains(&format!("infra state unlock --env local {}", live.id)),
        "{}",
        run.all()
    );
    assert_eq!(
        lock::read(&store).await.unwrap(),
        Some(live.clone()),
        "untouched"
    );

    // The same lock once its expiry has passed: taken over.
    let expired = holder("build-17.example.com", 4242, chrono::Duration::seconds(-5));
    plant_lock(&store, &expired).await;
    let run = locked_command(&moto);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("took over the lock {}", expired.id))
            && run.stderr.contains("expired without a heartbeat"),
        "{}",
        run.all()
    );

    // A human releases a live lock by id; a wrong id is refused.
    plant_lock(&store, &live).await;
    let wrong = infra(
        BIN,
        Some(&moto),
        &["state", "unlock", "--env", "local", "not-the-id"],
    );
    assert_ne!(wrong.code, 0, "{}", wrong.all());
    let unlock = infra(
        BIN,
        Some(&moto),
        &["state", "unlock", "--env", "local", &live.id],
    );
    assert_eq!(unlock.code, 0, "{}", unlock.all());
    assert_eq!(lock::read(&store).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_is_renewed_by_its_heartbeat_and_two_takers_never_both_win() {
    let moto = Moto::start();
    let store = store(&moto, "heartbeat").await;
    let ttl = Duration::from_secs(2);
    let guard = lock::acquire(
        &store,
        "local",
        LockInfo::for_this_process("test").with_ttl(ttl),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let first_expiry = guard.info.expires_at;
    // Three TTLs later the lock is still held and its expiry has moved on.
    tokio::time::sleep(ttl * 3).await;
    let current = lock::read(&store).await.unwrap().expect("still locked");
    assert_eq!(current.id, guard.info.id);
    assert!(current.expires_at > first_expiry + chrono::Duration::seconds(4));
    assert!(current.expires_at > Utc::now());
    // So another taker (this host, but the holder is alive: us) cannot have it.
    let other = lock::acquire(
        &store,
        "local",
        LockInfo::for_this_process("other").with_ttl(ttl),
        Duration::from_secs(1),
    )
    .await;
    assert!(matches!(other, Err(StateError::Locked(_))), "{other:?}");
    assert!(!guard.lost());
    guard.release().await.unwrap();

    // An expired lock raced by eight takers: exactly one wins each round.
    for round in 0..3 {
        plant_lock(
            &store,
            &holder("elsewhere", 1, chrono::Duration::seconds(-1)),
        )
        .await;
        let takers = (0..8).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                lock::acquire(
                    &store,
                    "local",
                    LockInfo::for_this_process(&format!("taker {i}")),
                    Duration::ZERO,
                )
                .await
            })
        });
        // Spawned all at once (the iterator is lazy), then awaited.
        let takers: Vec<_> = takers.collect();
        let mut winners = Vec::new();
        for taker in takers {
            if let Ok(guard) = taker.await.unwrap() {
                winners.push(guard);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: one winner");
        let winner = winners.pop().unwrap();
        assert_eq!(
            lock::read(&store).await.unwrap().map(|l| l.id),
            Some(winner.info.id.clone())
        );
        winner.release().await.unwrap();
    }
}

/// Writers race read-modify-write cycles on one state document; compare-and-swap makes the
/// losers re-read, so no update is lost.
#[tokio::test(flavor = "multi_thread")]
async fn racing_state_writers_lose_no_update() {
    const WRITERS: usize = 8;
    const UPDATES: usize = 5;
    let moto = Moto::start();
    let store = store(&moto, "race").await;
    store
        .save(&StateDoc::new("linkedin-ads", "local"), None)
        .await
        .unwrap();
    let writers = (0..WRITERS).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut conflicts = 0;
            for u in 0..UPDATES {
                loop {
                    let stored = store.load().await.unwrap();
                    let mut doc = stored.doc.unwrap();
                    let name = format!("w{w}-u{u}");
                    doc.resources.insert(
                        Address::new(Kind::LogGroup, &name),
                        StateEntry {
                            kind: Kind::LogGroup,
                            physical_id: name.clone(),
                            arn: format!("arn:aws:logs:us-east-1:123456789012:log-group:{name}"),
                            properties_hash: String::new(),
                            protected: false,
                            depends_on: Default::default(),
                        },
                    );
                    doc.serial += 1;
                    match store.save(&doc, stored.etag.as_deref()).await {
                        Ok(_) => break,
                        Err(StateError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        })
    });
    let writers: Vec<_> = writers.collect();
    let mut conflicts = 0;
    for writer in writers {
        conflicts += writer.await.unwrap();
    }
    let doc = store.load().await.unwrap().doc.unwrap();
    assert_eq!(doc.resources.len(), WRITERS * UPDATES, "every update kept");
    assert_eq!(doc.serial, (WRITERS * UPDATES) as u64);
    assert!(
        conflicts > 0,
        "the writers did race ({conflicts} conflicts)"
    );
    eprintln!(
        "{} updates by {WRITERS} writers, {conflicts} conflicts retried, none lost",
        WRITERS * UPDATES
    );
}
