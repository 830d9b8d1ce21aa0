//! The AWS-behaviour layer: an HTTP proxy between the AWS SDK and moto that makes moto answer
//! the way real AWS does where the two differ in ways the engine must handle. moto answers 200
//! where AWS answers 400, returns ARNs where AWS returns names, and has no propagation delays,
//! no eventually consistent listings and no conflicts; each [`Rule`] puts one of those back.
//!
//! Every rule cites where the behaviour is documented: an entry of
//! `shared/docs/aws-behaviors.md` (how the Terraform AWS provider handles the kind, which is
//! what real AWS has been seen to do) or AWS's own documentation. Rules keep a log of what they
//! did ([`Hit`]), so a test can assert that the engine met the behaviour and handled it (the
//! retry happened, the wait happened, the refusal happened).
//!
//! One behaviour is always on: S3's conditional writes are atomic, moto's are not under load
//! (two `If-Match` writes of one ETag can both succeed), so the layer sends conditional
//! PutObjects to moto one at a time.
//!
//! Windows are measured from the call that opens them (a role created, a function updated, a
//! secret deleted). A rule can be made to never clear ([`AwsBehaviour::never_clear`]) to prove
//! that the engine's retries are bounded, then cleared to prove that a re-run converges.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::wire::{Request, Response, forward, read_request};

/// One behaviour of real AWS that moto lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// Athena answers a missing workgroup (GetWorkGroup, DeleteWorkGroup) with 400
    /// `InvalidRequestException` "WorkGroup NAME is not found." and a missing named query
    /// (GetNamedQuery) with "... does not exist" (moto: 200 with no workgroup, 500).
    AthenaNotFound,
    /// CreateWorkGroup of an existing name: `InvalidRequestException` "WorkGroup is already
    /// created" (moto says "already exists").
    AthenaAlreadyCreated,
    /// Glue returns a crawler's role as a name, not as the ARN it was given.
    CrawlerRoleAsName,
    /// A role created or given a new trust policy cannot be assumed for a while: Lambda
    /// CreateFunction / UpdateFunctionConfiguration answer `InvalidParameterValueException`
    /// "The role defined for the function cannot be assumed by Lambda.", Glue CreateCrawler /
    /// UpdateCrawler `InvalidInputException` "Service is unable to assume provided role".
    IamPropagation,
    /// A new function is `State: Pending` for a while; every write to it meanwhile answers 409
    /// `ResourceConflictException` "... currently in the following state: Pending".
    LambdaPending,
    /// After UpdateFunctionCode / UpdateFunctionConfiguration the function is
    /// `LastUpdateStatus: InProgress` for a while; further updates answer 409
    /// `ResourceConflictException` "An update is in progress for resource: ARN".
    LambdaUpdateInProgress,
    /// Permission changes sent in parallel to one function: all but one are silently lost
    /// (answered as if applied, never stored).
    LambdaPolicyRace,
    /// The first PutTargets / RemoveTargets of each rule answers 200 with every entry in
    /// `FailedEntries` (`ConcurrentModificationException`).
    EventBridgeFailedEntries,
    /// DeleteRule right after its targets were removed answers `ValidationException` "Rule
    /// can't be deleted since it has targets." until EventBridge catches up.
    EventBridgeTargetsSettling,
    /// A deleted secret's name stays taken for a while (forced delete) or until restored
    /// (recovery window): CreateSecret answers `InvalidRequestException` "... already
    /// scheduled for deletion."
    SecretNamePendingDeletion,
    /// ListSecrets lags behind writes: a new secret is missing for a while, a deleted one is
    /// still listed.
    SecretsListLag,
    /// The tagging API's GetResources lags behind writes in the same way.
    TaggingListLag,
    /// Every third conditional PutObject (`If-Match`, `If-None-Match`) answers 409
    /// `ConditionalRequestConflict`: S3 says to retry it.
    S3ConditionalConflict,
    /// Right after CreateTopic / CreateLogGroup, SetTopicAttributes / PutRetentionPolicy are
    /// denied while tag-based (ABAC) permissions propagate.
    AbacPropagation,
    /// RotateSecret right after the rotation function's invoke permission was added answers
    /// `AccessDeniedException`: Secrets Manager cannot invoke the function yet.
    RotationInvokePropagation,
    /// A deleted bucket's name cannot be created again for a while (409 `OperationAborted`),
    /// and a new bucket answers `NoSuchBucket` to configuration writes for a moment.
    S3BucketSettling,
    /// DeleteRole right after its policies were detached or deleted answers 409
    /// `DeleteConflict` until IAM catches up.
    IamDeleteConflict,
    /// The first DeleteLogGroup of each group answers `OperationAbortedException` "... try
    /// again".
    LogsDeleteAborted,
    /// E-mail subscriptions are listed as `PendingConfirmation` until someone confirms them.
    SnsPendingConfirmation,
    /// CloudFormation works asynchronously: a new change set is `CREATE_IN_PROGRESS` (and
    /// cannot be executed) for a while, and a stack being created, updated or deleted is
    /// `*_IN_PROGRESS` before it settles (moto finishes each inside the call).
    CloudFormationInProgress,
}

impl Rule {
    pub const ALL: [Rule; 20] = [
        Rule::AthenaNotFound,
        Rule::AthenaAlreadyCreated,
        Rule::CrawlerRoleAsName,
        Rule::IamPropagation,
        Rule::LambdaPending,
        Rule::LambdaUpdateInProgress,
        Rule::LambdaPolicyRace,
        Rule::EventBridgeFailedEntries,
        Rule::EventBridgeTargetsSettling,
        Rule::SecretNamePendingDeletion,
        Rule::SecretsListLag,
        Rule::TaggingListLag,
        Rule::S3ConditionalConflict,
        Rule::AbacPropagation,
        Rule::RotationInvokePropagation,
        Rule::S3BucketSettling,
        Rule::IamDeleteConflict,
        Rule::LogsDeleteAborted,
        Rule::SnsPendingConfirmation,
        Rule::CloudFormationInProgress,
    ];

    /// A stable name, as tests and logs print it.
    pub fn name(self) -> &'static str {
        match self {
            Rule::AthenaNotFound => "athena-not-found",
            Rule::AthenaAlreadyCreated => "athena-already-created",
            Rule::CrawlerRoleAsName => "crawler-role-as-name",
            Rule::IamPropagation => "iam-propagation",
            Rule::LambdaPending => "lambda-pending",
            Rule::LambdaUpdateInProgress => "lambda-update-in-progress",
            Rule::LambdaPolicyRace => "lambda-policy-race",
            Rule::EventBridgeFailedEntries => "eventbridge-failed-entries",
            Rule::EventBridgeTargetsSettling => "eventbridge-targets-settling",
            Rule::SecretNamePendingDeletion => "secret-name-pending-deletion",
            Rule::SecretsListLag => "secrets-list-lag",
            Rule::TaggingListLag => "tagging-list-lag",
            Rule::S3ConditionalConflict => "s3-conditional-conflict",
            Rule::AbacPropagation => "abac-propagation",
            Rule::RotationInvokePropagation => "rotation-invoke-propagation",
            Rule::S3BucketSettling => "s3-bucket-settling",
            Rule::IamDeleteConflict => "iam-delete-conflict",
            Rule::LogsDeleteAborted => "logs-delete-aborted",
            Rule::SnsPendingConfirmation => "sns-pending-confirmation",
            Rule::CloudFormationInProgress => "cloudformation-in-progress",
        }
    }

    /// Where the behaviour is documented.
    pub fn source(self) -> &'static str {
        match self {
            Rule::AthenaNotFound => {
                "aws-behaviors.md, aws_athena_workgroup / aws_athena_named_query: Not found"
            }
            Rule::AthenaAlreadyCreated => "issue 16; aws-behaviors.md, aws_athena_workgroup",
            Rule::CrawlerRoleAsName => {
                "aws-behaviors.md, aws_glue_crawler: Read-shape quirks (role: Glue API always returns name)"
            }
            Rule::IamPropagation => {
                "aws-behaviors.md, aws_lambda_function: Retries; aws_glue_crawler: Retries"
            }
            Rule::LambdaPending => {
                "aws-behaviors.md, aws_lambda_function: Waits (Pending -> Active); AWS Lambda guide, Lambda function states"
            }
            Rule::LambdaUpdateInProgress => {
                "aws-behaviors.md, aws_lambda_function: Waits (InProgress -> Successful), Retries (ResourceConflictException)"
            }
            Rule::LambdaPolicyRace => {
                "aws-behaviors.md, aws_lambda_permission: Retries (per-function mutex: permissions ignored when sent in parallel)"
            }
            Rule::EventBridgeFailedEntries => {
                "aws-behaviors.md, aws_cloudwatch_event_target: PutTargets/RemoveTargets FailedEntries inside HTTP 200; EventBridge API, PutTargetsResultEntry.ErrorCode"
            }
            Rule::EventBridgeTargetsSettling => {
                "aws-behaviors.md, aws_cloudwatch_event_rule: Retries (DeleteRule \"Rule can't be deleted since it has targets\")"
            }
            Rule::SecretNamePendingDeletion => {
                "aws-behaviors.md, aws_secretsmanager_secret: Retries (CreateSecret \"scheduled for deletion\")"
            }
            Rule::SecretsListLag => {
                "Secrets Manager API, ListSecrets: eventually consistent; aws-behaviors.md, aws_secretsmanager_secret (polls until found)"
            }
            Rule::TaggingListLag => {
                "Resource Groups Tagging API, GetResources: eventually consistent; aws-behaviors.md, Conventions (tags)"
            }
            Rule::S3ConditionalConflict => {
                "S3 user guide, conditional requests: 409 ConditionalRequestConflict, retry"
            }
            Rule::AbacPropagation => {
                "aws-behaviors.md, aws_sns_topic: Retries (AuthorizationErrorException after CreateTopic); aws_cloudwatch_log_group: Retries (PutRetentionPolicy AccessDeniedException)"
            }
            Rule::RotationInvokePropagation => {
                "aws-behaviors.md, aws_secretsmanager_secret_rotation: Retries (RotateSecret AccessDeniedException)"
            }
            Rule::S3BucketSettling => {
                "aws-behaviors.md, aws_s3_bucket: Retries (CreateBucket OperationAborted; Puts retry NoSuchBucket)"
            }
            Rule::IamDeleteConflict => {
                "aws-behaviors.md, aws_iam_role: Retries (DeleteRole retries DeleteConflictException)"
            }
            Rule::LogsDeleteAborted => {
                "aws-behaviors.md, aws_cloudwatch_log_group: Retries (DeleteLogGroup OperationAbortedException \"try again\")"
            }
            Rule::SnsPendingConfirmation => {
                "aws-behaviors.md, aws_sns_topic_subscription: Waits (no wait for email; PendingConfirmation)"
            }
            Rule::CloudFormationInProgress => {
                "CloudFormation API reference, CreateChangeSet / ExecuteChangeSet / DeleteStack (asynchronous; AWS CLI waiters change-set-create-complete, stack-*-complete); terraform-provider-aws aws_cloudformation_stack waiters"
            }
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How long each kind of window stays open.
#[derive(Clone, Debug)]
pub struct Windows {
    /// IAM, ABAC and invoke-permission propagation.
    pub propagation: Duration,
    /// A new function's `Pending` state.
    pub lambda_pending: Duration,
    /// A function's `LastUpdateStatus: InProgress` after an update.
    pub lambda_update: Duration,
    /// A force-deleted secret's or a deleted bucket's name.
    pub deletion: Duration,
    /// How far ListSecrets and GetResources lag behind writes.
    pub listing_lag: Duration,
    /// A new bucket answering `NoSuchBucket`; a role's policies after they were detached.
    pub settle: Duration,
    /// A CloudFormation change set being created, a stack operation running.
    pub stack_operation: Duration,
}

impl Windows {
    /// Short windows for the end-to-end suites: every rule fires, the suites stay fast.
    /// (`tests/aws_behaviour.rs` holds them open for 8 s and more.)
    pub fn suite() -> Windows {
        Windows {
            propagation: Duration::from_secs(1),
            lambda_pending: Duration::from_secs(1),
            lambda_update: Duration::from_secs(1),
            deletion: Duration::from_secs(1),
            listing_lag: Duration::from_secs(2),
            settle: Duration::from_millis(300),
            stack_operation: Duration::from_secs(1),
        }
    }

    /// Every window at least `seconds` long (settling stays short: a moment).
    pub fn at_least(seconds: u64) -> Windows {
        let d = Duration::from_secs(seconds);
        Windows {
            propagation: d,
            lambda_pending: d,
            lambda_update: d,
            deletion: d,
            listing_lag: d,
            settle: Duration::from_secs(1),
            stack_operation: d,
        }
    }
}

/// Which rules are on and their windows.
#[derive(Clone, Debug)]
pub struct Config {
    pub rules: BTreeSet<Rule>,
    pub windows: Windows,
}

impl Config {
    /// Every rule, with the suites' short windows.
    pub fn suite() -> Config {
        Config {
            rules: Rule::ALL.into_iter().collect(),
            windows: Windows::suite(),
        }
    }

    /// Every rule, each window at least `seconds` long.
    pub fn every_rule(seconds: u64) -> Config {
        Config {
            rules: Rule::ALL.into_iter().collect(),
            windows: Windows::at_least(seconds),
        }
    }

    /// No rule: moto as it is (the proxy forwards everything).
    pub fn none() -> Config {
        Config {
            rules: BTreeSet::new(),
            windows: Windows::suite(),
        }
    }

    pub fn only(rules: &[Rule], windows: Windows) -> Config {
        Config {
            rules: rules.iter().copied().collect(),
            windows,
        }
    }
}

/// One thing a rule did.
#[derive(Clone, Debug)]
pub struct Hit {
    pub rule: Rule,
    /// The operation it acted on, e.g. `CreateFunction`.
    pub operation: String,
    /// The resource's name (function, role, secret, bucket, ARN ...).
    pub resource: String,
    /// What it did, in words.
    pub what: String,
    /// Seconds since the layer started.
    pub at: f64,
}

/// The running layer; stops when dropped.
pub struct AwsBehaviour {
    port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: String,
    config: Mutex<Config>,
    never_clear: Mutex<BTreeSet<Rule>>,
    world: Mutex<World>,
    started: Instant,
    stop: AtomicBool,
    /// Set by the first request through the layer: the tagging poller idles until then.
    active: AtomicBool,
    /// Set by every write through the layer (and by [`AwsBehaviour::wait_for_listings`]):
    /// the tagging poller looks again soon after one, and only every [`TAGGING_HEARTBEAT`]
    /// otherwise (for what a test changes in moto directly). A full listing costs moto tens
    /// of milliseconds of CPU; polling it while nothing changes was a tenth of a core per
    /// test.
    listing_dirty: AtomicBool,
    /// Tagging polls begun so far (one thread polls, in turn), and the number of the latest
    /// one whose listing is recorded.
    tagging_polls_begun: AtomicU64,
    tagging_listed_upto: AtomicU64,
    /// Held while a conditional PutObject is at moto.
    conditional_writes: Mutex<()>,
}

/// What the rules remember between calls.
#[derive(Default)]
struct World {
    /// Role name -> when it was created or its trust policy changed.
    roles_changed: HashMap<String, Instant>,
    /// Role name -> when a policy was last detached or deleted.
    roles_detached: HashMap<String, Instant>,
    functions_created: HashMap<String, Instant>,
    functions_updated: HashMap<String, Instant>,
    /// Function -> permission writes in flight now.
    permission_in_flight: HashMap<String, usize>,
    /// Function -> when a `secretsmanager.amazonaws.com` permission was added.
    rotation_permission: HashMap<String, Instant>,
    /// (operation, rule) pairs whose first target call has failed already.
    targets_failed_once: HashSet<(String, String)>,
    /// Rule name -> when targets were last removed from it.
    targets_removed: HashMap<String, Instant>,
    secrets_created: HashMap<String, Instant>,
    /// Secret name -> when it was deleted, and whether it was forced (else: scheduled).
    secrets_deleted: HashMap<String, (Instant, bool)>,
    /// The last ListSecrets entry seen for each secret: what a lagging listing still shows.
    secrets_listed: HashMap<String, Value>,
    topics_created: HashMap<String, Instant>,
    log_groups_created: HashMap<String, Instant>,
    log_groups_delete_failed: HashSet<String>,
    buckets_created: HashMap<String, Instant>,
    buckets_deleted: HashMap<String, Instant>,
    /// Change set ARN -> when it was created, its stack's ARN and name, and its type.
    change_sets: HashMap<String, (Instant, String, String, String)>,
    /// Stack name or ARN -> when an operation started on it and which (`CREATE`, `UPDATE`,
    /// `DELETE`).
    stack_operations: HashMap<String, (Instant, String)>,
    conditional_writes: u64,
    /// ARN -> what the tagging poller saw of it.
    tagged: HashMap<String, Seen>,
    hits: Vec<Hit>,
}

#[derive(Clone, Debug)]
struct Seen {
    first: Instant,
    last: Instant,
    tags: Value,
    /// Whether the last poll still listed it.
    present: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl AwsBehaviour {
    /// Starts the layer in front of `upstream` (moto's `http://host:port`).
    pub fn start(upstream: &str, config: Config) -> AwsBehaviour {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the AWS-behaviour layer");
        let port = listener.local_addr().expect("layer address").port();
        let tagging = config.rules.contains(&Rule::TaggingListLag);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_string(),
            config: Mutex::new(config),
            never_clear: Mutex::new(BTreeSet::new()),
            world: Mutex::new(World::default()),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            active: AtomicBool::new(false),
            listing_dirty: AtomicBool::new(true),
            tagging_polls_begun: AtomicU64::new(0),
            tagging_listed_upto: AtomicU64::new(0),
            conditional_writes: Mutex::new(()),
        });
        crate::wire::serve_connections(
            listener,
            Arc::clone(&shared),
            |s| s.stop.load(Ordering::SeqCst),
            serve,
        );
        if tagging {
            let poller = Arc::clone(&shared);
            std::thread::spawn(move || poll_tagging(&poller));
        }
        AwsBehaviour { port, shared }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything the rules did so far.
    pub fn hits(&self) -> Vec<Hit> {
        lock(&self.shared.world).hits.clone()
    }

    /// What `rule` did so far.
    pub fn hits_of(&self, rule: Rule) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.rule == rule).collect()
    }

    /// A line per hit, for assertion messages.
    pub fn report(&self) -> String {
        self.hits()
            .iter()
            .map(|h| {
                format!(
                    "{:>7.2}s {:<30} {:<28} {} ({})\n",
                    h.at, h.rule, h.operation, h.resource, h.what
                )
            })
            .collect()
    }

    /// Makes `rule`'s windows never close (and its one-time failures repeat) until
    /// [`AwsBehaviour::clear`].
    pub fn never_clear(&self, rule: Rule) {
        lock(&self.shared.never_clear).insert(rule);
    }

    /// Lets `rule` clear: its windows close as configured, and a window that was held open
    /// closes now.
    pub fn clear(&self, rule: Rule) {
        lock(&self.shared.never_clear).remove(&rule);
        let mut world = lock(&self.shared.world);
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .unwrap_or_else(Instant::now);
        let reset = |m: &mut HashMap<String, Instant>| m.values_mut().for_each(|t| *t = long_ago);
        match rule {
            Rule::IamPropagation => reset(&mut world.roles_changed),
            Rule::LambdaPending => reset(&mut world.functions_created),
            Rule::LambdaUpdateInProgress => reset(&mut world.functions_updated),
            Rule::RotationInvokePropagation => reset(&mut world.rotation_permission),
            Rule::AbacPropagation => {
                reset(&mut world.topics_created);
                reset(&mut world.log_groups_created);
            }
            Rule::S3BucketSettling => {
                reset(&mut world.buckets_created);
                reset(&mut world.buckets_deleted);
            }
            Rule::IamDeleteConflict => reset(&mut world.roles_detached),
            Rule::EventBridgeTargetsSettling => reset(&mut world.targets_removed),
            Rule::SecretNamePendingDeletion => world.secrets_deleted.clear(),
            Rule::CloudFormationInProgress => {
                world.change_sets.clear();
                world.stack_operations.clear();
            }
            _ => {}
        }
    }

    /// Turns `rule` off or on.
    pub fn set(&self, rule: Rule, on: bool) {
        let mut config = lock(&self.shared.config);
        if on {
            config.rules.insert(rule);
        } else {
            config.rules.remove(&rule);
        }
    }

    /// Waits until eventually consistent listings show what was written before this call
    /// (ListSecrets, GetResources): their lag and a poll of the tagging listing.
    ///
    /// It waits for a poll that began after this call rather than for a fixed time: on a busy
    /// machine the poller can be late, and a listing that still lags fails a test that counts
    /// calls.
    pub fn wait_for_listings(&self) {
        let shared = &self.shared;
        let (lag, polled) = {
            let config = lock(&shared.config);
            (
                config.windows.listing_lag,
                config.rules.contains(&Rule::TaggingListLag),
            )
        };
        let written_before = Instant::now();
        let mut listed_since = written_before;
        if polled && shared.active.load(Ordering::SeqCst) {
            // The first poll to begin after this point sees every earlier write.
            let begun = shared.tagging_polls_begun.load(Ordering::SeqCst);
            shared.listing_dirty.store(true, Ordering::SeqCst);
            let deadline = written_before + Duration::from_secs(60);
            while shared.tagging_listed_upto.load(Ordering::SeqCst) <= begun
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            // A resource is listed from a lag after the poller first saw it, and still listed
            // until a lag after it last did.
            let world = lock(&shared.world);
            let changes = world
                .tagged
                .values()
                .map(|seen| if seen.present { seen.first } else { seen.last });
            if let Some(newest) = changes.max() {
                listed_since = listed_since.max(newest);
            }
        }
        let until = listed_since + lag;
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }

    /// Forgets everything the rules remember (after moto's own reset).
    pub fn reset(&self) {
        *lock(&self.shared.world) = World::default();
    }
}

impl Drop for AwsBehaviour {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One AWS call, identified.
#[derive(Debug, Default)]
struct Call {
    service: String,
    operation: String,
    /// JSON body, or the form parameters of a query-protocol call as an object.
    params: Value,
    /// Path segments, percent-decoded.
    path: Vec<String>,
}

impl Call {
    fn of(request: &Request) -> Call {
        let service = request.service();
        let (path, query) = split_target(request.target());
        let content_type = request.header("content-type").unwrap_or_default();
        let form = content_type.contains("x-www-form-urlencoded");
        let params = if form {
            Value::Object(
                parse_form(&String::from_utf8_lossy(&request.body))
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect(),
            )
        } else {
            serde_json::from_slice(&request.body).unwrap_or(Value::Null)
        };
        let operation = if let Some(target) = request.header("x-amz-target") {
            target.rsplit('.').next().unwrap_or_default().to_string()
        } else if form {
            params["Action"].as_str().unwrap_or_default().to_string()
        } else if service == "lambda" {
            lambda_operation(request.method(), &path)
        } else if service == "s3" {
            s3_operation(request, &path, &query)
        } else {
            String::new()
        };
        Call {
            service,
            operation,
            params,
            path,
        }
    }

    fn param(&self, name: &str) -> &str {
        self.params[name].as_str().unwrap_or_default()
    }

    /// The function a Lambda call is about (from its path).
    fn function(&self) -> String {
        self.path
            .get(2)
            .map(|f| function_name(f))
            .unwrap_or_default()
    }

    fn bucket(&self) -> String {
        self.path.first().cloned().unwrap_or_default()
    }
}

fn split_target(target: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    (segments, parse_form(query).into_iter().collect())
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A function name from a path segment or parameter that may be a name or an ARN.
fn function_name(name_or_arn: &str) -> String {
    match name_or_arn.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest).to_string(),
        None => name_or_arn.to_string(),
    }
}

/// The last segment of a role ARN (or the name itself).
fn role_name(name_or_arn: &str) -> String {
    name_or_arn
        .rsplit('/')
        .next()
        .unwrap_or(name_or_arn)
        .to_string()
}

/// A secret's name from a name or an ARN (whose name carries a random six-character suffix).
fn secret_name(id: &str) -> String {
    match id.split_once(":secret:") {
        Some((_, rest)) => rest
            .rsplit_once('-')
            .filter(|(_, suffix)| suffix.len() == 6)
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| rest.to_string()),
        None => id.to_string(),
    }
}

fn lambda_operation(method: &str, path: &[String]) -> String {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let op = match (method, p.as_slice()) {
        ("POST", [_, "functions"]) => "CreateFunction",
        ("GET", [_, "functions"]) => "ListFunctions",
        ("GET", [_, "functions", _]) => "GetFunction",
        ("DELETE", [_, "functions", _]) => "DeleteFunction",
        ("GET", [_, "functions", _, "configuration"]) => "GetFunctionConfiguration",
        ("PUT", [_, "functions", _, "configuration"]) => "UpdateFunctionConfiguration",
        ("PUT", [_, "functions", _, "code"]) => "UpdateFunctionCode",
        ("POST", [_, "functions", _, "versions"]) => "PublishVersion",
        ("POST", [_, "functions", _, "policy"]) => "AddPermission",
        ("GET", [_, "functions", _, "policy"]) => "GetPolicy",
        ("DELETE", [_, "functions", _, "policy", _]) => "RemovePermission",
        ("PUT", [_, "functions", _, "concurrency"]) => "PutFunctionConcurrency",
        ("DELETE", [_, "functions", _, "concurrency"]) => "DeleteFunctionConcurrency",
        ("POST", [_, "functions", _, "url"]) => "CreateFunctionUrlConfig",
        ("PUT", [_, "functions", _, "url"]) => "UpdateFunctionUrlConfig",
        ("GET", [_, "functions", _, "url"]) => "GetFunctionUrlConfig",
        ("DELETE", [_, "functions", _, "url"]) => "DeleteFunctionUrlConfig",
        ("POST", [_, "tags", _]) => "TagResource",
        ("DELETE", [_, "tags", _]) => "UntagResource",
        ("GET", [_, "tags", _]) => "ListTags",
        _ => "",
    };
    op.to_string()
}

fn s3_operation(request: &Request, path: &[String], query: &BTreeMap<String, String>) -> String {
    let method = request.method();
    let bucket_config = [
        "versioning",
        "encryption",
        "publicAccessBlock",
        "lifecycle",
        "tagging",
        "policy",
    ];
    match (method, path.len()) {
        ("PUT", 1) if query.is_empty() => "CreateBucket".into(),
        ("DELETE", 1) if query.is_empty() => "DeleteBucket".into(),
        ("PUT", 1) => bucket_config
            .iter()
            .find(|c| query.contains_key(**c))
            .map(|c| format!("PutBucket:{c}"))
            .unwrap_or_default(),
        ("PUT", n) if n > 1 && !query.contains_key("partNumber") => "PutObject".into(),
        _ => String::new(),
    }
}

/// Functions' writes that a `Pending` function refuses.
const FUNCTION_WRITES: &[&str] = &[
    "UpdateFunctionCode",
    "UpdateFunctionConfiguration",
    "PublishVersion",
    "PutFunctionConcurrency",
    "DeleteFunctionConcurrency",
    "AddPermission",
    "RemovePermission",
    "CreateFunctionUrlConfig",
    "UpdateFunctionUrlConfig",
    "DeleteFunctionUrlConfig",
];

/// Writes that an update in progress refuses (AWS Lambda guide, "Lambda function states").
const UPDATE_WRITES: &[&str] = &[
    "UpdateFunctionCode",
    "UpdateFunctionConfiguration",
    "PublishVersion",
];

fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    while let Some(request) = read_request(&mut reader)? {
        shared.active.store(true, Ordering::SeqCst);
        let response = shared.handle(&request)?;
        response.write_to(&mut client, request.is_head())?;
    }
    Ok(())
}

impl Shared {
    fn on(&self, rule: Rule) -> bool {
        lock(&self.config).rules.contains(&rule)
    }

    fn windows(&self) -> Windows {
        lock(&self.config).windows.clone()
    }

    fn held(&self, rule: Rule) -> bool {
        lock(&self.never_clear).contains(&rule)
    }

    /// Whether a window of `length` opened at `since` is still open for `rule`.
    fn open(&self, rule: Rule, since: Option<&Instant>, length: Duration) -> bool {
        since.is_some_and(|t| self.held(rule) || t.elapsed() < length)
    }

    fn hit(&self, world: &mut World, rule: Rule, operation: &str, resource: &str, what: &str) {
        world.hits.push(Hit {
            rule,
            operation: operation.to_string(),
            resource: resource.to_string(),
            what: what.to_string(),
            at: self.started.elapsed().as_secs_f64(),
        });
    }

    fn handle(&self, request: &Request) -> std::io::Result<Response> {
        let call = Call::of(request);
        if let Some(answer) = self.before(&call, request) {
            return Ok(answer);
        }
        let race = self.on(Rule::LambdaPolicyRace)
            && matches!(
                call.operation.as_str(),
                "AddPermission" | "RemovePermission"
            );
        if race {
            return self.permission_write(&call, request);
        }
        let conditional = call.operation == "PutObject"
            && (request.header("if-match").is_some() || request.header("if-none-match").is_some());
        let mut response = if conditional {
            let _one_at_a_time = lock(&self.conditional_writes);
            forward(request, &self.upstream)?
        } else {
            forward(request, &self.upstream)?
        };
        if !is_read(&call.operation) {
            self.listing_dirty.store(true, Ordering::SeqCst);
        }
        self.after(&call, request, &mut response);
        Ok(response)
    }

    /// CloudFormation's asynchrony: change sets and stack operations are remembered when
    /// moto finished them, and read back as still running while their window is open.
    fn stack_in_progress(&self, call: &Call, response: &mut Response, w: &Windows) {
        let rule = Rule::CloudFormationInProgress;
        let body = String::from_utf8_lossy(&response.body).to_string();
        let mut world = lock(&self.world);
        match call.operation.as_str() {
            "CreateChangeSet" => {
                if let (Some(arn), Some(stack)) =
                    (xml_text(&body, "Id"), xml_text(&body, "StackId"))
                {
                    let kind = call.param("ChangeSetType").to_string();
                    let name = call.param("StackName").to_string();
                    world
                        .change_sets
                        .insert(arn, (Instant::now(), stack, name, kind));
                }
            }
            "DescribeChangeSet" => {
                let arn = xml_text(&body, "ChangeSetId").unwrap_or_default();
                let creating = world.change_sets.get(&arn).map(|(at, ..)| *at);
                if self.open(rule, creating.as_ref(), w.stack_operation) {
                    let status = xml_text(&body, "Status").unwrap_or_default();
                    let rewritten = body
                        .replace(
                            &format!("<Status>{status}</Status>"),
                            "<Status>CREATE_IN_PROGRESS</Status>",
                        )
                        .replace(
                            "<ExecutionStatus>AVAILABLE</ExecutionStatus>",
                            "<ExecutionStatus>UNAVAILABLE</ExecutionStatus>",
                        );
                    self.hit(
                        &mut world,
                        rule,
                        "DescribeChangeSet",
                        &arn,
                        "change set CREATE_IN_PROGRESS",
                    );
                    response.set_body(rewritten);
                }
            }
            "ExecuteChangeSet" => {
                let arn = call.param("ChangeSetName").to_string();
                if let Some((_, stack, name, kind)) = world.change_sets.get(&arn).cloned() {
                    let operation = if kind == "CREATE" { "CREATE" } else { "UPDATE" };
                    for key in [stack, name] {
                        world
                            .stack_operations
                            .insert(key, (Instant::now(), operation.to_string()));
                    }
                }
            }
            "DeleteStack" => {
                let id = call.param("StackName").to_string();
                for key in [stack_name_of(&id), id] {
                    world
                        .stack_operations
                        .insert(key, (Instant::now(), "DELETE".to_string()));
                }
            }
            "DescribeStacks" => {
                let id = call.param("StackName").to_string();
                let Some((at, operation)) = world.stack_operations.get(&id).cloned() else {
                    return;
                };
                let done = format!("<StackStatus>{operation}_COMPLETE</StackStatus>");
                if self.open(rule, Some(&at), w.stack_operation) && body.contains(&done) {
                    let running = format!("<StackStatus>{operation}_IN_PROGRESS</StackStatus>");
                    self.hit(
                        &mut world,
                        rule,
                        "DescribeStacks",
                        &id,
                        &format!("stack {operation}_IN_PROGRESS"),
                    );
                    response.set_body(body.replace(&done, &running));
                }
            }
            _ => {}
        }
    }

    /// Rules that answer instead of moto.
    fn before(&self, call: &Call, request: &Request) -> Option<Response> {
        let w = self.windows();
        if call.service == "cloudformation"
            && call.operation == "ExecuteChangeSet"
            && self.on(Rule::CloudFormationInProgress)
        {
            let arn = call.param("ChangeSetName").to_string();
            let mut world = lock(&self.world);
            let creating = world.change_sets.get(&arn).map(|(at, ..)| *at);
            if self.open(
                Rule::CloudFormationInProgress,
                creating.as_ref(),
                w.stack_operation,
            ) {
                self.hit(
                    &mut world,
                    Rule::CloudFormationInProgress,
                    "ExecuteChangeSet",
                    &arn,
                    "refused: change set CREATE_IN_PROGRESS",
                );
                return Some(query_error(
                    400,
                    "InvalidChangeSetStatus",
                    &format!(
                        "ChangeSet [{arn}] cannot be executed in its current status of [CREATE_IN_PROGRESS]"
                    ),
                ));
            }
        }
        if call.service == "athena"
            && call.operation == "DeleteWorkGroup"
            && self.on(Rule::AthenaNotFound)
        {
            let name = call.param("WorkGroup").to_string();
            let exists = self
                .upstream_json(
                    request,
                    "AmazonAthena.GetWorkGroup",
                    &json!({ "WorkGroup": name }),
                )
                .is_some_and(|v| !v["WorkGroup"].is_null());
            if !exists {
                let mut world = lock(&self.world);
                self.hit(
                    &mut world,
                    Rule::AthenaNotFound,
                    &call.operation,
                    &name,
                    "missing workgroup: 400",
                );
                return Some(athena_not_found(&name));
            }
        }
        let mut world = lock(&self.world);
        let world = &mut *world;
        let op = call.operation.as_str();
        match (call.service.as_str(), op) {
            ("lambda", "CreateFunction" | "UpdateFunctionConfiguration")
                if self.on(Rule::IamPropagation) =>
            {
                let role = role_name(call.param("Role"));
                if !role.is_empty()
                    && self.open(
                        Rule::IamPropagation,
                        world.roles_changed.get(&role),
                        w.propagation,
                    )
                {
                    self.hit(
                        world,
                        Rule::IamPropagation,
                        op,
                        &role,
                        "role not yet assumable by Lambda",
                    );
                    return Some(rest_json_error(
                        400,
                        "InvalidParameterValueException",
                        "The role defined for the function cannot be assumed by Lambda.",
                    ));
                }
            }
            ("glue", "CreateCrawler" | "UpdateCrawler") if self.on(Rule::IamPropagation) => {
                let role = role_name(call.param("Role"));
                if self.open(
                    Rule::IamPropagation,
                    world.roles_changed.get(&role),
                    w.propagation,
                ) {
                    self.hit(
                        world,
                        Rule::IamPropagation,
                        op,
                        &role,
                        "role not yet assumable by Glue",
                    );
                    return Some(json_error(
                        400,
                        "InvalidInputException",
                        "Service is unable to assume provided role. Please verify role's TrustPolicy",
                    ));
                }
            }
            _ => {}
        }
        if call.service == "lambda" && FUNCTION_WRITES.contains(&op) {
            let function = call.function();
            if self.on(Rule::LambdaPending)
                && self.open(
                    Rule::LambdaPending,
                    world.functions_created.get(&function),
                    w.lambda_pending,
                )
            {
                self.hit(
                    world,
                    Rule::LambdaPending,
                    op,
                    &function,
                    "refused: function Pending",
                );
                return Some(rest_json_error(
                    409,
                    "ResourceConflictException",
                    "The operation cannot be performed at this time. The function is currently in the following state: Pending",
                ));
            }
            if self.on(Rule::LambdaUpdateInProgress)
                && UPDATE_WRITES.contains(&op)
                && self.open(
                    Rule::LambdaUpdateInProgress,
                    world.functions_updated.get(&function),
                    w.lambda_update,
                )
            {
                self.hit(
                    world,
                    Rule::LambdaUpdateInProgress,
                    op,
                    &function,
                    "refused: update in progress",
                );
                return Some(rest_json_error(
                    409,
                    "ResourceConflictException",
                    &format!(
                        "The operation cannot be performed at this time. An update is in progress for resource: arn:aws:lambda:us-east-1:123456789012:function:{function}"
                    ),
                ));
            }
        }
        match (call.service.as_str(), op) {
            ("events", "PutTargets" | "RemoveTargets")
                if self.on(Rule::EventBridgeFailedEntries) =>
            {
                let rule = call.param("Rule").to_string();
                let key = (op.to_string(), rule.clone());
                let first = world.targets_failed_once.insert(key);
                if first || self.held(Rule::EventBridgeFailedEntries) {
                    let ids: Vec<String> = if op == "PutTargets" {
                        call.params["Targets"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t["Id"].as_str().map(str::to_string))
                            .collect()
                    } else {
                        call.params["Ids"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|t| t.as_str().map(str::to_string))
                            .collect()
                    };
                    self.hit(
                        world,
                        Rule::EventBridgeFailedEntries,
                        op,
                        &rule,
                        &format!("{} entries failed inside a 200", ids.len()),
                    );
                    let entries: Vec<Value> = ids
                        .iter()
                        .map(|id| {
                            json!({
                                "TargetId": id,
                                "ErrorCode": "ConcurrentModificationException",
                                "ErrorMessage": format!("Rule {rule} is being modified concurrently. Try again."),
                            })
                        })
                        .collect();
                    return Some(json_ok(json!({
                        "FailedEntryCount": entries.len(),
                        "FailedEntries": entries,
                    })));
                }
            }
            ("secretsmanager", "CreateSecret") if self.on(Rule::SecretNamePendingDeletion) => {
                let name = call.param("Name").to_string();
                let pending = match world.secrets_deleted.get(&name) {
                    Some((at, true)) => {
                        self.held(Rule::SecretNamePendingDeletion) || at.elapsed() < w.deletion
                    }
                    Some((_, false)) => true,
                    None => false,
                };
                if pending {
                    self.hit(
                        world,
                        Rule::SecretNamePendingDeletion,
                        op,
                        &name,
                        "name still scheduled for deletion",
                    );
                    return Some(json_error(
                        400,
                        "InvalidRequestException",
                        "You can't create this secret because a secret with this name is already scheduled for deletion.",
                    ));
                }
            }
            ("secretsmanager", "RotateSecret") if self.on(Rule::RotationInvokePropagation) => {
                let function = function_name(call.param("RotationLambdaARN"));
                if self.open(
                    Rule::RotationInvokePropagation,
                    world.rotation_permission.get(&function),
                    w.propagation,
                ) {
                    self.hit(
                        world,
                        Rule::RotationInvokePropagation,
                        op,
                        &function,
                        "invoke permission not yet effective",
                    );
                    return Some(json_error(
                        400,
                        "AccessDeniedException",
                        "Secrets Manager cannot invoke the specified Lambda function. Ensure that the function policy grants access to the principal secretsmanager.amazonaws.com.",
                    ));
                }
            }
            ("s3", "PutObject")
                if self.on(Rule::S3ConditionalConflict)
                    && (request.header("if-match").is_some()
                        || request.header("if-none-match").is_some()) =>
            {
                world.conditional_writes += 1;
                if world.conditional_writes % 3 == 1 || self.held(Rule::S3ConditionalConflict) {
                    let key = call.path.join("/");
                    self.hit(
                        world,
                        Rule::S3ConditionalConflict,
                        op,
                        &key,
                        "409 ConditionalRequestConflict",
                    );
                    return Some(s3_error(
                        409,
                        "ConditionalRequestConflict",
                        "A conflicting conditional operation is currently in progress against this resource. Please try again.",
                    ));
                }
            }
            ("s3", "CreateBucket") if self.on(Rule::S3BucketSettling) => {
                let bucket = call.bucket();
                if self.open(
                    Rule::S3BucketSettling,
                    world.buckets_deleted.get(&bucket),
                    w.deletion,
                ) {
                    self.hit(
                        world,
                        Rule::S3BucketSettling,
                        op,
                        &bucket,
                        "name of a bucket deleted moments ago",
                    );
                    return Some(s3_error(
                        409,
                        "OperationAborted",
                        "A conflicting conditional operation is currently in progress against this resource. Please try again.",
                    ));
                }
            }
            ("s3", put) if put.starts_with("PutBucket:") && self.on(Rule::S3BucketSettling) => {
                let bucket = call.bucket();
                if self.open(
                    Rule::S3BucketSettling,
                    world.buckets_created.get(&bucket),
                    w.settle,
                ) {
                    self.hit(
                        world,
                        Rule::S3BucketSettling,
                        op,
                        &bucket,
                        "new bucket not yet visible",
                    );
                    return Some(s3_error(
                        404,
                        "NoSuchBucket",
                        "The specified bucket does not exist",
                    ));
                }
            }
            ("sns", "SetTopicAttributes") if self.on(Rule::AbacPropagation) => {
                let topic = call.param("TopicArn").to_string();
                if self.open(
                    Rule::AbacPropagation,
                    world.topics_created.get(&topic),
                    w.propagation,
                ) {
                    self.hit(
                        world,
                        Rule::AbacPropagation,
                        op,
                        &topic,
                        "denied while tag-based permissions propagate",
                    );
                    return Some(query_error(
                        403,
                        "AuthorizationError",
                        &format!(
                            "User: arn:aws:sts::123456789012:assumed-role/deployer/infra is not authorized to perform: SNS:SetTopicAttributes on resource: {topic} because no identity-based policy allows the SNS:SetTopicAttributes action"
                        ),
                    ));
                }
            }
            ("logs", "PutRetentionPolicy") if self.on(Rule::AbacPropagation) => {
                let group = call.param("logGroupName").to_string();
                if self.open(
                    Rule::AbacPropagation,
                    world.log_groups_created.get(&group),
                    w.propagation,
                ) {
                    self.hit(
                        world,
                        Rule::AbacPropagation,
                        op,
                        &group,
                        "denied while tag-based permissions propagate",
                    );
                    return Some(json_error(
                        400,
                        "AccessDeniedException",
                        &format!(
                            "User: arn:aws:sts::123456789012:assumed-role/deployer/infra is not authorized to perform: logs:PutRetentionPolicy on resource: arn:aws:logs:us-east-1:123456789012:log-group:{group}:log-stream: because no identity-based policy allows the logs:PutRetentionPolicy action"
                        ),
                    ));
                }
            }
            ("logs", "DeleteLogGroup") if self.on(Rule::LogsDeleteAborted) => {
                let group = call.param("logGroupName").to_string();
                if world.log_groups_delete_failed.insert(group.clone())
                    || self.held(Rule::LogsDeleteAborted)
                {
                    self.hit(
                        world,
                        Rule::LogsDeleteAborted,
                        op,
                        &group,
                        "conflicting operation in progress",
                    );
                    return Some(json_error(
                        400,
                        "OperationAbortedException",
                        "A conflicting operation is currently in progress against this resource. Please try again.",
                    ));
                }
            }
            ("events", "DeleteRule") if self.on(Rule::EventBridgeTargetsSettling) => {
                let rule = call.param("Name").to_string();
                if self.open(
                    Rule::EventBridgeTargetsSettling,
                    world.targets_removed.get(&rule),
                    w.settle,
                ) {
                    self.hit(
                        world,
                        Rule::EventBridgeTargetsSettling,
                        op,
                        &rule,
                        "targets removed moments ago",
                    );
                    return Some(json_error(
                        400,
                        "ValidationException",
                        "Rule can't be deleted since it has targets.",
                    ));
                }
            }
            ("iam", "DeleteRole") if self.on(Rule::IamDeleteConflict) => {
                let role = call.param("RoleName").to_string();
                if self.open(
                    Rule::IamDeleteConflict,
                    world.roles_detached.get(&role),
                    w.settle,
                ) {
                    self.hit(
                        world,
                        Rule::IamDeleteConflict,
                        op,
                        &role,
                        "policies detached moments ago",
                    );
                    return Some(query_error(
                        409,
                        "DeleteConflict",
                        "Cannot delete entity, must detach all policies first.",
                    ));
                }
            }
            _ => {}
        }
        None
    }

    /// A permission write under [`Rule::LambdaPolicyRace`]: held for a moment so that writes
    /// sent in parallel overlap; a write that arrives while another to the same function is in
    /// flight is answered as applied and dropped, as AWS has been seen to do.
    fn permission_write(&self, call: &Call, request: &Request) -> std::io::Result<Response> {
        let function = call.function();
        let overlapping = {
            let mut world = lock(&self.world);
            let in_flight = world
                .permission_in_flight
                .entry(function.clone())
                .or_default();
            *in_flight += 1;
            let overlapping = *in_flight > 1;
            if overlapping {
                self.hit(
                    &mut world,
                    Rule::LambdaPolicyRace,
                    &call.operation,
                    &function,
                    "sent while another permission change was in flight: lost",
                );
            }
            overlapping
        };
        let result = if overlapping {
            std::thread::sleep(Duration::from_millis(50));
            Ok(if call.operation == "AddPermission" {
                Response::new(
                    201,
                    "application/json",
                    json!({"Statement": json!({"Sid": call.param("StatementId")}).to_string()})
                        .to_string(),
                )
            } else {
                Response::new(204, "application/json", Vec::new())
            })
        } else {
            std::thread::sleep(Duration::from_millis(150));
            forward(request, &self.upstream).map(|mut response| {
                self.after(call, request, &mut response);
                response
            })
        };
        let mut world = lock(&self.world);
        if let Some(n) = world.permission_in_flight.get_mut(&function) {
            *n = n.saturating_sub(1);
        }
        result
    }

    /// Records what successful writes open, and rewrites answers.
    fn after(&self, call: &Call, request: &Request, response: &mut Response) {
        let w = self.windows();
        let op = call.operation.as_str();
        let ok = response.is_success();
        if call.service == "cloudformation" && self.on(Rule::CloudFormationInProgress) && ok {
            self.stack_in_progress(call, response, &w);
            return;
        }
        match (call.service.as_str(), op) {
            ("athena", "GetWorkGroup") if self.on(Rule::AthenaNotFound) => {
                let missing = ok && response.json().is_some_and(|v| v["WorkGroup"].is_null());
                if missing {
                    let name = call.param("WorkGroup").to_string();
                    self.hit(
                        &mut lock(&self.world),
                        Rule::AthenaNotFound,
                        op,
                        &name,
                        "missing workgroup: 400",
                    );
                    *response = athena_not_found(&name);
                }
            }
            ("athena", "GetNamedQuery") if self.on(Rule::AthenaNotFound) && !ok => {
                let id = call.param("NamedQueryId").to_string();
                self.hit(
                    &mut lock(&self.world),
                    Rule::AthenaNotFound,
                    op,
                    &id,
                    "missing named query: 400",
                );
                *response = json_error(
                    400,
                    "InvalidRequestException",
                    &format!("NamedQuery {id} does not exist"),
                )
                .with_header("x-amzn-athena-error-code", "INVALID_INPUT");
            }
            ("athena", "CreateWorkGroup")
                if self.on(Rule::AthenaAlreadyCreated) && response.status == 400 =>
            {
                let says_exists = response
                    .json()
                    .is_some_and(|v| v.to_string().contains("already exists"));
                if says_exists {
                    let name = call.param("Name").to_string();
                    self.hit(
                        &mut lock(&self.world),
                        Rule::AthenaAlreadyCreated,
                        op,
                        &name,
                        "AWS's wording",
                    );
                    *response = json_error(
                        400,
                        "InvalidRequestException",
                        "WorkGroup is already created",
                    );
                }
            }
            ("glue", "GetCrawler" | "GetCrawlers") if ok && self.on(Rule::CrawlerRoleAsName) => {
                if let Some(mut body) = response.json() {
                    let mut changed = Vec::new();
                    let mut strip = |c: &mut Value| {
                        if let Some(role) = c["Role"].as_str().filter(|r| r.starts_with("arn:")) {
                            let name = role_name(role);
                            changed.push(name.clone());
                            c["Role"] = Value::String(name);
                        }
                    };
                    if let Some(c) = body.get_mut("Crawler") {
                        strip(c);
                    }
                    if let Some(list) = body.get_mut("Crawlers").and_then(Value::as_array_mut) {
                        list.iter_mut().for_each(strip);
                    }
                    if !changed.is_empty() {
                        let mut world = lock(&self.world);
                        for name in &changed {
                            self.hit(
                                &mut world,
                                Rule::CrawlerRoleAsName,
                                op,
                                name,
                                "role returned as a name",
                            );
                        }
                        response.set_body(body.to_string());
                    }
                }
            }
            ("iam", "CreateRole" | "UpdateAssumeRolePolicy") if ok => {
                lock(&self.world)
                    .roles_changed
                    .insert(call.param("RoleName").to_string(), Instant::now());
            }
            ("events", "RemoveTargets") if ok => {
                let failed = response
                    .json()
                    .is_some_and(|v| v["FailedEntryCount"].as_u64().unwrap_or(0) > 0);
                if !failed {
                    lock(&self.world)
                        .targets_removed
                        .insert(call.param("Rule").to_string(), Instant::now());
                }
            }
            ("iam", "DetachRolePolicy" | "DeleteRolePolicy") if ok => {
                lock(&self.world)
                    .roles_detached
                    .insert(call.param("RoleName").to_string(), Instant::now());
            }
            ("lambda", "CreateFunction") if ok => {
                let name = call.param("FunctionName").to_string();
                lock(&self.world)
                    .functions_created
                    .insert(function_name(&name), Instant::now());
                if self.on(Rule::LambdaPending)
                    && let Some(mut body) = response.json()
                {
                    pending(&mut body);
                    response.set_body(body.to_string());
                }
            }
            ("lambda", "UpdateFunctionCode" | "UpdateFunctionConfiguration") if ok => {
                lock(&self.world)
                    .functions_updated
                    .insert(call.function(), Instant::now());
                if self.on(Rule::LambdaUpdateInProgress)
                    && let Some(mut body) = response.json()
                {
                    in_progress(&mut body);
                    response.set_body(body.to_string());
                }
            }
            ("lambda", "GetFunction" | "GetFunctionConfiguration") if ok => {
                let function = call.function();
                let mut world = lock(&self.world);
                let is_pending = self.on(Rule::LambdaPending)
                    && self.open(
                        Rule::LambdaPending,
                        world.functions_created.get(&function),
                        w.lambda_pending,
                    );
                let is_updating = self.on(Rule::LambdaUpdateInProgress)
                    && self.open(
                        Rule::LambdaUpdateInProgress,
                        world.functions_updated.get(&function),
                        w.lambda_update,
                    );
                if (is_pending || is_updating)
                    && let Some(mut body) = response.json()
                {
                    let config = if op == "GetFunction" {
                        &mut body["Configuration"]
                    } else {
                        &mut body
                    };
                    if is_pending {
                        pending(config);
                        self.hit(
                            &mut world,
                            Rule::LambdaPending,
                            op,
                            &function,
                            "read as Pending",
                        );
                    } else {
                        in_progress(config);
                        self.hit(
                            &mut world,
                            Rule::LambdaUpdateInProgress,
                            op,
                            &function,
                            "read as InProgress",
                        );
                    }
                    response.set_body(body.to_string());
                }
            }
            ("lambda", "AddPermission")
                if ok && call.param("Principal") == "secretsmanager.amazonaws.com" =>
            {
                lock(&self.world)
                    .rotation_permission
                    .insert(call.function(), Instant::now());
            }
            ("secretsmanager", "CreateSecret") if ok => {
                let mut world = lock(&self.world);
                let name = call.param("Name").to_string();
                world.secrets_deleted.remove(&name);
                world.secrets_created.insert(name, Instant::now());
            }
            ("secretsmanager", "DeleteSecret") if ok => {
                let forced = call.params["ForceDeleteWithoutRecovery"].as_bool() == Some(true);
                lock(&self.world).secrets_deleted.insert(
                    secret_name(call.param("SecretId")),
                    (Instant::now(), forced),
                );
            }
            ("secretsmanager", "RestoreSecret") if ok => {
                lock(&self.world)
                    .secrets_deleted
                    .remove(&secret_name(call.param("SecretId")));
            }
            ("secretsmanager", "ListSecrets") if ok => self.lag_secrets(call, response, &w),
            ("tagging", "GetResources") if ok && self.on(Rule::TaggingListLag) => {
                self.lag_tagging(call, response, &w)
            }
            ("sns", "CreateTopic") if ok => {
                if let Some(arn) = xml_value(&response.body, "TopicArn") {
                    lock(&self.world).topics_created.insert(arn, Instant::now());
                }
            }
            ("sns", "ListSubscriptionsByTopic" | "Subscribe")
                if ok && self.on(Rule::SnsPendingConfirmation) =>
            {
                self.pending_subscriptions(call, response)
            }
            ("logs", "CreateLogGroup") if ok => {
                lock(&self.world)
                    .log_groups_created
                    .insert(call.param("logGroupName").to_string(), Instant::now());
            }
            ("s3", "CreateBucket") if ok => {
                lock(&self.world)
                    .buckets_created
                    .insert(call.bucket(), Instant::now());
            }
            ("s3", "DeleteBucket") if ok => {
                lock(&self.world)
                    .buckets_deleted
                    .insert(call.bucket(), Instant::now());
            }
            _ => {}
        }
        let _ = request;
    }

    fn lag_secrets(&self, call: &Call, response: &mut Response, w: &Windows) {
        let Some(mut body) = response.json() else {
            return;
        };
        let mut world = lock(&self.world);
        let listed: Vec<Value> = body["SecretList"].as_array().cloned().unwrap_or_default();
        for entry in &listed {
            if let Some(name) = entry["Name"].as_str() {
                world.secrets_listed.insert(name.to_string(), entry.clone());
            }
        }
        if !self.on(Rule::SecretsListLag) {
            return;
        }
        let held = self.held(Rule::SecretsListLag);
        let lagging = |at: &Instant| held || at.elapsed() < w.listing_lag;
        let mut kept = Vec::new();
        let mut hidden = Vec::new();
        for entry in listed {
            let name = entry["Name"].as_str().unwrap_or_default().to_string();
            if world.secrets_created.get(&name).is_some_and(lagging) {
                hidden.push(name);
            } else {
                kept.push(entry);
            }
        }
        let last_page = body["NextToken"].as_str().is_none_or(str::is_empty);
        let prefix: Vec<String> = call.params["Filters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["Key"] == "name")
            .flat_map(|f| f["Values"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut ghosts = Vec::new();
        if last_page {
            let present: BTreeSet<String> = kept
                .iter()
                .filter_map(|e| e["Name"].as_str().map(str::to_string))
                .collect();
            for (name, (at, forced)) in &world.secrets_deleted {
                let matches = prefix.is_empty() || prefix.iter().any(|p| name.starts_with(p));
                if *forced
                    && lagging(at)
                    && matches
                    && !present.contains(name)
                    && let Some(entry) = world.secrets_listed.get(name)
                {
                    ghosts.push((name.clone(), entry.clone()));
                }
            }
        }
        if hidden.is_empty() && ghosts.is_empty() {
            return;
        }
        for name in &hidden {
            self.hit(
                &mut world,
                Rule::SecretsListLag,
                "ListSecrets",
                name,
                "created moments ago: not listed yet",
            );
        }
        for (name, entry) in ghosts {
            self.hit(
                &mut world,
                Rule::SecretsListLag,
                "ListSecrets",
                &name,
                "deleted moments ago: still listed",
            );
            kept.push(entry);
        }
        body["SecretList"] = Value::Array(kept);
        response.set_body(body.to_string());
    }

    fn lag_tagging(&self, call: &Call, response: &mut Response, w: &Windows) {
        let Some(mut body) = response.json() else {
            return;
        };
        let held = self.held(Rule::TaggingListLag);
        let mut world = lock(&self.world);
        let now = Instant::now();
        let listed: Vec<Value> = body["ResourceTagMappingList"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut kept = Vec::new();
        let mut changed = Vec::new();
        for entry in listed {
            let arn = entry["ResourceARN"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            // Not seen by the poller yet: created since its last look.
            let first = world.tagged.get(&arn).map_or(now, |s| s.first);
            if held || now.duration_since(first) < w.listing_lag {
                changed.push((arn, "created moments ago: not listed yet"));
            } else {
                kept.push(entry);
            }
        }
        let last_page = body["PaginationToken"].as_str().is_none_or(str::is_empty);
        if last_page {
            let present: BTreeSet<String> = kept
                .iter()
                .filter_map(|e| e["ResourceARN"].as_str().map(str::to_string))
                .collect();
            let filters: Vec<(String, Vec<String>)> = call.params["TagFilters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| {
                    (
                        f["Key"].as_str().unwrap_or_default().to_string(),
                        f["Values"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect(),
                    )
                })
                .collect();
            for (arn, seen) in &world.tagged {
                let gone_lately =
                    !seen.present && (held || now.duration_since(seen.last) < w.listing_lag);
                if gone_lately && !present.contains(arn) && tags_match(&seen.tags, &filters) {
                    kept.push(json!({"ResourceARN": arn, "Tags": seen.tags}));
                    changed.push((arn.clone(), "deleted moments ago: still listed"));
                }
            }
        }
        if changed.is_empty() {
            return;
        }
        for (arn, what) in &changed {
            self.hit(&mut world, Rule::TaggingListLag, "GetResources", arn, what);
        }
        body["ResourceTagMappingList"] = Value::Array(kept);
        response.set_body(body.to_string());
    }

    fn pending_subscriptions(&self, call: &Call, response: &mut Response) {
        let text = String::from_utf8_lossy(&response.body).into_owned();
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        let mut pending = Vec::new();
        if call.operation == "Subscribe" {
            if call.param("Protocol") == "email"
                && let Some(arn) = xml_value(&response.body, "SubscriptionArn")
            {
                pending.push(call.param("Endpoint").to_string());
                out = text.replace(&arn, "pending confirmation");
            }
        } else {
            while let Some(start) = rest.find("<member>") {
                let Some(end) = rest[start..].find("</member>").map(|e| start + e + 9) else {
                    break;
                };
                out.push_str(&rest[..start]);
                let member = &rest[start..end];
                if member.contains("<Protocol>email</Protocol>")
                    && let Some(arn) = xml_value(member.as_bytes(), "SubscriptionArn")
                    && arn != "PendingConfirmation"
                {
                    pending.push(xml_value(member.as_bytes(), "Endpoint").unwrap_or_default());
                    out.push_str(&member.replace(&arn, "PendingConfirmation"));
                } else {
                    out.push_str(member);
                }
                rest = &rest[end..];
            }
            out.push_str(rest);
        }
        if pending.is_empty() {
            return;
        }
        let mut world = lock(&self.world);
        for endpoint in &pending {
            self.hit(
                &mut world,
                Rule::SnsPendingConfirmation,
                &call.operation,
                endpoint,
                "e-mail subscription not confirmed",
            );
        }
        response.set_body(out);
    }

    /// Asks moto directly (another operation of the same JSON service), for rules that need
    /// to know what exists.
    fn upstream_json(&self, request: &Request, target: &str, body: &Value) -> Option<Value> {
        let mut head: Vec<String> = request
            .head
            .iter()
            .filter(|l| {
                let lower = l.to_ascii_lowercase();
                !lower.starts_with("x-amz-target:") && !lower.starts_with("content-length:")
            })
            .cloned()
            .collect();
        let bytes = body.to_string().into_bytes();
        head.push(format!("X-Amz-Target: {target}"));
        head.push(format!("Content-Length: {}", bytes.len()));
        let probe = Request { head, body: bytes };
        forward(&probe, &self.upstream)
            .ok()
            .filter(Response::is_success)
            .and_then(|r| r.json())
    }
}

/// Tag filters as GetResources applies them: every key present with one of its values (any
/// value when none are given).
fn tags_match(tags: &Value, filters: &[(String, Vec<String>)]) -> bool {
    let tags: BTreeMap<&str, &str> = tags
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["Key"].as_str()?, t["Value"].as_str()?)))
        .collect();
    filters.iter().all(|(key, values)| {
        tags.get(key.as_str())
            .is_some_and(|v| values.is_empty() || values.iter().any(|x| x == v))
    })
}

/// Keeps a record of what GetResources lists, so that answers can be made to lag behind it.
fn poll_tagging(shared: &Shared) {
    let mut last_poll = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) {
        let due = || {
            shared.listing_dirty.swap(false, Ordering::SeqCst)
                || last_poll.elapsed() >= TAGGING_HEARTBEAT
        };
        if shared.active.load(Ordering::SeqCst) && due() {
            let attempt = shared.tagging_polls_begun.fetch_add(1, Ordering::SeqCst) + 1;
            last_poll = Instant::now();
            match list_all_tagged(&shared.upstream) {
                Some(listed) => {
                    let now = Instant::now();
                    let mut world = lock(&shared.world);
                    for seen in world.tagged.values_mut() {
                        seen.present = false;
                    }
                    for (arn, tags) in listed {
                        let seen = world.tagged.entry(arn).or_insert(Seen {
                            first: now,
                            last: now,
                            tags: tags.clone(),
                            present: true,
                        });
                        seen.last = now;
                        seen.tags = tags;
                        seen.present = true;
                    }
                    shared.tagging_listed_upto.store(attempt, Ordering::SeqCst);
                }
                None => shared.listing_dirty.store(true, Ordering::SeqCst),
            }
        }
        std::thread::sleep(TAGGING_POLL);
    }
}

/// How often the layer looks at what GetResources lists after a write.
const TAGGING_POLL: Duration = Duration::from_millis(400);
/// How often it looks when nothing was written through it.
const TAGGING_HEARTBEAT: Duration = Duration::from_secs(2);

/// Whether an operation only reads (and so cannot change what GetResources lists).
fn is_read(operation: &str) -> bool {
    ["Get", "List", "Describe", "Head", "Search", "Lookup"]
        .iter()
        .any(|verb| operation.starts_with(verb))
}

fn list_all_tagged(upstream: &str) -> Option<Vec<(String, Value)>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _page in 0..200 {
        let mut body = json!({"ResourcesPerPage": 100});
        if let Some(t) = &token {
            body["PaginationToken"] = Value::String(t.clone());
        }
        let bytes = body.to_string().into_bytes();
        let request = Request {
            head: vec![
                "POST / HTTP/1.1".into(),
                format!("Host: {upstream}"),
                "X-Amz-Target: ResourceGroupsTaggingAPI_20170126.GetResources".into(),
                "Content-Type: application/x-amz-json-1.1".into(),
                "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/tagging/aws4_request, SignedHeaders=host, Signature=0".into(),
                format!("Content-Length: {}", bytes.len()),
            ],
            body: bytes,
        };
        let answer = forward(&request, upstream)
            .ok()
            .filter(Response::is_success)?;
        let page = answer.json()?;
        for entry in page["ResourceTagMappingList"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(arn) = entry["ResourceARN"].as_str() {
                out.push((arn.to_string(), entry["Tags"].clone()));
            }
        }
        match page["PaginationToken"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => return Some(out),
        }
    }
    Some(out)
}

fn pending(config: &mut Value) {
    config["State"] = json!("Pending");
    config["StateReason"] = json!("The function is being created.");
    config["StateReasonCode"] = json!("Creating");
    if let Some(c) = config.as_object_mut() {
        c.remove("LastUpdateStatus");
    }
}

fn in_progress(config: &mut Value) {
    config["LastUpdateStatus"] = json!("InProgress");
    config["LastUpdateStatusReason"] = json!("The function is being updated.");
}

/// The text of the first `<name>` element of an XML body.
fn xml_value(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(text[start..end].to_string())
}

fn json_ok(body: Value) -> Response {
    Response::new(200, "application/x-amz-json-1.1", body.to_string())
}

/// An error of the JSON protocols (Athena, Glue, Secrets Manager, Logs, EventBridge).
fn json_error(status: u16, code: &str, message: &str) -> Response {
    Response::new(
        status,
        "application/x-amz-json-1.1",
        json!({"__type": code, "Message": message}).to_string(),
    )
    .with_header("x-amzn-ErrorType", code)
}

fn athena_not_found(name: &str) -> Response {
    Response::new(
        400,
        "application/x-amz-json-1.1",
        json!({
            "__type": "InvalidRequestException",
            "Message": format!("WorkGroup {name} is not found."),
            "AthenaErrorCode": "INVALID_INPUT",
        })
        .to_string(),
    )
    .with_header("x-amzn-ErrorType", "InvalidRequestException")
}

/// An error of Lambda's REST-JSON protocol.
fn rest_json_error(status: u16, code: &str, message: &str) -> Response {
    Response::new(
        status,
        "application/json",
        json!({"Type": "User", "message": message}).to_string(),
    )
    .with_header("x-amzn-ErrorType", code)
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An error of the query protocols (IAM, SNS).
/// The text of the first `<tag>...</tag>` in an XML body.
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].to_string())
}

/// `arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/ID` -> NAME (a name stays a name).
fn stack_name_of(name_or_arn: &str) -> String {
    match name_or_arn.split_once(":stack/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest).to_string(),
        None => name_or_arn.to_string(),
    }
}

fn query_error(status: u16, code: &str, message: &str) -> Response {
    Response::new(
        status,
        "text/xml",
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>aws-behaviour-layer</RequestId></ErrorResponse>",
            xml_escape(message)
        ),
    )
}

fn s3_error(status: u16, code: &str, message: &str) -> Response {
    Response::new(
        status,
        "application/xml",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{}</Message><RequestId>aws-behaviour-layer</RequestId></Error>",
            xml_escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_out_of_arns() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:1:function:f:live"),
            "f"
        );
        assert_eq!(function_name("f"), "f");
        assert_eq!(role_name("arn:aws:iam::1:role/path/r"), "r");
        assert_eq!(
            secret_name("arn:aws:secretsmanager:us-east-1:1:secret:a-b-AbCdEf"),
            "a-b"
        );
        assert_eq!(secret_name("plain"), "plain");
    }

    #[test]
    fn lambda_paths_name_their_operations() {
        let (path, _) = split_target("/2015-03-31/functions/f/policy/sid-1?RevisionId=x");
        assert_eq!(lambda_operation("DELETE", &path), "RemovePermission");
        let (path, _) = split_target("/2021-10-31/functions/f/url");
        assert_eq!(lambda_operation("POST", &path), "CreateFunctionUrlConfig");
    }

    #[test]
    fn every_rule_has_a_name_and_a_source() {
        let names: BTreeSet<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Rule::ALL.len());
        assert!(Rule::ALL.iter().all(|r| !r.source().is_empty()));
    }
}
