//! The LinkedIn Ads pipeline stack: the data bucket, the alerts topic, the secrets (values set
//! apart, `linkedin-oauth` rotated by the token-rotation function), one least-privilege role
//! and one log group per Lambda, the Glue crawler and SageMaker execution roles, the data
//! catalog (`catalog`) and the monitoring (`monitoring`).

use std::collections::BTreeMap;

use infra_core::model::{
    BucketSpec, Encryption, FunctionUrlSpec, LambdaSpec, LifecycleRule, LogGroupSpec,
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
}

/// Builds the stack for `env` from `inputs`.
pub fn linkedin_ads(env: &Env, inputs: &Inputs) -> Result<Stack, StackError> {
    let artifacts = &inputs.artifacts;
    let target = env.target(STACK_NAME);
    let mut stack = Stack::new(target.clone());

    let data = stack.add("data", data_bucket(env));
    if env.protected {
        stack.protect(&data);
    }
    stack.model_registry = Some(ModelRegistry {
        bucket: data.name.clone(),
        prefix: MODEL_REGISTRY_PREFIX.into(),
    });

    let secrets = secrets(&mut stack);

    let alerts_name = target.name("alerts");
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
                name: format!("/aws/lambda/{}", target.name(function)),
                retention_days: Some(*env.logs.retention_days.get_ref()).filter(|d| *d != 0),
                tags: BTreeMap::new(),
            },
        );
        let role = lambda_role(&stack, function, &data, &log_group, &secrets);
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
            lambda_function(env, &stack, function, &role, &artifact, &data),
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

    let crawler_role = stack.add("glue-crawler", crawler_role(&stack, &data));
    stack.add("sagemaker", sagemaker_role(&stack, &data));
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
        vars.insert("LINKEDIN_SECRET_ID", t.name("linkedin-oauth"));
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
            vars.insert("ANTHROPIC_SECRET_ID", t.name("anthropic-api-key"));
            vars.insert("ANTHROPIC_MODEL", env.anthropic.model.get_ref().clone());
        }
        "token-rotation" => {
            vars.insert("LINKEDIN_SECRET_ID", t.name("linkedin-oauth"));
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
            key_id: d.kms_key_id.clone(),
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

fn crawler_role(stack: &Stack, data: &Ref<BucketSpec>) -> RoleSpec {
    RoleSpec::for_service(
        stack.target.name("glue-crawler"),
        "glue.amazonaws.com",
        "Glue crawler over the raw LinkedIn data",
    )
    .managed("arn:aws:iam::aws:policy/service-role/AWSGlueServiceRole")
    .inline(
        "read-raw",
        PolicyDocument::new(vec![
            Statement::allow(["s3:GetObject"])
                .sid("ReadRaw")
                .on_ref(data, "/raw/*"),
            Statement::allow(["s3:ListBucket"])
                .sid("ListRaw")
                .on_ref(data, "")
                .condition("StringLike", "s3:prefix", json!(["raw/*"])),
        ]),
    )
}

fn sagemaker_role(stack: &Stack, data: &Ref<BucketSpec>) -> RoleSpec {
    let t = &stack.target;
    RoleSpec::for_service(
        t.name("sagemaker"),
        "sagemaker.amazonaws.com",
        "SageMaker training and inference for the creative scorer and bid optimizer",
    )
    .inline(
        "train-and-serve",
        PolicyDocument::new(vec![
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
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ])
            .sid("WriteSageMakerLogs")
            .on(format!(
                "arn:aws:logs:{}:{}:log-group:/aws/sagemaker/*",
                t.region, t.account_id
            )),
            Statement::allow(["cloudwatch:PutMetricData"])
                .sid("EmitMetrics")
                .on("*")
                .condition("StringLike", "cloudwatch:namespace", "/aws/sagemaker/*"),
        ]),
    )
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
