//! Athena workgroups: where results go (encrypted), whether the configuration is enforced on
//! every query, the per-query bytes-scanned cutoff, CloudWatch metrics, tags.
//!
//! The workgroup's named queries belong to it: they are listed with it, and deleting the
//! workgroup (recursively) deletes them, so they are fields of this kind rather than resources
//! of their own (their ids are random, and nothing else refers to them).
//!
//! Read: GetWorkGroup per workgroup, tags, and ListNamedQueries + GetNamedQuery for its
//! queries. AWS says "missing" with a 400 `InvalidRequestException` whose message tells it
//! apart ("is not found", "does not exist"); the emulator answers an empty 200, read as
//! missing too. Changes use UpdateWorkGroup and
//! Create/Update/DeleteNamedQuery; the emulator implements none of the updates or deletes, so
//! against it only create, read and delete of the workgroup are exercised.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_athena::types::{
    EncryptionConfiguration, EncryptionOption, ResultConfiguration, ResultConfigurationUpdates,
    Tag, WorkGroupConfiguration, WorkGroupConfigurationUpdates,
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, TagDelta, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::cloudformation::{CfnResource, Context, non_empty, tag_list};
use crate::model::{Address, Kind, KindSpec, Spec, Target};
use serde_json::json;

pub const REPLACE_FIELDS: &[&str] = &[];

/// aws-behaviors.md, aws_athena_workgroup, Not found: `InvalidRequestException` whose message
/// contains "is not found" (GetWorkGroup, DeleteWorkGroup).
const WORKGROUP_NOT_FOUND: NotFound =
    NotFound::saying(&["InvalidRequestException"], &["is not found"]);
/// aws-behaviors.md, aws_athena_named_query, Not found: `InvalidRequestException` whose message
/// contains "does not exist".
const QUERY_NOT_FOUND: NotFound =
    NotFound::saying(&["InvalidRequestException"], &["does not exist"]);

/// Athena's smallest per-query cutoff: 10 MB.
pub const MIN_BYTES_SCANNED_CUTOFF: i64 = 10_485_760;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkgroupSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `s3://<bucket>/<prefix>/`.
    pub output_location: String,
    /// How results are encrypted: `SSE_S3` (live: whatever AWS answers, `NONE` if absent).
    pub result_encryption: String,
    /// Queries cannot override the workgroup's settings.
    pub enforce_configuration: bool,
    pub bytes_scanned_cutoff: Option<i64>,
    pub publish_metrics: bool,
    /// Saved queries, by name.
    #[serde(default)]
    pub named_queries: BTreeMap<String, NamedQuery>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub references: BTreeSet<Address>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedQuery {
    pub database: String,
    #[serde(default)]
    pub description: String,
    pub sql: String,
    /// Live only: the query's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl KindSpec for WorkgroupSpec {
    const KIND: Kind = Kind::Workgroup;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        arn(target, &self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::Workgroup(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

pub fn arn(target: &Target, name: &str) -> String {
    format!(
        "arn:aws:athena:{}:{}:workgroup/{}",
        target.region, target.account_id, name
    )
}

pub fn validate(spec: &WorkgroupSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    if spec.name.is_empty() || spec.name.len() > 128 || !spec.name.chars().all(ok) {
        problems.push(Invalid::new(
            "name",
            "workgroup names are 1 to 128 of A-Z a-z 0-9 . _ -",
        ));
    }
    if !spec.output_location.starts_with("s3://") || !spec.output_location.ends_with('/') {
        problems.push(Invalid::new(
            "output_location",
            "an s3:// prefix ending in /",
        ));
    }
    for (name, query) in &spec.named_queries {
        if name.is_empty() || name.len() > 128 {
            problems.push(Invalid::new(
                format!("named_queries.{name}"),
                "names are 1 to 128 characters",
            ));
        }
        if query.sql.trim().is_empty() || query.sql.len() > 262_144 {
            problems.push(Invalid::new(
                format!("named_queries.{name}"),
                "a query of 1 to 262144 characters",
            ));
        }
    }
    if spec.result_encryption != "SSE_S3" {
        problems.push(Invalid::new(
            "result_encryption",
            "query results are encrypted with SSE_S3",
        ));
    }
    if let Some(cutoff) = spec.bytes_scanned_cutoff
        && cutoff < MIN_BYTES_SCANNED_CUTOFF
    {
        problems.push(Invalid::new(
            "bytes_scanned_cutoff",
            format!("{cutoff}: Athena's minimum is {MIN_BYTES_SCANNED_CUTOFF}"),
        ));
    }
    problems
}

/// `AWS::Athena::WorkGroup` (deleted with its queries), and one `AWS::Athena::NamedQuery` per
/// named query, in the workgroup.
pub fn cloudformation(spec: &WorkgroupSpec, cx: &Context) -> Vec<CfnResource> {
    let mut parts = vec![CfnResource::main(
        "AWS::Athena::WorkGroup",
        json!({
            "Name": spec.name,
            "Description": non_empty(&spec.description),
            "State": "ENABLED",
            "RecursiveDeleteOption": true,
            "WorkGroupConfiguration": {
                "ResultConfiguration": {
                    "OutputLocation": spec.output_location,
                    "EncryptionConfiguration": {"EncryptionOption": spec.result_encryption},
                },
                "EnforceWorkGroupConfiguration": spec.enforce_configuration,
                "PublishCloudWatchMetricsEnabled": spec.publish_metrics,
                "BytesScannedCutoffPerQuery": spec.bytes_scanned_cutoff,
            },
            "Tags": tag_list(&spec.tags),
        }),
    )];
    for (name, query) in &spec.named_queries {
        parts.push(CfnResource::part(
            &format!("query {name}"),
            "AWS::Athena::NamedQuery",
            json!({
                "Name": name,
                "Database": query.database,
                "Description": non_empty(&query.description),
                "QueryString": query.sql,
                "WorkGroup": cx.own_ref(),
            }),
        ));
    }
    parts
}

pub fn fields(spec: &WorkgroupSpec) -> Fields {
    let mut fields = Fields::from([
        (
            "description".to_string(),
            Value::String(spec.description.clone()),
        ),
        (
            "output_location".to_string(),
            Value::String(spec.output_location.clone()),
        ),
        (
            "result_encryption".to_string(),
            Value::String(spec.result_encryption.clone()),
        ),
        (
            "enforce_configuration".to_string(),
            Value::Bool(spec.enforce_configuration),
        ),
        (
            "bytes_scanned_cutoff".to_string(),
            spec.bytes_scanned_cutoff
                .map(Value::from)
                .unwrap_or(Value::Null),
        ),
        (
            "publish_metrics".to_string(),
            Value::Bool(spec.publish_metrics),
        ),
    ]);
    for (name, query) in &spec.named_queries {
        fields.insert(
            format!("named_queries.{name}.database"),
            Value::String(query.database.clone()),
        );
        fields.insert(
            format!("named_queries.{name}.description"),
            Value::String(query.description.clone()),
        );
        fields.insert(
            format!("named_queries.{name}.sql"),
            Value::String(query.sql.clone()),
        );
    }
    tag_fields(&spec.tags, &mut fields);
    fields
}

/// The workgroup's named queries, by name (the first of duplicates wins).
async fn read_queries(
    aws: &Aws,
    workgroup: &str,
) -> Result<BTreeMap<String, NamedQuery>, AwsError> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .athena
            .list_named_queries()
            .work_group(workgroup)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(failed("ListNamedQueries"))?;
        ids.extend(page.named_query_ids().iter().cloned());
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    let queries: Vec<Option<(String, NamedQuery)>> = stream::iter(ids)
        .map(|id| async move {
            let out = aws
                .athena
                .get_named_query()
                .named_query_id(&id)
                .send()
                .await
                .map_err(failed("GetNamedQuery"));
            Ok::<_, AwsError>(out.or_missing(QUERY_NOT_FOUND)?.and_then(|o| {
                let q = o.named_query()?;
                Some((
                    q.name().to_string(),
                    NamedQuery {
                        database: q.database().to_string(),
                        description: q.description().unwrap_or_default().to_string(),
                        sql: q.query_string().to_string(),
                        id: Some(id.clone()),
                    },
                ))
            }))
        })
        .buffered(8)
        .try_collect()
        .await?;
    let mut out = BTreeMap::new();
    for (name, query) in queries.into_iter().flatten() {
        out.entry(name).or_insert(query);
    }
    Ok(out)
}

async fn sync_queries(
    aws: &Aws,
    workgroup: &str,
    desired: &BTreeMap<String, NamedQuery>,
    live: &BTreeMap<String, NamedQuery>,
) -> Result<(), OpError> {
    for (name, query) in desired {
        match live.get(name) {
            None => {
                aws.athena
                    .create_named_query()
                    .work_group(workgroup)
                    .name(name)
                    .database(&query.database)
                    .description(&query.description)
                    .query_string(&query.sql)
                    .send()
                    .await
                    .map_err(failed("CreateNamedQuery"))?;
            }
            Some(current)
                if (&current.database, &current.description, &current.sql)
                    != (&query.database, &query.description, &query.sql) =>
            {
                let id = current.id.clone().unwrap_or_default();
                if current.database != query.database {
                    // A named query's database cannot be changed: replace it.
                    delete_query(aws, &id).await?;
                    Box::pin(sync_queries(
                        aws,
                        workgroup,
                        &BTreeMap::from([(name.clone(), query.clone())]),
                        &BTreeMap::new(),
                    ))
                    .await?;
                } else {
                    aws.athena
                        .update_named_query()
                        .named_query_id(id)
                        .name(name)
                        .description(&query.description)
                        .query_string(&query.sql)
                        .send()
                        .await
                        .map_err(failed("UpdateNamedQuery"))?;
                }
            }
            Some(_) => {}
        }
    }
    for (name, current) in live {
        if !desired.contains_key(name) {
            delete_query(aws, current.id.as_deref().unwrap_or_default()).await?;
        }
    }
    Ok(())
}

async fn delete_query(aws: &Aws, id: &str) -> Result<(), OpError> {
    aws.athena
        .delete_named_query()
        .named_query_id(id)
        .send()
        .await
        .map_err(failed("DeleteNamedQuery"))
        .or_missing(QUERY_NOT_FOUND)?;
    Ok(())
}

pub async fn read(aws: &Aws, target: &Target, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
    let found: Vec<(Address, Option<WorkgroupSpec>)> = stream::iter(targets.iter().cloned())
        .map(|t| async move {
            Ok::<_, AwsError>((t.address, read_one(aws, target, &t.physical_id).await?))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    Ok(found
        .into_iter()
        .map(|(a, s)| (a, s.map(Spec::Workgroup)))
        .collect())
}

async fn read_one(
    aws: &Aws,
    target: &Target,
    name: &str,
) -> Result<Option<WorkgroupSpec>, AwsError> {
    let out = aws
        .athena
        .get_work_group()
        .work_group(name)
        .send()
        .await
        .map_err(failed("GetWorkGroup"));
    let Some(out) = out.or_missing(WORKGROUP_NOT_FOUND)? else {
        return Ok(None);
    };
    let Some(group) = out.work_group() else {
        return Ok(None);
    };
    let config = group.configuration();
    let result = config.and_then(|c| c.result_configuration());
    let tags = aws
        .athena
        .list_tags_for_resource()
        .resource_arn(arn(target, name))
        .send()
        .await
        .map_err(failed("ListTagsForResource"))?;
    Ok(Some(WorkgroupSpec {
        name: name.to_string(),
        description: group.description().unwrap_or_default().to_string(),
        output_location: result
            .and_then(|r| r.output_location())
            .unwrap_or_default()
            .to_string(),
        result_encryption: result
            .and_then(|r| r.encryption_configuration())
            .map(|e| e.encryption_option().as_str().to_string())
            .unwrap_or_else(|| "NONE".into()),
        enforce_configuration: config
            .and_then(|c| c.enforce_work_group_configuration())
            .unwrap_or(false),
        bytes_scanned_cutoff: config.and_then(|c| c.bytes_scanned_cutoff_per_query()),
        publish_metrics: config
            .and_then(|c| c.publish_cloud_watch_metrics_enabled())
            .unwrap_or(false),
        named_queries: read_queries(aws, name).await?,
        tags: tags
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect(),
        references: BTreeSet::new(),
    }))
}

fn encryption() -> Result<EncryptionConfiguration, OpError> {
    Ok(EncryptionConfiguration::builder()
        .encryption_option(EncryptionOption::SseS3)
        .build()?)
}

pub async fn create(aws: &Aws, target: &Target, spec: &WorkgroupSpec) -> Result<(), OpError> {
    let configuration = WorkGroupConfiguration::builder()
        .result_configuration(
            ResultConfiguration::builder()
                .output_location(&spec.output_location)
                .encryption_configuration(encryption()?)
                .build(),
        )
        .enforce_work_group_configuration(spec.enforce_configuration)
        .set_bytes_scanned_cutoff_per_query(spec.bytes_scanned_cutoff)
        .publish_cloud_watch_metrics_enabled(spec.publish_metrics)
        .build();
    let tags: Vec<Tag> = spec
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let created = aws
        .athena
        .create_work_group()
        .name(&spec.name)
        .description(&spec.description)
        .configuration(configuration)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(failed("CreateWorkGroup"));
    match created {
        Ok(_) => sync_queries(aws, &spec.name, &spec.named_queries, &BTreeMap::new()).await,
        // AWS says "WorkGroup is already created", the emulator "already exists": the
        // wording is not relied on; a workgroup that reads back exists (an interrupted apply
        // made it) is converged like an update.
        Err(e) if e.is("InvalidRequestException") => {
            let live = read_one(aws, target, &spec.name)
                .await?
                .ok_or_else(|| OpError::Aws(e.clone()))?;
            update(aws, target, spec, &live).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn update(
    aws: &Aws,
    target: &Target,
    desired: &WorkgroupSpec,
    live: &WorkgroupSpec,
) -> Result<(), OpError> {
    let mut settings = desired.clone();
    settings.tags = live.tags.clone();
    settings.named_queries = live.named_queries.clone();
    // Compared as the plan compares them (canonical fields), so that a change to the named
    // queries or tags alone never sends UpdateWorkGroup.
    if fields(&settings) != fields(live) {
        let mut updates = WorkGroupConfigurationUpdates::builder()
            .result_configuration_updates(
                ResultConfigurationUpdates::builder()
                    .output_location(&desired.output_location)
                    .encryption_configuration(encryption()?)
                    .build(),
            )
            .enforce_work_group_configuration(desired.enforce_configuration)
            .publish_cloud_watch_metrics_enabled(desired.publish_metrics);
        updates = match desired.bytes_scanned_cutoff {
            Some(cutoff) => updates.bytes_scanned_cutoff_per_query(cutoff),
            None => updates.remove_bytes_scanned_cutoff_per_query(true),
        };
        aws.athena
            .update_work_group()
            .work_group(&desired.name)
            .description(&desired.description)
            .configuration_updates(updates.build())
            .send()
            .await
            .map_err(failed("UpdateWorkGroup"))?;
    }
    sync_queries(
        aws,
        &desired.name,
        &desired.named_queries,
        &live.named_queries,
    )
    .await?;
    let delta = TagDelta::between(&desired.tags, &live.tags);
    let resource = arn(target, &desired.name);
    if !delta.set.is_empty() {
        let tags: Vec<Tag> = delta
            .set
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        aws.athena
            .tag_resource()
            .resource_arn(&resource)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(failed("TagResource"))?;
    }
    if !delta.remove.is_empty() {
        aws.athena
            .untag_resource()
            .resource_arn(&resource)
            .set_tag_keys(Some(delta.remove.into_iter().collect()))
            .send()
            .await
            .map_err(failed("UntagResource"))?;
    }
    Ok(())
}

pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    aws.athena
        .delete_work_group()
        .work_group(name)
        .recursive_delete_option(true)
        .send()
        .await
        .map_err(failed("DeleteWorkGroup"))
        .or_missing(WORKGROUP_NOT_FOUND)?;
    Ok(())
}
