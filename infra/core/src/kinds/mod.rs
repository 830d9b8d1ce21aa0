//! Resource kinds. Each submodule owns one AWS resource kind: its desired-properties type,
//! validation, batched read, field projection for diffs, create, update and delete. This
//! module only dispatches on [`Kind`] and holds what every kind shares (tags, fields).

pub mod alarm;
pub mod bucket;
pub mod crawler;
pub mod dashboard;
pub mod function_url;
pub mod glue_database;
pub mod glue_table;
pub mod lambda;
pub mod log_group;
pub mod permission;
pub mod role;
pub mod rule;
pub mod secret;
pub mod secret_rotation;
pub mod tag_index;
pub mod topic;
pub mod workgroup;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::aws::{Aws, AwsError};
use crate::model::{Address, Kind, Resource, Spec, Target};

/// A resource to read: its address and the physical id it has (or would have) live.
#[derive(Clone, Debug)]
pub struct ReadTarget {
    pub address: Address,
    pub physical_id: String,
    /// Whether state (or the plan being checked) has it: where an eventually consistent
    /// listing disagrees with this, the resource is read directly.
    pub known: bool,
}

/// Live properties by address: `None` when the resource does not exist live.
pub type LiveMap = BTreeMap<Address, Option<Spec>>;

/// A resource's properties flattened to named fields, each in canonical form. Two specs are
/// equal exactly when their fields are equal; the plan shows differing fields.
pub type Fields = BTreeMap<String, Value>;

/// Why one operation on one resource failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A transient error that did not clear within its bound.
    #[error(transparent)]
    GaveUp(#[from] crate::eventual::GaveUp),
    #[error(transparent)]
    Wait(#[from] crate::eventual::WaitError),
    #[error("could not build the request: {0}")]
    Build(String),
    #[error("{0}")]
    Refused(String),
}

impl From<crate::eventual::RetryError> for OpError {
    fn from(err: crate::eventual::RetryError) -> Self {
        match err {
            crate::eventual::RetryError::Aws(e) => OpError::Aws(e),
            crate::eventual::RetryError::GaveUp(g) => OpError::GaveUp(g),
        }
    }
}

impl From<aws_smithy_types::error::operation::BuildError> for OpError {
    fn from(err: aws_smithy_types::error::operation::BuildError) -> Self {
        OpError::Build(err.to_string())
    }
}

/// As [`crate::eventual::retry`], for a call that returns an [`OpError`] (only its AWS errors
/// can be transient).
pub(crate) async fn retry_op<T, F, Fut>(
    resource: &str,
    bound: std::time::Duration,
    transient: crate::eventual::Transient,
    mut call: F,
) -> Result<T, OpError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OpError>>,
{
    crate::eventual::retry(resource, bound, transient, || {
        let attempt = call();
        async move {
            match attempt.await {
                Ok(value) => Ok(Ok(value)),
                Err(OpError::Aws(e)) => Err(e),
                Err(other) => Ok(Err(other)),
            }
        }
    })
    .await?
}

/// A problem with a desired resource found before any AWS call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Options of a delete.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeleteOptions {
    /// Empty buckets (every object version and delete marker) before deleting them.
    pub purge_data: bool,
}

/// Checks a desired resource; every problem found, not just the first.
pub fn validate(resource: &Resource) -> Vec<Invalid> {
    let mut problems = match &resource.spec {
        Spec::Bucket(s) => bucket::validate(s),
        Spec::Role(s) => role::validate(s),
        Spec::Topic(s) => topic::validate(s),
        Spec::LogGroup(s) => log_group::validate(s),
        Spec::Lambda(s) => lambda::validate(s),
        Spec::Permission(s) => permission::validate(s),
        Spec::FunctionUrl(s) => function_url::validate(s),
        Spec::Rule(s) => rule::validate(s),
        Spec::GlueDatabase(s) => glue_database::validate(s),
        Spec::GlueTable(s) => glue_table::validate(s),
        Spec::Crawler(s) => crawler::validate(s),
        Spec::Workgroup(s) => workgroup::validate(s),
        Spec::Alarm(s) => alarm::validate(s),
        Spec::Dashboard(s) => dashboard::validate(s),
        Spec::Secret(s) => secret::validate(s),
        Spec::SecretRotation(s) => secret_rotation::validate(s),
    };
    if let Some(tags) = resource.spec.tags() {
        problems.extend(validate_tags(tags));
    }
    problems
}

/// What `resource` becomes in a CloudFormation template: itself, and any parts
/// CloudFormation models apart (see [`crate::cloudformation`]).
pub fn cloudformation(
    resource: &Resource,
    cx: &crate::cloudformation::Context,
) -> Result<Vec<crate::cloudformation::CfnResource>, crate::cloudformation::TemplateError> {
    Ok(match &resource.spec {
        Spec::Bucket(s) => vec![bucket::cloudformation(s)],
        Spec::Role(s) => vec![role::cloudformation(s)],
        Spec::Topic(s) => topic::cloudformation(s, cx),
        Spec::LogGroup(s) => vec![log_group::cloudformation(s)],
        Spec::Lambda(s) => vec![lambda::cloudformation(s, cx)?],
        Spec::Permission(s) => vec![permission::cloudformation(s)],
        Spec::FunctionUrl(s) => vec![function_url::cloudformation(s)],
        Spec::Rule(s) => vec![rule::cloudformation(s)],
        Spec::GlueDatabase(s) => vec![glue_database::cloudformation(s, cx)],
        Spec::GlueTable(s) => vec![glue_table::cloudformation(s, cx)],
        Spec::Crawler(s) => vec![crawler::cloudformation(s)],
        Spec::Workgroup(s) => workgroup::cloudformation(s, cx),
        Spec::Alarm(s) => vec![alarm::cloudformation(s)],
        Spec::Dashboard(s) => vec![dashboard::cloudformation(s)],
        Spec::Secret(s) => vec![secret::cloudformation(s)],
        Spec::SecretRotation(s) => vec![secret_rotation::cloudformation(s)],
    })
}

/// Reads every target live, in as few calls as each kind allows. `tags` is the env's
/// tagging-API listing if the caller has it already; else it is listed here when needed.
pub async fn read(
    aws: &Aws,
    target: &Target,
    targets: &[ReadTarget],
    tags: Option<&tag_index::TagIndex>,
) -> Result<LiveMap, AwsError> {
    let of = |kind: Kind| -> Vec<ReadTarget> {
        targets
            .iter()
            .filter(|t| t.address.kind == kind)
            .cloned()
            .collect()
    };
    let (buckets, roles, topics, logs) = (
        of(Kind::Bucket),
        of(Kind::Role),
        of(Kind::Topic),
        of(Kind::LogGroup),
    );
    let (lambdas, permissions, urls, rules) = (
        of(Kind::Lambda),
        of(Kind::Permission),
        of(Kind::FunctionUrl),
        of(Kind::Rule),
    );
    let (databases, tables) = (of(Kind::GlueDatabase), of(Kind::GlueTable));
    let (crawlers, workgroups) = (of(Kind::Crawler), of(Kind::Workgroup));
    let (alarms, dashboards) = (of(Kind::Alarm), of(Kind::Dashboard));
    let (secrets, rotations) = (of(Kind::Secret), of(Kind::SecretRotation));
    // One listing answers for secrets and their rotations alike.
    let secret_names: BTreeSet<&str> = secrets
        .iter()
        .chain(&rotations)
        .map(|t| t.physical_id.as_str())
        .collect();
    let known_secrets: BTreeSet<&str> = secrets
        .iter()
        .chain(&rotations)
        .filter(|t| t.known)
        .map(|t| t.physical_id.as_str())
        .collect();
    // Alarms, log groups, rules, Glue databases and crawlers have no batch read of their tags
    // but the tagging API's listing; it runs alongside the reads that do not need it.
    let tagged_reads = async {
        let loaded;
        let index = match tags {
            Some(index) => index,
            None if alarms.is_empty()
                && logs.is_empty()
                && rules.is_empty()
                && databases.is_empty()
                && crawlers.is_empty() =>
            {
                loaded = tag_index::TagIndex::default();
                &loaded
            }
            None => {
                loaded = tag_index::TagIndex::load(aws, target).await?;
                &loaded
            }
        };
        tokio::try_join!(
            log_group::read(aws, target, &logs, index),
            alarm::read(aws, target, &alarms, index),
            rule::read(aws, &rules, index),
            glue_database::read(aws, target, &databases, index),
            crawler::read(aws, target, &crawlers, index),
        )
    };
    let (
        (logs, alarms, rules, databases, crawlers),
        (buckets, roles, topics, lambdas, permissions, urls),
        (tables, workgroups, dashboards, listing),
    ) = tokio::try_join!(
        tagged_reads,
        async {
            tokio::try_join!(
                bucket::read(aws, &buckets),
                role::read(aws, &roles),
                topic::read(aws, target, &topics),
                lambda::read(aws, &lambdas),
                permission::read(aws, &permissions),
                function_url::read(aws, &urls),
            )
        },
        async {
            tokio::try_join!(
                glue_table::read(aws, &tables),
                workgroup::read(aws, target, &workgroups),
                dashboard::read(aws, &dashboards),
                secret::SecretListing::load(aws, &secret_names, &known_secrets),
            )
        },
    )?;
    let secrets = secret::read(&listing, &secrets);
    let rotations = secret_rotation::read(&listing, &rotations);
    let mut live = LiveMap::new();
    for part in [
        buckets,
        roles,
        topics,
        logs,
        lambdas,
        permissions,
        urls,
        rules,
        databases,
        tables,
        crawlers,
        workgroups,
        alarms,
        dashboards,
        secrets,
        rotations,
    ] {
        live.extend(part);
    }
    Ok(live)
}

/// The canonical fields of a spec.
pub fn fields(spec: &Spec) -> Fields {
    match spec {
        Spec::Bucket(s) => bucket::fields(s),
        Spec::Role(s) => role::fields(s),
        Spec::Topic(s) => topic::fields(s),
        Spec::LogGroup(s) => log_group::fields(s),
        Spec::Lambda(s) => lambda::fields(s),
        Spec::Permission(s) => permission::fields(s),
        Spec::FunctionUrl(s) => function_url::fields(s),
        Spec::Rule(s) => rule::fields(s),
        Spec::GlueDatabase(s) => glue_database::fields(s),
        Spec::GlueTable(s) => glue_table::fields(s),
        Spec::Crawler(s) => crawler::fields(s),
        Spec::Workgroup(s) => workgroup::fields(s),
        Spec::Alarm(s) => alarm::fields(s),
        Spec::Dashboard(s) => dashboard::fields(s),
        Spec::Secret(s) => secret::fields(s),
        Spec::SecretRotation(s) => secret_rotation::fields(s),
    }
}

/// Fields that AWS cannot change in place: a change to one replaces the resource.
pub fn forces_replacement(kind: Kind, field: &str) -> bool {
    match kind {
        Kind::Bucket => bucket::REPLACE_FIELDS.contains(&field),
        Kind::Role => role::REPLACE_FIELDS.contains(&field),
        Kind::Topic => topic::REPLACE_FIELDS.contains(&field),
        Kind::LogGroup => log_group::REPLACE_FIELDS.contains(&field),
        Kind::Lambda => lambda::REPLACE_FIELDS.contains(&field),
        Kind::Permission => permission::REPLACE_FIELDS.contains(&field),
        Kind::FunctionUrl => function_url::REPLACE_FIELDS.contains(&field),
        Kind::Rule => rule::REPLACE_FIELDS.contains(&field),
        Kind::GlueDatabase => glue_database::REPLACE_FIELDS.contains(&field),
        Kind::GlueTable => glue_table::REPLACE_FIELDS.contains(&field),
        Kind::Crawler => crawler::REPLACE_FIELDS.contains(&field),
        Kind::Workgroup => workgroup::REPLACE_FIELDS.contains(&field),
        Kind::Alarm => alarm::REPLACE_FIELDS.contains(&field),
        Kind::Dashboard => dashboard::REPLACE_FIELDS.contains(&field),
        Kind::Secret => secret::REPLACE_FIELDS.contains(&field),
        Kind::SecretRotation => secret_rotation::REPLACE_FIELDS.contains(&field),
    }
}

/// Clears, in a live spec, what the desired spec leaves to AWS (e.g. a topic's default
/// policy when the stack sets none), so that it is not reported as a difference.
pub fn align_live(desired: &Spec, live: &mut Spec) {
    if let (Spec::Topic(d), Spec::Topic(l)) = (desired, live) {
        topic::align_live(d, l);
    }
}

pub async fn create(aws: &Aws, target: &Target, resource: &Resource) -> Result<(), OpError> {
    match &resource.spec {
        Spec::Bucket(s) => bucket::create(aws, target, s).await,
        Spec::Role(s) => role::create(aws, s).await,
        Spec::Topic(s) => topic::create(aws, s).await,
        Spec::LogGroup(s) => log_group::create(aws, target, s).await,
        Spec::Lambda(s) => lambda::create(aws, target, s).await,
        Spec::Permission(s) => permission::create(aws, s).await,
        Spec::FunctionUrl(s) => function_url::create(aws, s).await,
        Spec::Rule(s) => rule::create(aws, s).await,
        Spec::GlueDatabase(s) => glue_database::create(aws, target, s).await,
        Spec::GlueTable(s) => glue_table::create(aws, s).await,
        Spec::Crawler(s) => crawler::create(aws, target, s).await,
        Spec::Workgroup(s) => workgroup::create(aws, target, s).await,
        Spec::Alarm(s) => alarm::create(aws, s).await,
        Spec::Dashboard(s) => dashboard::put(aws, s).await,
        Spec::Secret(s) => secret::create(aws, s).await,
        Spec::SecretRotation(s) => secret_rotation::put(aws, s).await,
    }
}

/// Brings a live resource from `live` to `desired`, touching only what differs.
/// `just_created`: an interrupted apply created it moments ago (the plan adopts it), so what
/// AWS lets settle after a create may still be settling.
pub async fn update(
    aws: &Aws,
    target: &Target,
    resource: &Resource,
    live: &Spec,
    just_created: bool,
) -> Result<(), OpError> {
    match (&resource.spec, live) {
        (Spec::Bucket(d), Spec::Bucket(l)) => bucket::update(aws, d, l, just_created).await,
        (Spec::Role(d), Spec::Role(l)) => role::update(aws, d, l).await,
        (Spec::Topic(d), Spec::Topic(l)) => {
            topic::update(aws, &resource.arn, d, l, just_created).await
        }
        (Spec::LogGroup(d), Spec::LogGroup(l)) => {
            log_group::update(aws, target, d, l, just_created).await
        }
        (Spec::Lambda(d), Spec::Lambda(l)) => lambda::update(aws, target, d, l).await,
        (Spec::FunctionUrl(d), Spec::FunctionUrl(_)) => function_url::update(aws, d).await,
        (Spec::Rule(d), Spec::Rule(l)) => rule::update(aws, target, d, l).await,
        (Spec::GlueDatabase(d), Spec::GlueDatabase(l)) => {
            glue_database::update(aws, target, d, l).await
        }
        (Spec::GlueTable(d), Spec::GlueTable(_)) => glue_table::update(aws, d).await,
        (Spec::Crawler(d), Spec::Crawler(l)) => crawler::update(aws, target, d, l).await,
        (Spec::Workgroup(d), Spec::Workgroup(l)) => workgroup::update(aws, target, d, l).await,
        (Spec::Alarm(d), Spec::Alarm(l)) => alarm::update(aws, target, d, l).await,
        (Spec::Dashboard(d), Spec::Dashboard(_)) => dashboard::put(aws, d).await,
        (Spec::Secret(d), Spec::Secret(l)) => secret::update(aws, d, l).await,
        (Spec::SecretRotation(d), Spec::SecretRotation(_)) => secret_rotation::put(aws, d).await,
        (d, l) => Err(OpError::Refused(format!(
            "cannot update a {} from a live {}",
            d.kind(),
            l.kind()
        ))),
    }
}

pub async fn delete(
    aws: &Aws,
    target: &Target,
    kind: Kind,
    physical_id: &str,
    options: DeleteOptions,
) -> Result<(), OpError> {
    match kind {
        Kind::Bucket => bucket::delete(aws, physical_id, options).await,
        Kind::Role => role::delete(aws, physical_id).await,
        Kind::Topic => topic::delete(aws, &topic::arn(target, physical_id)).await,
        Kind::LogGroup => log_group::delete(aws, physical_id).await,
        Kind::Lambda => lambda::delete(aws, physical_id).await,
        Kind::Permission => permission::delete(aws, physical_id).await,
        Kind::FunctionUrl => function_url::delete(aws, physical_id).await,
        Kind::Rule => rule::delete(aws, physical_id).await,
        Kind::GlueDatabase => glue_database::delete(aws, physical_id).await,
        Kind::GlueTable => glue_table::delete(aws, physical_id).await,
        Kind::Crawler => crawler::delete(aws, physical_id).await,
        Kind::Workgroup => workgroup::delete(aws, physical_id).await,
        Kind::Alarm => alarm::delete(aws, physical_id).await,
        Kind::Dashboard => dashboard::delete(aws, physical_id).await,
        Kind::Secret => secret::delete(aws, target, physical_id).await,
        Kind::SecretRotation => secret_rotation::delete(aws, physical_id).await,
    }
}

/// The physical name a resource of `kind` takes from an `[[import]]` id: its name, or an ARN
/// of that kind (a topic's or a secret's ARN, as the consoles show them). Kinds whose identity
/// follows another resource's are not imported on their own: they take the imported parent's
/// name through their references.
pub fn imported_name(kind: Kind, id: &str) -> Result<String, String> {
    let parent = match kind {
        Kind::Permission | Kind::FunctionUrl => Some("its function (`lambda.NAME`)"),
        Kind::SecretRotation => Some("its secret (`secret.NAME`)"),
        Kind::GlueTable => Some("its database (`glue_database.NAME`); tables are the catalog's"),
        _ => None,
    };
    if let Some(parent) = parent {
        return Err(format!(
            "a {} is not imported on its own: its identity follows {parent}",
            kind.as_str()
        ));
    }
    let id = id.trim();
    if id.is_empty() {
        return Err("the id is empty: give the live resource's name or ARN".into());
    }
    if !id.starts_with("arn:") {
        return Ok(id.to_string());
    }
    match identify(id) {
        Some((found, name)) if found == kind => Ok(name),
        Some((found, _)) => Err(format!(
            "`{id}` is the ARN of a {}, not of a {}",
            found.as_str(),
            kind.as_str()
        )),
        None => Err(format!("`{id}` is not an ARN of a {}", kind.as_str())),
    }
}

/// The kind and physical id an ARN names: the inverse of each kind's `arn`, for resources
/// found by ARN alone (the tagging API's listing). `None` for anything else.
pub fn identify(arn: &str) -> Option<(Kind, String)> {
    let mut parts = arn.splitn(6, ':');
    let (_arn, _partition, service, _region, _account) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let resource = parts.next()?;
    let after = |prefix: &str| resource.strip_prefix(prefix).map(str::to_string);
    let found = match service {
        "s3" if !resource.contains('/') => Some((Kind::Bucket, resource.to_string())),
        "lambda" => after("function:")
            .map(|f| (Kind::Lambda, f.split(':').next().unwrap_or(&f).to_string())),
        "logs" => after("log-group:").map(|g| {
            let name = g.strip_suffix(":*").unwrap_or(&g).to_string();
            (Kind::LogGroup, name)
        }),
        "sns" if !resource.contains(':') => Some((Kind::Topic, resource.to_string())),
        "events" => after("rule/").map(|r| (Kind::Rule, r)),
        "cloudwatch" => after("alarm:")
            .map(|a| (Kind::Alarm, a))
            .or_else(|| after("dashboard/").map(|d| (Kind::Dashboard, d))),
        "glue" => after("database/")
            .map(|d| (Kind::GlueDatabase, d))
            .or_else(|| after("crawler/").map(|c| (Kind::Crawler, c)))
            .or_else(|| {
                after("table/").and_then(|t| {
                    let (database, table) = t.split_once('/')?;
                    Some((Kind::GlueTable, format!("{database}.{table}")))
                })
            }),
        "athena" => after("workgroup/").map(|w| (Kind::Workgroup, w)),
        // Secret ARNs end in `-` and six random characters.
        "secretsmanager" => after("secret:").and_then(|s| {
            let (name, suffix) = s.rsplit_once('-')?;
            (suffix.len() == 6).then(|| (Kind::Secret, name.to_string()))
        }),
        "iam" => {
            after("role/").map(|r| (Kind::Role, r.rsplit('/').next().unwrap_or(&r).to_string()))
        }
        _ => None,
    };
    found.filter(|(_, id)| !id.is_empty())
}

/// The longest prefix all `names` share: one List call by prefix finds them all.
pub(crate) fn common_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = names.next() else {
        return String::new();
    };
    let mut prefix = first.to_string();
    for name in names {
        let shared = prefix
            .chars()
            .zip(name.chars())
            .take_while(|(a, b)| a == b)
            .count();
        prefix = prefix.chars().take(shared).collect();
    }
    prefix
}

/// `tags.<key>` fields. Keys under `aws:` belong to AWS and are never compared.
pub fn tag_fields(tags: &BTreeMap<String, String>, fields: &mut Fields) {
    for (key, value) in tags {
        if !key.starts_with("aws:") {
            fields.insert(format!("tags.{key}"), Value::String(value.clone()));
        }
    }
}

/// What to set and what to remove to go from `live` tags to `desired` tags.
pub struct TagDelta {
    pub set: BTreeMap<String, String>,
    pub remove: BTreeSet<String>,
}

impl TagDelta {
    pub fn between(
        desired: &BTreeMap<String, String>,
        live: &BTreeMap<String, String>,
    ) -> TagDelta {
        let set = desired
            .iter()
            .filter(|(k, v)| live.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let remove = live
            .keys()
            .filter(|k| !k.starts_with("aws:") && !desired.contains_key(*k))
            .cloned()
            .collect();
        TagDelta { set, remove }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

fn validate_tags(tags: &BTreeMap<String, String>) -> Vec<Invalid> {
    let mut problems = Vec::new();
    if tags.len() > 50 {
        problems.push(Invalid::new(
            "tags",
            format!("{} tags; AWS allows at most 50", tags.len()),
        ));
    }
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > 128 {
            problems.push(Invalid::new(
                format!("tags.{key}"),
                "tag keys are 1 to 128 characters",
            ));
        }
        if key.starts_with("aws:") {
            problems.push(Invalid::new(
                format!("tags.{key}"),
                "the `aws:` prefix is reserved by AWS",
            ));
        }
        if value.chars().count() > 256 {
            problems.push(Invalid::new(
                format!("tags.{key}"),
                "tag values are at most 256 characters",
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_id_is_a_name_or_an_arn_of_the_same_kind() {
        let name = |kind, id| imported_name(kind, id);
        assert_eq!(
            name(Kind::Bucket, " data-bucket "),
            Ok("data-bucket".into())
        );
        assert_eq!(
            name(Kind::Topic, "arn:aws:sns:us-east-1:123456789012:alerts"),
            Ok("alerts".into())
        );
        assert_eq!(
            name(
                Kind::Secret,
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:li/oauth-AbC123"
            ),
            Ok("li/oauth".into())
        );
        assert_eq!(
            name(
                Kind::Role,
                "arn:aws:iam::123456789012:role/service/collector"
            ),
            Ok("collector".into())
        );
        let wrong = name(
            Kind::Topic,
            "arn:aws:lambda:us-east-1:123456789012:function:f",
        );
        assert!(wrong.is_err_and(|e| e.contains("ARN of a lambda, not of a topic")));
        assert!(name(Kind::Alarm, "  ").is_err_and(|e| e.contains("empty")));
        for kind in [
            Kind::Permission,
            Kind::FunctionUrl,
            Kind::SecretRotation,
            Kind::GlueTable,
        ] {
            assert!(
                name(kind, "x").is_err_and(|e| e.contains("not imported on its own")),
                "{kind:?}"
            );
        }
    }
}
