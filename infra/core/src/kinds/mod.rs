//! Resource kinds. Each submodule owns one AWS resource kind: its desired-properties type,
//! validation, batched read, field projection for diffs, create, update and delete. This
//! module only dispatches on [`Kind`] and holds what every kind shares (tags, fields).

pub mod bucket;
pub mod log_group;
pub mod role;
pub mod topic;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::aws::{Aws, AwsError};
use crate::model::{Address, Kind, Resource, Spec, Target};

/// A resource to read: its address and the physical id it has (or would have) live.
#[derive(Clone, Debug)]
pub struct ReadTarget {
    pub address: Address,
    pub physical_id: String,
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
    #[error("could not build the request: {0}")]
    Build(String),
    #[error("{0}")]
    Refused(String),
}

impl From<aws_smithy_types::error::operation::BuildError> for OpError {
    fn from(err: aws_smithy_types::error::operation::BuildError) -> Self {
        OpError::Build(err.to_string())
    }
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
    };
    problems.extend(validate_tags(resource.spec.tags()));
    problems
}

/// Reads every target live, in as few calls as each kind allows.
pub async fn read(aws: &Aws, target: &Target, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
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
    let (buckets, roles, topics, logs) = tokio::try_join!(
        bucket::read(aws, &buckets),
        role::read(aws, &roles),
        topic::read(aws, target, &topics),
        log_group::read(aws, target, &logs),
    )?;
    let mut live = LiveMap::new();
    live.extend(buckets);
    live.extend(roles);
    live.extend(topics);
    live.extend(logs);
    Ok(live)
}

/// The canonical fields of a spec.
pub fn fields(spec: &Spec) -> Fields {
    match spec {
        Spec::Bucket(s) => bucket::fields(s),
        Spec::Role(s) => role::fields(s),
        Spec::Topic(s) => topic::fields(s),
        Spec::LogGroup(s) => log_group::fields(s),
    }
}

/// Fields that AWS cannot change in place: a change to one replaces the resource.
pub fn forces_replacement(kind: Kind, field: &str) -> bool {
    match kind {
        Kind::Bucket => bucket::REPLACE_FIELDS.contains(&field),
        Kind::Role => role::REPLACE_FIELDS.contains(&field),
        Kind::Topic => topic::REPLACE_FIELDS.contains(&field),
        Kind::LogGroup => log_group::REPLACE_FIELDS.contains(&field),
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
    }
}

/// Brings a live resource from `live` to `desired`, touching only what differs.
pub async fn update(
    aws: &Aws,
    target: &Target,
    resource: &Resource,
    live: &Spec,
) -> Result<(), OpError> {
    match (&resource.spec, live) {
        (Spec::Bucket(d), Spec::Bucket(l)) => bucket::update(aws, d, l).await,
        (Spec::Role(d), Spec::Role(l)) => role::update(aws, d, l).await,
        (Spec::Topic(d), Spec::Topic(l)) => topic::update(aws, &resource.arn, d, l).await,
        (Spec::LogGroup(d), Spec::LogGroup(l)) => log_group::update(aws, target, d, l).await,
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
    }
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
