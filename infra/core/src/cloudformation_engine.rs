//! The second engine: an env as one CloudFormation stack, planned and applied through change
//! sets, so that AWS's own service runs the apply (server-side, with rollback, an event
//! history, termination protection and stack policies) while the typed stack stays the one
//! description of it.
//!
//! The template is [`crate::cloudformation::template`]'s. What this module owns is the
//! conversation with CloudFormation: the assets bucket (created once per account and region,
//! as `cdk bootstrap` does; Lambda zips uploaded only when their content-addressed key is new,
//! templates over the inline limit uploaded too), change sets (created, waited for, read,
//! deleted or executed), the stack operation waited for while its events stream, failures
//! reported per resource, and drift detection where the service offers it.
//!
//! Every operation is asynchronous in AWS: a change set is `CREATE_PENDING` then
//! `CREATE_IN_PROGRESS` before it can be read or executed, a stack is `*_IN_PROGRESS` until
//! it settles, a deleted stack answers `DELETE_IN_PROGRESS` before it is gone. The engine
//! polls each to a final status (AWS CLI waiters and the Terraform AWS provider's
//! `aws_cloudformation_stack` do the same). A missing stack is `ValidationError` "Stack with
//! id NAME does not exist" (aws-behaviors.md, aws_cloudformation_stack).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, StackResourceDriftStatus, StackStatus, Tag,
};
use serde::Serialize;
use serde_json::Value;

use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::cloudformation::{self, Assets, Body, TemplateError};
use crate::kinds::bucket::{self, BucketSpec, Encryption, PublicAccessBlock};
use crate::model::{Spec, Stack, TAG_ENV, TAG_MANAGED_BY, TAG_STACK, Target};

/// aws-behaviors.md, aws_cloudformation_stack, Not found: `ValidationError` "... does not
/// exist" (the same code answers malformed requests, so the words tell them apart).
const NO_STACK: NotFound = NotFound::saying(&["ValidationError"], &["does not exist"]);
/// HeadObject carries no body: its not-found is the status (S3's one such case).
const NO_OBJECT: NotFound = NotFound::codes(&["NotFound", "NoSuchKey", "HTTP 404"]);

/// What CloudFormation says when a change set would change nothing (an UPDATE change set) or
/// the stack is already as the template says.
const NO_CHANGES: [&str; 2] = ["didn't contain changes", "No updates are to be performed"];

/// How long a stack operation may take before the engine stops waiting for it (it goes on in
/// AWS; `infra plan --engine cloudformation` shows where it got to). CloudFormation's own
/// default for a stack operation is unbounded; an hour covers a full stack's create.
const STACK_OPERATION_BOUND: Duration = Duration::from_secs(3600);
/// Between polls of a change set or a stack.
const FIRST_POLL: Duration = Duration::from_millis(500);
const MAX_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("the assets bucket {bucket}: {message}")]
    Assets { bucket: String, message: String },
    #[error("emptying bucket {bucket} before the stack's delete: {message}")]
    Purge { bucket: String, message: String },
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("stack {stack} is {status}: another operation is running; wait for it to finish")]
    Busy { stack: String, status: String },
    #[error(
        "stack {stack} is {status}: its first create failed and rolled back, and CloudFormation cannot update it; `infra destroy --engine cloudformation` deletes it, then apply creates it again"
    )]
    FailedCreate { stack: String, status: String },
    #[error("stack {stack} is {status}: {what_to_do}")]
    Unusable {
        stack: String,
        status: String,
        what_to_do: &'static str,
    },
    #[error("stack {stack} does not exist{hint}")]
    NoStack { stack: String, hint: &'static str },
    #[error("change set {name} of stack {stack} failed: {reason}")]
    ChangeSetFailed {
        stack: String,
        name: String,
        reason: String,
    },
    #[error("change set {name} of stack {stack} cannot be executed: it is {status} ({execution})")]
    NotExecutable {
        stack: String,
        name: String,
        status: String,
        execution: String,
    },
    #[error("stack {stack} ended {status}{}", failures_text(.failures))]
    StackFailed {
        stack: String,
        status: String,
        failures: Vec<ResourceFailure>,
    },
    #[error(
        "stack {stack} is still {status} after {waited:.0?}; the operation goes on in CloudFormation (its events: `aws cloudformation describe-stack-events --stack-name {stack}`)"
    )]
    StillRunning {
        stack: String,
        status: String,
        waited: Duration,
    },
    #[error(
        "stack {stack} has termination protection: turn it off in CloudFormation first (`aws cloudformation update-termination-protection --no-enable-termination-protection --stack-name {stack}`)"
    )]
    TerminationProtected { stack: String },
    #[error(
        "the stack was applied, but termination protection could not be turned on (env `{env}` is protected): {error}"
    )]
    TerminationProtection { env: String, error: AwsError },
    #[error(
        "CloudFormation drift detection is not available at {endpoint} ({operation} answered HTTP {status}: {message}). AWS offers it; the local emulator (moto) does not implement DetectStackDrift."
    )]
    DriftUnavailable {
        endpoint: String,
        operation: String,
        status: u16,
        message: String,
    },
    #[error("drift detection of stack {stack} failed: {reason}")]
    DriftFailed { stack: String, reason: String },
}

/// One resource CloudFormation could not create, update or delete, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResourceFailure {
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: String,
}

fn failures_text(failures: &[ResourceFailure]) -> String {
    failures
        .iter()
        .map(|f| {
            format!(
                "\n  {} ({}) {}: {}",
                f.logical_id, f.resource_type, f.status, f.reason
            )
        })
        .collect()
}

/// A change set name no other run uses: `infra-<purpose>-<random>`.
pub fn fresh_change_set_name(purpose: &str) -> String {
    format!("infra-{purpose}-{}", uuid::Uuid::new_v4().simple())
}

/// The stack an env becomes: `<project>-<env>` (with the instance, if any).
pub fn stack_name(target: &Target) -> String {
    format!("{}-{}", target.project, target.env)
}

/// What a change does to one resource, in the engine's words (CloudFormation's `Add`,
/// `Modify` with or without replacement, `Remove`, `Import`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum StackAction {
    Delete,
    Replace,
    /// `Modify` with `Replacement: Conditional`: replaced if a dynamic value says so.
    MayReplace,
    Create,
    Update,
    Import,
    /// A change CloudFormation only knows at execution (`Dynamic`).
    Dynamic,
}

impl StackAction {
    pub fn as_str(self) -> &'static str {
        match self {
            StackAction::Delete => "delete",
            StackAction::Replace => "replace",
            StackAction::MayReplace => "update (may replace)",
            StackAction::Create => "create",
            StackAction::Update => "update",
            StackAction::Import => "import",
            StackAction::Dynamic => "dynamic",
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            StackAction::Delete => "-",
            StackAction::Replace => "-/+",
            StackAction::MayReplace => "~?",
            StackAction::Create => "+",
            StackAction::Update => "~",
            StackAction::Import => "<=",
            StackAction::Dynamic => "?",
        }
    }
}

/// One resource change of a change set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StackChange {
    /// The stack's address the logical id was made from (`None` for a resource the template
    /// did not describe, e.g. one removed from it).
    pub address: Option<String>,
    pub logical_id: String,
    pub resource_type: String,
    pub action: StackAction,
    /// The properties CloudFormation says change (its change details), sorted.
    pub properties: Vec<String>,
}

/// Whether the change set creates the stack or updates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StackOperation {
    Create,
    Update,
}

/// A change set, read: the CloudFormation engine's plan.
#[derive(Clone, Debug, Serialize)]
pub struct ChangeSetPlan {
    pub stack: String,
    pub env: String,
    pub stack_name: String,
    pub operation: StackOperation,
    /// The change set's ARN while it exists (a plan deletes it; `--change-set` keeps it).
    pub change_set: Option<String>,
    pub change_set_name: String,
    /// Whether the template went inline or through the assets bucket, and its size.
    pub template_bytes: usize,
    pub template_via_assets: bool,
    /// Keys uploaded to the assets bucket for this plan (code whose hash was new).
    pub uploaded: Vec<String>,
    pub changes: Vec<StackChange>,
    /// Whether CloudFormation has anything to execute. Told by the change set's status, not
    /// by its changes: a change set of stack-level settings only (tags, outputs) lists no
    /// resource change yet must be executed (as the AWS CDK decides it).
    pub executable: bool,
}

impl ChangeSetPlan {
    pub fn has_changes(&self) -> bool {
        self.executable
    }

    /// How many changes of each action, in the order a reviewer reads them.
    pub fn counts(&self) -> BTreeMap<StackAction, usize> {
        let mut counts = BTreeMap::new();
        for change in &self.changes {
            *counts.entry(change.action).or_insert(0) += 1;
        }
        counts
    }
}

/// A stack as DescribeStacks shows it.
#[derive(Clone, Debug)]
pub struct LiveStack {
    pub id: String,
    pub status: String,
    pub termination_protection: bool,
}

/// One stack event, as streamed during an operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StackEvent {
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: String,
}

/// What a stack operation ended as.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: String,
    pub events: Vec<StackEvent>,
}

/// One resource whose live configuration differs from the template.
#[derive(Clone, Debug, Serialize)]
pub struct ResourceDrift {
    pub address: Option<String>,
    pub logical_id: String,
    pub resource_type: String,
    /// `MODIFIED` or `DELETED`.
    pub status: String,
    /// Property paths that differ (for `MODIFIED`).
    pub properties: Vec<String>,
}

/// The CloudFormation engine for one stack of one env.
pub struct Engine<'a> {
    pub aws: &'a Aws,
    pub stack: &'a Stack,
    pub assets: Assets,
    pub stack_name: String,
}

fn is_in_progress(status: &str) -> bool {
    status.ends_with("_IN_PROGRESS") && status != "REVIEW_IN_PROGRESS"
}

/// Final statuses of a successful operation.
fn is_success(status: &str) -> bool {
    matches!(
        status,
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "DELETE_COMPLETE" | "IMPORT_COMPLETE"
    )
}

impl<'a> Engine<'a> {
    pub fn new(aws: &'a Aws, stack: &'a Stack) -> Engine<'a> {
        Engine {
            aws,
            stack,
            assets: Assets::of(&stack.target),
            stack_name: stack_name(&stack.target),
        }
    }

    /// The template's body as sent, checked against CloudFormation's limits (before any call).
    pub fn template_text(&self) -> Result<(String, Body), EngineError> {
        let template = cloudformation::template(self.stack, &self.assets)?;
        let text = cloudformation::to_text(&template);
        let body = cloudformation::route(&text)?;
        Ok((text, body))
    }

    /// Logical id -> the address it was made from, for every resource of the template.
    fn addresses(&self) -> BTreeMap<String, String> {
        match self.template_text() {
            Ok((text, _)) => self.addresses_in(&text),
            Err(_) => BTreeMap::new(),
        }
    }

    fn addresses_in(&self, text: &str) -> BTreeMap<String, String> {
        let mut ids: Vec<(String, String)> = self
            .stack
            .resources
            .iter()
            .map(|r| {
                (
                    cloudformation::logical_id(&r.address),
                    r.address.to_string(),
                )
            })
            .collect();
        // Sub-resources' ids extend their parent's: the longest prefix is the owner.
        ids.sort_by_key(|(id, _)| std::cmp::Reverse(id.len()));
        let Ok(template) = serde_json::from_str::<Value>(text) else {
            return BTreeMap::new();
        };
        let mut map = BTreeMap::new();
        if let Some(resources) = template["Resources"].as_object() {
            for logical in resources.keys() {
                if let Some((_, address)) = ids.iter().find(|(id, _)| logical.starts_with(id)) {
                    map.insert(logical.clone(), address.clone());
                }
            }
        }
        map
    }

    /// The stack as it is live, `None` if there is none (or only one deleted).
    pub async fn describe(&self) -> Result<Option<LiveStack>, EngineError> {
        let live = self.describe_by(&self.stack_name).await?;
        Ok(live.filter(|s| s.status != StackStatus::DeleteComplete.as_str()))
    }

    /// Stack `id` (a name, or an ARN, which still answers once deleted, as `DELETE_COMPLETE`).
    async fn describe_by(&self, id: &str) -> Result<Option<LiveStack>, EngineError> {
        let out = self
            .aws
            .cloudformation
            .describe_stacks()
            .stack_name(id)
            .send()
            .await
            .map_err(failed("DescribeStacks"))
            .or_missing(NO_STACK)?;
        let Some(out) = out else { return Ok(None) };
        Ok(out.stacks().first().map(|s| LiveStack {
            id: s.stack_id().unwrap_or(id).to_string(),
            status: s
                .stack_status()
                .map(|st| st.as_str().to_string())
                .unwrap_or_default(),
            termination_protection: s.enable_termination_protection().unwrap_or(false),
        }))
    }

    /// Creates the assets bucket if it does not exist (encrypted, closed to the public), then
    /// uploads each Lambda zip whose key is new, and the template when it is too large to go
    /// inline. Returns the template's URL (if uploaded) and the keys written.
    async fn upload_assets(
        &self,
        text: &str,
        body: &Body,
    ) -> Result<(Option<String>, Vec<String>), EngineError> {
        self.ensure_assets_bucket().await?;
        let mut uploaded = Vec::new();
        let mut seen = HashSet::new();
        for resource in &self.stack.resources {
            let Spec::Lambda(spec) = &resource.spec else {
                continue;
            };
            let Some(key) = Assets::code_key(&spec.code) else {
                return Err(TemplateError::NotPackaged(resource.address.clone()).into());
            };
            if !seen.insert(key.clone()) || self.has_object(&key).await? {
                continue;
            }
            let bytes = std::fs::read(&spec.code.zip).map_err(|e| EngineError::Read {
                path: spec.code.zip.display().to_string(),
                message: e.to_string(),
            })?;
            self.put_object(&key, bytes).await?;
            uploaded.push(key);
        }
        let url = match body {
            Body::Inline => None,
            Body::ViaAssets => {
                let key = Assets::template_key(&self.stack.target, text);
                if !self.has_object(&key).await? {
                    self.put_object(&key, text.as_bytes().to_vec()).await?;
                    uploaded.push(key.clone());
                }
                // CloudFormation reads templates by S3 URL, virtual-hosted style.
                Some(format!(
                    "https://{}.s3.{}.amazonaws.com/{key}",
                    self.assets.bucket, self.aws.region
                ))
            }
        };
        Ok((url, uploaded))
    }

    async fn ensure_assets_bucket(&self) -> Result<(), EngineError> {
        let name = &self.assets.bucket;
        let head = self
            .aws
            .s3
            .head_bucket()
            .bucket(name)
            .expected_bucket_owner(&self.stack.target.account_id)
            .send()
            .await
            .map_err(failed("HeadBucket"));
        match head {
            Ok(_) => return Ok(()),
            Err(e) if e.http_status == Some(404) || e.is("NotFound") || e.is("NoSuchBucket") => {}
            Err(e) => return Err(e.into()),
        }
        let spec = BucketSpec {
            name: name.clone(),
            encryption: Encryption::SseS3,
            public_access_block: PublicAccessBlock::ALL,
            versioning: false,
            lifecycle_rules: Vec::new(),
            tags: [
                (TAG_MANAGED_BY.to_string(), "infra".to_string()),
                ("infra:purpose".to_string(), "assets".to_string()),
            ]
            .into(),
        };
        bucket::create(self.aws, &self.stack.target, &spec)
            .await
            .map_err(|e| EngineError::Assets {
                bucket: name.clone(),
                message: e.to_string(),
            })
    }

    async fn has_object(&self, key: &str) -> Result<bool, EngineError> {
        let found = self
            .aws
            .s3
            .head_object()
            .bucket(&self.assets.bucket)
            .key(key)
            .expected_bucket_owner(&self.stack.target.account_id)
            .send()
            .await
            .map_err(failed("HeadObject"))
            .or_missing(NO_OBJECT)?;
        Ok(found.is_some())
    }

    async fn put_object(&self, key: &str, bytes: Vec<u8>) -> Result<(), EngineError> {
        self.aws
            .s3
            .put_object()
            .bucket(&self.assets.bucket)
            .key(key)
            .expected_bucket_owner(&self.stack.target.account_id)
            .body(bytes.into())
            .send()
            .await
            .map_err(failed("PutObject"))?;
        Ok(())
    }

    /// Creates a change set of the template against the live stack, waits for it and reads
    /// it. With `keep`, the change set stays (named `keep`) for a later `apply`; otherwise it
    /// is deleted, and so is the empty stack a first change set creates.
    pub async fn plan(&self, keep: Option<&str>) -> Result<ChangeSetPlan, EngineError> {
        let (text, body) = self.template_text()?;
        let live = self.describe().await?;
        let operation = match &live {
            None => StackOperation::Create,
            Some(s) if s.status == StackStatus::ReviewInProgress.as_str() => StackOperation::Create,
            Some(s) if is_in_progress(&s.status) => {
                return Err(EngineError::Busy {
                    stack: self.stack_name.clone(),
                    status: s.status.clone(),
                });
            }
            Some(s)
                if s.status == StackStatus::RollbackComplete.as_str()
                    || s.status == StackStatus::RollbackFailed.as_str() =>
            {
                return Err(EngineError::FailedCreate {
                    stack: self.stack_name.clone(),
                    status: s.status.clone(),
                });
            }
            Some(s) if let Some(what_to_do) = unusable(&s.status) => {
                return Err(EngineError::Unusable {
                    stack: self.stack_name.clone(),
                    status: s.status.clone(),
                    what_to_do,
                });
            }
            Some(_) => StackOperation::Update,
        };
        let (url, uploaded) = self.upload_assets(&text, &body).await?;
        let name = match keep {
            Some(name) => name.to_string(),
            None => fresh_change_set_name("plan"),
        };
        if let (Some(name), Some(stack)) = (keep, &live) {
            // A change set of this name from an earlier plan: CreateChangeSet would refuse
            // the name (`AlreadyExistsException`), so the newer plan replaces it.
            let _ = self
                .aws
                .cloudformation
                .delete_change_set()
                .stack_name(&stack.id)
                .change_set_name(name)
                .send()
                .await;
        }
        let target = &self.stack.target;
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let created = self
            .aws
            .cloudformation
            .create_change_set()
            .stack_name(&self.stack_name)
            .change_set_name(&name)
            .change_set_type(match operation {
                StackOperation::Create => ChangeSetType::Create,
                StackOperation::Update => ChangeSetType::Update,
            })
            .set_template_body(url.is_none().then(|| text.clone()))
            .set_template_url(url)
            // The stack creates named IAM roles.
            .capabilities(Capability::CapabilityNamedIam)
            .tags(tag(TAG_MANAGED_BY, "infra"))
            .tags(tag(TAG_STACK, &target.stack))
            .tags(tag(TAG_ENV, &target.env))
            .description(format!("infra plan of {} ({})", target.stack, target.env))
            .send()
            .await
            .map_err(failed("CreateChangeSet"))?;
        let arn = created.id().unwrap_or(&name).to_string();
        // The empty stack a first change set makes is this plan's to remove, by its id.
        let made = match (&live, created.stack_id()) {
            (None, Some(id)) => Some(id.to_string()),
            (None, None) => Some(self.stack_name.clone()),
            (Some(_), _) => None,
        };
        let read = self
            .read_change_set(&arn, &name, &self.addresses_in(&text))
            .await;
        let mut plan = ChangeSetPlan {
            stack: target.stack.clone(),
            env: target.env.clone(),
            stack_name: self.stack_name.clone(),
            operation,
            change_set: Some(arn.clone()),
            change_set_name: name.clone(),
            template_bytes: text.len(),
            template_via_assets: body == Body::ViaAssets,
            uploaded,
            changes: Vec::new(),
            executable: false,
        };
        let keep_it = match read {
            Ok((changes, executable)) => {
                plan.changes = changes;
                plan.executable = executable;
                keep.is_some() && executable
            }
            Err(e) => {
                self.discard(&arn, made.as_deref()).await;
                return Err(e);
            }
        };
        if !keep_it {
            self.discard(&arn, made.as_deref()).await;
            plan.change_set = None;
        }
        Ok(plan)
    }

    /// Deletes a change set, and the empty stack its creation made (`made`: its id), waiting
    /// until that stack is gone: a plan followed at once by an apply must not find it
    /// `DELETE_IN_PROGRESS`. Best effort: the plan's result does not depend on it.
    async fn discard(&self, arn: &str, made: Option<&str>) {
        let deleted = self
            .aws
            .cloudformation
            .delete_change_set()
            .change_set_name(arn)
            .send()
            .await
            .map_err(failed("DeleteChangeSet"));
        if let Err(e) = deleted {
            tracing::warn!(change_set = %arn, error = %e, "could not delete the change set");
        }
        let Some(id) = made else { return };
        let deleted = self
            .aws
            .cloudformation
            .delete_stack()
            .stack_name(id)
            .client_request_token(fresh_change_set_name("discard"))
            .send()
            .await
            .map_err(failed("DeleteStack"));
        let gone = match deleted {
            Ok(_) => self.follow(id, None, &mut |_| {}).await.map(|_| ()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = gone {
            tracing::warn!(stack = %self.stack_name, error = %e, "could not delete the empty stack the plan's change set made");
        }
    }

    /// Waits for a change set to be created, then reads its changes (every page), naming
    /// each by the address in `addresses`.
    async fn read_change_set(
        &self,
        arn: &str,
        name: &str,
        addresses: &BTreeMap<String, String>,
    ) -> Result<(Vec<StackChange>, bool), EngineError> {
        let mut poll = Backoff::new();
        loop {
            let read = self
                .aws
                .cloudformation
                .describe_change_set()
                .change_set_name(arn)
                .send()
                .await
                .map_err(failed("DescribeChangeSet"));
            let Some(out) = missed(read)? else {
                poll.pause().await;
                continue;
            };
            let status = out
                .status()
                .cloned()
                .unwrap_or(ChangeSetStatus::CreatePending);
            match status {
                ChangeSetStatus::CreateComplete => {
                    let mut changes = changes_of(out.changes(), addresses);
                    let mut token = out.next_token().map(str::to_string);
                    while let Some(next) = token {
                        let page = self
                            .aws
                            .cloudformation
                            .describe_change_set()
                            .change_set_name(arn)
                            .next_token(next)
                            .send()
                            .await
                            .map_err(failed("DescribeChangeSet"))?;
                        changes.extend(changes_of(page.changes(), addresses));
                        token = page.next_token().map(str::to_string);
                    }
                    changes.sort_by(|a, b| {
                        (a.action, &a.address, &a.logical_id).cmp(&(
                            b.action,
                            &b.address,
                            &b.logical_id,
                        ))
                    });
                    return Ok((changes, true));
                }
                ChangeSetStatus::Failed => {
                    let reason = out.status_reason().unwrap_or_default().to_string();
                    if NO_CHANGES.iter().any(|words| reason.contains(words)) {
                        return Ok((Vec::new(), false));
                    }
                    return Err(EngineError::ChangeSetFailed {
                        stack: self.stack_name.clone(),
                        name: name.to_string(),
                        reason,
                    });
                }
                other => {
                    if poll.spent() {
                        return Err(EngineError::StillRunning {
                            stack: self.stack_name.clone(),
                            status: other.as_str().to_string(),
                            waited: poll.waited(),
                        });
                    }
                    tracing::info!(
                        target: "infra::wait",
                        "change set {name}: waiting until it is created ({}); checking again in {:.1}s",
                        other.as_str(),
                        poll.delay.as_secs_f64()
                    );
                    poll.pause().await;
                }
            }
        }
    }

    /// Reads a change set saved by `plan --change-set NAME`: it must still be executable.
    pub async fn saved(&self, name: &str) -> Result<ChangeSetPlan, EngineError> {
        let live = self.describe().await?.ok_or_else(|| EngineError::NoStack {
            stack: self.stack_name.clone(),
            hint: "; its change set went with it",
        })?;
        let out = self
            .aws
            .cloudformation
            .describe_change_set()
            .stack_name(&live.id)
            .change_set_name(name)
            .send()
            .await
            .map_err(failed("DescribeChangeSet"))?;
        let arn = out.change_set_id().unwrap_or(name).to_string();
        let status = out.status().map(|s| s.as_str()).unwrap_or_default();
        let execution = out
            .execution_status()
            .map(|s| s.as_str())
            .unwrap_or_default();
        if status != ChangeSetStatus::CreateComplete.as_str() || execution != "AVAILABLE" {
            return Err(EngineError::NotExecutable {
                stack: self.stack_name.clone(),
                name: name.to_string(),
                status: status.to_string(),
                execution: execution.to_string(),
            });
        }
        let (changes, executable) = self.read_change_set(&arn, name, &self.addresses()).await?;
        Ok(ChangeSetPlan {
            stack: self.stack.target.stack.clone(),
            env: self.stack.target.env.clone(),
            stack_name: self.stack_name.clone(),
            operation: if live.status == StackStatus::ReviewInProgress.as_str() {
                StackOperation::Create
            } else {
                StackOperation::Update
            },
            change_set: Some(arn),
            change_set_name: name.to_string(),
            template_bytes: 0,
            template_via_assets: false,
            uploaded: Vec::new(),
            changes,
            executable,
        })
    }

    /// Turns on the stack's termination protection if the env is protected and it is off:
    /// once a change set exists (the stack exists then, even before a first execute), and
    /// whether or not it has changes, as the AWS CDK does.
    pub async fn protect(&self) -> Result<(), EngineError> {
        if !self.stack.target.protected {
            return Ok(());
        }
        let Some(live) = self.describe().await? else {
            return Ok(());
        };
        if live.termination_protection {
            return Ok(());
        }
        self.aws
            .cloudformation
            .update_termination_protection()
            .stack_name(&live.id)
            .enable_termination_protection(true)
            .send()
            .await
            .map_err(failed("UpdateTerminationProtection"))
            .map_err(|error| EngineError::TerminationProtection {
                env: self.stack.target.env.clone(),
                error,
            })?;
        Ok(())
    }

    /// Executes a change set and waits for the stack to settle, calling `on_event` for each
    /// new stack event. A failure ends in [`EngineError::StackFailed`] with CloudFormation's
    /// reason per resource and the rollback's final status.
    pub async fn execute(
        &self,
        plan: &ChangeSetPlan,
        on_event: &mut dyn FnMut(&StackEvent),
    ) -> Result<Outcome, EngineError> {
        let Some(arn) = &plan.change_set else {
            return Ok(Outcome {
                status: "NO_CHANGES".into(),
                events: Vec::new(),
            });
        };
        let before = self.describe().await?;
        let mark = match &before {
            Some(s) => self.newest_event(&s.id).await?,
            None => None,
        };
        // The token makes a retried call (its first attempt may have started the update)
        // the same request, not a second one refused for the stack's status.
        self.aws
            .cloudformation
            .execute_change_set()
            .change_set_name(arn)
            .client_request_token(fresh_change_set_name("execute"))
            .send()
            .await
            .map_err(failed("ExecuteChangeSet"))?;
        let id = match before {
            Some(s) => s.id,
            None => self.stack_name.clone(),
        };
        self.follow(&id, mark, on_event).await
    }

    /// Deletes the stack and waits until it is gone. Buckets must be empty first (`purge`
    /// empties the stack's buckets before the delete). Termination protection refuses.
    pub async fn destroy(
        &self,
        purge: bool,
        on_event: &mut dyn FnMut(&StackEvent),
    ) -> Result<Option<Outcome>, EngineError> {
        let Some(live) = self.describe().await? else {
            return Ok(None);
        };
        if live.termination_protection {
            return Err(EngineError::TerminationProtected {
                stack: self.stack_name.clone(),
            });
        }
        if purge {
            for resource in &self.stack.resources {
                if let Spec::Bucket(spec) = &resource.spec {
                    bucket::purge(self.aws, &spec.name)
                        .await
                        .map_err(|e| EngineError::Purge {
                            bucket: spec.name.clone(),
                            message: e.to_string(),
                        })?;
                }
            }
        }
        let mark = self.newest_event(&live.id).await?;
        self.aws
            .cloudformation
            .delete_stack()
            .stack_name(&live.id)
            .client_request_token(fresh_change_set_name("destroy"))
            .send()
            .await
            .map_err(failed("DeleteStack"))?;
        self.follow(&live.id, mark, on_event).await.map(Some)
    }

    /// The id of the stack's newest event: what came before an operation.
    async fn newest_event(&self, id: &str) -> Result<Option<String>, EngineError> {
        let out = self
            .aws
            .cloudformation
            .describe_stack_events()
            .stack_name(id)
            .send()
            .await
            .map_err(failed("DescribeStackEvents"))?;
        Ok(out
            .stack_events()
            .first()
            .and_then(|e| e.event_id())
            .map(str::to_string))
    }

    /// Events newer than `mark`, oldest first (DescribeStackEvents lists newest first).
    async fn events_since(
        &self,
        id: &str,
        mark: Option<&str>,
        seen: &HashSet<String>,
    ) -> Result<Vec<(String, StackEvent)>, EngineError> {
        let mut fresh = Vec::new();
        let mut token: Option<String> = None;
        'pages: loop {
            let out = self
                .aws
                .cloudformation
                .describe_stack_events()
                .stack_name(id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(failed("DescribeStackEvents"))?;
            for event in out.stack_events() {
                let event_id = event.event_id().unwrap_or_default().to_string();
                if Some(event_id.as_str()) == mark || seen.contains(&event_id) {
                    break 'pages;
                }
                fresh.push((
                    event_id,
                    StackEvent {
                        logical_id: event.logical_resource_id().unwrap_or_default().to_string(),
                        resource_type: event.resource_type().unwrap_or_default().to_string(),
                        status: event
                            .resource_status()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                        reason: event
                            .resource_status_reason()
                            .unwrap_or_default()
                            .to_string(),
                    },
                ));
            }
            match out.next_token() {
                Some(next) => token = Some(next.to_string()),
                None => break,
            }
        }
        fresh.reverse();
        Ok(fresh)
    }

    /// Polls the stack `id` until its status is final, streaming its events.
    async fn follow(
        &self,
        id: &str,
        mark: Option<String>,
        on_event: &mut dyn FnMut(&StackEvent),
    ) -> Result<Outcome, EngineError> {
        let mut poll = Backoff::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut events = Vec::new();
        let mut first = true;
        loop {
            if !first {
                poll.pause().await;
            }
            first = false;
            // The stack's id (its ARN) still answers once deleted, as DELETE_COMPLETE.
            let Some(live) = missed(self.describe_by(id).await)? else {
                continue;
            };
            // No such stack at all: deleted so long ago that its id no longer answers.
            let status = live.map_or_else(
                || StackStatus::DeleteComplete.as_str().to_string(),
                |s| s.status,
            );
            // Read after the status, so that the events of a final status are all in.
            let Some(fresh) = missed(self.events_since(id, mark.as_deref(), &seen).await)? else {
                continue;
            };
            for (event_id, event) in fresh {
                seen.insert(event_id);
                on_event(&event);
                events.push(event);
            }
            if !is_in_progress(&status) && status != StackStatus::ReviewInProgress.as_str() {
                if is_success(&status) {
                    return Ok(Outcome { status, events });
                }
                return Err(EngineError::StackFailed {
                    stack: self.stack_name.clone(),
                    status,
                    failures: failures(&events, &self.stack_name),
                });
            }
            if poll.spent() {
                return Err(EngineError::StillRunning {
                    stack: self.stack_name.clone(),
                    status,
                    waited: poll.waited(),
                });
            }
        }
    }

    /// Runs CloudFormation's drift detection on the stack and reads which resources differ
    /// from the template.
    pub async fn drift(&self) -> Result<Vec<ResourceDrift>, EngineError> {
        let live = self.describe().await?.ok_or_else(|| EngineError::NoStack {
            stack: self.stack_name.clone(),
            hint: ": apply it first",
        })?;
        // Only at an endpoint other than AWS's is a 5xx read as "not offered here".
        let unavailable = |e: AwsError| match (e.http_status, &self.aws.endpoint) {
            (Some(status), Some(endpoint)) if status >= 500 => EngineError::DriftUnavailable {
                endpoint: endpoint.clone(),
                operation: e.operation.clone(),
                status,
                message: e.message.clone(),
            },
            _ => EngineError::Aws(e),
        };
        let detection = self
            .aws
            .cloudformation
            .detect_stack_drift()
            .stack_name(&live.id)
            .send()
            .await
            .map_err(failed("DetectStackDrift"))
            .map_err(unavailable)?;
        let detection_id = detection
            .stack_drift_detection_id()
            .unwrap_or_default()
            .to_string();
        let mut poll = Backoff::new();
        loop {
            let read = self
                .aws
                .cloudformation
                .describe_stack_drift_detection_status()
                .stack_drift_detection_id(&detection_id)
                .send()
                .await
                .map_err(failed("DescribeStackDriftDetectionStatus"));
            let Some(status) = missed(read)? else {
                poll.pause().await;
                continue;
            };
            match status
                .detection_status()
                .map(|s| s.as_str())
                .unwrap_or_default()
            {
                "DETECTION_COMPLETE" => break,
                "DETECTION_FAILED" => {
                    return Err(EngineError::DriftFailed {
                        stack: self.stack_name.clone(),
                        reason: status
                            .detection_status_reason()
                            .unwrap_or_default()
                            .to_string(),
                    });
                }
                other => {
                    if poll.spent() {
                        return Err(EngineError::StillRunning {
                            stack: self.stack_name.clone(),
                            status: other.to_string(),
                            waited: poll.waited(),
                        });
                    }
                    poll.pause().await;
                }
            }
        }
        let addresses = self.addresses();
        let mut drifts = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .aws
                .cloudformation
                .describe_stack_resource_drifts()
                .stack_name(&live.id)
                .stack_resource_drift_status_filters(StackResourceDriftStatus::Modified)
                .stack_resource_drift_status_filters(StackResourceDriftStatus::Deleted)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(failed("DescribeStackResourceDrifts"))?;
            for drift in out.stack_resource_drifts() {
                let logical = drift.logical_resource_id().unwrap_or_default().to_string();
                let mut properties: Vec<String> = drift
                    .property_differences()
                    .iter()
                    .filter_map(|p| p.property_path().map(str::to_string))
                    .collect();
                properties.sort();
                drifts.push(ResourceDrift {
                    address: addresses.get(&logical).cloned(),
                    logical_id: logical,
                    resource_type: drift.resource_type().unwrap_or_default().to_string(),
                    status: drift
                        .stack_resource_drift_status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    properties,
                });
            }
            match out.next_token() {
                Some(next) => token = Some(next.to_string()),
                None => break,
            }
        }
        drifts.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
        Ok(drifts)
    }
}

/// The pace of a poll: half a second first, then half as long again each time, at most five
/// seconds apart, for at most [`STACK_OPERATION_BOUND`].
struct Backoff {
    started: tokio::time::Instant,
    delay: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            started: tokio::time::Instant::now(),
            delay: FIRST_POLL,
        }
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.delay).await;
        self.delay = self.delay.mul_f64(1.5).min(MAX_POLL);
    }

    fn waited(&self) -> Duration {
        self.started.elapsed()
    }

    fn spent(&self) -> bool {
        self.waited() >= STACK_OPERATION_BOUND
    }
}

/// A poll's read: a transient error (throttling, a 5xx that outlived the SDK's retries) is a
/// missed look, not the end of the wait, since the operation goes on in AWS either way.
fn missed<T>(result: Result<T, impl Into<EngineError>>) -> Result<Option<T>, EngineError> {
    match result.map_err(Into::into) {
        Ok(value) => Ok(Some(value)),
        Err(EngineError::Aws(e)) if e.is_transient() => {
            tracing::warn!(target: "infra::wait", error = %e, "a poll of CloudFormation failed; polling again");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The resources that failed and why, as the AWS CDK's stack monitor shows them: events
/// "cancelled" because another resource failed are left out, and so is the stack's own
/// summary unless no resource says more.
fn failures(events: &[StackEvent], stack_name: &str) -> Vec<ResourceFailure> {
    let failed = |e: &&StackEvent| e.status.ends_with("_FAILED") && !e.reason.is_empty();
    let as_failure = |e: &StackEvent| ResourceFailure {
        logical_id: e.logical_id.clone(),
        resource_type: e.resource_type.clone(),
        status: e.status.clone(),
        reason: e.reason.clone(),
    };
    let is_stack = |e: &StackEvent| {
        e.resource_type == "AWS::CloudFormation::Stack" && e.logical_id == stack_name
    };
    let resources: Vec<ResourceFailure> = events
        .iter()
        .filter(failed)
        .filter(|e| !is_stack(e) && !e.reason.to_lowercase().contains("cancelled"))
        .map(as_failure)
        .collect();
    if !resources.is_empty() {
        return resources;
    }
    events.iter().filter(failed).map(as_failure).collect()
}

/// What to do with a stack CloudFormation will neither update nor create again.
fn unusable(status: &str) -> Option<&'static str> {
    match status {
        "UPDATE_ROLLBACK_FAILED" | "IMPORT_ROLLBACK_FAILED" => Some(
            "its rollback failed; continue it in CloudFormation (`aws cloudformation continue-update-rollback`), then plan again",
        ),
        "DELETE_FAILED" => Some(
            "a delete failed; fix what held it (e.g. a bucket with objects: `--purge-data`) and run `infra destroy --engine cloudformation` again",
        ),
        _ => None,
    }
}

/// A change set's resource changes in the engine's words.
fn changes_of(
    changes: &[aws_sdk_cloudformation::types::Change],
    addresses: &BTreeMap<String, String>,
) -> Vec<StackChange> {
    changes
        .iter()
        .filter_map(|c| c.resource_change())
        .map(|rc| {
            let logical = rc.logical_resource_id().unwrap_or_default().to_string();
            let replacement = rc.replacement().map(|r| r.as_str()).unwrap_or("False");
            let action = match rc.action().map(|a| a.as_str()).unwrap_or_default() {
                "Add" => StackAction::Create,
                "Remove" => StackAction::Delete,
                "Import" => StackAction::Import,
                "Dynamic" => StackAction::Dynamic,
                _ if replacement == "True" => StackAction::Replace,
                _ if replacement == "Conditional" => StackAction::MayReplace,
                _ => StackAction::Update,
            };
            let mut properties: Vec<String> = rc
                .details()
                .iter()
                .filter_map(|d| d.target())
                .map(|t| {
                    t.name().map(str::to_string).unwrap_or_else(|| {
                        t.attribute()
                            .map(|a| a.as_str())
                            .unwrap_or_default()
                            .to_string()
                    })
                })
                .filter(|name| !name.is_empty())
                .collect();
            properties.sort();
            properties.dedup();
            StackChange {
                address: addresses.get(&logical).cloned(),
                logical_id: logical,
                resource_type: rc.resource_type().unwrap_or_default().to_string(),
                action,
                properties,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_progress_statuses_are_told_from_final_ones() {
        assert!(is_in_progress(
            "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"
        ));
        assert!(is_in_progress("CREATE_IN_PROGRESS"));
        assert!(!is_in_progress("REVIEW_IN_PROGRESS"));
        assert!(!is_in_progress("UPDATE_ROLLBACK_COMPLETE"));
        assert!(is_success("UPDATE_COMPLETE"));
        assert!(!is_success("UPDATE_ROLLBACK_COMPLETE"));
        assert!(!is_success("ROLLBACK_COMPLETE"));
    }

    fn event(logical_id: &str, resource_type: &str, status: &str, reason: &str) -> StackEvent {
        StackEvent {
            logical_id: logical_id.into(),
            resource_type: resource_type.into(),
            status: status.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn failures_name_the_resource_that_failed_not_those_cancelled_or_the_stack() {
        let events = [
            event(
                "s",
                "AWS::CloudFormation::Stack",
                "UPDATE_IN_PROGRESS",
                "User Initiated",
            ),
            event(
                "RoleA",
                "AWS::IAM::Role",
                "UPDATE_FAILED",
                "Resource update cancelled",
            ),
            event(
                "LambdaA",
                "AWS::Lambda::Function",
                "UPDATE_FAILED",
                "MemorySize too large",
            ),
            event(
                "s",
                "AWS::CloudFormation::Stack",
                "UPDATE_ROLLBACK_IN_PROGRESS",
                "The following resource(s) failed to update: [LambdaA].",
            ),
            event(
                "s",
                "AWS::CloudFormation::Stack",
                "UPDATE_ROLLBACK_COMPLETE",
                "",
            ),
        ];
        let found = failures(&events, "s");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].logical_id, "LambdaA");
        assert_eq!(found[0].reason, "MemorySize too large");
        // With nothing from a resource, the stack's own reason is what there is.
        let only_stack = [event(
            "s",
            "AWS::CloudFormation::Stack",
            "DELETE_FAILED",
            "Stack is protected",
        )];
        assert_eq!(failures(&only_stack, "s").len(), 1);
        let error = EngineError::StackFailed {
            stack: "s".into(),
            status: "UPDATE_ROLLBACK_COMPLETE".into(),
            failures: found,
        };
        assert_eq!(
            error.to_string(),
            "stack s ended UPDATE_ROLLBACK_COMPLETE\n  LambdaA (AWS::Lambda::Function) UPDATE_FAILED: MemorySize too large"
        );
    }

    #[test]
    fn stacks_cloudformation_will_not_update_say_what_to_do() {
        assert!(
            unusable("UPDATE_ROLLBACK_FAILED")
                .is_some_and(|s| s.contains("continue-update-rollback"))
        );
        assert!(unusable("DELETE_FAILED").is_some_and(|s| s.contains("destroy")));
        assert_eq!(unusable("UPDATE_ROLLBACK_COMPLETE"), None);
    }
}
