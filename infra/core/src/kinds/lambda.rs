//! Lambda functions: code (a zip packaged by [`crate::package`]), runtime, handler,
//! architecture, memory, timeout, environment, reserved concurrency, description, role, tags.
//!
//! Read: GetFunction per function answers configuration, tags and reserved concurrency in one
//! call (ListFunctions has neither tags nor concurrency). Code and configuration are updated
//! in place.
//!
//! AWS's behaviours (aws-behaviors.md, aws_lambda_function): a new function is `Pending`
//! until `Active`, and an update leaves it `InProgress` until `Successful`; meanwhile writes
//! answer `ResourceConflictException`. So every write waits until the function is ready first
//! and retries that conflict, and create and update wait for the function to be ready after.
//! CreateFunction and UpdateFunctionConfiguration retry the errors a role IAM has not
//! propagated yet causes. All of it is bounded by [`crate::eventual::Patience`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, Runtime};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, TagDelta, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::cloudformation::{Assets, CfnResource, Context, TemplateError, non_empty, tag_list};
use crate::eventual::{self, Readiness, Transient};
use crate::model::{Address, Kind, KindSpec, Ref, RoleSpec, Spec, Target};
use crate::package::{Artifact, code_sha256};
use serde_json::json;

pub const REPLACE_FIELDS: &[&str] = &[];

/// Runtimes for custom (here: Rust) bootstraps.
const RUNTIMES: &[&str] = &["provided.al2023", "provided.al2"];
const ARCHITECTURES: &[&str] = &["x86_64", "arm64"];
/// aws-behaviors.md, aws_lambda_function, Not found: `ResourceNotFoundException`.
pub(crate) const NOT_FOUND: NotFound = NotFound::codes(&["ResourceNotFoundException"]);

/// aws-behaviors.md, aws_lambda_function, Retries: CreateFunction and
/// UpdateFunctionConfiguration retry these `InvalidParameterValueException`s while IAM
/// propagates the role (and KMS a new key's grant).
fn role_propagating(e: &AwsError) -> Option<&'static str> {
    const WORDS: &[&str] = &[
        "The role defined for the function cannot be assumed by Lambda",
        "The provided execution role does not have permissions",
        "throttled by EC2",
        "the KMS key is invalid for CreateGrant",
    ];
    (e.is("InvalidParameterValueException") && WORDS.iter().any(|w| e.message.contains(w)))
        .then_some("IAM propagation: role not yet assumable by Lambda")
}

/// A function that is `Pending` or has an update `InProgress` refuses writes with
/// `ResourceConflictException` (aws-behaviors.md, aws_lambda_function, Retries). The same code
/// also means "already exists", which is not waited out.
pub(crate) fn busy(e: &AwsError) -> Option<&'static str> {
    (e.is("ResourceConflictException")
        && (e.message.contains("in progress")
            || e.message.contains("currently in the following state")))
    .then_some("the function is being created or updated")
}

fn role_propagating_or_busy(e: &AwsError) -> Option<&'static str> {
    role_propagating(e).or_else(|| busy(e))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LambdaSpec {
    pub name: String,
    pub role_arn: String,
    pub runtime: String,
    pub handler: String,
    pub architecture: String,
    pub memory_mb: i32,
    pub timeout_seconds: i32,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    pub reserved_concurrency: Option<i32>,
    #[serde(default)]
    pub description: String,
    pub code: LambdaCode,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub references: BTreeSet<Address>,
}

/// The deployment package: which handler, where its zip is, and its CodeSha256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LambdaCode {
    pub handler: String,
    pub zip: PathBuf,
    pub code_sha256: String,
    pub size: u64,
}

impl LambdaSpec {
    /// A Rust function on `provided.al2023`, x86_64, running `artifact` under `role`.
    pub fn rust(name: String, role: &Ref<RoleSpec>, artifact: &Artifact) -> LambdaSpec {
        LambdaSpec {
            name,
            role_arn: role.arn.clone(),
            runtime: "provided.al2023".into(),
            handler: "bootstrap".into(),
            architecture: "x86_64".into(),
            memory_mb: 256,
            timeout_seconds: 60,
            environment: BTreeMap::new(),
            reserved_concurrency: None,
            description: String::new(),
            code: LambdaCode {
                handler: artifact.handler.clone(),
                zip: artifact.zip.clone(),
                code_sha256: artifact.code_sha256.clone(),
                size: artifact.size,
            },
            tags: BTreeMap::new(),
            references: BTreeSet::from([role.address.clone()]),
        }
    }
}

impl KindSpec for LambdaSpec {
    const KIND: Kind = Kind::Lambda;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        arn(target, &self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::Lambda(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

pub fn arn(target: &Target, name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:{}:function:{}",
        target.region, target.account_id, name
    )
}

pub fn validate(spec: &LambdaSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if spec.name.is_empty() || spec.name.len() > 64 || !spec.name.chars().all(ok) {
        problems.push(Invalid::new(
            "name",
            format!(
                "`{}`: function names are 1 to 64 of A-Z a-z 0-9 - _",
                spec.name
            ),
        ));
    }
    if !RUNTIMES.contains(&spec.runtime.as_str()) {
        problems.push(Invalid::new(
            "runtime",
            format!("`{}`: one of {}", spec.runtime, RUNTIMES.join(", ")),
        ));
    }
    if !ARCHITECTURES.contains(&spec.architecture.as_str()) {
        problems.push(Invalid::new(
            "architecture",
            format!(
                "`{}`: one of {}",
                spec.architecture,
                ARCHITECTURES.join(", ")
            ),
        ));
    }
    if !(128..=10240).contains(&spec.memory_mb) {
        problems.push(Invalid::new(
            "memory_mb",
            format!("{} MB; Lambda allows 128 to 10240", spec.memory_mb),
        ));
    }
    if !(1..=900).contains(&spec.timeout_seconds) {
        problems.push(Invalid::new(
            "timeout_seconds",
            format!("{} s; Lambda allows 1 to 900", spec.timeout_seconds),
        ));
    }
    if let Some(n) = spec.reserved_concurrency
        && n < 0
    {
        problems.push(Invalid::new("reserved_concurrency", "not negative"));
    }
    let mut env_size = 0;
    for (key, value) in &spec.environment {
        let first_ok = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            problems.push(Invalid::new(
                format!("environment.{key}"),
                "variable names are a letter, then letters, digits and _",
            ));
        }
        if key.starts_with("AWS_") && !key.starts_with("AWS_ENDPOINT_URL") {
            problems.push(Invalid::new(
                format!("environment.{key}"),
                "`AWS_` variables are reserved by Lambda",
            ));
        }
        env_size += key.len() + value.len();
    }
    if env_size > 4096 {
        problems.push(Invalid::new(
            "environment",
            format!("{env_size} bytes; Lambda allows 4 KB of variables"),
        ));
    }
    if spec.description.chars().count() > 256 {
        problems.push(Invalid::new("description", "at most 256 characters"));
    }
    if spec.code.code_sha256.is_empty() {
        problems.push(Invalid::new("code", "no package for this function"));
    }
    problems
}

/// `AWS::Lambda::Function`, its code in the assets bucket under the key of its bytes.
pub fn cloudformation(spec: &LambdaSpec, cx: &Context) -> Result<CfnResource, TemplateError> {
    let key = Assets::code_key(&spec.code)
        .ok_or_else(|| TemplateError::NotPackaged(cx.address.clone()))?;
    Ok(CfnResource::main(
        "AWS::Lambda::Function",
        json!({
            "FunctionName": spec.name,
            "Role": spec.role_arn,
            "Runtime": spec.runtime,
            "Handler": spec.handler,
            "Architectures": [spec.architecture],
            "MemorySize": spec.memory_mb,
            "Timeout": spec.timeout_seconds,
            "Environment": (!spec.environment.is_empty())
                .then(|| json!({"Variables": spec.environment})),
            "ReservedConcurrentExecutions": spec.reserved_concurrency,
            "Description": non_empty(&spec.description),
            "Code": {"S3Bucket": cx.assets.bucket, "S3Key": key},
            "Tags": tag_list(&spec.tags),
        }),
    ))
}

pub fn fields(spec: &LambdaSpec) -> Fields {
    let mut fields = Fields::new();
    fields.insert(
        "code_sha256".into(),
        Value::String(spec.code.code_sha256.clone()),
    );
    fields.insert("role".into(), Value::String(spec.role_arn.clone()));
    fields.insert("runtime".into(), Value::String(spec.runtime.clone()));
    fields.insert("handler".into(), Value::String(spec.handler.clone()));
    fields.insert(
        "architecture".into(),
        Value::String(spec.architecture.clone()),
    );
    fields.insert("memory_mb".into(), Value::from(spec.memory_mb));
    fields.insert("timeout_seconds".into(), Value::from(spec.timeout_seconds));
    fields.insert(
        "description".into(),
        Value::String(spec.description.clone()),
    );
    fields.insert(
        "reserved_concurrency".into(),
        spec.reserved_concurrency
            .map(Value::from)
            .unwrap_or(Value::String("unreserved".into())),
    );
    for (key, value) in &spec.environment {
        fields.insert(format!("environment.{key}"), Value::String(value.clone()));
    }
    tag_fields(&spec.tags, &mut fields);
    fields
}

pub async fn read(aws: &Aws, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
    let found: Vec<(Address, Option<LambdaSpec>)> = stream::iter(targets.iter().cloned())
        .map(
            |t| async move { Ok::<_, AwsError>((t.address, read_one(aws, &t.physical_id).await?)) },
        )
        .buffer_unordered(8)
        .try_collect()
        .await?;
    Ok(found
        .into_iter()
        .map(|(a, s)| (a, s.map(Spec::Lambda)))
        .collect())
}

async fn read_one(aws: &Aws, name: &str) -> Result<Option<LambdaSpec>, AwsError> {
    let Some(out) = aws
        .lambda
        .get_function()
        .function_name(name)
        .send()
        .await
        .map_err(failed("GetFunction"))
        .or_missing(NOT_FOUND)?
    else {
        return Ok(None);
    };
    let Some(config) = out.configuration() else {
        return Ok(None);
    };
    Ok(Some(LambdaSpec {
        name: name.to_string(),
        role_arn: config.role().unwrap_or_default().to_string(),
        runtime: config
            .runtime()
            .map(|r| r.as_str().to_string())
            .unwrap_or_default(),
        handler: config.handler().unwrap_or_default().to_string(),
        architecture: config
            .architectures()
            .first()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| "x86_64".into()),
        memory_mb: config.memory_size().unwrap_or(128),
        timeout_seconds: config.timeout().unwrap_or(3),
        environment: config
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        reserved_concurrency: out
            .concurrency()
            .and_then(|c| c.reserved_concurrent_executions()),
        description: config.description().unwrap_or_default().to_string(),
        code: LambdaCode {
            handler: String::new(),
            zip: PathBuf::new(),
            code_sha256: config.code_sha256().unwrap_or_default().to_string(),
            size: config.code_size() as u64,
        },
        tags: out
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        references: BTreeSet::new(),
    }))
}

/// The zip the plan names, checked against the CodeSha256 the plan was made with.
fn zip_bytes(spec: &LambdaSpec) -> Result<Vec<u8>, OpError> {
    let bytes = std::fs::read(&spec.code.zip).map_err(|e| {
        OpError::Refused(format!(
            "cannot read the package {} ({e}); plan again to rebuild it",
            spec.code.zip.display()
        ))
    })?;
    let actual = code_sha256(&bytes);
    if actual != spec.code.code_sha256 {
        return Err(OpError::Refused(format!(
            "the package {} changed since the plan (CodeSha256 {actual}, plan has {}); plan again",
            spec.code.zip.display(),
            spec.code.code_sha256
        )));
    }
    Ok(bytes)
}

fn environment(spec: &LambdaSpec) -> Environment {
    Environment::builder()
        .set_variables(Some(spec.environment.clone().into_iter().collect()))
        .build()
}

pub async fn create(aws: &Aws, target: &Target, spec: &LambdaSpec) -> Result<(), OpError> {
    let zip = zip_bytes(spec)?;
    let created = eventual::retry(
        &spec.name,
        aws.patience.propagation,
        role_propagating as Transient,
        || async {
            aws.lambda
                .create_function()
                .function_name(&spec.name)
                .role(&spec.role_arn)
                .runtime(Runtime::from(spec.runtime.as_str()))
                .handler(&spec.handler)
                .architectures(Architecture::from(spec.architecture.as_str()))
                .memory_size(spec.memory_mb)
                .timeout(spec.timeout_seconds)
                .description(&spec.description)
                .environment(environment(spec))
                .code(
                    FunctionCode::builder()
                        .zip_file(Blob::new(zip.clone()))
                        .build(),
                )
                .set_tags(Some(spec.tags.clone().into_iter().collect()))
                .send()
                .await
                .map_err(failed("CreateFunction"))
        },
    )
    .await;
    match created {
        Ok(_) => {}
        // Created by an interrupted apply ("Function already exist"): converge it like an
        // update, once it is ready.
        Err(e) if e.aws().is("ResourceConflictException") => {
            wait_ready(aws, &spec.name).await?;
            let live = read_one(aws, &spec.name)
                .await?
                .ok_or_else(|| OpError::from(e.clone()))?;
            return update(aws, target, spec, &live).await;
        }
        Err(e) => return Err(e.into()),
    }
    wait_ready(aws, &spec.name).await?;
    if let Some(n) = spec.reserved_concurrency {
        put_concurrency(aws, &spec.name, Some(n)).await?;
    }
    Ok(())
}

/// Waits until the function exists, is `Active` and has no update `InProgress`: what every
/// write to it needs (aws-behaviors.md, aws_lambda_function, Waits).
pub(crate) async fn wait_ready(aws: &Aws, name: &str) -> Result<(), OpError> {
    use aws_sdk_lambda::types::{LastUpdateStatus, State};
    eventual::wait_until(
        name,
        "the function is ready",
        aws.patience.ready,
        || async {
            let found = aws
                .lambda
                .get_function_configuration()
                .function_name(name)
                .send()
                .await
                .map_err(failed("GetFunctionConfiguration"))
                .or_missing(NOT_FOUND)?;
            // A function just created may not be visible yet.
            let Some(config) = found else {
                return Ok(Readiness::NotYet("not found yet".into()));
            };
            let reason = || {
                config
                    .state_reason()
                    .or(config.last_update_status_reason())
                    .unwrap_or("no reason given")
                    .to_string()
            };
            Ok(match (config.state(), config.last_update_status()) {
                (Some(State::Failed), _) => {
                    Readiness::Failed(format!("state Failed: {}", reason()))
                }
                (Some(State::Pending), _) => Readiness::NotYet("Pending".into()),
                (_, Some(LastUpdateStatus::InProgress)) => {
                    Readiness::NotYet("update InProgress".into())
                }
                (_, Some(LastUpdateStatus::Failed)) => {
                    Readiness::Failed(format!("last update Failed: {}", reason()))
                }
                (Some(State::Inactive), _) | (Some(State::Active), _) | (None, _) => {
                    Readiness::Ready
                }
                (Some(other), _) => Readiness::NotYet(other.as_str().to_string()),
            })
        },
    )
    .await?;
    Ok(())
}

async fn put_concurrency(aws: &Aws, name: &str, n: Option<i32>) -> Result<(), OpError> {
    let bound = aws.patience.propagation;
    match n {
        Some(n) => {
            eventual::retry(name, bound, busy as Transient, || async {
                aws.lambda
                    .put_function_concurrency()
                    .function_name(name)
                    .reserved_concurrent_executions(n)
                    .send()
                    .await
                    .map_err(failed("PutFunctionConcurrency"))
            })
            .await?;
        }
        None => {
            eventual::retry(name, bound, busy as Transient, || async {
                aws.lambda
                    .delete_function_concurrency()
                    .function_name(name)
                    .send()
                    .await
                    .map_err(failed("DeleteFunctionConcurrency"))
            })
            .await?;
        }
    }
    Ok(())
}

pub async fn update(
    aws: &Aws,
    target: &Target,
    desired: &LambdaSpec,
    live: &LambdaSpec,
) -> Result<(), OpError> {
    let name = &desired.name;
    let bound = aws.patience.propagation;
    // An earlier apply, or someone else, may have left it Pending or updating.
    wait_ready(aws, name).await?;
    if desired.code.code_sha256 != live.code.code_sha256
        || desired.architecture != live.architecture
    {
        let zip = zip_bytes(desired)?;
        eventual::retry(name, bound, busy as Transient, || async {
            aws.lambda
                .update_function_code()
                .function_name(name)
                .zip_file(Blob::new(zip.clone()))
                .architectures(Architecture::from(desired.architecture.as_str()))
                .send()
                .await
                .map_err(failed("UpdateFunctionCode"))
        })
        .await?;
        wait_ready(aws, name).await?;
    }
    let configuration_differs = desired.role_arn != live.role_arn
        || desired.runtime != live.runtime
        || desired.handler != live.handler
        || desired.memory_mb != live.memory_mb
        || desired.timeout_seconds != live.timeout_seconds
        || desired.description != live.description
        || desired.environment != live.environment;
    if configuration_differs {
        eventual::retry(
            name,
            bound,
            role_propagating_or_busy as Transient,
            || async {
                aws.lambda
                    .update_function_configuration()
                    .function_name(name)
                    .role(&desired.role_arn)
                    .runtime(Runtime::from(desired.runtime.as_str()))
                    .handler(&desired.handler)
                    .memory_size(desired.memory_mb)
                    .timeout(desired.timeout_seconds)
                    .description(&desired.description)
                    .environment(environment(desired))
                    .send()
                    .await
                    .map_err(failed("UpdateFunctionConfiguration"))
            },
        )
        .await?;
        wait_ready(aws, name).await?;
    }
    if desired.reserved_concurrency != live.reserved_concurrency {
        put_concurrency(aws, name, desired.reserved_concurrency).await?;
    }
    let delta = TagDelta::between(&desired.tags, &live.tags);
    if !delta.is_empty() {
        let arn = arn(target, name);
        if !delta.set.is_empty() {
            let tags: std::collections::HashMap<String, String> = delta.set.into_iter().collect();
            eventual::retry(name, bound, busy as Transient, || async {
                aws.lambda
                    .tag_resource()
                    .resource(&arn)
                    .set_tags(Some(tags.clone()))
                    .send()
                    .await
                    .map_err(failed("TagResource"))
            })
            .await?;
        }
        if !delta.remove.is_empty() {
            let keys: Vec<String> = delta.remove.into_iter().collect();
            eventual::retry(name, bound, busy as Transient, || async {
                aws.lambda
                    .untag_resource()
                    .resource(&arn)
                    .set_tag_keys(Some(keys.clone()))
                    .send()
                    .await
                    .map_err(failed("UntagResource"))
            })
            .await?;
        }
    }
    Ok(())
}

pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    aws.lambda
        .delete_function()
        .function_name(name)
        .send()
        .await
        .map_err(failed("DeleteFunction"))
        .or_missing(NOT_FOUND)?;
    Ok(())
}
