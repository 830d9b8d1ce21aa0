//! Glue Data Catalog databases: description and tags.
//!
//! Read: GetDatabases answers every database of the catalog (paged), then tags per database.
//! The name is the identity.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, TagDelta, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::cloudformation::{CfnResource, Context, non_empty};
use crate::model::{Address, Kind, KindSpec, Spec, Target};

pub const REPLACE_FIELDS: &[&str] = &[];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlueDatabaseSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl KindSpec for GlueDatabaseSpec {
    const KIND: Kind = Kind::GlueDatabase;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        arn(target, &self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::GlueDatabase(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

pub fn arn(target: &Target, name: &str) -> String {
    format!(
        "arn:aws:glue:{}:{}:database/{}",
        target.region, target.account_id, name
    )
}

/// Glue (and Athena) names: lowercase letters, digits and `_`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if name.is_empty() || name.len() > 255 || !name.chars().all(ok) {
        return Err(format!(
            "`{name}`: catalog names are 1 to 255 of a-z 0-9 _ (Athena needs lowercase)"
        ));
    }
    Ok(())
}

pub fn validate(spec: &GlueDatabaseSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    if let Err(message) = validate_name(&spec.name) {
        problems.push(Invalid::new("name", message));
    }
    if spec.description.chars().count() > 2048 {
        problems.push(Invalid::new("description", "at most 2048 characters"));
    }
    problems
}

/// `AWS::Glue::Database`. CloudFormation's type takes no tags, so a database made by a
/// template carries none of the ownership tags (the stack's tags are on the stack).
pub fn cloudformation(spec: &GlueDatabaseSpec, cx: &Context) -> CfnResource {
    CfnResource::main(
        "AWS::Glue::Database",
        serde_json::json!({
            "CatalogId": cx.target.account_id,
            "DatabaseInput": {"Name": spec.name, "Description": non_empty(&spec.description)},
        }),
    )
}

pub fn fields(spec: &GlueDatabaseSpec) -> Fields {
    let mut fields = Fields::from([(
        "description".to_string(),
        Value::String(spec.description.clone()),
    )]);
    tag_fields(&spec.tags, &mut fields);
    fields
}

/// aws-behaviors.md, aws_glue_catalog_database / aws_glue_crawler, Not found:
/// `EntityNotFoundException`.
pub(crate) const NOT_FOUND: NotFound = NotFound::codes(&["EntityNotFoundException"]);

/// The tags of the Glue database or crawler `arn`: from `tag_index` if it has them, else
/// from GetTags; `None` if it is gone.
pub(crate) async fn glue_tags(
    aws: &Aws,
    arn: &str,
    tag_index: &super::tag_index::TagIndex,
) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    if let Some(tags) = tag_index.get(arn) {
        return Ok(Some(tags.clone()));
    }
    let out = aws
        .glue
        .get_tags()
        .resource_arn(arn)
        .send()
        .await
        .map_err(failed("GetTags"))
        .or_missing(NOT_FOUND)?;
    Ok(out.map(|t| {
        t.tags()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }))
}

/// Reads databases from GetDatabases; tags from `tag_index` where it has the database, else
/// from GetTags.
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
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .glue
            .get_databases()
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(failed("GetDatabases"))?;
        for db in page.database_list() {
            found.insert(
                db.name().to_string(),
                db.description().unwrap_or_default().to_string(),
            );
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    for t in targets {
        live.insert(t.address.clone(), None);
    }
    let existing: Vec<(Address, String, String)> = targets
        .iter()
        .filter_map(|t| {
            found
                .get(&t.physical_id)
                .map(|d| (t.address.clone(), t.physical_id.clone(), d.clone()))
        })
        .collect();
    let specs: Vec<(Address, Option<GlueDatabaseSpec>)> = stream::iter(existing)
        .map(|(address, name, description)| async move {
            let tags = glue_tags(aws, &arn(target, &name), tag_index).await?;
            Ok::<_, AwsError>((
                address,
                tags.map(|tags| GlueDatabaseSpec {
                    name,
                    description,
                    tags,
                }),
            ))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for (address, spec) in specs {
        live.insert(address, spec.map(Spec::GlueDatabase));
    }
    Ok(live)
}

fn input(spec: &GlueDatabaseSpec) -> Result<aws_sdk_glue::types::DatabaseInput, OpError> {
    Ok(aws_sdk_glue::types::DatabaseInput::builder()
        .name(&spec.name)
        .description(&spec.description)
        .build()?)
}

pub async fn create(aws: &Aws, target: &Target, spec: &GlueDatabaseSpec) -> Result<(), OpError> {
    let created = aws
        .glue
        .create_database()
        .database_input(input(spec)?)
        .set_tags(Some(spec.tags.clone().into_iter().collect()))
        .send()
        .await
        .map_err(failed("CreateDatabase"));
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.is("AlreadyExistsException") => {
            let empty = GlueDatabaseSpec {
                name: spec.name.clone(),
                description: String::from("\u{0}"),
                tags: BTreeMap::new(),
            };
            update(aws, target, spec, &empty).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn update(
    aws: &Aws,
    target: &Target,
    desired: &GlueDatabaseSpec,
    live: &GlueDatabaseSpec,
) -> Result<(), OpError> {
    if desired.description != live.description {
        aws.glue
            .update_database()
            .name(&desired.name)
            .database_input(input(desired)?)
            .send()
            .await
            .map_err(failed("UpdateDatabase"))?;
    }
    sync_tags(aws, &arn(target, &desired.name), &desired.tags, &live.tags).await
}

/// Brings a Glue resource's tags from `live` to `desired` (databases and crawlers alike).
pub(super) async fn sync_tags(
    aws: &Aws,
    resource: &str,
    desired: &BTreeMap<String, String>,
    live: &BTreeMap<String, String>,
) -> Result<(), OpError> {
    let delta = TagDelta::between(desired, live);
    if !delta.set.is_empty() {
        aws.glue
            .tag_resource()
            .resource_arn(resource)
            .set_tags_to_add(Some(delta.set.into_iter().collect()))
            .send()
            .await
            .map_err(failed("TagResource"))?;
    }
    if !delta.remove.is_empty() {
        aws.glue
            .untag_resource()
            .resource_arn(resource)
            .set_tags_to_remove(Some(delta.remove.into_iter().collect()))
            .send()
            .await
            .map_err(failed("UntagResource"))?;
    }
    Ok(())
}

/// Deletes the database and, with it, every table in it.
pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    aws.glue
        .delete_database()
        .name(name)
        .send()
        .await
        .map_err(failed("DeleteDatabase"))
        .or_missing(NOT_FOUND)?;
    Ok(())
}
