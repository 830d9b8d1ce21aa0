//! SNS topics: display name, topic policy, e-mail subscriptions, tags.
//!
//! Read: ListTopics (paged, 100 a page) for existence, then attributes, tags and
//! subscriptions per existing topic. A topic whose policy the stack leaves unset keeps AWS's
//! default policy, which is then not compared. The name is the identity.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_sns::types::Tag;
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, TagDelta, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::cloudformation::{CfnResource, Context, non_empty, tag_list};
use crate::eventual::{self, Transient};
use crate::model::{Address, Kind, KindSpec, PolicyDocument, Spec, Target};
use serde_json::json;

pub const REPLACE_FIELDS: &[&str] = &[];

/// aws-behaviors.md, aws_sns_topic, Not found: `NotFoundException` (wire code `NotFound`).
const NOT_FOUND: NotFound = NotFound::codes(&["NotFound", "NotFoundException"]);

/// aws-behaviors.md, aws_sns_topic, Retries: right after CreateTopic, SetTopicAttributes is
/// retried on `AuthorizationError` "no identity-based policy allows" while tag-based (ABAC)
/// permissions on the new topic propagate. Only for a topic created moments ago (by this
/// apply, or by an interrupted one it adopts): on an older topic the same error is a real
/// denial.
fn abac_propagating(e: &AwsError) -> Option<&'static str> {
    e.says("AuthorizationError", "no identity-based policy allows")
        .then_some("permissions on the new topic are propagating (ABAC)")
}

/// A subscription that has not been confirmed yet has this instead of an ARN.
const PENDING: &str = "PendingConfirmation";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicSpec {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    /// `None` leaves AWS's default policy in place.
    pub policy: Option<PolicyDocument>,
    #[serde(default)]
    pub email_subscriptions: BTreeSet<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl TopicSpec {
    pub fn references(&self) -> BTreeSet<Address> {
        self.policy
            .iter()
            .flat_map(|p| p.references.iter().cloned())
            .collect()
    }
}

impl KindSpec for TopicSpec {
    const KIND: Kind = Kind::Topic;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        arn(target, &self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::Topic(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

pub fn arn(target: &Target, name: &str) -> String {
    format!(
        "arn:aws:sns:{}:{}:{}",
        target.region, target.account_id, name
    )
}

pub fn validate(spec: &TopicSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if spec.name.is_empty() || spec.name.len() > 256 || !spec.name.chars().all(ok) {
        problems.push(Invalid::new(
            "name",
            format!(
                "`{}`: topic names are 1 to 256 of A-Z a-z 0-9 - _",
                spec.name
            ),
        ));
    }
    if spec.display_name.chars().count() > 100 {
        problems.push(Invalid::new("display_name", "at most 100 characters"));
    }
    for email in &spec.email_subscriptions {
        if !is_plausible_email(email) {
            problems.push(Invalid::new(
                "email_subscriptions",
                format!("`{email}` is not an e-mail address"),
            ));
        }
    }
    if let Some(policy) = &spec.policy
        && policy.document.get("Statement").is_none()
    {
        problems.push(Invalid::new(
            "policy",
            "a policy document needs a Statement",
        ));
    }
    problems
}

/// `local@domain.tld`, no spaces: what SNS needs to send a confirmation.
pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace())
        && !domain.contains('@')
}

/// `AWS::SNS::Topic`, plus its policy (`AWS::SNS::TopicPolicy`) and one
/// `AWS::SNS::Subscription` per address, named by a digest of the address so that adding one
/// leaves the others' logical ids alone (and no address shows in an id).
pub fn cloudformation(spec: &TopicSpec, cx: &Context) -> Vec<CfnResource> {
    use sha2::Digest as _;
    let mut parts = vec![CfnResource::main(
        "AWS::SNS::Topic",
        json!({
            "TopicName": spec.name,
            "DisplayName": non_empty(&spec.display_name),
            "Tags": tag_list(&spec.tags),
        }),
    )];
    if let Some(policy) = &spec.policy {
        parts.push(CfnResource::part(
            "policy",
            "AWS::SNS::TopicPolicy",
            json!({"PolicyDocument": policy.document, "Topics": [cx.own_ref()]}),
        ));
    }
    for email in &spec.email_subscriptions {
        let digest = hex::encode(sha2::Sha256::digest(email.as_bytes()));
        parts.push(CfnResource::part(
            &format!("subscription {}", &digest[..12]),
            "AWS::SNS::Subscription",
            json!({"TopicArn": cx.own_ref(), "Protocol": "email", "Endpoint": email}),
        ));
    }
    parts
}

pub fn fields(spec: &TopicSpec) -> Fields {
    let mut fields = Fields::new();
    fields.insert(
        "display_name".into(),
        Value::String(spec.display_name.clone()),
    );
    if let Some(policy) = &spec.policy {
        fields.insert("policy".into(), policy.canonical());
    }
    fields.insert(
        "email_subscriptions".into(),
        Value::Array(
            spec.email_subscriptions
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        ),
    );
    tag_fields(&spec.tags, &mut fields);
    fields
}

pub fn align_live(desired: &TopicSpec, live: &mut TopicSpec) {
    if desired.policy.is_none() {
        live.policy = None;
    }
}

pub async fn read(aws: &Aws, target: &Target, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
    let mut live = LiveMap::new();
    if targets.is_empty() {
        return Ok(live);
    }
    let existing = list_topics(aws).await?;
    for t in targets {
        live.insert(t.address.clone(), None);
    }
    let found: Vec<(Address, String, String)> = targets
        .iter()
        .map(|t| {
            (
                t.address.clone(),
                t.physical_id.clone(),
                arn(target, &t.physical_id),
            )
        })
        .filter(|(_, _, arn)| existing.contains(arn))
        .collect();
    let specs: Vec<(Address, Option<TopicSpec>)> = stream::iter(found)
        .map(|(address, name, arn)| async move {
            Ok::<_, AwsError>((address, read_one(aws, &name, &arn).await?))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for (address, spec) in specs {
        live.insert(address, spec.map(Spec::Topic));
    }
    Ok(live)
}

async fn list_topics(aws: &Aws) -> Result<BTreeSet<String>, AwsError> {
    let mut arns = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .sns
            .list_topics()
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(failed("ListTopics"))?;
        arns.extend(
            page.topics()
                .iter()
                .filter_map(|t| t.topic_arn().map(str::to_string)),
        );
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(arns)
}

async fn read_one(aws: &Aws, name: &str, arn: &str) -> Result<Option<TopicSpec>, AwsError> {
    let (attributes, tags, subscriptions) = tokio::join!(
        aws.sns.get_topic_attributes().topic_arn(arn).send(),
        aws.sns.list_tags_for_resource().resource_arn(arn).send(),
        list_subscriptions(aws, arn),
    );
    let Some(attributes) = attributes
        .map_err(failed("GetTopicAttributes"))
        .or_missing(NOT_FOUND)?
    else {
        return Ok(None);
    };
    let attributes = attributes.attributes().cloned().unwrap_or_default();
    let tags = tags
        .map_err(failed("ListTagsForResource"))?
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    let policy = attributes.get("Policy").filter(|p| !p.is_empty()).map(|p| {
        PolicyDocument::parse_aws(p)
            .unwrap_or_else(|_| PolicyDocument::from_json(Value::String(p.clone())))
    });
    Ok(Some(TopicSpec {
        name: name.to_string(),
        display_name: attributes.get("DisplayName").cloned().unwrap_or_default(),
        policy,
        email_subscriptions: subscriptions?.into_keys().collect(),
        tags,
    }))
}

/// E-mail endpoint -> subscription ARN (or `PendingConfirmation`).
async fn list_subscriptions(aws: &Aws, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(arn)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(failed("ListSubscriptionsByTopic"))?;
        for s in page.subscriptions() {
            if s.protocol() == Some("email")
                && let Some(endpoint) = s.endpoint()
            {
                out.insert(
                    endpoint.to_string(),
                    s.subscription_arn().unwrap_or(PENDING).to_string(),
                );
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

fn sns_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, OpError> {
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

pub async fn create(aws: &Aws, spec: &TopicSpec) -> Result<(), OpError> {
    let out = aws
        .sns
        .create_topic()
        .name(&spec.name)
        .set_tags(Some(sns_tags(&spec.tags)?))
        .send()
        .await
        .map_err(failed("CreateTopic"))?;
    let arn = out.topic_arn().unwrap_or_default().to_string();
    // CreateTopic on an existing name changes nothing: attributes are always set explicitly.
    if !spec.display_name.is_empty() {
        set_attribute(aws, &arn, "DisplayName", &spec.display_name, true).await?;
    }
    if let Some(policy) = &spec.policy {
        set_attribute(aws, &arn, "Policy", &policy.to_aws(), true).await?;
    }
    let existing = list_subscriptions(aws, &arn).await?;
    for email in &spec.email_subscriptions {
        if !existing.contains_key(email) {
            subscribe(aws, &arn, email).await?;
        }
    }
    Ok(())
}

/// Sets one attribute; on a topic `just_created`, waits out ABAC propagation.
async fn set_attribute(
    aws: &Aws,
    arn: &str,
    name: &str,
    value: &str,
    just_created: bool,
) -> Result<(), OpError> {
    if just_created {
        eventual::retry(
            arn,
            aws.patience.propagation,
            abac_propagating as Transient,
            || set_attribute_once(aws, arn, name, value),
        )
        .await?;
    } else {
        set_attribute_once(aws, arn, name, value).await?;
    }
    Ok(())
}

async fn set_attribute_once(aws: &Aws, arn: &str, name: &str, value: &str) -> Result<(), AwsError> {
    aws.sns
        .set_topic_attributes()
        .topic_arn(arn)
        .attribute_name(name)
        .attribute_value(value)
        .send()
        .await
        .map_err(failed("SetTopicAttributes"))?;
    Ok(())
}

async fn subscribe(aws: &Aws, arn: &str, email: &str) -> Result<(), OpError> {
    aws.sns
        .subscribe()
        .topic_arn(arn)
        .protocol("email")
        .endpoint(email)
        .return_subscription_arn(true)
        .send()
        .await
        .map_err(failed("Subscribe"))?;
    Ok(())
}

pub async fn update(
    aws: &Aws,
    arn: &str,
    desired: &TopicSpec,
    live: &TopicSpec,
    just_created: bool,
) -> Result<(), OpError> {
    if desired.display_name != live.display_name {
        set_attribute(aws, arn, "DisplayName", &desired.display_name, just_created).await?;
    }
    if let Some(policy) = &desired.policy
        && live.policy.as_ref().map(PolicyDocument::canonical) != Some(policy.canonical())
    {
        set_attribute(aws, arn, "Policy", &policy.to_aws(), just_created).await?;
    }
    if desired.email_subscriptions != live.email_subscriptions {
        let existing = list_subscriptions(aws, arn).await?;
        for email in desired
            .email_subscriptions
            .iter()
            .filter(|e| !existing.contains_key(*e))
        {
            subscribe(aws, arn, email).await?;
        }
        for (email, subscription) in &existing {
            // A pending subscription cannot be removed; SNS drops it after three days.
            if !desired.email_subscriptions.contains(email) && subscription != PENDING {
                aws.sns
                    .unsubscribe()
                    .subscription_arn(subscription)
                    .send()
                    .await
                    .map_err(failed("Unsubscribe"))?;
            }
        }
    }
    let delta = TagDelta::between(&desired.tags, &live.tags);
    if !delta.set.is_empty() {
        aws.sns
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(sns_tags(&delta.set)?))
            .send()
            .await
            .map_err(failed("TagResource"))?;
    }
    if !delta.remove.is_empty() {
        aws.sns
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(delta.remove.into_iter().collect()))
            .send()
            .await
            .map_err(failed("UntagResource"))?;
    }
    Ok(())
}

pub async fn delete(aws: &Aws, arn: &str) -> Result<(), OpError> {
    aws.sns
        .delete_topic()
        .topic_arn(arn)
        .send()
        .await
        .map_err(failed("DeleteTopic"))
        .or_missing(NOT_FOUND)?;
    Ok(())
}
