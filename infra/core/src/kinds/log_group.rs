//! CloudWatch Logs log groups: retention and tags.
//!
//! Read: DescribeLogGroups by the targets' common name prefix (paged; the emulator ignores
//! the name pattern and identifier filters), then tags per existing group. The name is the
//! identity; a KMS key could only be added in place, so nothing forces replacement.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, TagDelta, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::cloudformation::{CfnResource, tag_list};
use crate::eventual::{self, Transient};
use crate::model::{Address, Kind, KindSpec, Spec, Target};
use serde_json::json;

/// aws-behaviors.md, aws_cloudwatch_log_group: `ResourceNotFoundException` (delete, tags);
/// a read finds a group missing by its absence from DescribeLogGroups.
const NOT_FOUND: NotFound = NotFound::codes(&["ResourceNotFoundException"]);

/// aws-behaviors.md, aws_cloudwatch_log_group, Retries: PutRetentionPolicy right after
/// CreateLogGroup is retried on `AccessDeniedException` "no identity-based policy allows"
/// (tag-based permissions propagating); only for a group created moments ago (by this apply,
/// or by an interrupted one it adopts).
fn abac_propagating(e: &AwsError) -> Option<&'static str> {
    e.says("AccessDeniedException", "no identity-based policy allows")
        .then_some("permissions on the new log group are propagating (ABAC)")
}

/// aws-behaviors.md, aws_cloudwatch_log_group, Retries: DeleteLogGroup is retried on
/// `OperationAbortedException` "... try again".
fn delete_aborted(e: &AwsError) -> Option<&'static str> {
    e.says("OperationAbortedException", "try again")
        .then_some("a conflicting operation on the log group is in progress")
}

pub const REPLACE_FIELDS: &[&str] = &[];

/// The retention periods CloudWatch Logs accepts, in days.
pub const ALLOWED_RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogGroupSpec {
    pub name: String,
    /// `None`: never expire.
    pub retention_days: Option<i32>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl KindSpec for LogGroupSpec {
    const KIND: Kind = Kind::LogGroup;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        arn(target, &self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::LogGroup(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

pub fn arn(target: &Target, name: &str) -> String {
    format!(
        "arn:aws:logs:{}:{}:log-group:{}",
        target.region, target.account_id, name
    )
}

/// Checks a retention against the values CloudWatch Logs allows.
pub fn validate_retention(days: i32) -> Result<(), String> {
    if ALLOWED_RETENTION_DAYS.contains(&days) {
        Ok(())
    } else {
        let allowed: Vec<String> = ALLOWED_RETENTION_DAYS.iter().map(i32::to_string).collect();
        Err(format!(
            "{days} days is not a retention CloudWatch Logs allows (one of {})",
            allowed.join(", ")
        ))
    }
}

pub fn validate(spec: &LogGroupSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-/#".contains(c);
    if spec.name.is_empty() || spec.name.len() > 512 || !spec.name.chars().all(ok) {
        problems.push(Invalid::new(
            "name",
            format!(
                "`{}`: log group names are 1 to 512 of A-Z a-z 0-9 . _ - / #",
                spec.name
            ),
        ));
    }
    if let Some(days) = spec.retention_days
        && let Err(message) = validate_retention(days)
    {
        problems.push(Invalid::new("retention_days", message));
    }
    problems
}

/// `AWS::Logs::LogGroup`.
pub fn cloudformation(spec: &LogGroupSpec) -> CfnResource {
    CfnResource::main(
        "AWS::Logs::LogGroup",
        json!({
            "LogGroupName": spec.name,
            "RetentionInDays": spec.retention_days,
            "Tags": tag_list(&spec.tags),
        }),
    )
}

pub fn fields(spec: &LogGroupSpec) -> Fields {
    let mut fields = Fields::new();
    fields.insert(
        "retention_days".into(),
        spec.retention_days
            .map(Value::from)
            .unwrap_or(Value::String("never expire".into())),
    );
    tag_fields(&spec.tags, &mut fields);
    fields
}

pub async fn read(
    aws: &Aws,
    target: &Target,
    targets: &[ReadTarget],
    tag_index: &super::tag_index::TagIndex,
) -> Result<LiveMap, AwsError> {
    let mut live = LiveMap::new();
    if targets.is_empty() {
        return Ok(live);
    }
    let prefix = super::common_prefix(targets.iter().map(|t| t.physical_id.as_str()));
    let mut found: BTreeMap<String, Option<i32>> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = aws.logs.describe_log_groups().set_next_token(token.clone());
        if !prefix.is_empty() {
            request = request.log_group_name_prefix(&prefix);
        }
        let page = request.send().await.map_err(failed("DescribeLogGroups"))?;
        for g in page.log_groups() {
            if let Some(name) = g.log_group_name() {
                found.insert(name.to_string(), g.retention_in_days());
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    for t in targets {
        live.insert(t.address.clone(), None);
    }
    let existing: Vec<(Address, String, Option<i32>)> = targets
        .iter()
        .filter_map(|t| {
            found
                .get(&t.physical_id)
                .map(|r| (t.address.clone(), t.physical_id.clone(), *r))
        })
        .collect();
    let specs: Vec<(Address, Option<LogGroupSpec>)> = stream::iter(existing)
        .map(|(address, name, retention_days)| {
            let arn = arn(target, &name);
            async move {
                let tags = match tag_index.get(&arn) {
                    Some(tags) => Some(tags.clone()),
                    None => read_tags(aws, &arn).await?,
                };
                Ok::<_, AwsError>((
                    address,
                    tags.map(|tags| LogGroupSpec {
                        name,
                        retention_days,
                        tags,
                    }),
                ))
            }
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for (address, spec) in specs {
        live.insert(address, spec.map(Spec::LogGroup));
    }
    Ok(live)
}

/// Tags of one group; `None` if it vanished meanwhile.
async fn read_tags(aws: &Aws, arn: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    let out = aws
        .logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(failed("ListTagsForResource"));
    match out {
        Ok(out) => Ok(Some(
            out.tags()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        )),
        Err(e) if NOT_FOUND.matches(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn create(aws: &Aws, target: &Target, spec: &LogGroupSpec) -> Result<(), OpError> {
    let created = aws
        .logs
        .create_log_group()
        .log_group_name(&spec.name)
        .set_tags(Some(spec.tags.clone().into_iter().collect()))
        .send()
        .await
        .map_err(failed("CreateLogGroup"));
    match created {
        Ok(_) => {}
        Err(e) if e.is("ResourceAlreadyExistsException") => {
            let empty = LogGroupSpec {
                name: spec.name.clone(),
                retention_days: None,
                tags: BTreeMap::new(),
            };
            return update(aws, target, spec, &empty, true).await;
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(days) = spec.retention_days {
        put_retention(aws, &spec.name, days, true).await?;
    }
    Ok(())
}

/// Sets the retention; on a group `just_created`, waits out ABAC propagation.
async fn put_retention(
    aws: &Aws,
    name: &str,
    days: i32,
    just_created: bool,
) -> Result<(), OpError> {
    if just_created {
        eventual::retry(
            name,
            aws.patience.propagation,
            abac_propagating as Transient,
            || put_retention_once(aws, name, days),
        )
        .await?;
    } else {
        put_retention_once(aws, name, days).await?;
    }
    Ok(())
}

async fn put_retention_once(aws: &Aws, name: &str, days: i32) -> Result<(), AwsError> {
    aws.logs
        .put_retention_policy()
        .log_group_name(name)
        .retention_in_days(days)
        .send()
        .await
        .map_err(failed("PutRetentionPolicy"))?;
    Ok(())
}

pub async fn update(
    aws: &Aws,
    target: &Target,
    desired: &LogGroupSpec,
    live: &LogGroupSpec,
    just_created: bool,
) -> Result<(), OpError> {
    if desired.retention_days != live.retention_days {
        match desired.retention_days {
            Some(days) => put_retention(aws, &desired.name, days, just_created).await?,
            None => {
                aws.logs
                    .delete_retention_policy()
                    .log_group_name(&desired.name)
                    .send()
                    .await
                    .map_err(failed("DeleteRetentionPolicy"))?;
            }
        }
    }
    let delta = TagDelta::between(&desired.tags, &live.tags);
    let resource_arn = arn(target, &desired.name);
    if !delta.set.is_empty() {
        aws.logs
            .tag_resource()
            .resource_arn(&resource_arn)
            .set_tags(Some(delta.set.into_iter().collect()))
            .send()
            .await
            .map_err(failed("TagResource"))?;
    }
    if !delta.remove.is_empty() {
        aws.logs
            .untag_resource()
            .resource_arn(&resource_arn)
            .set_tag_keys(Some(delta.remove.into_iter().collect()))
            .send()
            .await
            .map_err(failed("UntagResource"))?;
    }
    Ok(())
}

pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    eventual::retry(
        name,
        aws.patience.propagation,
        delete_aborted as Transient,
        || async {
            aws.logs
                .delete_log_group()
                .log_group_name(name)
                .send()
                .await
                .map_err(failed("DeleteLogGroup"))
                .or_missing(NOT_FOUND)
        },
    )
    .await?;
    Ok(())
}
