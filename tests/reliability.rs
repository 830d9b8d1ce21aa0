//! Reliability of the engine against a private moto server: state locks (expiry, heartbeat,
//! takeover of a stale holder, `infra state unlock`) and compare-and-swap state writes.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use infra_core::apply::ApplyOptions;
use infra_core::aws::Aws;
use infra_core::model::{Address, Kind, StateLocation};
use infra_core::state::{LockInfo, StateDoc, StateEntry, StateError, StateStore, lock};
use testkit::{Moto, infra};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const STATE_BUCKET: &str = "linkedin-ads-infra-state-123456789012";
const STATE_PREFIX: &str = "linkedin-ads/local";

async fn store(moto: &Moto, prefix: &str) -> StateStore {
    // The engine's store, through the AWS-behaviour layer (conditional writes meet S3's 409).
    let aws = Aws::from_sdk_config(&moto.engine_sdk_config().await, "us-east-1");
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
        .bucket(&store.location.bucket)
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

/// An apply whose lock is taken over (here: another process writes its own lock once the
/// first change is done) stops: nothing new starts, what was in flight finishes and is in
/// state, and the error names the new holder. Its release leaves the new holder's lock; once
/// that holder is done, a re-run converges. The apply's calls go through a proxy that delays
/// some of them, so that it is still running when its heartbeat (every 3 s, a quarter of the
/// lock's 12 s) finds the lock taken, however fast the machine; the heartbeat itself talks to
/// the emulator directly.
#[tokio::test(flavor = "multi_thread")]
async fn an_apply_whose_lock_is_taken_over_stops_and_names_the_new_holder() {
    const N: usize = 60;
    let moto = Moto::start();
    let aws = Aws::from_sdk_config(&moto.engine_sdk_config().await, testkit::REGION);
    let slow = testkit::fault_proxy::FaultProxy::start_with(
        &moto.endpoint(),
        0.3,
        20_261_201,
        &[testkit::fault_proxy::Fault::Slow],
    );
    let slow_aws = Aws::from_sdk_config(
        &testkit::sdk_config_at(slow.endpoint()).await,
        testkit::REGION,
    );
    let scratch = tempfile::tempdir().unwrap();
    let artifact = infra::bench::artifact(scratch.path()).unwrap();
    let target = infra::bench::target(N, "123456789012", testkit::REGION);
    let stack = infra::stacks::synthetic::synthetic(target, N, &artifact);
    let store = StateStore::new(aws.clone(), stack.target.state.clone());
    store.ensure_bucket().await.unwrap();
    // Taken once the plan is made, so that a slow plan on a busy machine cannot use up the
    // lock's time before the apply starts.
    let take = |command: &str, ttl: u64| {
        lock::acquire(
            &store,
            "n60",
            LockInfo::for_this_process(command).with_ttl(Duration::from_secs(ttl)),
            Duration::ZERO,
        )
    };
    let plan_now = || async {
        let stored = store.load().await.unwrap();
        let plan = infra::cli::plan_stack(&aws, &stack, &store, &stored, Default::default(), None)
            .await
            .unwrap();
        (stored, plan)
    };

    let (stored, plan) = plan_now().await;
    let guard = take("apply", 12).await.unwrap();
    let usurper = holder("elsewhere", 7, chrono::Duration::minutes(30));
    let first_done = std::sync::Arc::new(tokio::sync::Notify::new());
    let taker = {
        let (store, usurper, first_done) = (store.clone(), usurper.clone(), first_done.clone());
        tokio::spawn(async move {
            first_done.notified().await;
            plant_lock(&store, &usurper).await;
        })
    };
    let options = ApplyOptions {
        parallelism: 1,
        lock: Some(guard.watch()),
        ..ApplyOptions::default()
    };
    let on_event = |event: infra_core::apply::Event| {
        if matches!(event, infra_core::apply::Event::Finished { .. }) {
            first_done.notify_one();
        }
    };
    let stopped =
        infra::cli::apply_plan(&slow_aws, &store, &stored, &plan, options, &on_event).await;
    taker.await.unwrap();
    let error = stopped.expect_err("the apply stops").to_string();
    assert!(
        error.contains("taken over") && error.contains(&usurper.id) && error.contains("elsewhere"),
        "names the new holder: {error}"
    );
    assert!(guard.lost());
    let recorded = store.load().await.unwrap().doc.unwrap().resources.len();
    assert!(
        recorded > 0 && recorded < plan.summary.create,
        "state holds what finished ({recorded} of {})",
        plan.summary.create
    );
    let released = guard.release().await;
    assert!(
        matches!(&released, Err(StateError::NotHeld(_, current)) if current.contains("elsewhere")),
        "{released:?}"
    );
    assert_eq!(lock::read(&store).await.unwrap(), Some(usurper.clone()));

    lock::release(&store, &usurper.id).await.unwrap();
    let (stored, plan) = plan_now().await;
    assert_eq!(plan.summary.create, N - recorded, "the rest is still to do");
    let guard = take("re-run", 600).await.unwrap();
    let options = ApplyOptions {
        lock: Some(guard.watch()),
        ..ApplyOptions::default()
    };
    infra::cli::apply_plan(&aws, &store, &stored, &plan, options, &|_| {})
        .await
        .unwrap();
    guard.release().await.unwrap();
    let (_, plan) = plan_now().await;
    assert!(!plan.has_changes(), "converged");
}

/// A holder that stalled past its expiry while another took the lock over must not delete
/// the new lock when it resumes and releases.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_holders_release_leaves_the_new_lock() {
    let moto = Moto::start();
    let store = store(&moto, "stalled").await;
    // A long time to live: the heartbeat sleeps through the test, as a stalled one would.
    let guard = lock::acquire(
        &store,
        "local",
        LockInfo::for_this_process("stalled").with_ttl(Duration::from_secs(600)),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let usurper = holder("elsewhere", 7, chrono::Duration::minutes(30));
    plant_lock(&store, &usurper).await;
    let released = guard.release().await;
    assert!(
        matches!(&released, Err(StateError::NotHeld(_, current)) if current.contains("elsewhere")),
        "{released:?}"
    );
    assert_eq!(lock::read(&store).await.unwrap(), Some(usurper));
}

/// `acquire` gives up at its timeout: behind a live holder, and when S3 answers every
/// conditional write with 409 (retried, but not past the deadline or the 409 grace).
#[tokio::test(flavor = "multi_thread")]
async fn acquire_gives_up_at_its_timeout() {
    let moto = Moto::start();
    let store = store(&moto, "deadline").await;
    let live = holder("elsewhere", 7, chrono::Duration::minutes(30));
    plant_lock(&store, &live).await;
    let timeout = Duration::from_secs(2);
    let started = std::time::Instant::now();
    let taken = lock::acquire(&store, "local", LockInfo::for_this_process("t"), timeout).await;
    assert!(
        matches!(&taken, Err(StateError::Locked(m)) if m.contains("elsewhere")),
        "{taken:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(2),
        "gave up after {waited:?}"
    );

    lock::release(&store, &live.id).await.unwrap();
    moto.layer()
        .never_clear(testkit::aws_behaviour::Rule::S3ConditionalConflict);
    let timeout = Duration::from_secs(8);
    let started = std::time::Instant::now();
    let taken = lock::acquire(&store, "local", LockInfo::for_this_process("t"), timeout).await;
    assert!(
        matches!(&taken, Err(StateError::Locked(m)) if m.contains("ConditionalRequestConflict")),
        "{taken:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(3),
        "gave up after {waited:?}"
    );
    moto.layer()
        .clear(testkit::aws_behaviour::Rule::S3ConditionalConflict);
}

/// The state bucket bounds its history: lock objects carry the tag its lifecycle rule expires
/// their old versions by, state keeps its versions for the stated days, and rules of the
/// bucket's owner are kept.
#[tokio::test(flavor = "multi_thread")]
async fn the_state_bucket_expires_old_lock_versions_and_keeps_other_rules() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    };
    let moto = Moto::start();
    let store = store(&moto, "lifecycle").await;
    let s3 = testkit::s3_client(&moto.sdk_config().await);
    let rules = || async {
        s3.get_bucket_lifecycle_configuration()
            .bucket(STATE_BUCKET)
            .send()
            .await
            .unwrap()
            .rules()
            .to_vec()
    };
    let days = |rules: &[LifecycleRule], id: &str| {
        rules
            .iter()
            .find(|r| r.id() == Some(id))
            .and_then(|r| r.noncurrent_version_expiration())
            .and_then(|n| n.noncurrent_days())
    };
    let found = rules().await;
    assert_eq!(days(&found, "infra-lock-versions"), Some(1), "{found:?}");
    assert_eq!(days(&found, "infra-state-history"), Some(90), "{found:?}");
    let lock_rule = found
        .iter()
        .find(|r| r.id() == Some("infra-lock-versions"))
        .unwrap();
    let tag = lock_rule.filter().and_then(|f| f.tag()).unwrap();

    let guard = lock::acquire(
        &store,
        "local",
        LockInfo::for_this_process("t"),
        Duration::ZERO,
    )
    .await
    .unwrap();
    let tags = s3
        .get_object_tagging()
        .bucket(STATE_BUCKET)
        .key(store.key("lock.json"))
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_set()
            .iter()
            .any(|t| t.key() == tag.key() && t.value() == tag.value()),
        "the lock carries the rule's tag: {tags:?}"
    );
    guard.release().await.unwrap();

    // The owner's own rule survives the engine making sure of its rules.
    let mut mine = found.clone();
    mine.retain(|r| r.id() != Some("infra-lock-versions"));
    mine.push(
        LifecycleRule::builder()
            .id("owner-archive")
            .filter(LifecycleRuleFilter::builder().prefix("archive/").build())
            .status(ExpirationStatus::Enabled)
            .expiration(LifecycleExpiration::builder().days(400).build())
            .build()
            .unwrap(),
    );
    s3.put_bucket_lifecycle_configuration()
        .bucket(STATE_BUCKET)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(mine))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    store.ensure_bucket().await.unwrap();
    let found = rules().await;
    assert_eq!(
        days(&found, "infra-lock-versions"),
        Some(1),
        "restored: {found:?}"
    );
    assert!(
        found.iter().any(|r| r.id() == Some("owner-archive")),
        "{found:?}"
    );
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

/// A small deterministic generator (xorshift): the same kill points on every run unless
/// `CRASH_SEED` names others (the seed is printed, so a failing trial can be replayed).
struct Random(u64);

/// The kill points `make test` uses.
const CRASH_SEED: u64 = 20_261_201;

impl Random {
    fn seeded() -> (Random, u64) {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(CRASH_SEED);
        (Random(seed.max(1)), seed)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Starts `infra args`, SIGKILLs it after `after` (unless it ended first) and reaps it.
/// Returns whether it was still running when killed.
fn kill_after(moto: &Moto, args: &[&str], after: Duration) -> bool {
    let mut child = testkit::infra_command(BIN, Some(moto), args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + after;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    true
}

/// Resources of the account still tagged for `env`. moto's tagging API keeps answering for
/// Glue databases and crawlers after they are deleted, so those are checked with Glue itself.
async fn tagged_for(
    tagging: &aws_sdk_resourcegroupstagging::Client,
    glue: &aws_sdk_glue::Client,
    env: &str,
) -> Vec<String> {
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = tagging
            .get_resources()
            .set_pagination_token(token.clone())
            .send()
            .await
            .unwrap();
        for mapping in out.resource_tag_mapping_list() {
            let ours = mapping
                .tags()
                .iter()
                .any(|t| t.key() == "infra:env" && t.value() == env);
            let Some(arn) = mapping.resource_arn().filter(|_| ours) else {
                continue;
            };
            let exists = if let Some(name) = arn.split(":database/").nth(1) {
                glue.get_database().name(name).send().await.is_ok()
            } else if let Some(name) = arn.split(":crawler/").nth(1) {
                glue.get_crawler().name(name).send().await.is_ok()
            } else {
                true
            };
            if exists {
                arns.push(arn.to_string());
            }
        }
        token = out
            .pagination_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    arns
}

/// Kill `infra apply` (SIGKILL) at random points across many trials, each on a fresh instance
/// of the local stack; then kill `infra destroy` the same way. After every kill a plain re-run
/// (no manual unlock) converges: drift finds no change, nothing missing and no orphan, and no
/// resource exists twice; after the destroy re-run nothing tagged for the instance is left.
#[tokio::test(flavor = "multi_thread")]
async fn apply_and_destroy_killed_at_random_points_converge_on_rerun() {
    // Eight trials (sixteen kills) in `make test`; `make test-crash` runs forty. Fewer than
    // four would prove little, so they are refused rather than passed.
    const MIN_TRIALS: usize = 4;
    let trials: usize = std::env::var("CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    assert!(
        trials >= MIN_TRIALS,
        "CRASH_TRIALS={trials}: at least {MIN_TRIALS} trials are needed"
    );
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let tagging = aws_sdk_resourcegroupstagging::Client::new(&sdk);
    let athena = aws_sdk_athena::Client::new(&sdk);
    let sns = aws_sdk_sns::Client::new(&sdk);
    let glue = aws_sdk_glue::Client::new(&sdk);
    let (mut random, seed) = Random::seeded();

    // A first apply and destroy wake moto's services (its first calls are slow); the second
    // pair times a whole apply and destroy: the range the kills are drawn from.
    let mut times = Vec::new();
    for instance in ["crash-warmup", "crash-ref"] {
        let started = std::time::Instant::now();
        let apply = [
            "apply",
            "--env",
            "local",
            "--instance",
            instance,
            "--auto-approve",
        ];
        let run = infra(BIN, Some(&moto), &apply);
        assert_eq!(run.code, 0, "{}", run.all());
        let apply_time = started.elapsed();
        let started = std::time::Instant::now();
        let destroy = [
            "destroy",
            "--env",
            "local",
            "--instance",
            instance,
            "--purge-data",
            "--auto-approve",
        ];
        let run = infra(BIN, Some(&moto), &destroy);
        assert_eq!(run.code, 0, "{}", run.all());
        times.push((apply_time, started.elapsed()));
    }
    let (apply_time, destroy_time) = times[1];
    eprintln!(
        "crash trials: seed {seed}, whole apply {:.1}s, whole destroy {:.1}s",
        apply_time.as_secs_f64(),
        destroy_time.as_secs_f64()
    );

    let (mut applies_killed, mut destroys_killed) = (0, 0);
    for trial in 0..trials {
        let instance = format!("crash-{trial}");
        let env_name = format!("local-{instance}");
        let apply = [
            "apply",
            "--env",
            "local",
            "--instance",
            &instance,
            "--auto-approve",
        ];
        let after = apply_time.mul_f64(random.next());
        if kill_after(&moto, &apply, after) {
            applies_killed += 1;
        }
        let rerun = infra(BIN, Some(&moto), &apply);
        assert_eq!(
            rerun.code,
            0,
            "trial {trial} (seed {seed}, killed after {after:?}): re-run: {}",
            rerun.all()
        );
        let drift = infra(
            BIN,
            Some(&moto),
            &["drift", "--env", "local", "--instance", &instance],
        );
        assert_eq!(
            drift.code,
            0,
            "trial {trial} (seed {seed}, killed after {after:?}): drift: {}",
            drift.all()
        );
        // Kinds whose creation is not idempotent by name: named queries and subscriptions.
        let workgroup = format!("linkedin-ads-{env_name}-analytics");
        let ids = athena
            .list_named_queries()
            .work_group(&workgroup)
            .send()
            .await
            .unwrap();
        let mut names = Vec::new();
        for id in ids.named_query_ids() {
            let q = athena
                .get_named_query()
                .named_query_id(id)
                .send()
                .await
                .unwrap();
            names.extend(q.named_query().map(|q| q.name().to_string()));
        }
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(
            unique.len(),
            names.len(),
            "trial {trial}: duplicate named queries {names:?}"
        );
        let topics = sns.list_topics().send().await.unwrap();
        for topic in topics.topics().iter().filter_map(|t| t.topic_arn()) {
            if !topic.contains(&env_name) {
                continue;
            }
            let subs = sns
                .list_subscriptions_by_topic()
                .topic_arn(topic)
                .send()
                .await
                .unwrap();
            let endpoints: Vec<_> = subs
                .subscriptions()
                .iter()
                .filter_map(|s| s.endpoint())
                .collect();
            let unique: std::collections::BTreeSet<_> = endpoints.iter().collect();
            assert_eq!(
                unique.len(),
                endpoints.len(),
                "trial {trial}: duplicate subscriptions"
            );
        }

        // Now kill the destroy, and finish it.
        let destroy = [
            "destroy",
            "--env",
            "local",
            "--instance",
            &instance,
            "--purge-data",
            "--auto-approve",
        ];
        let after = destroy_time.mul_f64(random.next());
        if kill_after(&moto, &destroy, after) {
            destroys_killed += 1;
        }
        let rerun = infra(BIN, Some(&moto), &destroy);
        assert_eq!(
            rerun.code,
            0,
            "trial {trial} (seed {seed}, destroy killed after {after:?}): {}",
            rerun.all()
        );
        let left = tagged_for(&tagging, &glue, &env_name).await;
        assert!(left.is_empty(), "trial {trial}: left behind: {left:?}");
    }
    eprintln!(
        "crash trials: {trials} trials, {applies_killed} applies and {destroys_killed} destroys \
         killed mid-run, every re-run converged"
    );
    assert!(applies_killed >= trials / 2, "most kills land mid-apply");
    assert!(destroys_killed >= trials / 2, "most kills land mid-destroy");
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `infra args` with the SDK pointed at `endpoint` (the fault proxy) instead of moto.
fn infra_via(moto: &Moto, endpoint: &str, args: &[&str]) -> (testkit::Run, Duration) {
    let started = std::time::Instant::now();
    let output = testkit::infra_command(BIN, Some(moto), args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .output()
        .unwrap();
    (testkit::Run::from_output(output), started.elapsed())
}

/// With a fifth of all calls failing (throttled, 500, dropped) or slow, apply, plan and drift
/// still converge through the SDK's retries; with every call failing they stop within the
/// retry budget with a clear error, and the state stays valid.
#[tokio::test(flavor = "multi_thread")]
async fn apply_and_plan_converge_through_faults_and_stop_cleanly_when_everything_fails() {
    let moto = Moto::start();
    let upstream = moto.endpoint();
    let seed = 20_261_126;
    let proxy = testkit::fault_proxy::FaultProxy::start(&upstream, 0.2, seed);
    let instance = ["--env", "local", "--instance", "faults"];
    let with = |command: &str, extra: &[&'static str]| -> Vec<String> {
        let mut args = vec![command.to_string()];
        args.extend(instance.iter().map(|s| s.to_string()));
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    let apply = with("apply", &["--auto-approve"]);
    let (run, took) = infra_via(&moto, &proxy.endpoint(), &strs(&apply));
    assert_eq!(run.code, 0, "apply through 20% faults: {}", run.all());
    let plan = with("plan", &["--detailed-exitcode"]);
    let (run, _) = infra_via(&moto, &proxy.endpoint(), &strs(&plan));
    assert_eq!(run.code, 0, "no-op plan through 20% faults: {}", run.all());
    let drift = with("drift", &[]);
    let (run, _) = infra_via(&moto, &proxy.endpoint(), &strs(&drift));
    assert_eq!(run.code, 0, "drift through 20% faults: {}", run.all());
    let counts = proxy.counts();
    eprintln!(
        "20% faults: apply took {:.1}s; {} calls, {} throttled, {} 500s, {} dropped, {} slow; all recovered",
        took.as_secs_f64(),
        counts.calls,
        counts.throttled,
        counts.server_errors,
        counts.dropped,
        counts.slow
    );
    assert!(counts.failed() >= 20, "faults were injected: {counts:?}");
    // And the same state, read without the proxy: a no-op.
    let run = infra(BIN, Some(&moto), &strs(&plan));
    assert_eq!(run.code, 0, "{}", run.all());

    // Every call fails: the commands give up within the SDK's retry budget, saying why.
    use testkit::fault_proxy::{Fault, FaultProxy};
    let broken = FaultProxy::start_with(
        &upstream,
        1.0,
        seed,
        &[Fault::Throttled, Fault::ServerError, Fault::Dropped],
    );
    for args in [&plan, &apply] {
        let (run, took) = infra_via(&moto, &broken.endpoint(), &strs(args));
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            took < Duration::from_secs(120),
            "{} stopped after {took:?}",
            args[0]
        );
        assert!(run.stderr.contains("error:"), "{}", run.all());
        assert!(!run.stderr.contains("panicked"), "{}", run.all());
        eprintln!(
            "100% faults: `infra {}` stopped after {:.1}s: {}",
            args[0],
            took.as_secs_f64(),
            run.stderr
                .lines()
                .find(|l| l.contains("error"))
                .unwrap_or_default()
        );
    }
    // State is intact and unlocked: a plan without faults is still a no-op.
    let store = store(&moto, "linkedin-ads/local/faults").await;
    assert!(store.load().await.unwrap().doc.is_some());
    assert_eq!(lock::read(&store).await.unwrap(), None);
    let run = infra(BIN, Some(&moto), &strs(&plan));
    assert_eq!(run.code, 0, "{}", run.all());

    // Half the calls fail and the rest are slow: an apply of a change fails part-way, and
    // whatever it left (its lock included, if releasing it failed too) is recovered by a
    // plain re-run.
    let flaky = FaultProxy::start_with(
        &upstream,
        1.0,
        seed,
        &[Fault::Dropped, Fault::ServerError, Fault::Slow, Fault::Slow],
    );
    let envs = testkit::envs_copy();
    let path = envs.path().join("local.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("retention_days = 14", "retention_days = 30"),
    )
    .unwrap();
    let dir = envs.path().to_str().unwrap().to_string();
    let change = [&apply[..], &["--envs-dir".to_string(), dir.clone()]].concat();
    let (run, _) = infra_via(&moto, &flaky.endpoint(), &strs(&change));
    eprintln!("flaky apply of a change exited {}", run.code);
    assert!(store.load().await.unwrap().doc.is_some(), "state parses");
    let run = infra(BIN, Some(&moto), &strs(&change));
    assert_eq!(run.code, 0, "re-run converges: {}", run.all());
    let check = [&plan[..], &["--envs-dir".to_string(), dir]].concat();
    let run = infra(BIN, Some(&moto), &strs(&check));
    assert_eq!(run.code, 0, "then a no-op: {}", run.all());
}

/// Rate limits from the env file hold end to end: at the proxy, calls to each limited
/// service never exceed the token-bucket bound (burst + rate x time) between any two calls.
#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limits_of_the_env_file_hold_at_the_wire() {
    let moto = Moto::start();
    let proxy = testkit::fault_proxy::FaultProxy::start(&moto.endpoint(), 0.0, 1);
    let envs = testkit::envs_copy();
    let path = envs.path().join("local.toml");
    let limits = [("cloudwatch", "monitoring", 3.0), ("logs", "logs", 2.0)];
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[rate_limits]\n");
    for (name, _, rate) in limits {
        text.push_str(&format!("{name} = {rate}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let dir = envs.path().to_str().unwrap();
    let args = [
        "apply",
        "--env",
        "local",
        "--instance",
        "limits",
        "--auto-approve",
        "--envs-dir",
        dir,
    ];
    let (run, took) = infra_via(&moto, &proxy.endpoint(), &args);
    assert_eq!(run.code, 0, "{}", run.all());
    for (name, signing, rate) in limits {
        let times = proxy.arrivals(signing);
        assert!(
            times.len() as f64 > 3.0 * rate,
            "{name}: {} calls",
            times.len()
        );
        let burst = rate;
        // Requests leave the limiter before they reach the proxy: on a loaded machine their
        // arrivals can bunch by hundreds of milliseconds, so the bound allows a second of
        // slack. Unlimited, the alarms alone arrive a dozen within half a second.
        let slack = 1.0;
        for i in 0..times.len() {
            for j in i..times.len() {
                let count = (j - i + 1) as f64;
                let bound = burst + rate * (times[j] - times[i] + slack);
                assert!(
                    count <= bound,
                    "{name}: {count} calls within {:.3}s exceeds {bound:.2} (limit {rate}/s): {times:?}",
                    times[j] - times[i]
                );
            }
        }
        let span = times.last().unwrap() - times.first().unwrap();
        eprintln!(
            "{name} limited to {rate}/s: {} calls over {span:.1}s ({:.2}/s); apply took {:.1}s",
            times.len(),
            (times.len() as f64 - burst) / span.max(0.001),
            took.as_secs_f64()
        );
    }
    // A limit that is not a service, or not positive, is rejected naming the field.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("logs = 2", "logs = 0\nlamda = 3");
    std::fs::write(&path, text).unwrap();
    let run = infra(BIN, None, &["plan", "--env", "local", "--envs-dir", dir]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("rate_limits.logs") && run.stderr.contains("rate_limits.lamda"),
        "{}",
        run.all()
    );
}
