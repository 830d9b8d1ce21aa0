//! Glue crawlers: S3 targets, database, table prefix, schedule, schema change and recrawl
//! policies, role, tags.
//!
//! Read: GetCrawlers (paged) answers every crawler, then tags per crawler. Changes use the
//! real update calls (UpdateCrawler, which also sets the schedule). The emulator does not
//! implement UpdateCrawler: against it, only create, read and delete are exercised.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_glue::types::{
    CrawlerTargets, DeleteBehavior, RecrawlBehavior, RecrawlPolicy, S3Target, SchemaChangePolicy,
    UpdateBehavior,
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, tag_fields};
use crate::aws::{Aws, AwsError, OrMissing, failed};
use crate::model::{Address, GlueDatabaseSpec, Kind, KindSpec, Ref, RoleSpec, Spec, Target};

pub const REPLACE_FIELDS: &[&str] = &[];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrawlerSpec {
    pub name: String,
    pub role_arn: String,
    pub database: String,
    #[serde(default)]
    pub description: String,
    pub s3_targets: Vec<String>,
    /// Prefix of the tables the crawler creates; keeps them apart from the engine's tables.
    pub table_prefix: String,
    /// A six-field `cron(...)`; `None`: run on demand only.
    pub schedule: Option<String>,
    /// `LOG` or `UPDATE_IN_DATABASE`.
    pub update_behavior: String,
    /// `LOG`, `DELETE_FROM_DATABASE` or `DEPRECATE_IN_DATABASE`.
    pub delete_behavior: String,
    /// `CRAWL_NEW_FOLDERS_ONLY` or `CRAWL_EVERYTHING`.
    pub recrawl_behavior: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub references: BTreeSet<Address>,
}

impl CrawlerSpec {
    /// A crawler of new folders only under `s3_targets`, into `database` with `table_prefix`,
    /// that logs schema changes instead of applying them.
    pub fn new_folders_only(
        name: String,
        role: &Ref<RoleSpec>,
        database: &Ref<GlueDatabaseSpec>,
        s3_targets: Vec<String>,
        table_prefix: &str,
    ) -> CrawlerSpec {
        CrawlerSpec {
            name,
            role_arn: role.arn.clone(),
            database: database.name.clone(),
            description: String::new(),
            s3_targets,
            table_prefix: table_prefix.into(),
            schedule: None,
            update_behavior: "LOG".into(),
            delete_behavior: "LOG".into(),
            recrawl_behavior: "CRAWL_NEW_FOLDERS_ONLY".into(),
            tags: BTreeMap::new(),
            references: BTreeSet::from([role.address.clone(), database.address.clone()]),
        }
    }
}

impl KindSpec for CrawlerSpec {
    const KIND: Kind = Kind::Crawler;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        arn(target, &self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::Crawler(self)
    }
}

pub fn arn(target: &Target, name: &str) -> String {
    format!(
        "arn:aws:glue:{}:{}:crawler/{}",
        target.region, target.account_id, name
    )
}

pub fn validate(spec: &CrawlerSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    if spec.name.is_empty() || spec.name.len() > 255 {
        problems.push(Invalid::new(
            "name",
            "crawler names are 1 to 255 characters",
        ));
    }
    if spec.s3_targets.is_empty() || spec.s3_targets.iter().any(|t| !t.starts_with("s3://")) {
        problems.push(Invalid::new("s3_targets", "at least one s3:// path"));
    }
    if let Some(schedule) = &spec.schedule {
        if !schedule.starts_with("cron(") {
            problems.push(Invalid::new(
                "schedule",
                format!("`{schedule}`: Glue crawlers take cron(...) schedules only"),
            ));
        } else if let Err(message) = crate::schedule::validate(schedule) {
            problems.push(Invalid::new("schedule", message));
        }
    }
    if !matches!(spec.update_behavior.as_str(), "LOG" | "UPDATE_IN_DATABASE") {
        problems.push(Invalid::new("update_behavior", "LOG or UPDATE_IN_DATABASE"));
    }
    if !matches!(
        spec.delete_behavior.as_str(),
        "LOG" | "DELETE_FROM_DATABASE" | "DEPRECATE_IN_DATABASE"
    ) {
        problems.push(Invalid::new(
            "delete_behavior",
            "LOG, DELETE_FROM_DATABASE or DEPRECATE_IN_DATABASE",
        ));
    }
    match spec.recrawl_behavior.as_str() {
        "CRAWL_EVERYTHING" => {}
        "CRAWL_NEW_FOLDERS_ONLY"
            if spec.update_behavior == "LOG" && spec.delete_behavior == "LOG" => {}
        "CRAWL_NEW_FOLDERS_ONLY" => problems.push(Invalid::new(
            "recrawl_behavior",
            "CRAWL_NEW_FOLDERS_ONLY needs update and delete behaviors LOG (as Glue requires)",
        )),
        other => problems.push(Invalid::new(
            "recrawl_behavior",
            format!("`{other}`: CRAWL_NEW_FOLDERS_ONLY or CRAWL_EVERYTHING"),
        )),
    }
    problems
}

pub fn fields(spec: &CrawlerSpec) -> Fields {
    let mut fields = Fields::from([
        ("role".to_string(), Value::String(spec.role_arn.clone())),
        ("database".to_string(), Value::String(spec.database.clone())),
        (
            "description".to_string(),
            Value::String(spec.description.clone()),
        ),
        (
            "s3_targets".to_string(),
            json!(spec.s3_targets.iter().collect::<BTreeSet<_>>()),
        ),
        (
            "table_prefix".to_string(),
            Value::String(spec.table_prefix.clone()),
        ),
        ("schedule".to_string(), json!(spec.schedule)),
        (
            "schema_change_policy".to_string(),
            json!({"update": spec.update_behavior, "delete": spec.delete_behavior}),
        ),
        (
            "recrawl_behavior".to_string(),
            Value::String(spec.recrawl_behavior.clone()),
        ),
    ]);
    tag_fields(&spec.tags, &mut fields);
    fields
}

/// Reads crawlers from GetCrawlers; tags as Glue databases' are (`glue_database::glue_tags`).
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
    let wanted: BTreeSet<&str> = targets.iter().map(|t| t.physical_id.as_str()).collect();
    let mut found: BTreeMap<String, CrawlerSpec> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .glue
            .get_crawlers()
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(failed("GetCrawlers"))?;
        for c in page.crawlers() {
            let Some(name) = c.name() else { continue };
            if !wanted.contains(name) {
                continue;
            }
            let policy = c.schema_change_policy();
            found.insert(
                name.to_string(),
                CrawlerSpec {
                    name: name.to_string(),
                    role_arn: c.role().unwrap_or_default().to_string(),
                    database: c.database_name().unwrap_or_default().to_string(),
                    description: c.description().unwrap_or_default().to_string(),
                    s3_targets: c
                        .targets()
                        .map(|t| {
                            t.s3_targets()
                                .iter()
                                .filter_map(|s| s.path().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default(),
                    table_prefix: c.table_prefix().unwrap_or_default().to_string(),
                    schedule: c
                        .schedule()
                        .and_then(|s| s.schedule_expression())
                        .map(str::to_string),
                    update_behavior: policy
                        .and_then(|p| p.update_behavior())
                        .map(|b| b.as_str().to_string())
                        .unwrap_or_default(),
                    delete_behavior: policy
                        .and_then(|p| p.delete_behavior())
                        .map(|b| b.as_str().to_string())
                        .unwrap_or_default(),
                    recrawl_behavior: c
                        .recrawl_policy()
                        .and_then(|p| p.recrawl_behavior())
                        .map(|b| b.as_str().to_string())
                        .unwrap_or_else(|| "CRAWL_EVERYTHING".into()),
                    tags: BTreeMap::new(),
                    references: BTreeSet::new(),
                },
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
    let existing: Vec<(Address, CrawlerSpec)> = targets
        .iter()
        .filter_map(|t| {
            found
                .get(&t.physical_id)
                .map(|s| (t.address.clone(), s.clone()))
        })
        .collect();
    let specs: Vec<(Address, Option<CrawlerSpec>)> = stream::iter(existing)
        .map(|(address, mut spec)| async move {
            let tags =
                super::glue_database::glue_tags(aws, &arn(target, &spec.name), tag_index).await?;
            Ok::<_, AwsError>((
                address,
                tags.map(|tags| {
                    spec.tags = tags;
                    spec
                }),
            ))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for (address, spec) in specs {
        live.insert(address, spec.map(Spec::Crawler));
    }
    Ok(live)
}

fn targets(spec: &CrawlerSpec) -> CrawlerTargets {
    CrawlerTargets::builder()
        .set_s3_targets(Some(
            spec.s3_targets
                .iter()
                .map(|p| S3Target::builder().path(p).build())
                .collect(),
        ))
        .build()
}

fn policy(spec: &CrawlerSpec) -> SchemaChangePolicy {
    SchemaChangePolicy::builder()
        .update_behavior(UpdateBehavior::from(spec.update_behavior.as_str()))
        .delete_behavior(DeleteBehavior::from(spec.delete_behavior.as_str()))
        .build()
}

fn recrawl(spec: &CrawlerSpec) -> RecrawlPolicy {
    RecrawlPolicy::builder()
        .recrawl_behavior(RecrawlBehavior::from(spec.recrawl_behavior.as_str()))
        .build()
}

pub async fn create(aws: &Aws, target: &Target, spec: &CrawlerSpec) -> Result<(), OpError> {
    let created = aws
        .glue
        .create_crawler()
        .name(&spec.name)
        .role(&spec.role_arn)
        .database_name(&spec.database)
        .description(&spec.description)
        .targets(targets(spec))
        .table_prefix(&spec.table_prefix)
        .set_schedule(spec.schedule.clone())
        .schema_change_policy(policy(spec))
        .recrawl_policy(recrawl(spec))
        .set_tags(Some(spec.tags.clone().into_iter().collect()))
        .send()
        .await
        .map_err(failed("CreateCrawler"));
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.is("AlreadyExistsException") => {
            let mut empty = spec.clone();
            empty.tags.clear();
            empty.description.push('\u{0}');
            update(aws, target, spec, &empty).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn update(
    aws: &Aws,
    target: &Target,
    desired: &CrawlerSpec,
    live: &CrawlerSpec,
) -> Result<(), OpError> {
    let mut desired_untagged = desired.clone();
    desired_untagged.tags = live.tags.clone();
    if &desired_untagged != live {
        aws.glue
            .update_crawler()
            .name(&desired.name)
            .role(&desired.role_arn)
            .database_name(&desired.database)
            .description(&desired.description)
            .targets(targets(desired))
            .table_prefix(&desired.table_prefix)
            .schedule(desired.schedule.clone().unwrap_or_default())
            .schema_change_policy(policy(desired))
            .recrawl_policy(recrawl(desired))
            .send()
            .await
            .map_err(failed("UpdateCrawler"))?;
    }
    super::glue_database::sync_tags(aws, &arn(target, &desired.name), &desired.tags, &live.tags)
        .await
}

pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    aws.glue
        .delete_crawler()
        .name(name)
        .send()
        .await
        .map_err(failed("DeleteCrawler"))
        .or_missing()?;
    Ok(())
}
