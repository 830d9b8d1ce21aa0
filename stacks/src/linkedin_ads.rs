//! The LinkedIn Ads pipeline stack: the data bucket, the alerts topic, the secrets (values set
//! apart, `linkedin-oauth` rotated by the token-rotation function), one least-privilege role
//! and one log group per Lambda, the Glue crawler and SageMaker execution roles, the data
//! catalog (`catalog`) and the monitoring (`monitoring`). Every role's grants are inline and
//! scoped to the env's resources: no role attaches an AWS-managed policy.

use std::collections::BTreeMap;

use infra_core::model::{
    BucketSpec, Encryption, FunctionUrlSpec, Kind, LambdaSpec, LifecycleRule, LogGroupSpec,
    ModelRegistry, PermissionSpec, PolicyDocument, PublicAccessBlock, Ref, RoleSpec, RuleSpec,
    SecretFormat, SecretRotationSpec, SecretSpec, Stack, Statement, TopicSpec,
};
use infra_core::package::{Artifact, Artifacts};
use infra_core::sql::{SqlError, SqlFile};
use serde_json::json;

use crate::env::Env;

pub const STACK_NAME: &str = "linkedin-ads";

pub use crate::monitoring::METRICS_NAMESPACE;

/// The model registry's prefix in the data bucket (`models/<model>/v<N>/...`).
pub const MODEL_REGISTRY_PREFIX: &str = "models";

/// LinkedIn access tokens live 60 days: the token-rotation function refreshes them this often.
pub const ROTATION_DAYS: i64 = 60;

/// The members of the `linkedin-oauth` secret's JSON value (api-notes.md).
pub const LINKEDIN_OAUTH_MEMBERS: [&str; 6] = [
    "client_id",
    "client_secret",
    "access_token",
    "refresh_token",
    "access_token_expires_at",
    "refresh_token_expires_at",
];

/// The pipeline's Lambda functions, by their short names.
pub const FUNCTIONS: [&str; 5] = [
    "collector",
    "processor",
    "optimizer",
    "copy-generator",
    "token-rotation",
];

/// What one function may touch in the data bucket and beyond.
struct Access {
    reads: &'static [&'static str],
    writes: &'static [&'static str],
    secrets: &'static [&'static str],
    rotates_secret: Option<&'static str>,
    emits_metrics: bool,
}

fn access(function: &str) -> Access {
    match function {
        "collector" => Access {
            reads: &[],
            writes: &["raw/linkedin/"],
            secrets: &["linkedin-oauth"],
            rotates_secret: None,
            emits_metrics: true,
        },
        "processor" => Access {
            reads: &["raw/linkedin/", "processed/"],
            writes: &["processed/"],
            secrets: &[],
            rotates_secret: None,
            emits_metrics: true,
        },
        "optimizer" => Access {
            reads: &["processed/", "models/", "decisions/"],
            writes: &["decisions/"],
            secrets: &["linkedin-oauth"],
            rotates_secret: None,
            emits_metrics: true,
        },
        "copy-generator" => Access {
            reads: &["processed/", "generated/"],
            writes: &["generated/copy/"],
            secrets: &["anthropic-api-key"],
            rotates_secret: None,
            emits_metrics: true,
        },
        _ => Access {
            reads: &[],
            writes: &[],
            secrets: &[],
            rotates_secret: Some("linkedin-oauth"),
            emits_metrics: false,
        },
    }
}

/// What the stack is built from besides the env file.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// The handlers' packages, by handler name; a missing one fails validation.
    pub artifacts: Artifacts,
    /// `assets/athena/views/*.sql`.
    pub views: Vec<SqlFile>,
    /// `assets/athena/queries/*.sql`.
    pub queries: Vec<SqlFile>,
}

/// Problems found while building the stack, before any AWS call.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Sql(Vec<SqlError>),
    #[error("{0}")]
    Waivers(crate::env::EnvErrors),
    #[error("{0}")]
    Imports(crate::env::EnvErrors),
}

/// Builds the stack for `env` from `inputs`.
pub fn linkedin_ads(env: &Env, inputs: &Inputs) -> Result<Stack, StackError> {
    let artifacts = &inputs.artifacts;
    let target = env.target(STACK_NAME);
    let mut stack = Stack::new(target.clone());
    // Before any resource is added: an imported resource keeps its live name, and every
    // reference to it carries that name.
    stack.imports = env.imports();

    let data = stack.add("data", data_bucket(env));
    if env.protected {
        stack.protect(&data);
    }
    stack.model_registry = Some(ModelRegistry {
        bucket: data.name.clone(),
        prefix: MODEL_REGISTRY_PREFIX.into(),
    });

    let secrets = secrets(&mut stack);
    // With a customer managed key on the bucket, every role that reads or writes it uses it.
    let data_key = env.data_kms_key_arn();

    let alerts_name = stack.name_of(Kind::Topic, "alerts", target.name("alerts"));
    let alerts_arn = format!(
        "arn:aws:sns:{}:{}:{}",
        target.region, target.account_id, alerts_name
    );
    let alerts = stack.add(
        "alerts",
        TopicSpec {
            name: alerts_name,
            display_name: "LinkedIn Ads alerts".into(),
            policy: Some(PolicyDocument::new(vec![
                Statement::allow(["sns:Publish"])
                    .sid("CloudWatchAlarms")
                    .service_principal("cloudwatch.amazonaws.com")
                    .on(alerts_arn.clone())
                    .condition(
                        "StringEquals",
                        "aws:SourceAccount",
                        target.account_id.clone(),
                    ),
                Statement::allow(["sns:Publish"])
                    .sid("EventBridgeRules")
                    .service_principal("events.amazonaws.com")
                    .on(alerts_arn)
                    .condition(
                        "StringEquals",
                        "aws:SourceAccount",
                        target.account_id.clone(),
                    ),
            ])),
            email_subscriptions: env
                .alerts
                .emails
                .iter()
                .map(|e| e.get_ref().clone())
                .collect(),
            tags: BTreeMap::new(),
        },
    );

    let mut lambdas: Vec<(&'static str, Ref<LambdaSpec>)> = Vec::new();
    for function in FUNCTIONS {
        let log_group = stack.add(
            function,
            LogGroupSpec {
                // Lambda logs to the group named after the function, imported name included.
                name: format!(
                    "/aws/lambda/{}",
                    stack.name_of(Kind::Lambda, function, target.name(function))
                ),
                retention_days: Some(*env.logs.retention_days.get_ref()).filter(|d| *d != 0),
                tags: BTreeMap::new(),
            },
        );
        let role = lambda_role(&stack, function, &data, &log_group, &secrets, data_key);
        let role = stack.add(function, role);
        let artifact = artifacts
            .get(function)
            .cloned()
            .unwrap_or_else(|| Artifact {
                handler: function.to_string(),
                zip: Default::default(),
                code_sha256: String::new(),
                size: 0,
                inputs: String::new(),
            });
        let lambda = stack.add(
            function,
            lambda_function(env, &stack, function, &role, &artifact, &data, &secrets),
        );
        // The function logs to a group with the stack's retention, never one Lambda creates.
        stack.depend(&lambda, &log_group);
        lambdas.push((function, lambda.clone()));
        match function {
            "collector" => {
                stack.add(function, FunctionUrlSpec::aws_iam(&lambda));
                schedule(
                    &mut stack,
                    env,
                    function,
                    env.schedules.collector.get_ref(),
                    &lambda,
                );
            }
            "processor" => schedule(
                &mut stack,
                env,
                function,
                env.schedules.processor.get_ref(),
                &lambda,
            ),
            "optimizer" => schedule(
                &mut stack,
                env,
                function,
                env.schedules.optimizer.get_ref(),
                &lambda,
            ),
            "copy-generator" => schedule(
                &mut stack,
                env,
                function,
                env.schedules.copy_generator.get_ref(),
                &lambda,
            ),
            _ => {
                // Secrets Manager invokes the rotation function, for this account's secrets only.
                let permission = stack.add(
                    "token-rotation-secrets-manager",
                    PermissionSpec::invoke_for_account(
                        &lambda,
                        "secrets-manager-rotation",
                        "secretsmanager.amazonaws.com",
                        &target.account_id,
                    ),
                );
                let rotation = stack.add(
                    "linkedin-oauth",
                    SecretRotationSpec::new(&secrets.linkedin, &lambda, ROTATION_DAYS),
                );
                // Secrets Manager must be allowed to invoke the function before it tests it.
                stack.depend(&rotation, &permission);
            }
        }
    }

    let crawler_role = stack.add(
        "glue-crawler",
        crate::catalog::crawler_role(&stack, &data, data_key),
    );
    stack.add("sagemaker", sagemaker_role(env, &stack, &data, data_key));
    let crawler = crate::catalog::add(
        &mut stack,
        env,
        &data,
        &crawler_role,
        &inputs.views,
        &inputs.queries,
    )
    .map_err(StackError::Sql)?;
    crate::monitoring::add(
        &mut stack,
        env,
        &crate::monitoring::Watched {
            functions: &lambdas,
            crawler: &crawler,
            rotated_secret: &secrets.linkedin,
            alerts: &alerts,
        },
    );
    env.apply_waivers(&mut stack).map_err(StackError::Waivers)?;
    env.check_imports(&stack).map_err(StackError::Imports)?;
    Ok(stack)
}

/// The pipeline's secrets, declared without values (`infra secret set` writes them).
struct Secrets {
    linkedin: Ref<SecretSpec>,
    anthropic: Ref<SecretSpec>,
}

impl Secrets {
    fn get(&self, name: &str) -> Option<&Ref<SecretSpec>> {
        match name {
            "linkedin-oauth" => Some(&self.linkedin),
            "anthropic-api-key" => Some(&self.anthropic),
            _ => None,
        }
    }
}

fn secrets(stack: &mut Stack) -> Secrets {
    let t = stack.target.clone();
    let linkedin = stack.add(
        "linkedin-oauth",
        SecretSpec::new(
            t.name("linkedin-oauth"),
            "LinkedIn Marketing API OAuth client and tokens (JSON), rotated by token-rotation",
            SecretFormat::Json {
                required: LINKEDIN_OAUTH_MEMBERS.map(String::from).to_vec(),
                timestamps: vec![
                    "access_token_expires_at".into(),
                    "refresh_token_expires_at".into(),
                ],
            },
        ),
    );
    let anthropic = stack.add(
        "anthropic-api-key",
        SecretSpec::new(
            t.name("anthropic-api-key"),
            "Anthropic API key of the copy generator (the key itself, as text)",
            SecretFormat::Text,
        ),
    );
    Secrets {
        linkedin,
        anthropic,
    }
}

/// A schedule rule for `function` and the permission for EventBridge to invoke it from that
/// rule only. The event's detail names the job.
fn schedule(
    stack: &mut Stack,
    env: &Env,
    function: &str,
    expression: &str,
    lambda: &Ref<LambdaSpec>,
) {
    let mut detail = json!({ "job": function, "env": env.name() });
    if function == "collector" {
        detail["lookback_days"] = json!(*env.linkedin.lookback_days.get_ref());
    }
    let rule = stack.add(
        function,
        RuleSpec::schedule(
            stack.target.name(function),
            expression,
            env.schedules.enabled,
            &format!("Runs the {function} Lambda function"),
        )
        .target(function, lambda, Some(detail)),
    );
    stack.add(
        &format!("{function}-schedule"),
        PermissionSpec::invoke_from(
            lambda,
            "eventbridge-schedule",
            "events.amazonaws.com",
            &rule,
        ),
    );
}

fn lambda_function(
    env: &Env,
    stack: &Stack,
    function: &str,
    role: &Ref<RoleSpec>,
    artifact: &Artifact,
    data: &Ref<BucketSpec>,
    secrets: &Secrets,
) -> LambdaSpec {
    let t = &stack.target;
    let mut spec = LambdaSpec::rust(t.name(function), role, artifact);
    spec.description = format!("LinkedIn Ads {function} ({})", env.name());
    if let Some(config) = env.functions.get(function) {
        spec.memory_mb = *config.memory_mb.get_ref();
        spec.timeout_seconds = *config.timeout_seconds.get_ref();
        spec.reserved_concurrency = config.reserved_concurrency.as_ref().map(|n| *n.get_ref());
    }
    let mut vars: BTreeMap<&str, String> = BTreeMap::from([
        ("DATA_BUCKET", data.name.clone()),
        ("METRICS_NAMESPACE", METRICS_NAMESPACE.to_string()),
        (
            "METRICS_ENVIRONMENT",
            crate::monitoring::metrics_environment(stack),
        ),
        ("RUST_LOG", "info".to_string()),
    ]);
    let linkedin = |vars: &mut BTreeMap<&str, String>| {
        vars.insert("LINKEDIN_SECRET_ID", secrets.linkedin.name.clone());
        vars.insert(
            "LINKEDIN_VERSION",
            env.linkedin.api_version.get_ref().clone(),
        );
        let accounts: Vec<&str> = env
            .linkedin
            .ad_accounts
            .iter()
            .map(|a| a.get_ref().as_str())
            .collect();
        vars.insert("LINKEDIN_AD_ACCOUNTS", accounts.join(","));
    };
    match function {
        "collector" => {
            linkedin(&mut vars);
            vars.insert(
                "LOOKBACK_DAYS",
                env.linkedin.lookback_days.get_ref().to_string(),
            );
        }
        "optimizer" => {
            linkedin(&mut vars);
            vars.insert("MODEL_REGISTRY_PREFIX", MODEL_REGISTRY_PREFIX.into());
            let o = &env.optimizer;
            vars.insert("OPTIMIZER_DRY_RUN", o.dry_run.to_string());
            for (name, value) in [
                (
                    "OPTIMIZER_LOOKBACK_DAYS",
                    o.lookback_days.get_ref().to_string(),
                ),
                (
                    "OPTIMIZER_MIN_IMPRESSIONS",
                    o.min_impressions.get_ref().to_string(),
                ),
                (
                    "OPTIMIZER_CONFIDENCE_Z",
                    o.confidence_z.get_ref().to_string(),
                ),
                (
                    "OPTIMIZER_MAX_ACTIONS",
                    o.max_actions_per_run.get_ref().to_string(),
                ),
                (
                    "OPTIMIZER_COOLDOWN_HOURS",
                    o.cooldown_hours.get_ref().to_string(),
                ),
                (
                    "OPTIMIZER_MAX_BID_CHANGE_PERCENT",
                    o.max_bid_change_percent.get_ref().to_string(),
                ),
                (
                    "OPTIMIZER_BUDGET_INCREASE_PERCENT",
                    o.budget_increase_percent.get_ref().to_string(),
                ),
            ] {
                vars.insert(name, value);
            }
        }
        "processor" => {
            vars.insert(
                "LOOKBACK_DAYS",
                env.linkedin.lookback_days.get_ref().to_string(),
            );
        }
        "copy-generator" => {
            vars.insert(
                "LOOKBACK_DAYS",
                env.linkedin.lookback_days.get_ref().to_string(),
            );
            vars.insert("ANTHROPIC_SECRET_ID", secrets.anthropic.name.clone());
            vars.insert("ANTHROPIC_MODEL", env.anthropic.model.get_ref().clone());
        }
        "token-rotation" => {
            vars.insert("LINKEDIN_SECRET_ID", secrets.linkedin.name.clone());
        }
        _ => {}
    }
    spec.environment = vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    spec
}

fn data_bucket(env: &Env) -> BucketSpec {
    let d = &env.data;
    let encryption = match d.encryption.get_ref().as_str() {
        "aws:kms" => Encryption::Kms {
            key_id: d.kms_key_arn.as_ref().map(|k| k.get_ref().clone()),
            bucket_key: true,
        },
        _ => Encryption::SseS3,
    };
    BucketSpec {
        name: env.data_bucket_name(),
        encryption,
        public_access_block: PublicAccessBlock::ALL,
        versioning: true,
        lifecycle_rules: vec![
            LifecycleRule::new("raw-expiry", "raw/").expire_after(*d.raw_expiration_days.get_ref()),
            LifecycleRule::new("processed-tiering", "processed/")
                .transition(*d.processed_infrequent_access_days.get_ref(), "STANDARD_IA")
                .transition(*d.processed_glacier_days.get_ref(), "GLACIER"),
            LifecycleRule::new("athena-results-expiry", "athena-results/")
                .expire_after(*d.athena_results_expiration_days.get_ref()),
            LifecycleRule::new("noncurrent-versions", "")
                .expire_noncurrent_after(*d.noncurrent_version_expiration_days.get_ref())
                .abort_multipart_after(7),
        ],
        tags: BTreeMap::new(),
    }
}

fn lambda_role(
    stack: &Stack,
    function: &str,
    data: &Ref<BucketSpec>,
    log_group: &Ref<LogGroupSpec>,
    secrets: &Secrets,
    data_key: Option<&str>,
) -> RoleSpec {
    let a = access(function);
    let mut statements = vec![
        Statement::allow(["logs:CreateLogStream", "logs:PutLogEvents"])
            .sid("WriteOwnLogs")
            .on_ref(log_group, ":*"),
    ];
    if !a.reads.is_empty() {
        let mut read = Statement::allow(["s3:GetObject"]).sid("ReadData");
        for prefix in a.reads {
            read = read.on_ref(data, &format!("/{prefix}*"));
        }
        statements.push(read);
        statements.push(
            Statement::allow(["s3:ListBucket"])
                .sid("ListData")
                .on_ref(data, "")
                .condition(
                    "StringLike",
                    "s3:prefix",
                    a.reads.iter().map(|p| format!("{p}*")).collect::<Vec<_>>(),
                ),
        );
    }
    if !a.writes.is_empty() {
        let mut write = Statement::allow(["s3:PutObject"]).sid("WriteData");
        for prefix in a.writes {
            write = write.on_ref(data, &format!("/{prefix}*"));
        }
        statements.push(write);
    }
    let uses_bucket = !a.reads.is_empty() || !a.writes.is_empty();
    if let Some(key) = data_key
        && uses_bucket
    {
        statements.push(data_key_statement(stack, key, !a.writes.is_empty()));
    }
    for secret in a.secrets.iter().filter_map(|s| secrets.get(s)) {
        statements.push(
            Statement::allow(["secretsmanager:GetSecretValue"])
                .sid(&format!("Read{}", pascal(&secret.address.name)))
                .on_ref(secret, ""),
        );
    }
    if let Some(secret) = a.rotates_secret.and_then(|s| secrets.get(s)) {
        statements.push(
            Statement::allow([
                "secretsmanager:DescribeSecret",
                "secretsmanager:GetSecretValue",
                "secretsmanager:PutSecretValue",
                "secretsmanager:UpdateSecretVersionStage",
            ])
            .sid(&format!("Rotate{}", pascal(&secret.address.name)))
            .on_ref(secret, ""),
        );
    }
    if a.emits_metrics {
        // PutMetricData supports no resource-level permissions: scope it by namespace.
        statements.push(
            Statement::allow(["cloudwatch:PutMetricData"])
                .sid("EmitMetrics")
                .on("*")
                .condition("StringEquals", "cloudwatch:namespace", METRICS_NAMESPACE),
        );
    }
    RoleSpec::for_service(
        stack.target.name(function),
        "lambda.amazonaws.com",
        &format!("Execution role of the {function} Lambda function"),
    )
    .inline(function, PolicyDocument::new(statements))
}

/// Use of the data bucket's customer managed key (`data.kms_key_arn`), through S3 only: what
/// SSE-KMS asks of a reader (`kms:Decrypt`) and of a writer (`kms:GenerateDataKey`; writers
/// keep `kms:Decrypt` too, which multipart uploads need).
pub(crate) fn data_key_statement(stack: &Stack, key: &str, writes: bool) -> Statement {
    let mut actions = vec!["kms:Decrypt"];
    if writes {
        actions.push("kms:GenerateDataKey");
    }
    Statement::allow(actions)
        .sid("UseDataKey")
        .on(key)
        .condition(
            "StringEquals",
            "kms:ViaService",
            format!("s3.{}.amazonaws.com", stack.target.region),
        )
}

/// The SageMaker execution role of training jobs and of the env's endpoints: the training
/// data and models in the bucket; the image pulls from the env's ECR repositories
/// (`<project>-<env>-*`, in the env's account and region: the stack declares no repository, so
/// the training and serving images live in one named so); the training jobs' and the env's
/// endpoints' log groups; metrics under `/aws/sagemaker/`; the bucket's key if it has one.
fn sagemaker_role(
    env: &Env,
    stack: &Stack,
    data: &Ref<BucketSpec>,
    data_key: Option<&str>,
) -> RoleSpec {
    let t = &stack.target;
    let log_group = |name: &str| {
        format!(
            "arn:aws:logs:{}:{}:log-group:{name}",
            t.region, t.account_id
        )
    };
    let mut groups = vec!["/aws/sagemaker/TrainingJobs".to_string()];
    groups.extend(
        env.sagemaker
            .endpoints
            .iter()
            .map(|e| format!("/aws/sagemaker/Endpoints/{}", e.get_ref())),
    );
    let mut logs = Statement::allow([
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams",
    ])
    .sid("WriteSageMakerLogs");
    for group in groups.iter().map(String::as_str) {
        logs = logs
            .on(log_group(group))
            .on(format!("{}:*", log_group(group)));
    }
    let mut statements = vec![
        Statement::allow(["s3:GetObject"])
            .sid("ReadTrainingData")
            .on_ref(data, "/processed/*")
            .on_ref(data, "/models/*"),
        Statement::allow(["s3:PutObject"])
            .sid("WriteModels")
            .on_ref(data, "/models/*"),
        Statement::allow(["s3:ListBucket"])
            .sid("ListData")
            .on_ref(data, "")
            .condition(
                "StringLike",
                "s3:prefix",
                json!(["processed/*", "models/*"]),
            ),
        Statement::allow([
            "ecr:BatchCheckLayerAvailability",
            "ecr:GetDownloadUrlForLayer",
            "ecr:BatchGetImage",
        ])
        .sid("PullImages")
        .on(format!(
            "arn:aws:ecr:{}:{}:repository/{}",
            t.region,
            t.account_id,
            t.name("*")
        )),
        // ECR defines no resource type for the login token: `*` is the only resource it takes.
        Statement::allow(["ecr:GetAuthorizationToken"])
            .sid("LogInToEcr")
            .on("*"),
        logs,
        Statement::allow(["cloudwatch:PutMetricData"])
            .sid("EmitMetrics")
            .on("*")
            .condition("StringLike", "cloudwatch:namespace", "/aws/sagemaker/*"),
    ];
    if let Some(key) = data_key {
        statements.push(data_key_statement(stack, key, true));
    }
    RoleSpec::for_service(
        t.name("sagemaker"),
        "sagemaker.amazonaws.com",
        "SageMaker training and inference for the creative scorer and bid optimizer",
    )
    .inline("train-and-serve", PolicyDocument::new(statements))
}

/// `linkedin-oauth` -> `LinkedinOauth`, for statement ids.
fn pascal(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use infra_core::compliance::{self, Rule};
    use infra_core::model::{Spec, Stack};
    use serde_json::Value;

    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn manifest_dir() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn inputs() -> Inputs {
        let views = manifest_dir().join("../assets/athena/views");
        Inputs {
            artifacts: Artifacts::default(),
            views: infra_core::sql::load_dir(&views).unwrap_or_else(|e| panic!("{e}")),
            queries: infra_core::sql::load_dir(&views.join("../queries"))
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Every `stacks/envs/*.toml`.
    fn env_files() -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(manifest_dir().join("envs"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        assert!(!files.is_empty());
        files
    }

    fn build(env: &Env) -> Stack {
        linkedin_ads(env, &inputs()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `envs/local.toml` with `encryption` in place of its `encryption = "sse-s3"` line and
    /// `waivers` appended.
    fn local_env(encryption: &str, waivers: &str) -> Env {
        let text = std::fs::read_to_string(manifest_dir().join("envs/local.toml")).unwrap();
        assert!(text.contains("encryption = \"sse-s3\"\n"));
        let text = text.replace("encryption = \"sse-s3\"\n", encryption) + waivers;
        Env::parse(Path::new("envs/local.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn role<'a>(stack: &'a Stack, address: &str) -> &'a RoleSpec {
        let resource = stack
            .resources
            .iter()
            .find(|r| r.address.to_string() == address)
            .unwrap_or_else(|| panic!("no {address}"));
        let Spec::Role(role) = &resource.spec else {
            panic!("{address} is not a role")
        };
        role
    }

    /// The role's one inline policy, in canonical form.
    fn policy(stack: &Stack, address: &str) -> Value {
        let role = role(stack, address);
        assert_eq!(role.inline_policies.len(), 1, "{address}");
        role.inline_policies.values().next().unwrap().canonical()
    }

    fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no statement {sid} in {policy}"))
    }

    fn strings(value: &Value) -> Vec<&str> {
        value
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {value}"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    }

    #[test]
    fn no_role_of_any_env_attaches_an_aws_managed_policy() {
        for path in env_files() {
            let env = Env::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let stack = build(&env);
            let roles: Vec<_> = stack
                .resources
                .iter()
                .filter_map(|r| match &r.spec {
                    Spec::Role(role) => Some((r, role)),
                    _ => None,
                })
                .collect();
            assert_eq!(roles.len(), FUNCTIONS.len() + 2, "{}", path.display());
            for (r, role) in roles {
                for arn in &role.managed_policies {
                    let aws_managed = arn.starts_with("arn:aws:iam::aws:policy/")
                        || compliance::is_aws_managed_policy(arn);
                    assert!(
                        !aws_managed,
                        "{}: {} attaches {arn}",
                        path.display(),
                        r.address
                    );
                }
            }
            let report = compliance::check(&stack);
            assert!(
                report.passed() && report.waived.is_empty(),
                "{}: {report:?}",
                path.display()
            );
        }
    }

    #[test]
    fn an_aws_managed_policy_added_in_code_fails_unless_the_env_waives_it() {
        let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
        let attach = |stack: &mut Stack| {
            for r in &mut stack.resources {
                if r.address.to_string() == "role.processor"
                    && let Spec::Role(role) = &mut r.spec
                {
                    role.managed_policies.insert(admin.to_string());
                }
            }
        };
        let mut stack = build(&local_env("encryption = \"sse-s3\"\n", ""));
        attach(&mut stack);
        let report = compliance::check(&stack);
        let found: Vec<(String, &str)> = report
            .violations
            .iter()
            .map(|v| (v.address.to_string(), v.rule.id()))
            .collect();
        assert_eq!(
            found,
            [("role.processor".to_string(), "IAM-AWS-MANAGED-POLICY")]
        );
        assert!(report.violations[0].message.contains(admin));

        let reason = "break-glass access of incident INC-12, removed when it closes";
        let waiver = format!(
            "\n[[waivers]]\nresource = \"role.processor\"\nrule = \"IAM-AWS-MANAGED-POLICY\"\nreason = \"{reason}\"\n"
        );
        let mut stack = build(&local_env("encryption = \"sse-s3\"\n", &waiver));
        attach(&mut stack);
        let report = compliance::check(&stack);
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.waived.len(), 1);
        assert_eq!(report.waived[0].0.rule, Rule::IamAwsManagedPolicy);
        assert_eq!(report.waived[0].1, reason);
    }

    #[test]
    fn the_crawler_reaches_only_its_database_tables_prefixes_and_log_group() {
        let stack = build(&local_env("encryption = \"sse-s3\"\n", ""));
        assert!(
            role(&stack, "role.glue-crawler")
                .managed_policies
                .is_empty()
        );
        let policy = policy(&stack, "role.glue-crawler");
        let text = policy.to_string();
        assert!(
            !text.contains("glue:*") && !text.contains("\"*\""),
            "{text}"
        );
        assert!(!text.contains("kms:"), "{text}");

        let glue = "arn:aws:glue:us-east-1:123456789012";
        let db = crate::catalog::database_name(&stack);
        assert_eq!(
            strings(&statement(&policy, "ReadDatabase")["Resource"]),
            [format!("{glue}:catalog"), format!("{glue}:database/{db}")]
        );
        let tables = statement(&policy, "WriteCrawledTables");
        assert_eq!(
            strings(&tables["Resource"]),
            [
                format!("{glue}:catalog"),
                format!("{glue}:database/{db}"),
                format!("{glue}:table/{db}/crawled_*"),
            ]
        );
        let actions = strings(&tables["Action"]);
        for action in [
            "glue:CreateTable",
            "glue:GetTables",
            "glue:BatchCreatePartition",
        ] {
            assert!(actions.contains(&action), "{action}");
        }
        assert!(
            actions.iter().all(|a| !a.contains("Delete")),
            "the crawler logs deletions, it never deletes: {actions:?}"
        );

        let bucket = "arn:aws:s3:::linkedin-ads-local-data-123456789012";
        assert_eq!(
            strings(&statement(&policy, "ReadCrawledData")["Resource"]),
            [
                format!("{bucket}/raw/linkedin/ad_analytics/*"),
                format!("{bucket}/raw/linkedin/creatives/*"),
            ]
        );
        let list = statement(&policy, "ListCrawledData");
        assert_eq!(strings(&list["Resource"]), [bucket]);
        assert_eq!(
            strings(&list["Condition"]["StringLike"]["s3:prefix"]),
            [
                "raw/linkedin/ad_analytics",
                "raw/linkedin/ad_analytics/*",
                "raw/linkedin/creatives",
                "raw/linkedin/creatives/*",
            ]
        );
        let logs = "arn:aws:logs:us-east-1:123456789012:log-group:/aws-glue/crawlers";
        assert_eq!(
            strings(&statement(&policy, "WriteCrawlerLogs")["Resource"]),
            [logs.to_string(), format!("{logs}:*")]
        );
    }

    #[test]
    fn the_sagemaker_role_pulls_images_and_writes_logs_of_its_env_only() {
        let path = manifest_dir().join("envs/prod.toml");
        let env = Env::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            env.sagemaker
                .endpoints
                .iter()
                .map(|e| e.get_ref().as_str())
                .collect::<Vec<_>>(),
            ["linkedin-ads-prod-creative-scorer"]
        );
        let stack = build(&env);
        let policy = policy(&stack, "role.sagemaker");

        let pull = statement(&policy, "PullImages");
        assert_eq!(
            strings(&pull["Action"]),
            [
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
            ]
        );
        assert_eq!(
            strings(&pull["Resource"]),
            ["arn:aws:ecr:us-east-2:333333333333:repository/linkedin-ads-prod-*"]
        );
        let login = statement(&policy, "LogInToEcr");
        assert_eq!(strings(&login["Action"]), ["ecr:GetAuthorizationToken"]);
        assert_eq!(strings(&login["Resource"]), ["*"]);

        let logs = statement(&policy, "WriteSageMakerLogs");
        assert!(strings(&logs["Action"]).contains(&"logs:DescribeLogStreams"));
        let group = "arn:aws:logs:us-east-2:333333333333:log-group:/aws/sagemaker";
        assert_eq!(
            strings(&logs["Resource"]),
            [
                format!("{group}/Endpoints/linkedin-ads-prod-creative-scorer"),
                format!("{group}/Endpoints/linkedin-ads-prod-creative-scorer:*"),
                format!("{group}/TrainingJobs"),
                format!("{group}/TrainingJobs:*"),
            ]
        );
        // `*` only for the ECR login and PutMetricData, which take no other resource; the
        // policy rules agree without a waiver.
        for s in policy["Statement"].as_array().unwrap() {
            if strings(&s["Resource"]).contains(&"*") {
                let actions = strings(&s["Action"]);
                assert!(
                    actions == ["ecr:GetAuthorizationToken"]
                        || actions == ["cloudwatch:PutMetricData"],
                    "{s}"
                );
            }
        }
        assert!(compliance::policy_problems(&policy).is_empty());
    }

    #[test]
    fn with_a_kms_key_every_role_that_uses_the_bucket_may_use_the_key_through_s3() {
        let stack = build(&local_env(
            &format!("encryption = \"aws:kms\"\nkms_key_arn = \"{KEY}\"\n"),
            "",
        ));
        let Spec::Bucket(bucket) = &stack.get(&"bucket.data".parse().unwrap()).unwrap().spec else {
            panic!("bucket.data is not a bucket")
        };
        assert_eq!(
            bucket.encryption,
            Encryption::Kms {
                key_id: Some(KEY.to_string()),
                bucket_key: true,
            }
        );
        let mut checked = Vec::new();
        for r in &stack.resources {
            if !matches!(r.spec, Spec::Role(_)) {
                continue;
            }
            let address = r.address.to_string();
            let policy = policy(&stack, &address);
            let statements = policy["Statement"].as_array().unwrap();
            let grants = |action: &str| {
                statements
                    .iter()
                    .any(|s| strings(&s["Action"]).contains(&action))
            };
            let reads = grants("s3:GetObject");
            let writes = grants("s3:PutObject");
            let uses_bucket = reads || writes;
            if !uses_bucket {
                assert!(!policy.to_string().contains("kms:"), "{address}");
                continue;
            }
            let key = statement(&policy, "UseDataKey");
            assert_eq!(strings(&key["Resource"]), [KEY], "{address}");
            assert_eq!(
                strings(&key["Condition"]["StringEquals"]["kms:ViaService"]),
                ["s3.us-east-1.amazonaws.com"],
                "{address}"
            );
            let expected: &[&str] = if writes {
                &["kms:Decrypt", "kms:GenerateDataKey"]
            } else {
                &["kms:Decrypt"]
            };
            assert_eq!(strings(&key["Action"]), expected, "{address}");
            checked.push(address);
        }
        checked.sort();
        assert_eq!(
            checked,
            [
                "role.collector",
                "role.copy-generator",
                "role.glue-crawler",
                "role.optimizer",
                "role.processor",
                "role.sagemaker",
            ]
        );
        assert!(compliance::check(&stack).passed());

        // The AWS managed key (no `kms_key_arn`) needs no grant: its key policy lets the
        // account's principals use it through S3.
        let stack = build(&local_env("encryption = \"aws:kms\"\n", ""));
        for r in &stack.resources {
            if let Spec::Role(role) = &r.spec {
                for document in role.inline_policies.values() {
                    assert!(!document.to_aws().contains("kms:"), "{}", r.address);
                }
            }
        }
    }
}
