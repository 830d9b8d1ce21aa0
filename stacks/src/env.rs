//! Environment files (`stacks/envs/<env>.toml`) parsed into a typed [`Env`]. Unknown keys
//! and wrong types are rejected by the parser; values are then checked (names, retention,
//! schedules, thresholds). Every error names the file, line, column and field, and all of
//! this happens before any AWS call.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use infra_core::kinds::alarm::{
    validate_comparison, validate_period, validate_statistic, validate_threshold,
    validate_treat_missing_data,
};
use infra_core::kinds::bucket::validate_name as validate_bucket_name;
use infra_core::kinds::log_group::validate_retention;
use infra_core::kinds::topic::is_plausible_email;
use infra_core::model::{StateLocation, Target};
use serde::Deserialize;
use toml::Spanned;

/// One environment's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Env {
    /// Prefix of every physical name, e.g. `linkedin-ads`.
    pub project: Spanned<String>,
    /// The environment's name; must match the file name.
    pub env: Spanned<String>,
    /// An independent copy of the environment (`--instance pr-123`): its names, tags and state
    /// carry the instance. Not in the file.
    #[serde(skip)]
    pub instance: Option<String>,
    #[serde(skip)]
    full_name: String,
    pub account_id: Spanned<String>,
    pub region: Spanned<String>,
    /// A protected environment refuses `destroy`, and its data bucket refuses deletion,
    /// unless told explicitly.
    #[serde(default)]
    pub protected: bool,
    /// Optional: which engine plans and applies the env by default (`engine =
    /// "cloudformation"`); `--engine` overrides it.
    #[serde(default)]
    pub engine: Engine,
    pub state: StateConfig,
    pub alerts: AlertsConfig,
    pub logs: LogsConfig,
    pub data: DataConfig,
    pub thresholds: Thresholds,
    pub schedules: Schedules,
    pub functions: Functions,
    pub linkedin: LinkedIn,
    pub anthropic: Anthropic,
    pub optimizer: Optimizer,
    pub sagemaker: SageMaker,
    /// Optional: alarms of the env's own, besides the stack's (`[[alarms]]` tables).
    #[serde(default)]
    pub alarms: Vec<CustomAlarm>,
    /// Optional: exceptions to the built-in policy rules (`[[waivers]]` tables).
    #[serde(default)]
    pub waivers: Vec<Waiver>,
    /// Optional: requests per second per AWS service (`[rate_limits]`, e.g. `lambda = 15`),
    /// instead of the defaults in `infra_core::rate_limit::SERVICES`.
    #[serde(default)]
    pub rate_limits: std::collections::BTreeMap<String, Spanned<f64>>,
    /// Optional: how long the engine waits for AWS to settle (`[timeouts]`).
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Optional: live resources this env adopts instead of creating (`[[import]]` tables, as
    /// Terraform's import blocks). Once applied, an entry does nothing and may stay.
    #[serde(default, rename = "import")]
    pub imports: Vec<Import>,
}

/// Which engine applies an env: `native` (the engine's own plan and apply against the AWS
/// APIs, with its state in S3) or `cloudformation` (one CloudFormation stack, applied by
/// AWS through change sets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Native,
    Cloudformation,
}

/// `[[import]]`: the stack's resource `address` (e.g. `bucket.data`) is the live resource
/// `id` (its name, or its ARN where AWS names it by ARN: a topic's, a secret's). The resource
/// keeps that name; the plan shows the import and the fields that change.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Import {
    pub address: Spanned<String>,
    pub id: Spanned<String>,
    /// Where the entry is, for errors found once the stack is built or planned.
    #[serde(skip)]
    location: Option<(PathBuf, usize, usize)>,
}

/// `[timeouts]`: bounds of the engine's waits, in seconds. `propagation_seconds` (default 120,
/// the Terraform AWS provider's) bounds retries of what AWS settles on its own: a role IAM has
/// not propagated yet, a Lambda function busy updating, a name still being deleted, a
/// concurrent modification. `ready_seconds` (default 300) bounds waits for a Lambda function to
/// become ready and for a running Glue crawl to end.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub propagation_seconds: Option<Spanned<u64>>,
    pub ready_seconds: Option<Spanned<u64>>,
}

/// The longest bound `[timeouts]` accepts: an hour.
const MAX_TIMEOUT_SECONDS: u64 = 3600;

/// An exception to one policy rule for one resource: `[[waivers]]` with `resource`
/// (an address such as `log_group.collector`), `rule` (e.g. `LOGS-RETENTION`) and `reason`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    pub resource: Spanned<String>,
    pub rule: Spanned<String>,
    pub reason: Spanned<String>,
    /// Where the waiver is, for errors found once the stack is built.
    #[serde(skip)]
    location: Option<(PathBuf, usize, usize)>,
}

/// SageMaker endpoints serving the models, and their alarm thresholds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SageMaker {
    /// Endpoint names; each gets a 5xx-errors and a model-latency alarm.
    pub endpoints: Vec<Spanned<String>>,
    /// Alarm when an endpoint answers more 5xx errors than this in five minutes.
    pub max_5xx_errors: Spanned<f64>,
    /// Alarm when average model latency exceeds this (milliseconds).
    pub max_model_latency_ms: Spanned<f64>,
}

/// An alarm declared in the env file: `[[alarms]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomAlarm {
    /// Short name; the alarm is `<project>-<env>-<name>`.
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub namespace: Spanned<String>,
    pub metric: Spanned<String>,
    #[serde(default)]
    pub dimensions: std::collections::BTreeMap<String, String>,
    /// SampleCount, Average, Sum, Minimum, Maximum or a percentile such as p95.
    pub statistic: Spanned<String>,
    /// Optional, default 300.
    #[serde(default)]
    pub period_seconds: Option<Spanned<i32>>,
    /// GreaterThanThreshold, GreaterThanOrEqualToThreshold, LessThanThreshold or
    /// LessThanOrEqualToThreshold.
    pub comparison: Spanned<String>,
    pub threshold: Spanned<f64>,
    /// Optional, default 1.
    #[serde(default)]
    pub evaluation_periods: Option<Spanned<i32>>,
    /// Optional, default notBreaching.
    #[serde(default)]
    pub treat_missing_data: Option<Spanned<String>>,
}

impl CustomAlarm {
    pub fn period_seconds(&self) -> i32 {
        self.period_seconds.as_ref().map_or(300, |p| *p.get_ref())
    }
    pub fn evaluation_periods(&self) -> i32 {
        self.evaluation_periods.as_ref().map_or(1, |p| *p.get_ref())
    }
    pub fn treat_missing_data(&self) -> String {
        self.treat_missing_data
            .as_ref()
            .map_or_else(|| "notBreaching".to_string(), |t| t.get_ref().clone())
    }
}

/// Size and limits of each Lambda function.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Functions {
    pub collector: FunctionConfig,
    pub processor: FunctionConfig,
    pub optimizer: FunctionConfig,
    pub copy_generator: FunctionConfig,
    pub token_rotation: FunctionConfig,
}

impl Functions {
    /// The configuration of the function named `name` (`copy-generator` style).
    pub fn get(&self, name: &str) -> Option<&FunctionConfig> {
        match name {
            "collector" => Some(&self.collector),
            "processor" => Some(&self.processor),
            "optimizer" => Some(&self.optimizer),
            "copy-generator" => Some(&self.copy_generator),
            "token-rotation" => Some(&self.token_rotation),
            _ => None,
        }
    }

    fn all(&self) -> [(&'static str, &FunctionConfig); 5] {
        [
            ("collector", &self.collector),
            ("processor", &self.processor),
            ("optimizer", &self.optimizer),
            ("copy_generator", &self.copy_generator),
            ("token_rotation", &self.token_rotation),
        ]
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    pub memory_mb: Spanned<i32>,
    pub timeout_seconds: Spanned<i32>,
    #[serde(default)]
    pub reserved_concurrency: Option<Spanned<i32>>,
}

/// What the collector and optimizer need to reach the LinkedIn Marketing API.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedIn {
    /// `YYYYMM`, sent as `LinkedIn-Version`.
    pub api_version: Spanned<String>,
    pub ad_accounts: Vec<Spanned<String>>,
    pub lookback_days: Spanned<i32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anthropic {
    pub model: Spanned<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimizer {
    /// Decide and log, but change nothing on LinkedIn.
    pub dry_run: bool,
    /// Days of performance each decision looks at.
    pub lookback_days: Spanned<i64>,
    /// Impressions a creative needs before it is judged.
    pub min_impressions: Spanned<i64>,
    /// The z score of the Wilson bounds (1.96: 95%).
    pub confidence_z: Spanned<f64>,
    pub max_actions_per_run: Spanned<i64>,
    /// A creative or campaign acted on is left alone this long.
    pub cooldown_hours: Spanned<i64>,
    /// A bid moves at most this much per run.
    pub max_bid_change_percent: Spanned<f64>,
    /// A winner's campaign budget rises this much.
    pub budget_increase_percent: Spanned<f64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    pub bucket: Spanned<String>,
    pub prefix: Spanned<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub emails: Vec<Spanned<String>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// One of CloudWatch Logs' retention periods, or 0 for none (kept forever).
    pub retention_days: Spanned<i32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `sse-s3` or `aws:kms`.
    pub encryption: Spanned<String>,
    /// With `aws:kms`, optional: the ARN of the customer managed key that encrypts the bucket
    /// (`arn:aws:kms:<region>:<account>:key/<id>`, in the env's region). Every role that reads
    /// or writes the bucket is granted `kms:Decrypt` (and, if it writes, `kms:GenerateDataKey`)
    /// on it, through S3 only. Without it the bucket uses the AWS managed key `aws/s3`, whose
    /// key policy already lets the account's principals use it through S3. An alias or a bare
    /// key id is refused: IAM grants on a key name its ARN.
    #[serde(default)]
    pub kms_key_arn: Option<Spanned<String>>,
    pub raw_expiration_days: Spanned<i32>,
    pub processed_infrequent_access_days: Spanned<i32>,
    pub processed_glacier_days: Spanned<i32>,
    pub athena_results_expiration_days: Spanned<i32>,
    pub noncurrent_version_expiration_days: Spanned<i32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Alarm when the collector's daily spend exceeds this (USD).
    pub daily_spend_usd: Spanned<f64>,
    /// Alarm when CTR (clicks / impressions) falls below this ratio...
    pub min_ctr: Spanned<f64>,
    /// ...once impressions exceed this many.
    pub min_impressions_for_ctr: Spanned<i64>,
    /// Alarm when a function's duration exceeds this share of its timeout.
    pub lambda_duration_share: Spanned<f64>,
    /// Athena cancels a query that scans more than this.
    pub athena_bytes_scanned_cutoff: Spanned<i64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedules {
    /// Create schedules disabled (e.g. staging) when false.
    #[serde(default = "yes")]
    pub enabled: bool,
    pub collector: Spanned<String>,
    pub processor: Spanned<String>,
    pub optimizer: Spanned<String>,
    pub copy_generator: Spanned<String>,
    pub crawler: Spanned<String>,
}

fn yes() -> bool {
    true
}

/// An env file problem: the file, where in it, which field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": field `{}`: {}", self.field, self.message)
        }
    }
}

/// Every problem found in one env file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct EnvErrors(pub Vec<EnvError>);

impl fmt::Display for EnvErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl Env {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Env, EnvErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            EnvErrors(vec![EnvError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                field: String::new(),
                message: format!("cannot read: {e}"),
            }])
        })?;
        Env::parse(path, &text)
    }

    /// `<dir>/<name>.toml`.
    pub fn load_named(dir: &Path, name: &str) -> Result<Env, EnvErrors> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(EnvErrors(vec![EnvError {
                file: dir.join(format!("{name}.toml")),
                line: None,
                column: None,
                field: String::new(),
                message: format!(
                    "`{name}` is not an environment name (lowercase letters, digits, `-`)"
                ),
            }]));
        }
        let path = dir.join(format!("{name}.toml"));
        if !path.exists() {
            let mut known: Vec<String> = std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .filter_map(|f| f.strip_suffix(".toml").map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            known.sort();
            return Err(EnvErrors(vec![EnvError {
                file: path,
                line: None,
                column: None,
                field: String::new(),
                message: if known.is_empty() {
                    format!(
                        "no environment `{name}`: {} has no env files",
                        dir.display()
                    )
                } else {
                    format!(
                        "no environment `{name}`; the known ones are {}",
                        known.join(", ")
                    )
                },
            }]));
        }
        Env::load(&path)
    }

    /// Parses and checks the text of env file `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Env, EnvErrors> {
        let deserializer = toml::Deserializer::new(text);
        let env: Env = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let field = err.path().to_string();
            let inner = err.into_inner();
            let (line, column) = inner
                .span()
                .map(|s| line_column(text, s.start))
                .map_or((None, None), |(l, c)| (Some(l), Some(c)));
            EnvErrors(vec![EnvError {
                file: path.to_path_buf(),
                line,
                column,
                field: if field == "." { String::new() } else { field },
                message: inner.message().to_string(),
            }])
        })?;
        let problems = env.check(path, text);
        let mut env = env;
        for waiver in &mut env.waivers {
            let (line, column) = line_column(text, waiver.resource.span().start);
            waiver.location = Some((path.to_path_buf(), line, column));
        }
        for import in &mut env.imports {
            let (line, column) = line_column(text, import.address.span().start);
            import.location = Some((path.to_path_buf(), line, column));
        }
        if problems.is_empty() {
            Ok(env)
        } else {
            Err(EnvErrors(problems))
        }
    }

    fn check(&self, path: &Path, text: &str) -> Vec<EnvError> {
        let mut problems = Vec::new();
        let mut problem = |span: Range<usize>, field: &str, message: String| {
            let (line, column) = line_column(text, span.start);
            problems.push(EnvError {
                file: path.to_path_buf(),
                line: Some(line),
                column: Some(column),
                field: field.to_string(),
                message,
            });
        };

        let project = self.project.get_ref();
        if !(2..=24).contains(&project.len())
            || !project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || project.starts_with('-')
            || project.ends_with('-')
        {
            problem(
                self.project.span(),
                "project",
                format!(
                    "`{project}`: 2 to 24 lowercase letters, digits or `-` (it prefixes every resource name)"
                ),
            );
        }
        let env = self.env.get_ref();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if env != stem {
            problem(
                self.env.span(),
                "env",
                format!("`{env}` does not match the file name `{stem}.toml`"),
            );
        }
        if env.is_empty()
            || env.len() > 16
            || !env
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            problem(
                self.env.span(),
                "env",
                format!("`{env}`: 1 to 16 lowercase letters, digits or `-`"),
            );
        }
        let account = self.account_id.get_ref();
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            problem(
                self.account_id.span(),
                "account_id",
                format!("`{account}` is not a 12-digit AWS account id"),
            );
        }
        let region = self.region.get_ref();
        let region_parts: Vec<&str> = region.split('-').collect();
        if region_parts.len() < 3
            || !region_parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            })
            || !region_parts
                .last()
                .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
        {
            problem(
                self.region.span(),
                "region",
                format!("`{region}` is not an AWS region name (e.g. us-east-1)"),
            );
        }
        if let Err(message) = validate_bucket_name(self.state.bucket.get_ref()) {
            problem(self.state.bucket.span(), "state.bucket", message);
        }
        let prefix = self.state.prefix.get_ref();
        if prefix.is_empty() || prefix.starts_with('/') || prefix.contains("//") {
            problem(
                self.state.prefix.span(),
                "state.prefix",
                format!("`{prefix}`: a non-empty S3 key prefix without a leading `/`"),
            );
        }
        // The data bucket's name is derived; check it here so the error points at its parts.
        if let Err(message) = validate_bucket_name(&self.data_bucket_name()) {
            problem(
                self.project.span(),
                "project",
                format!("the data bucket name it gives is invalid: {message}"),
            );
        }
        if self.alerts.emails.is_empty() {
            problem(
                0..0,
                "alerts.emails",
                "at least one address receives the alerts".into(),
            );
        }
        for (i, email) in self.alerts.emails.iter().enumerate() {
            if !is_plausible_email(email.get_ref()) {
                problem(
                    email.span(),
                    &format!("alerts.emails[{i}]"),
                    format!("`{}` is not an e-mail address", email.get_ref()),
                );
            }
        }
        // 0: kept forever (which the policy rule LOGS-RETENTION flags unless waived).
        let retention = *self.logs.retention_days.get_ref();
        if let Err(message) =
            validate_retention(retention).or_else(|m| if retention == 0 { Ok(()) } else { Err(m) })
        {
            problem(
                self.logs.retention_days.span(),
                "logs.retention_days",
                format!("{message}, or 0 to keep logs forever"),
            );
        }
        match self.data.encryption.get_ref().as_str() {
            "sse-s3" | "aws:kms" => {}
            other => problem(
                self.data.encryption.span(),
                "data.encryption",
                format!("`{other}`: `sse-s3` or `aws:kms`"),
            ),
        }
        if let Some(key) = &self.data.kms_key_arn {
            if self.data.encryption.get_ref() != "aws:kms" {
                problem(
                    key.span(),
                    "data.kms_key_arn",
                    format!(
                        "a KMS key is used only with `encryption = \"aws:kms\"` (here `{}`): \
                         set that, or remove the key",
                        self.data.encryption.get_ref()
                    ),
                );
            } else if let Err(message) = check_kms_key_arn(key.get_ref(), region) {
                problem(key.span(), "data.kms_key_arn", message);
            }
        }
        let days = [
            (
                &self.data.raw_expiration_days,
                "data.raw_expiration_days",
                1,
            ),
            (
                &self.data.processed_infrequent_access_days,
                "data.processed_infrequent_access_days",
                30,
            ),
            (
                &self.data.processed_glacier_days,
                "data.processed_glacier_days",
                1,
            ),
            (
                &self.data.athena_results_expiration_days,
                "data.athena_results_expiration_days",
                1,
            ),
            (
                &self.data.noncurrent_version_expiration_days,
                "data.noncurrent_version_expiration_days",
                1,
            ),
        ];
        for (value, field, min) in days {
            if *value.get_ref() < min {
                problem(
                    value.span(),
                    field,
                    format!("{} days: at least {min}", value.get_ref()),
                );
            }
        }
        if self.data.processed_glacier_days.get_ref()
            <= self.data.processed_infrequent_access_days.get_ref()
        {
            problem(
                self.data.processed_glacier_days.span(),
                "data.processed_glacier_days",
                "must come after data.processed_infrequent_access_days".into(),
            );
        }
        let t = &self.thresholds;
        if !(t.daily_spend_usd.get_ref().is_finite() && *t.daily_spend_usd.get_ref() > 0.0) {
            problem(
                t.daily_spend_usd.span(),
                "thresholds.daily_spend_usd",
                "a positive amount".into(),
            );
        }
        if !(0.0..=1.0).contains(t.min_ctr.get_ref()) {
            problem(
                t.min_ctr.span(),
                "thresholds.min_ctr",
                format!("{}: a ratio between 0 and 1", t.min_ctr.get_ref()),
            );
        }
        if *t.min_impressions_for_ctr.get_ref() < 0 {
            problem(
                t.min_impressions_for_ctr.span(),
                "thresholds.min_impressions_for_ctr",
                "not negative".into(),
            );
        }
        let share = *t.lambda_duration_share.get_ref();
        if !(share > 0.0 && share <= 1.0) {
            problem(
                t.lambda_duration_share.span(),
                "thresholds.lambda_duration_share",
                format!("{share}: a share in (0, 1]"),
            );
        }
        if *t.athena_bytes_scanned_cutoff.get_ref() < 10_485_760 {
            problem(
                t.athena_bytes_scanned_cutoff.span(),
                "thresholds.athena_bytes_scanned_cutoff",
                "Athena's minimum is 10485760 bytes (10 MB)".into(),
            );
        }
        let o = &self.optimizer;
        for (field, value, range, expected) in [
            (
                "optimizer.lookback_days",
                &o.lookback_days,
                1..=90,
                "1 to 90 days",
            ),
            (
                "optimizer.min_impressions",
                &o.min_impressions,
                1..=i64::MAX,
                "at least 1",
            ),
            (
                "optimizer.max_actions_per_run",
                &o.max_actions_per_run,
                0..=1000,
                "0 to 1000",
            ),
            (
                "optimizer.cooldown_hours",
                &o.cooldown_hours,
                0..=2160,
                "0 to 2160 hours",
            ),
        ] {
            if !range.contains(value.get_ref()) {
                problem(
                    value.span(),
                    field,
                    format!("{}: {expected}", value.get_ref()),
                );
            }
        }
        let z = *o.confidence_z.get_ref();
        if !(z.is_finite() && z > 0.0 && z <= 5.0) {
            problem(
                o.confidence_z.span(),
                "optimizer.confidence_z",
                format!("{z}: a z score in (0, 5] (1.96 for 95%)"),
            );
        }
        for (field, value) in [
            (
                "optimizer.max_bid_change_percent",
                &o.max_bid_change_percent,
            ),
            (
                "optimizer.budget_increase_percent",
                &o.budget_increase_percent,
            ),
        ] {
            if !(0.0..=100.0).contains(value.get_ref()) {
                problem(
                    value.span(),
                    field,
                    format!("{}: 0 to 100", value.get_ref()),
                );
            }
        }
        let s = &self.schedules;
        for (value, field) in [
            (&s.collector, "schedules.collector"),
            (&s.processor, "schedules.processor"),
            (&s.optimizer, "schedules.optimizer"),
            (&s.copy_generator, "schedules.copy_generator"),
            (&s.crawler, "schedules.crawler"),
        ] {
            if let Err(message) = infra_core::schedule::validate(value.get_ref()) {
                problem(value.span(), field, message);
            }
        }
        for (name, f) in self.functions.all() {
            let memory = *f.memory_mb.get_ref();
            if !(128..=10240).contains(&memory) {
                problem(
                    f.memory_mb.span(),
                    &format!("functions.{name}.memory_mb"),
                    format!("{memory} MB; Lambda allows 128 to 10240"),
                );
            }
            let timeout = *f.timeout_seconds.get_ref();
            if !(1..=900).contains(&timeout) {
                problem(
                    f.timeout_seconds.span(),
                    &format!("functions.{name}.timeout_seconds"),
                    format!("{timeout} s; Lambda allows 1 to 900"),
                );
            }
            if let Some(n) = &f.reserved_concurrency
                && *n.get_ref() < 0
            {
                problem(
                    n.span(),
                    &format!("functions.{name}.reserved_concurrency"),
                    "not negative".into(),
                );
            }
        }
        let version = self.linkedin.api_version.get_ref();
        let month_ok = version.len() == 6
            && version.chars().all(|c| c.is_ascii_digit())
            && matches!(version[4..].parse::<u32>(), Ok(1..=12));
        if !month_ok {
            problem(
                self.linkedin.api_version.span(),
                "linkedin.api_version",
                format!("`{version}`: a LinkedIn API version is YYYYMM"),
            );
        }
        if self.linkedin.ad_accounts.is_empty() {
            problem(
                0..0,
                "linkedin.ad_accounts",
                "at least one ad account id".into(),
            );
        }
        for (i, account) in self.linkedin.ad_accounts.iter().enumerate() {
            if account.get_ref().is_empty()
                || !account.get_ref().chars().all(|c| c.is_ascii_digit())
            {
                problem(
                    account.span(),
                    &format!("linkedin.ad_accounts[{i}]"),
                    format!("`{}`: an ad account id is digits", account.get_ref()),
                );
            }
        }
        let lookback = *self.linkedin.lookback_days.get_ref();
        if !(1..=90).contains(&lookback) {
            problem(
                self.linkedin.lookback_days.span(),
                "linkedin.lookback_days",
                format!("{lookback}: 1 to 90 days"),
            );
        }
        let sm = &self.sagemaker;
        for (i, endpoint) in sm.endpoints.iter().enumerate() {
            let name = endpoint.get_ref();
            let ok = !name.is_empty()
                && name.len() <= 63
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !name.starts_with('-')
                && !name.ends_with('-');
            if !ok {
                problem(
                    endpoint.span(),
                    &format!("sagemaker.endpoints[{i}]"),
                    format!("`{name}`: endpoint names are 1 to 63 of A-Z a-z 0-9 -"),
                );
            }
        }
        for (value, field) in [
            (&sm.max_5xx_errors, "sagemaker.max_5xx_errors"),
            (&sm.max_model_latency_ms, "sagemaker.max_model_latency_ms"),
        ] {
            if let Err(message) = validate_threshold(*value.get_ref()) {
                problem(value.span(), field, message);
            }
        }
        let mut alarm_names = std::collections::BTreeSet::new();
        for (value, field) in [
            (
                &self.timeouts.propagation_seconds,
                "timeouts.propagation_seconds",
            ),
            (&self.timeouts.ready_seconds, "timeouts.ready_seconds"),
        ] {
            if let Some(value) = value
                && !(1..=MAX_TIMEOUT_SECONDS).contains(value.get_ref())
            {
                problem(
                    value.span(),
                    field,
                    format!(
                        "{} s: from 1 to {MAX_TIMEOUT_SECONDS} seconds",
                        value.get_ref()
                    ),
                );
            }
        }
        for (service, rate) in &self.rate_limits {
            if let Err(message) = infra_core::rate_limit::validate(service, *rate.get_ref()) {
                problem(rate.span(), &format!("rate_limits.{service}"), message);
            }
        }
        for (i, waiver) in self.waivers.iter().enumerate() {
            let field = |name: &str| format!("waivers[{i}].{name}");
            let address = waiver.resource.get_ref();
            if address.parse::<infra_core::model::Address>().is_err() {
                problem(
                    waiver.resource.span(),
                    &field("resource"),
                    format!(
                        "`{address}` is not a resource address (`kind.name`, e.g. `log_group.collector`)"
                    ),
                );
            }
            if infra_core::compliance::Rule::from_id(waiver.rule.get_ref()).is_none() {
                problem(
                    waiver.rule.span(),
                    &field("rule"),
                    format!(
                        "`{}` is not a policy rule (one of {})",
                        waiver.rule.get_ref(),
                        infra_core::compliance::Rule::ALL.map(|r| r.id()).join(", ")
                    ),
                );
            }
            if waiver.reason.get_ref().trim().len() < 10 {
                problem(
                    waiver.reason.span(),
                    &field("reason"),
                    "say why the exception is acceptable (at least 10 characters)".into(),
                );
            }
        }
        let mut imported: std::collections::BTreeMap<String, usize> = Default::default();
        for (i, import) in self.imports.iter().enumerate() {
            let field = |name: &str| format!("import[{i}].{name}");
            let text_address = import.address.get_ref();
            let address = match text_address.parse::<infra_core::model::Address>() {
                Ok(address) => address,
                Err(_) => {
                    problem(
                        import.address.span(),
                        &field("address"),
                        format!(
                            "`{text_address}` is not a resource address (`kind.name`, e.g. `bucket.data`)"
                        ),
                    );
                    continue;
                }
            };
            if let Some(first) = imported.insert(address.to_string(), import.address.span().start) {
                let (line, _) = line_column(text, first);
                problem(
                    import.address.span(),
                    &field("address"),
                    format!(
                        "{address} is imported twice (also at line {line}): one live resource per address"
                    ),
                );
            }
            if let Err(message) =
                infra_core::kinds::imported_name(address.kind, import.id.get_ref())
            {
                problem(import.id.span(), &field("id"), message);
            }
        }
        for (i, alarm) in self.alarms.iter().enumerate() {
            let field = |name: &str| format!("alarms[{i}].{name}");
            let name = alarm.name.get_ref();
            if name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                problem(
                    alarm.name.span(),
                    &field("name"),
                    format!("`{name}`: 1 to 64 lowercase letters, digits or `-`"),
                );
            }
            if !alarm_names.insert(name.clone()) {
                problem(
                    alarm.name.span(),
                    &field("name"),
                    format!("`{name}` is declared twice"),
                );
            }
            for (value, f) in [(&alarm.namespace, "namespace"), (&alarm.metric, "metric")] {
                if value.get_ref().trim().is_empty() || value.get_ref().len() > 255 {
                    problem(value.span(), &field(f), "1 to 255 characters".into());
                }
            }
            if let Err(message) = validate_statistic(alarm.statistic.get_ref()) {
                problem(alarm.statistic.span(), &field("statistic"), message);
            }
            if let Err(message) = validate_comparison(alarm.comparison.get_ref()) {
                problem(alarm.comparison.span(), &field("comparison"), message);
            }
            if let Err(message) = validate_threshold(*alarm.threshold.get_ref()) {
                problem(alarm.threshold.span(), &field("threshold"), message);
            }
            if let Some(period) = &alarm.period_seconds
                && let Err(message) = validate_period(*period.get_ref())
            {
                problem(period.span(), &field("period_seconds"), message);
            }
            if let Some(n) = &alarm.evaluation_periods
                && *n.get_ref() < 1
            {
                problem(n.span(), &field("evaluation_periods"), "at least 1".into());
            }
            if let Some(t) = &alarm.treat_missing_data
                && let Err(message) = validate_treat_missing_data(t.get_ref())
            {
                problem(t.span(), &field("treat_missing_data"), message);
            }
        }
        if self.anthropic.model.get_ref().trim().is_empty() {
            problem(
                self.anthropic.model.span(),
                "anthropic.model",
                "a model id, e.g. claude-sonnet-4-5".into(),
            );
        }
        problems
    }

    /// The environment's name, with its instance if any (`staging-pr-123`): what physical
    /// names and the `infra:env` tag carry.
    pub fn name(&self) -> &str {
        if self.full_name.is_empty() {
            self.env.get_ref()
        } else {
            &self.full_name
        }
    }

    /// This environment as instance `instance`: 1 to 20 lowercase letters, digits and `-`,
    /// starting with a letter or digit. Its state lives under `<prefix>/<instance>`.
    pub fn with_instance(mut self, instance: &str) -> Result<Env, String> {
        let valid = (1..=20).contains(&instance.len())
            && instance
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !instance.starts_with('-')
            && !instance.ends_with('-');
        if !valid {
            return Err(format!(
                "instance `{instance}`: use 1 to 20 lowercase letters, digits and `-` (e.g. pr-123)"
            ));
        }
        self.full_name = format!("{}-{instance}", self.env.get_ref());
        self.instance = Some(instance.to_string());
        Ok(self)
    }

    pub fn project(&self) -> &str {
        self.project.get_ref()
    }

    /// `<project>-<env>-data-<account>`: bucket names are global, so the account is in it.
    pub fn data_bucket_name(&self) -> String {
        format!(
            "{}-{}-data-{}",
            self.project.get_ref(),
            self.name(),
            self.account_id.get_ref()
        )
    }

    /// The customer managed KMS key of the data bucket: `data.kms_key_arn` when
    /// `data.encryption` is `aws:kms`. The roles that use the bucket are granted on it.
    pub fn data_kms_key_arn(&self) -> Option<&str> {
        if self.data.encryption.get_ref() != "aws:kms" {
            return None;
        }
        self.data.kms_key_arn.as_ref().map(|k| k.get_ref().as_str())
    }

    /// Puts the env file's waivers on the stack's resources; a waiver naming a resource the
    /// stack does not have is an error pointing at the waiver.
    pub fn apply_waivers(&self, stack: &mut infra_core::model::Stack) -> Result<(), EnvErrors> {
        let mut problems = Vec::new();
        for (i, waiver) in self.waivers.iter().enumerate() {
            let result = waiver
                .resource
                .get_ref()
                .parse::<infra_core::model::Address>()
                .map_err(|e| e.to_string())
                .and_then(|address| {
                    stack.waive_address(&address, waiver.rule.get_ref(), waiver.reason.get_ref())
                });
            if let Err(message) = result {
                let (file, line, column) = match &waiver.location {
                    Some((file, line, column)) => (file.clone(), Some(*line), Some(*column)),
                    None => (PathBuf::new(), None, None),
                };
                problems.push(EnvError {
                    file,
                    line,
                    column,
                    field: format!("waivers[{i}].resource"),
                    message,
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EnvErrors(problems))
        }
    }

    /// The `[[import]]` entries: address -> the physical name the resource keeps. An
    /// instance (`--instance`) is an independent copy built fresh, so it imports nothing.
    pub fn imports(&self) -> std::collections::BTreeMap<infra_core::model::Address, String> {
        if self.instance.is_some() {
            return Default::default();
        }
        self.imports
            .iter()
            .filter_map(|import| {
                let address: infra_core::model::Address = import.address.get_ref().parse().ok()?;
                let name =
                    infra_core::kinds::imported_name(address.kind, import.id.get_ref()).ok()?;
                Some((address, name))
            })
            .collect()
    }

    /// Each of `problems` (an address and what is wrong with importing it) as an error at
    /// its `[[import]]` entry.
    pub fn import_errors(&self, problems: &[(infra_core::model::Address, String)]) -> EnvErrors {
        let error = |(address, message): &(infra_core::model::Address, String)| {
            let entry = self
                .imports
                .iter()
                .enumerate()
                .find(|(_, import)| import.address.get_ref() == &address.to_string());
            let (file, line, column) = match entry.and_then(|(_, import)| import.location.clone()) {
                Some((file, line, column)) => (file, Some(line), Some(column)),
                None => (PathBuf::new(), None, None),
            };
            EnvError {
                file,
                line,
                column,
                field: match entry {
                    Some((i, _)) => format!("import[{i}] ({address})"),
                    None => address.to_string(),
                },
                message: message.clone(),
            }
        };
        EnvErrors(problems.iter().map(error).collect())
    }

    /// Checks that every `[[import]]` names a resource of `stack`; an entry naming one the
    /// stack does not have is an error pointing at it.
    pub fn check_imports(&self, stack: &infra_core::model::Stack) -> Result<(), EnvErrors> {
        let missing: Vec<(infra_core::model::Address, String)> = stack
            .imports
            .keys()
            .filter(|address| stack.get(address).is_none())
            .map(|address| {
                (
                    address.clone(),
                    format!(
                        "the stack has no {address} to import into (`infra graph --env {}` lists its resources)",
                        self.env.get_ref()
                    ),
                )
            })
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(self.import_errors(&missing))
        }
    }

    /// How long the engine waits for AWS to settle: `[timeouts]`, else the defaults.
    pub fn patience(&self) -> infra_core::eventual::Patience {
        let default = infra_core::eventual::Patience::DEFAULT;
        let seconds = |v: &Option<Spanned<u64>>, fallback: std::time::Duration| {
            v.as_ref()
                .map(|v| std::time::Duration::from_secs(*v.get_ref()))
                .unwrap_or(fallback)
        };
        infra_core::eventual::Patience {
            propagation: seconds(&self.timeouts.propagation_seconds, default.propagation),
            ready: seconds(&self.timeouts.ready_seconds, default.ready),
        }
    }

    /// The env file's rate limits (service -> requests per second).
    pub fn rate_limit_overrides(&self) -> std::collections::BTreeMap<String, f64> {
        self.rate_limits
            .iter()
            .map(|(service, rate)| (service.clone(), *rate.get_ref()))
            .collect()
    }

    /// The deployment target this env describes, for stack `stack`.
    pub fn target(&self, stack: &str) -> Target {
        Target {
            stack: stack.to_string(),
            project: self.project.get_ref().clone(),
            env: self.name().to_string(),
            account_id: self.account_id.get_ref().clone(),
            region: self.region.get_ref().clone(),
            protected: self.protected,
            state: StateLocation {
                bucket: self.state.bucket.get_ref().clone(),
                prefix: match &self.instance {
                    Some(instance) => format!("{}/{instance}", self.state.prefix.get_ref()),
                    None => self.state.prefix.get_ref().clone(),
                },
            },
        }
    }
}

/// `arn:<partition>:kms:<region>:<account>:key/<id>`, with the region of the bucket (S3
/// encrypts only with a key of the bucket's region). Aliases and bare key ids are refused:
/// an IAM statement granting use of a key must name the key's ARN.
fn check_kms_key_arn(arn: &str, region: &str) -> Result<(), String> {
    let expected = format!("an ARN such as `arn:aws:kms:{region}:123456789012:key/<key id>`");
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ["arn", partition, "kms", key_region, account, resource] = parts.as_slice() else {
        return Err(format!("`{arn}` is not a KMS key ARN: {expected}"));
    };
    if let Some(alias) = resource.strip_prefix("alias/") {
        return Err(format!(
            "`{arn}` names alias `{alias}`, not a key: the roles that use the bucket are granted \
             on the key itself, so give the key's ARN ({expected})"
        ));
    }
    let key_id = resource.strip_prefix("key/").unwrap_or_default();
    let key_ok = !key_id.is_empty()
        && key_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
    if !partition.starts_with("aws") || !account_ok || !key_ok {
        return Err(format!("`{arn}` is not a KMS key ARN: {expected}"));
    }
    if *key_region != region {
        return Err(format!(
            "the key is in `{key_region}`, but the bucket is in `{region}`: S3 encrypts only \
             with a key of the bucket's region"
        ));
    }
    Ok(())
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    /// `envs/local.toml` (region us-east-1) with its `[data]` encryption line replaced.
    fn local_with(encryption_lines: &str) -> Result<Env, EnvErrors> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("envs");
        let text = std::fs::read_to_string(dir.join("local.toml")).unwrap();
        assert!(text.contains("encryption = \"sse-s3\"\n"));
        let text = text.replace("encryption = \"sse-s3\"\n", encryption_lines);
        Env::parse(Path::new("envs/local.toml"), &text)
    }

    fn only_error(result: Result<Env, EnvErrors>) -> EnvError {
        let errors = result.expect_err("the env file is refused").0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    /// `envs/local.toml` with `line` added after `protected`.
    fn local_plus(line: &str) -> Result<Env, EnvErrors> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("envs");
        let text = std::fs::read_to_string(dir.join("local.toml")).unwrap();
        let text = text.replace(
            "protected = false\n",
            &format!("protected = false\n{line}\n"),
        );
        Env::parse(Path::new("envs/local.toml"), &text)
    }

    #[test]
    fn the_engine_is_native_unless_the_file_names_cloudformation() {
        let native = local_plus("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(native.engine, Engine::Native);
        let cfn = local_plus("engine = \"cloudformation\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfn.engine, Engine::Cloudformation);
        let error = only_error(local_plus("engine = \"terraform\""));
        assert_eq!(error.file, Path::new("envs/local.toml"));
        let shown = error.to_string();
        assert!(
            shown.contains("engine") && shown.contains("terraform"),
            "{shown}"
        );
        assert!(shown.contains("cloudformation"), "{shown}");
    }

    #[test]
    fn a_kms_key_arn_of_the_env_s_region_is_granted_on() {
        let env = local_with(&format!(
            "encryption = \"aws:kms\"\nkms_key_arn = \"{KEY}\"\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(env.data_kms_key_arn(), Some(KEY));
    }

    #[test]
    fn aws_kms_without_a_key_uses_the_aws_managed_key_and_grants_nothing() {
        let env = local_with("encryption = \"aws:kms\"\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(env.data_kms_key_arn(), None);
        let env = local_with("encryption = \"sse-s3\"\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(env.data_kms_key_arn(), None);
    }

    #[test]
    fn a_kms_key_alias_or_bare_id_is_refused_naming_file_and_field() {
        let error = only_error(local_with(
            "encryption = \"aws:kms\"\nkms_key_arn = \"alias/linkedin-ads\"\n",
        ));
        assert_eq!(error.file, Path::new("envs/local.toml"));
        assert_eq!(error.field, "data.kms_key_arn");
        assert!(error.line.is_some() && error.column.is_some());
        let shown = error.to_string();
        assert!(
            shown.starts_with("envs/local.toml:") && shown.contains("field `data.kms_key_arn`"),
            "{shown}"
        );
        assert!(shown.contains("not a KMS key ARN"), "{shown}");

        let error = only_error(local_with(
            "encryption = \"aws:kms\"\nkms_key_arn = \"arn:aws:kms:us-east-1:123456789012:alias/ads\"\n",
        ));
        assert_eq!(error.field, "data.kms_key_arn");
        assert!(error.message.contains("alias `ads`"), "{}", error.message);

        let error = only_error(local_with(
            "encryption = \"aws:kms\"\nkms_key_arn = \"1234abcd-12ab-34cd-56ef-1234567890ab\"\n",
        ));
        assert_eq!(error.field, "data.kms_key_arn");
    }

    #[test]
    fn a_kms_key_of_another_region_or_without_aws_kms_is_refused() {
        let other = KEY.replace("us-east-1", "eu-west-1");
        let error = only_error(local_with(&format!(
            "encryption = \"aws:kms\"\nkms_key_arn = \"{other}\"\n"
        )));
        assert_eq!(error.field, "data.kms_key_arn");
        assert!(
            error.message.contains("eu-west-1") && error.message.contains("us-east-1"),
            "{}",
            error.message
        );

        let error = only_error(local_with(&format!(
            "encryption = \"sse-s3\"\nkms_key_arn = \"{KEY}\"\n"
        )));
        assert_eq!(error.field, "data.kms_key_arn");
        assert!(error.message.contains("aws:kms"), "{}", error.message);
    }
}
