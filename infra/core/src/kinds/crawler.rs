//! Glue crawlers: S3 targets, database, table prefix, schedule, schema change and recrawl
//! policies, role, tags.
//!
//! Read: GetCrawlers (paged) answers every crawler, then tags per crawler. Glue returns the
//! role as a name whatever it was given (aws-behaviors.md, aws_glue_crawler), so the role is
//! compared by name. Changes use the real update calls (UpdateCrawler, which also sets the
//! schedule), sent only when a field other than the tags differs. Create and update wait out
//! IAM propagation of a new role; an update or delete waits for a running crawl to end (a
//! delete stops it first). The emulator does not implement UpdateCrawler: against it, only
//! create, read and delete are exercised.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_glue::types::{
    CrawlerTargets, DeleteBehavior, RecrawlBehavior, RecrawlPolicy, S3Target, SchemaChangePolicy,
    UpdateBehavior,
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::glue_database::NOT_FOUND;
use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, tag_fields};
use crate::aws::{Aws, AwsError, OrMissing, failed};
use crate::cloudformation::CfnResource;
use crate::eventual::{self, Transient};
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
    fn import_as(&mut self, name: String) {
        self.name = name;
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

/// A role's name from its ARN (`arn:aws:iam::<account>:role/<path/>name`) or name: Glue
/// answers the name whatever it was given.
pub fn role_name(role: &str) -> &str {
    if role.starts_with("arn:") {
        role.rsplit('/').next().unwrap_or(role)
    } else {
        role
    }
}

/// aws-behaviors.md, aws_glue_crawler, Retries: CreateCrawler and UpdateCrawler retry these
/// `InvalidInputException`s while IAM (or Lake Formation) propagates a new role's grants.
fn propagating(e: &AwsError) -> Option<&'static str> {
    const WORDS: &[&str] = &[
        "Service is unable to assume",
        "verify role's TrustPolicy",
        "verify the role's TrustPolicy",
        "is not authorized",
        "Insufficient Lake Formation permission",
    ];
    let sqs = e.message.contains("SQS queue")
        && e.message
            .contains("does not exist or the role provided does not have access to it");
    (e.is("InvalidInputException") && (sqs || WORDS.iter().any(|w| e.message.contains(w))))
        .then_some("IAM propagation: role not yet assumable by Glue")
}

/// An update or a delete of a crawler that is running waits for the crawl to end.
fn running(e: &AwsError) -> Option<&'static str> {
    propagating(e).or_else(|| {
        matches!(
            e.code.as_str(),
            "CrawlerRunningException"
                | "CrawlerStoppingException"
                | "SchedulerTransitioningException"
        )
        .then_some("the crawler is running")
    })
}

/// `AWS::Glue::Crawler` (whose tags are a JSON object, not a list).
pub fn cloudformation(spec: &CrawlerSpec) -> CfnResource {
    let targets: Vec<Value> = spec.s3_targets.iter().map(|p| json!({"Path": p})).collect();
    CfnResource::main(
        "AWS::Glue::Crawler",
        json!({
            "Name": spec.name,
            "Role": spec.role_arn,
            "DatabaseName": spec.database,
            "Description": crate::cloudformation::non_empty(&spec.description),
            "Targets": {"S3Targets": targets},
            "TablePrefix": crate::cloudformation::non_empty(&spec.table_prefix),
            "Schedule": spec.schedule.as_ref().map(|s| json!({"ScheduleExpression": s})),
            "SchemaChangePolicy": {
                "UpdateBehavior": spec.update_behavior,
                "DeleteBehavior": spec.delete_behavior,
            },
            "RecrawlPolicy": {"RecrawlBehavior": spec.recrawl_behavior},
            "Tags": spec.tags,
        }),
    )
}

pub fn fields(spec: &CrawlerSpec) -> Fields {
    let mut fields = Fields::from([
        (
            "role".to_string(),
            Value::String(role_name(&spec.role_arn).to_string()),
        ),
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
            found.insert(name.to_string(), from_crawler(c));
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

/// A crawler as Glue answers it, without tags.
fn from_crawler(c: &aws_sdk_glue::types::Crawler) -> CrawlerSpec {
    let policy = c.schema_change_policy();
    CrawlerSpec {
        name: c.name().unwrap_or_default().to_string(),
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
        // No schedule reads as "" after an update that cleared it.
        schedule: c
            .schedule()
            .and_then(|s| s.schedule_expression())
            .filter(|s| !s.is_empty())
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
    }
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
    let created = eventual::retry(
        &spec.name,
        aws.patience.propagation,
        propagating as Transient,
        || async {
            aws.glue
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
                .map_err(failed("CreateCrawler"))
        },
    )
    .await;
    match created {
        Ok(_) => Ok(()),
        // Created by an interrupted apply: converge it like an update.
        Err(e) if e.aws().is("AlreadyExistsException") => {
            let live = read_one(aws, target, &spec.name)
                .await?
                .ok_or_else(|| OpError::from(e.clone()))?;
            update(aws, target, spec, &live).await
        }
        Err(e) => Err(e.into()),
    }
}

/// One crawler by name (GetCrawler) with its tags; `None` if it is gone.
async fn read_one(aws: &Aws, target: &Target, name: &str) -> Result<Option<CrawlerSpec>, AwsError> {
    let Some(out) = aws
        .glue
        .get_crawler()
        .name(name)
        .send()
        .await
        .map_err(failed("GetCrawler"))
        .or_missing(NOT_FOUND)?
    else {
        return Ok(None);
    };
    let Some(crawler) = out.crawler() else {
        return Ok(None);
    };
    let mut spec = from_crawler(crawler);
    let no_index = super::tag_index::TagIndex::default();
    match super::glue_database::glue_tags(aws, &arn(target, name), &no_index).await? {
        Some(tags) => spec.tags = tags,
        None => return Ok(None),
    }
    Ok(Some(spec))
}

pub async fn update(
    aws: &Aws,
    target: &Target,
    desired: &CrawlerSpec,
    live: &CrawlerSpec,
) -> Result<(), OpError> {
    // Compared as the plan compares them (canonical fields, role by name), so that a tag
    // change alone never sends UpdateCrawler (which a running crawler refuses).
    let untagged = |spec: &CrawlerSpec| {
        let mut fields = fields(spec);
        fields.retain(|k, _| !k.starts_with("tags."));
        fields
    };
    if untagged(desired) != untagged(live) {
        eventual::retry(
            &desired.name,
            aws.patience.ready,
            running as Transient,
            || async {
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
                    .map_err(failed("UpdateCrawler"))
            },
        )
        .await?;
    }
    super::glue_database::sync_tags(aws, &arn(target, &desired.name), &desired.tags, &live.tags)
        .await
}

/// Deletes a crawler; a running one is stopped first, and the delete waits for the crawl to
/// end.
pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    let first = aws
        .glue
        .delete_crawler()
        .name(name)
        .send()
        .await
        .map_err(failed("DeleteCrawler"));
    match first {
        Ok(_) => return Ok(()),
        Err(e) if NOT_FOUND.matches(&e) => return Ok(()),
        Err(e) if e.is("CrawlerRunningException") => {
            // Already stopping or not running any more: the retries below settle it.
            let _ = aws
                .glue
                .stop_crawler()
                .name(name)
                .send()
                .await
                .map_err(failed("StopCrawler"));
        }
        Err(e) if running(&e).is_some() => {}
        Err(e) => return Err(e.into()),
    }
    eventual::retry(name, aws.patience.ready, running as Transient, || async {
        aws.glue
            .delete_crawler()
            .name(name)
            .send()
            .await
            .map_err(failed("DeleteCrawler"))
            .or_missing(NOT_FOUND)
    })
    .await?;
    Ok(())
}
