//! EventBridge rules on the default bus: a schedule (`rate()`/`cron()`, checked before any
//! call) or an event pattern, enabled or disabled, with their targets and tags.
//!
//! A target with an input gets a real EventBridge event whose `detail` is that input: an input
//! transformer rebuilds the event around it, so handlers always receive the event type they
//! expect (a plain `Input` would replace the event). Read: ListRules by the names' common
//! prefix, then targets and tags per rule. Everything updates in place (PutRule is an upsert).
//!
//! PutTargets and RemoveTargets answer HTTP 200 and report failures per target in
//! `FailedEntries` (aws-behaviors.md, aws_cloudwatch_event_target): a failed entry fails the
//! change, except a concurrent modification, for which the failed entries alone are sent
//! again within bounds. DeleteRule waits out "has targets" while a removal settles.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_eventbridge::types::{InputTransformer, RuleState, Tag, Target as EbTarget};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, TagDelta, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::cloudformation::{CfnResource, non_empty, tag_list};
use crate::eventual::{self, Transient};
use crate::model::{Address, Kind, KindSpec, Ref, Spec, Target};

pub const REPLACE_FIELDS: &[&str] = &[];

/// aws-behaviors.md, aws_cloudwatch_event_target, Not found: `ResourceNotFoundException` or
/// `ValidationException` (the rule is gone).
const TARGETS_NOT_FOUND: NotFound =
    NotFound::codes(&["ResourceNotFoundException", "ValidationException"]);
/// aws-behaviors.md, aws_cloudwatch_event_rule, Not found.
const RULE_NOT_FOUND: NotFound = NotFound::codes(&["ResourceNotFoundException"]);

/// A failed entry worth sending again: EventBridge documents `ConcurrentModificationException`
/// ("too many requests were made at the same time") in `FailedEntries`.
fn entry_transient(e: &AwsError) -> Option<&'static str> {
    matches!(
        e.code.as_str(),
        "ConcurrentModificationException" | "InternalException" | "ThrottlingException"
    )
    .then_some("EventBridge reported a concurrent modification")
}

/// PutTargets right after PutRule may not find the rule yet (the provider polls DescribeRule
/// after create).
fn putting_targets(e: &AwsError) -> Option<&'static str> {
    entry_transient(e).or_else(|| {
        e.is("ResourceNotFoundException")
            .then_some("EventBridge eventual consistency: the rule is not visible yet")
    })
}

/// aws-behaviors.md, aws_cloudwatch_event_rule, Retries: DeleteRule is retried while
/// EventBridge still sees the targets just removed.
fn deleting_rule(e: &AwsError) -> Option<&'static str> {
    e.says("ValidationException", "has targets")
        .then_some("EventBridge eventual consistency: targets just removed are still seen")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub schedule_expression: Option<String>,
    pub event_pattern: Option<Value>,
    pub enabled: bool,
    #[serde(default)]
    pub targets: Vec<RuleTarget>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub references: BTreeSet<Address>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleTarget {
    pub id: String,
    pub arn: String,
    /// Delivered as the event's `detail` (see the module doc).
    pub detail: Option<Value>,
}

impl RuleSpec {
    pub fn schedule(name: String, expression: &str, enabled: bool, description: &str) -> RuleSpec {
        RuleSpec {
            name,
            description: description.into(),
            schedule_expression: Some(expression.into()),
            event_pattern: None,
            enabled,
            targets: Vec::new(),
            tags: BTreeMap::new(),
            references: BTreeSet::new(),
        }
    }

    pub fn pattern(name: String, pattern: Value, description: &str) -> RuleSpec {
        RuleSpec {
            name,
            description: description.into(),
            schedule_expression: None,
            event_pattern: Some(pattern),
            enabled: true,
            targets: Vec::new(),
            tags: BTreeMap::new(),
            references: BTreeSet::new(),
        }
    }

    /// Adds a target resource of the stack, whose events carry `detail`.
    pub fn target<K>(mut self, id: &str, target: &Ref<K>, detail: Option<Value>) -> RuleSpec {
        self.targets.push(RuleTarget {
            id: id.into(),
            arn: target.arn.clone(),
            detail,
        });
        self.references.insert(target.address.clone());
        self
    }
}

impl KindSpec for RuleSpec {
    const KIND: Kind = Kind::Rule;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        arn(target, &self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::Rule(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

pub fn arn(target: &Target, name: &str) -> String {
    format!(
        "arn:aws:events:{}:{}:rule/{}",
        target.region, target.account_id, name
    )
}

pub fn validate(spec: &RuleSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let ok = |c: char| c.is_ascii_alphanumeric() || ".-_".contains(c);
    if spec.name.is_empty() || spec.name.len() > 64 || !spec.name.chars().all(ok) {
        problems.push(Invalid::new(
            "name",
            format!(
                "`{}`: rule names are 1 to 64 of A-Z a-z 0-9 . - _",
                spec.name
            ),
        ));
    }
    match (&spec.schedule_expression, &spec.event_pattern) {
        (Some(expression), None) => {
            if let Err(message) = crate::schedule::validate(expression) {
                problems.push(Invalid::new("schedule_expression", message));
            }
        }
        (None, Some(pattern)) => {
            if !pattern.is_object() {
                problems.push(Invalid::new(
                    "event_pattern",
                    "an event pattern is a JSON object",
                ));
            }
        }
        _ => problems.push(Invalid::new(
            "schedule_expression",
            "a rule has a schedule or an event pattern, not both",
        )),
    }
    if spec.description.chars().count() > 512 {
        problems.push(Invalid::new("description", "at most 512 characters"));
    }
    if spec.targets.len() > 5 {
        problems.push(Invalid::new(
            "targets",
            "EventBridge allows 5 targets per rule",
        ));
    }
    let mut ids = BTreeSet::new();
    for t in &spec.targets {
        let field = format!("targets.{}", t.id);
        if t.id.is_empty() || t.id.len() > 64 || !t.id.chars().all(ok) {
            problems.push(Invalid::new(
                &field,
                "target ids are 1 to 64 of A-Z a-z 0-9 . - _",
            ));
        }
        if !ids.insert(&t.id) {
            problems.push(Invalid::new(&field, "duplicate target id"));
        }
        if let Some(detail) = &t.detail
            && input_template(detail).len() > 8192
        {
            problems.push(Invalid::new(
                &field,
                "the target input is larger than EventBridge's 8192 characters",
            ));
        }
    }
    problems
}

/// `AWS::Events::Rule` with its targets, each target's detail through the same input
/// transformer the engine sets.
pub fn cloudformation(spec: &RuleSpec) -> CfnResource {
    let targets: Vec<Value> = spec
        .targets
        .iter()
        .map(|t| {
            json!({
                "Id": t.id,
                "Arn": t.arn,
                "InputTransformer": t.detail.as_ref().map(|detail| json!({
                    "InputPathsMap": EVENT_PATHS.iter().copied().collect::<BTreeMap<_, _>>(),
                    "InputTemplate": input_template(detail),
                })),
            })
        })
        .collect();
    CfnResource::main(
        "AWS::Events::Rule",
        json!({
            "Name": spec.name,
            "Description": non_empty(&spec.description),
            "ScheduleExpression": spec.schedule_expression,
            "EventPattern": spec.event_pattern,
            "State": if spec.enabled { "ENABLED" } else { "DISABLED" },
            "Targets": (!targets.is_empty()).then_some(targets),
            "Tags": tag_list(&spec.tags),
        }),
    )
}

pub fn fields(spec: &RuleSpec) -> Fields {
    let mut fields = Fields::new();
    fields.insert(
        "description".into(),
        Value::String(spec.description.clone()),
    );
    if let Some(expression) = &spec.schedule_expression {
        fields.insert(
            "schedule_expression".into(),
            Value::String(expression.clone()),
        );
    }
    if let Some(pattern) = &spec.event_pattern {
        fields.insert("event_pattern".into(), pattern.clone());
    }
    fields.insert(
        "state".into(),
        Value::String(state(spec.enabled).as_str().to_string()),
    );
    for t in &spec.targets {
        fields.insert(
            format!("targets.{}", t.id),
            json!({ "arn": t.arn, "detail": t.detail }),
        );
    }
    tag_fields(&spec.tags, &mut fields);
    fields
}

fn state(enabled: bool) -> RuleState {
    if enabled {
        RuleState::Enabled
    } else {
        RuleState::Disabled
    }
}

/// The fields of the triggering event carried over by the input transformer.
const EVENT_PATHS: [(&str, &str); 7] = [
    ("id", "$.id"),
    ("detailType", "$.detail-type"),
    ("source", "$.source"),
    ("account", "$.account"),
    ("time", "$.time"),
    ("region", "$.region"),
    ("resources", "$.resources"),
];
const TEMPLATE_HEAD: &str = r#"{"version":"0","id":<id>,"detail-type":<detailType>,"source":<source>,"account":<account>,"time":<time>,"region":<region>,"resources":<resources>,"detail":"#;

/// The event, rebuilt with `detail` as its detail. Placeholders are filled by EventBridge.
fn input_template(detail: &Value) -> String {
    format!("{TEMPLATE_HEAD}{detail}}}")
}

/// The detail a template of ours carries; `None` for any other template.
fn detail_of(template: &str) -> Option<Value> {
    template
        .strip_prefix(TEMPLATE_HEAD)
        .and_then(|rest| rest.strip_suffix('}'))
        .and_then(|detail| serde_json::from_str(detail).ok())
}

/// Reads rules by name prefix (ListRules), then each rule's targets; tags come from
/// `tag_index` where it has the rule (AWS lists rules there, moto does not), else from
/// ListTagsForResource.
pub async fn read(
    aws: &Aws,
    targets: &[ReadTarget],
    tag_index: &super::tag_index::TagIndex,
) -> Result<LiveMap, AwsError> {
    let mut live = LiveMap::new();
    if targets.is_empty() {
        return Ok(live);
    }
    let prefix = super::common_prefix(targets.iter().map(|t| t.physical_id.as_str()));
    let mut found: BTreeMap<String, (RuleSpec, String)> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = aws.events.list_rules().set_next_token(token.clone());
        if !prefix.is_empty() {
            request = request.name_prefix(&prefix);
        }
        let page = request.send().await.map_err(failed("ListRules"))?;
        for r in page.rules() {
            let Some(name) = r.name() else { continue };
            let spec = RuleSpec {
                name: name.to_string(),
                description: r.description().unwrap_or_default().to_string(),
                schedule_expression: r.schedule_expression().map(str::to_string),
                event_pattern: r.event_pattern().map(|p| {
                    serde_json::from_str(p).unwrap_or_else(|_| Value::String(p.to_string()))
                }),
                // The provider reads ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS as enabled.
                enabled: r.state().is_some_and(|s| s.as_str().starts_with("ENABLED")),
                targets: Vec::new(),
                tags: BTreeMap::new(),
                references: BTreeSet::new(),
            };
            found.insert(
                name.to_string(),
                (spec, r.arn().unwrap_or_default().to_string()),
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
    let existing: Vec<(Address, RuleSpec, String)> = targets
        .iter()
        .filter_map(|t| {
            found
                .get(&t.physical_id)
                .map(|(s, arn)| (t.address.clone(), s.clone(), arn.clone()))
        })
        .collect();
    let specs: Vec<(Address, Option<RuleSpec>)> = stream::iter(existing)
        .map(|(address, mut spec, arn)| async move {
            let indexed = tag_index.get(&arn);
            let (targets, tags) = tokio::join!(
                aws.events.list_targets_by_rule().rule(&spec.name).send(),
                async {
                    match indexed {
                        Some(tags) => Ok(tags.clone()),
                        None => read_tags(aws, &arn).await,
                    }
                },
            );
            let Some(targets) = targets
                .map_err(failed("ListTargetsByRule"))
                .or_missing(TARGETS_NOT_FOUND)?
            else {
                return Ok((address, None));
            };
            spec.targets = targets
                .targets()
                .iter()
                .map(|t| RuleTarget {
                    id: t.id().to_string(),
                    arn: t.arn().to_string(),
                    detail: t
                        .input_transformer()
                        .map(|x| {
                            detail_of(x.input_template())
                                .unwrap_or_else(|| Value::String(x.input_template().to_string()))
                        })
                        .or_else(|| t.input().map(|i| json!({ "input": i }))),
                })
                .collect();
            spec.targets.sort_by(|a, b| a.id.cmp(&b.id));
            spec.tags = tags?;
            Ok::<_, AwsError>((address, Some(spec)))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for (address, spec) in specs {
        live.insert(address, spec.map(Spec::Rule));
    }
    Ok(live)
}

async fn read_tags(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
    let out = aws
        .events
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .map_err(failed("ListTagsForResource"))?;
    Ok(out
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect())
}

fn eb_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, OpError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(OpError::from)
        })
        .collect()
}

async fn put_rule(aws: &Aws, spec: &RuleSpec, with_tags: bool) -> Result<(), OpError> {
    let mut request = aws
        .events
        .put_rule()
        .name(&spec.name)
        .description(&spec.description)
        .state(state(spec.enabled))
        .set_schedule_expression(spec.schedule_expression.clone())
        .set_event_pattern(spec.event_pattern.as_ref().map(Value::to_string));
    if with_tags {
        request = request.set_tags(Some(eb_tags(&spec.tags)?));
    }
    request.send().await.map_err(failed("PutRule"))?;
    Ok(())
}

async fn put_targets(aws: &Aws, rule: &str, targets: &[&RuleTarget]) -> Result<(), OpError> {
    if targets.is_empty() {
        return Ok(());
    }
    let mut built = Vec::new();
    for t in targets {
        let mut b = EbTarget::builder().id(&t.id).arn(&t.arn);
        if let Some(detail) = &t.detail {
            let mut transformer =
                InputTransformer::builder().input_template(input_template(detail));
            for (key, path) in EVENT_PATHS {
                transformer = transformer.input_paths_map(key, path);
            }
            b = b.input_transformer(transformer.build()?);
        }
        built.push(b.build()?);
    }
    send_entries(
        aws,
        rule,
        putting_targets,
        built,
        EbTarget::id,
        |batch| async move {
            let out = aws
                .events
                .put_targets()
                .rule(rule)
                .set_targets(Some(batch))
                .send()
                .await
                .map_err(failed("PutTargets"))?;
            Ok(out
                .failed_entries()
                .iter()
                .map(|e| {
                    FailedEntry::of(
                        "PutTargets",
                        e.target_id(),
                        e.error_code(),
                        e.error_message(),
                    )
                })
                .collect())
        },
    )
    .await
}

async fn remove_targets(aws: &Aws, rule: &str, ids: Vec<String>) -> Result<(), OpError> {
    if ids.is_empty() {
        return Ok(());
    }
    send_entries(
        aws,
        rule,
        entry_transient,
        ids,
        String::as_str,
        |batch| async move {
            let out = aws
                .events
                .remove_targets()
                .rule(rule)
                .set_ids(Some(batch))
                .send()
                .await
                .map_err(failed("RemoveTargets"))?;
            Ok(out
                .failed_entries()
                .iter()
                .map(|e| {
                    FailedEntry::of(
                        "RemoveTargets",
                        e.target_id(),
                        e.error_code(),
                        e.error_message(),
                    )
                })
                .collect())
        },
    )
    .await
}

/// One entry PutTargets or RemoveTargets reported failed (inside its HTTP 200).
struct FailedEntry {
    target_id: String,
    error: AwsError,
}

impl FailedEntry {
    fn of(
        operation: &str,
        target_id: Option<&str>,
        code: Option<&str>,
        message: Option<&str>,
    ) -> FailedEntry {
        let target_id = target_id.unwrap_or("?").to_string();
        FailedEntry {
            error: AwsError {
                operation: operation.to_string(),
                code: code
                    .filter(|c| !c.is_empty())
                    .unwrap_or("Failed")
                    .to_string(),
                message: format!("target {target_id}: {}", message.unwrap_or_default()),
                http_status: Some(200),
            },
            target_id,
        }
    }
}

/// Sends `entries` with `send` (which answers the entries that failed) until none fail: the
/// failed ones alone are sent again while every failure is one `transient` waits out; the
/// first other failure ends it.
async fn send_entries<E, F, Fut>(
    aws: &Aws,
    rule: &str,
    transient: Transient,
    entries: Vec<E>,
    id_of: fn(&E) -> &str,
    send: F,
) -> Result<(), OpError>
where
    E: Clone,
    F: Fn(Vec<E>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<FailedEntry>, AwsError>>,
{
    let pending = std::sync::Mutex::new(entries);
    let take = || match pending.lock() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    eventual::retry(rule, aws.patience.propagation, transient, || {
        let batch = take();
        let sent = send(batch.clone());
        let pending = &pending;
        async move {
            let failures = sent.await?;
            if failures.is_empty() {
                return Ok(());
            }
            let failed_ids: BTreeSet<&str> =
                failures.iter().map(|f| f.target_id.as_str()).collect();
            let again: Vec<E> = batch
                .into_iter()
                .filter(|e| failed_ids.contains(id_of(e)))
                .collect();
            match pending.lock() {
                Ok(mut guard) => *guard = again,
                Err(poisoned) => *poisoned.into_inner() = again,
            }
            // The first failure not worth retrying decides; else the first.
            let worst = failures
                .iter()
                .position(|f| entry_transient(&f.error).is_none())
                .unwrap_or(0);
            Err(failures
                .into_iter()
                .nth(worst)
                .map(|f| f.error)
                .unwrap_or_else(|| AwsError {
                    operation: "PutTargets".into(),
                    code: "Failed".into(),
                    message: "an entry failed".into(),
                    http_status: Some(200),
                }))
        }
    })
    .await?;
    Ok(())
}

pub async fn create(aws: &Aws, spec: &RuleSpec) -> Result<(), OpError> {
    put_rule(aws, spec, true).await?;
    put_targets(aws, &spec.name, &spec.targets.iter().collect::<Vec<_>>()).await
}

pub async fn update(
    aws: &Aws,
    target: &Target,
    desired: &RuleSpec,
    live: &RuleSpec,
) -> Result<(), OpError> {
    let rule_differs = desired.description != live.description
        || desired.schedule_expression != live.schedule_expression
        || desired.event_pattern != live.event_pattern
        || desired.enabled != live.enabled;
    if rule_differs {
        put_rule(aws, desired, false).await?;
    }
    let changed: Vec<&RuleTarget> = desired
        .targets
        .iter()
        .filter(|t| !live.targets.contains(t))
        .collect();
    put_targets(aws, &desired.name, &changed).await?;
    let removed: Vec<String> = live
        .targets
        .iter()
        .filter(|l| !desired.targets.iter().any(|d| d.id == l.id))
        .map(|l| l.id.clone())
        .collect();
    remove_targets(aws, &desired.name, removed).await?;
    let delta = TagDelta::between(&desired.tags, &live.tags);
    let rule_arn = arn(target, &desired.name);
    if !delta.set.is_empty() {
        aws.events
            .tag_resource()
            .resource_arn(&rule_arn)
            .set_tags(Some(eb_tags(&delta.set)?))
            .send()
            .await
            .map_err(failed("TagResource"))?;
    }
    if !delta.remove.is_empty() {
        aws.events
            .untag_resource()
            .resource_arn(&rule_arn)
            .set_tag_keys(Some(delta.remove.into_iter().collect()))
            .send()
            .await
            .map_err(failed("UntagResource"))?;
    }
    Ok(())
}

/// Removes the targets (EventBridge refuses to delete a rule that has any), then the rule.
pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    let Some(targets) = aws
        .events
        .list_targets_by_rule()
        .rule(name)
        .send()
        .await
        .map_err(failed("ListTargetsByRule"))
        .or_missing(TARGETS_NOT_FOUND)?
    else {
        return Ok(());
    };
    remove_targets(
        aws,
        name,
        targets
            .targets()
            .iter()
            .map(|t| t.id().to_string())
            .collect(),
    )
    .await?;
    eventual::retry(
        name,
        aws.patience.propagation,
        deleting_rule as Transient,
        || async {
            aws.events
                .delete_rule()
                .name(name)
                .send()
                .await
                .map_err(failed("DeleteRule"))
                .or_missing(RULE_NOT_FOUND)
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_round_trips_through_the_template() {
        let detail = json!({"job": "collector", "lookback_days": 7});
        assert_eq!(detail_of(&input_template(&detail)), Some(detail));
        assert_eq!(detail_of("{\"other\":1}"), None);
    }
}
