//! IAM roles: trust policy, inline policies, managed policy attachments, description, maximum
//! session duration, tags. Policy documents are compared in canonical form.
//!
//! Read: ListRoles (description, session duration) and GetAccountAuthorizationDetails (trust,
//! inline and managed policies, tags) answer for every role at once, paged. The path forces
//! replacement.
//!
//! Delete detaches and deletes the role's policies first (IAM refuses otherwise), then
//! retries DeleteRole's `DeleteConflict` within bounds while IAM catches up with the
//! detachments (aws-behaviors.md, aws_iam_role). Trust policies name service principals, so
//! the provider's "Invalid principal" retries on CreateRole / UpdateAssumeRolePolicy (for a
//! principal that is a role created moments ago) do not arise; the engine builds role ARNs
//! itself, so the unique-ID ARN right after CreateRole is never read.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_iam::types::Tag;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, TagDelta, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::cloudformation::{CfnResource, non_empty, tag_list};
use crate::eventual::{self, Transient};
use crate::model::{Kind, KindSpec, PolicyDocument, Spec, Target};
use serde_json::json;

pub const REPLACE_FIELDS: &[&str] = &["path"];

/// aws-behaviors.md, aws_iam_role, Not found: `NoSuchEntityException` (wire code
/// `NoSuchEntity`).
const NOT_FOUND: NotFound = NotFound::codes(&["NoSuchEntity", "NoSuchEntityException"]);

/// aws-behaviors.md, aws_iam_role, Retries: DeleteRole retries `DeleteConflictException`
/// (wire code `DeleteConflict`).
fn deleting(e: &AwsError) -> Option<&'static str> {
    matches!(
        e.code.as_str(),
        "DeleteConflict" | "DeleteConflictException"
    )
    .then_some("IAM propagation: the role's policies were detached moments ago")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoleSpec {
    pub name: String,
    pub path: String,
    pub description: String,
    pub max_session_duration: i32,
    pub trust_policy: PolicyDocument,
    #[serde(default)]
    pub inline_policies: BTreeMap<String, PolicyDocument>,
    #[serde(default)]
    pub managed_policies: BTreeSet<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl RoleSpec {
    /// A role that `service` (e.g. `lambda.amazonaws.com`) may assume.
    pub fn for_service(name: String, service: &str, description: &str) -> RoleSpec {
        let trust = PolicyDocument::new(vec![
            crate::model::Statement::allow(["sts:AssumeRole"]).service_principal(service),
        ]);
        RoleSpec {
            name,
            path: "/".into(),
            description: description.into(),
            max_session_duration: 3600,
            trust_policy: trust,
            inline_policies: BTreeMap::new(),
            managed_policies: BTreeSet::new(),
            tags: BTreeMap::new(),
        }
    }

    pub fn inline(mut self, name: &str, policy: PolicyDocument) -> RoleSpec {
        self.inline_policies.insert(name.into(), policy);
        self
    }

    pub fn managed(mut self, arn: &str) -> RoleSpec {
        self.managed_policies.insert(arn.into());
        self
    }

    pub fn references(&self) -> BTreeSet<crate::model::Address> {
        self.inline_policies
            .values()
            .chain(std::iter::once(&self.trust_policy))
            .flat_map(|p| p.references.iter().cloned())
            .collect()
    }
}

impl KindSpec for RoleSpec {
    const KIND: Kind = Kind::Role;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        format!(
            "arn:aws:iam::{}:role{}{}",
            target.account_id, self.path, self.name
        )
    }
    fn into_spec(self) -> Spec {
        Spec::Role(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

pub fn validate(spec: &RoleSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let name_ok = |c: char| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c);
    if spec.name.is_empty() || spec.name.len() > 64 || !spec.name.chars().all(name_ok) {
        problems.push(Invalid::new(
            "name",
            format!(
                "`{}`: role names are 1 to 64 of A-Z a-z 0-9 + = , . @ - _",
                spec.name
            ),
        ));
    }
    if !spec.path.starts_with('/') || !spec.path.ends_with('/') || spec.path.len() > 512 {
        problems.push(Invalid::new("path", "role paths start and end with `/`"));
    }
    if !(3600..=43200).contains(&spec.max_session_duration) {
        problems.push(Invalid::new(
            "max_session_duration",
            format!("{} s; IAM allows 3600 to 43200", spec.max_session_duration),
        ));
    }
    if spec.description.chars().count() > 1000 {
        problems.push(Invalid::new("description", "at most 1000 characters"));
    }
    problems.extend(validate_policy("trust_policy", &spec.trust_policy, true));
    for (name, policy) in &spec.inline_policies {
        problems.extend(validate_policy(
            &format!("inline_policies.{name}"),
            policy,
            false,
        ));
    }
    problems
}

/// Structural checks IAM would make, done before any call.
fn validate_policy(field: &str, policy: &PolicyDocument, trust: bool) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let doc = policy.canonical();
    let Some(statements) = doc.get("Statement").and_then(Value::as_array) else {
        return vec![Invalid::new(
            field,
            "a policy document needs a Statement list",
        )];
    };
    if statements.is_empty() {
        problems.push(Invalid::new(
            field,
            "a policy document needs at least one statement",
        ));
    }
    for (i, s) in statements.iter().enumerate() {
        let effect = s.get("Effect").and_then(Value::as_str);
        if !matches!(effect, Some("Allow") | Some("Deny")) {
            problems.push(Invalid::new(
                field,
                format!("statement {i}: Effect is Allow or Deny"),
            ));
        }
        if s.get("Action").is_none() && s.get("NotAction").is_none() {
            problems.push(Invalid::new(field, format!("statement {i}: no Action")));
        }
        if trust {
            if s.get("Principal").is_none() {
                problems.push(Invalid::new(
                    field,
                    format!("statement {i}: a trust policy names a Principal"),
                ));
            }
        } else if s.get("Resource").is_none() && s.get("NotResource").is_none() {
            problems.push(Invalid::new(field, format!("statement {i}: no Resource")));
        }
    }
    if policy.to_aws().len() > 10240 {
        problems.push(Invalid::new(
            field,
            "policy document larger than IAM's 10,240 characters",
        ));
    }
    problems
}

/// `AWS::IAM::Role` with its inline policies and managed policy attachments.
pub fn cloudformation(spec: &RoleSpec) -> CfnResource {
    let policies: Vec<Value> = spec
        .inline_policies
        .iter()
        .map(|(name, policy)| json!({"PolicyName": name, "PolicyDocument": policy.document}))
        .collect();
    CfnResource::main(
        "AWS::IAM::Role",
        json!({
            "RoleName": spec.name,
            "Path": spec.path,
            "Description": non_empty(&spec.description),
            "MaxSessionDuration": spec.max_session_duration,
            "AssumeRolePolicyDocument": spec.trust_policy.document,
            "Policies": (!policies.is_empty()).then_some(policies),
            "ManagedPolicyArns": (!spec.managed_policies.is_empty()).then_some(&spec.managed_policies),
            "Tags": tag_list(&spec.tags),
        }),
    )
}

pub fn fields(spec: &RoleSpec) -> Fields {
    let mut fields = Fields::new();
    fields.insert("path".into(), Value::String(spec.path.clone()));
    fields.insert(
        "description".into(),
        Value::String(spec.description.clone()),
    );
    fields.insert(
        "max_session_duration".into(),
        Value::from(spec.max_session_duration),
    );
    fields.insert("trust_policy".into(), spec.trust_policy.canonical());
    for (name, policy) in &spec.inline_policies {
        fields.insert(format!("inline_policies.{name}"), policy.canonical());
    }
    fields.insert(
        "managed_policies".into(),
        Value::Array(
            spec.managed_policies
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        ),
    );
    tag_fields(&spec.tags, &mut fields);
    fields
}

pub async fn read(aws: &Aws, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
    let mut live = LiveMap::new();
    if targets.is_empty() {
        return Ok(live);
    }
    let wanted: BTreeSet<&str> = targets.iter().map(|t| t.physical_id.as_str()).collect();
    let (listed, details) = tokio::try_join!(
        list_roles(aws, &wanted),
        authorization_details(aws, &wanted)
    )?;
    for t in targets {
        let spec = match (listed.get(&t.physical_id), details.get(&t.physical_id)) {
            (Some(base), Some(detail)) => {
                let mut spec = base.clone();
                spec.trust_policy = detail.trust_policy.clone();
                spec.inline_policies = detail.inline_policies.clone();
                spec.managed_policies = detail.managed_policies.clone();
                spec.tags = detail.tags.clone();
                Some(Spec::Role(spec))
            }
            _ => None,
        };
        live.insert(t.address.clone(), spec);
    }
    Ok(live)
}

async fn list_roles(
    aws: &Aws,
    wanted: &BTreeSet<&str>,
) -> Result<BTreeMap<String, RoleSpec>, AwsError> {
    let mut out = BTreeMap::new();
    let mut marker: Option<String> = None;
    loop {
        let page = aws
            .iam
            .list_roles()
            .max_items(1000)
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(failed("ListRoles"))?;
        for role in page.roles() {
            if wanted.contains(role.role_name()) {
                out.insert(
                    role.role_name().to_string(),
                    RoleSpec {
                        name: role.role_name().to_string(),
                        path: role.path().to_string(),
                        description: role.description().unwrap_or("").to_string(),
                        max_session_duration: role.max_session_duration().unwrap_or(3600),
                        trust_policy: PolicyDocument::from_json(Value::Null),
                        inline_policies: BTreeMap::new(),
                        managed_policies: BTreeSet::new(),
                        tags: BTreeMap::new(),
                    },
                );
            }
        }
        match (page.is_truncated(), page.marker()) {
            (true, Some(next)) => marker = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

struct RoleDetail {
    trust_policy: PolicyDocument,
    inline_policies: BTreeMap<String, PolicyDocument>,
    managed_policies: BTreeSet<String>,
    tags: BTreeMap<String, String>,
}

async fn authorization_details(
    aws: &Aws,
    wanted: &BTreeSet<&str>,
) -> Result<BTreeMap<String, RoleDetail>, AwsError> {
    let mut out = BTreeMap::new();
    let mut marker: Option<String> = None;
    loop {
        let page = aws
            .iam
            .get_account_authorization_details()
            .filter(aws_sdk_iam::types::EntityType::Role)
            .max_items(1000)
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(failed("GetAccountAuthorizationDetails"))?;
        for role in page.role_detail_list() {
            let Some(name) = role.role_name() else {
                continue;
            };
            if !wanted.contains(name) {
                continue;
            }
            let trust_policy = parse_policy(role.assume_role_policy_document().unwrap_or("{}"));
            let inline_policies = role
                .role_policy_list()
                .iter()
                .filter_map(|p| {
                    Some((
                        p.policy_name()?.to_string(),
                        parse_policy(p.policy_document().unwrap_or("{}")),
                    ))
                })
                .collect();
            let managed_policies = role
                .attached_managed_policies()
                .iter()
                .filter_map(|p| p.policy_arn().map(str::to_string))
                .collect();
            let tags = role
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            out.insert(
                name.to_string(),
                RoleDetail {
                    trust_policy,
                    inline_policies,
                    managed_policies,
                    tags,
                },
            );
        }
        match (page.is_truncated(), page.marker()) {
            (true, Some(next)) => marker = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// A live document that does not parse is kept as its text, so it shows as a difference
/// instead of failing the read.
fn parse_policy(text: &str) -> PolicyDocument {
    PolicyDocument::parse_aws(text)
        .unwrap_or_else(|_| PolicyDocument::from_json(Value::String(text.to_string())))
}

fn iam_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, OpError> {
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

pub async fn create(aws: &Aws, spec: &RoleSpec) -> Result<(), OpError> {
    let created = aws
        .iam
        .create_role()
        .role_name(&spec.name)
        .path(&spec.path)
        .assume_role_policy_document(spec.trust_policy.to_aws())
        .description(&spec.description)
        .max_session_duration(spec.max_session_duration)
        .set_tags(Some(iam_tags(&spec.tags)?))
        .send()
        .await
        .map_err(failed("CreateRole"));
    match created {
        Ok(_) => {}
        Err(e) if e.is("EntityAlreadyExists") => {
            // Left by an interrupted apply: converge it like an update from nothing.
            let empty = RoleSpec {
                inline_policies: BTreeMap::new(),
                managed_policies: BTreeSet::new(),
                tags: BTreeMap::new(),
                trust_policy: PolicyDocument::from_json(Value::Null),
                description: String::new(),
                max_session_duration: 0,
                ..spec.clone()
            };
            return update(aws, spec, &empty).await;
        }
        Err(e) => return Err(e.into()),
    }
    for (name, policy) in &spec.inline_policies {
        put_inline(aws, &spec.name, name, policy).await?;
    }
    for arn in &spec.managed_policies {
        aws.iam
            .attach_role_policy()
            .role_name(&spec.name)
            .policy_arn(arn)
            .send()
            .await
            .map_err(failed("AttachRolePolicy"))?;
    }
    Ok(())
}

async fn put_inline(
    aws: &Aws,
    role: &str,
    name: &str,
    policy: &PolicyDocument,
) -> Result<(), OpError> {
    aws.iam
        .put_role_policy()
        .role_name(role)
        .policy_name(name)
        .policy_document(policy.to_aws())
        .send()
        .await
        .map_err(failed("PutRolePolicy"))?;
    Ok(())
}

pub async fn update(aws: &Aws, desired: &RoleSpec, live: &RoleSpec) -> Result<(), OpError> {
    let name = &desired.name;
    if desired.trust_policy.canonical() != live.trust_policy.canonical() {
        aws.iam
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(desired.trust_policy.to_aws())
            .send()
            .await
            .map_err(failed("UpdateAssumeRolePolicy"))?;
    }
    if desired.description != live.description
        || desired.max_session_duration != live.max_session_duration
    {
        aws.iam
            .update_role()
            .role_name(name)
            .description(&desired.description)
            .max_session_duration(desired.max_session_duration)
            .send()
            .await
            .map_err(failed("UpdateRole"))?;
    }
    for (policy_name, policy) in &desired.inline_policies {
        let same = live
            .inline_policies
            .get(policy_name)
            .is_some_and(|l| l.canonical() == policy.canonical());
        if !same {
            put_inline(aws, name, policy_name, policy).await?;
        }
    }
    for policy_name in live.inline_policies.keys() {
        if !desired.inline_policies.contains_key(policy_name) {
            aws.iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(policy_name)
                .send()
                .await
                .map_err(failed("DeleteRolePolicy"))?;
        }
    }
    for arn in desired.managed_policies.difference(&live.managed_policies) {
        aws.iam
            .attach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
            .map_err(failed("AttachRolePolicy"))?;
    }
    for arn in live.managed_policies.difference(&desired.managed_policies) {
        aws.iam
            .detach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
            .map_err(failed("DetachRolePolicy"))?;
    }
    let delta = TagDelta::between(&desired.tags, &live.tags);
    if !delta.set.is_empty() {
        aws.iam
            .tag_role()
            .role_name(name)
            .set_tags(Some(iam_tags(&delta.set)?))
            .send()
            .await
            .map_err(failed("TagRole"))?;
    }
    if !delta.remove.is_empty() {
        aws.iam
            .untag_role()
            .role_name(name)
            .set_tag_keys(Some(delta.remove.into_iter().collect()))
            .send()
            .await
            .map_err(failed("UntagRole"))?;
    }
    Ok(())
}

/// Detaches managed policies and deletes inline ones (IAM refuses to delete a role that has
/// any), then deletes the role.
pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    let Some(attached) = aws
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(failed("ListAttachedRolePolicies"))
        .or_missing(NOT_FOUND)?
    else {
        return Ok(());
    };
    for p in attached.attached_policies() {
        if let Some(arn) = p.policy_arn() {
            // aws-behaviors.md, aws_iam_role_policy_attachment: Detach ignores NoSuchEntity.
            aws.iam
                .detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(failed("DetachRolePolicy"))
                .or_missing(NOT_FOUND)?;
        }
    }
    let inline = aws
        .iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(failed("ListRolePolicies"))?;
    for policy_name in inline.policy_names() {
        aws.iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .send()
            .await
            .map_err(failed("DeleteRolePolicy"))
            .or_missing(NOT_FOUND)?;
    }
    eventual::retry(
        name,
        aws.patience.propagation,
        deleting as Transient,
        || async {
            aws.iam
                .delete_role()
                .role_name(name)
                .send()
                .await
                .map_err(failed("DeleteRole"))
                .or_missing(NOT_FOUND)
        },
    )
    .await?;
    Ok(())
}
