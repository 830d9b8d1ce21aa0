//! Secrets Manager secrets, declared without values: name, description, KMS key, tags.
//!
//! The engine never reads or stores a value. It knows only whether a current value exists
//! (a version staged `AWSCURRENT`, from the listing), which plans and drift reports show;
//! `infra secret set` writes values through [`put_value`] after [`check_value`], whose errors
//! never quote the value.
//!
//! Read: one ListSecrets by the names' common prefix (paged, 100 a page) answers for every
//! secret and every rotation configuration ([`SecretListing`]). ListSecrets is eventually
//! consistent (a new secret is missing for a while, a deleted one still listed), so where the
//! listing disagrees with state (missing but known, or listed but unknown) the secret is read
//! directly with DescribeSecret: nothing per secret in the steady state. A secret scheduled
//! for deletion reads as missing (aws-behaviors.md, aws_secretsmanager_secret: `DeletedDate`).
//!
//! Create: a name still scheduled for deletion (`InvalidRequestException`) is restored if the
//! secret is recoverable, else (a forced delete still purging) waited out within bounds; a
//! secret that exists already (`ResourceExistsException`, an interrupted apply or a lagging
//! listing) is converged if it carries this resource's ownership tags, refused otherwise.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, SecretListEntry, Tag};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, TagDelta, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::eventual::{self, Transient};
use crate::model::{Kind, KindSpec, Spec, Target};

pub const REPLACE_FIELDS: &[&str] = &[];

/// aws-behaviors.md, aws_secretsmanager_secret, Not found: `ResourceNotFoundException` (and a
/// `DeletedDate`, checked where the answer is read).
pub const NOT_FOUND: NotFound = NotFound::codes(&["ResourceNotFoundException"]);

/// aws-behaviors.md, aws_secretsmanager_secret, Retries: CreateSecret is retried while the
/// name is still "scheduled for deletion" or "was deleted" (a forced delete purges in the
/// background).
fn name_pending_deletion(e: &AwsError) -> Option<&'static str> {
    (e.is("InvalidRequestException")
        && (e.message.contains("scheduled for deletion") || e.message.contains("was deleted")))
    .then_some("the name of a secret deleted moments ago is not free yet")
}

/// Secrets Manager's limit on a value.
pub const MAX_VALUE_BYTES: usize = 65_536;

/// The recovery window of a deleted secret in a protected environment; elsewhere a deleted
/// secret goes at once, so that an environment can be destroyed and re-created.
pub const PROTECTED_RECOVERY_DAYS: i64 = 30;

/// What a value must look like; checked by `infra secret set` before anything is written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SecretFormat {
    /// Any non-empty text.
    #[default]
    Text,
    /// A JSON object with these string members; those in `timestamps` are RFC 3339 times.
    Json {
        required: Vec<String>,
        #[serde(default)]
        timestamps: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `None`: the account's `aws/secretsmanager` key.
    pub kms_key_id: Option<String>,
    /// Not an AWS property: what `infra secret set` accepts.
    #[serde(default)]
    pub format: SecretFormat,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Read live only: whether a current value exists. Never the value itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_set: Option<bool>,
}

impl SecretSpec {
    pub fn new(name: String, description: &str, format: SecretFormat) -> SecretSpec {
        SecretSpec {
            name,
            description: description.into(),
            kms_key_id: None,
            format,
            tags: BTreeMap::new(),
            value_set: None,
        }
    }
}

impl KindSpec for SecretSpec {
    const KIND: Kind = Kind::Secret;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        arn_pattern(target, &self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::Secret(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

/// Secrets Manager appends six random characters to a secret's name in its ARN, so the model
/// holds the IAM pattern that matches exactly that secret: what policies grant on.
pub fn arn_pattern(target: &Target, name: &str) -> String {
    format!(
        "arn:aws:secretsmanager:{}:{}:secret:{}-??????",
        target.region, target.account_id, name
    )
}

pub fn validate(spec: &SecretSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let ok = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c);
    if spec.name.is_empty() || spec.name.len() > 512 || !spec.name.chars().all(ok) {
        problems.push(Invalid::new(
            "name",
            format!(
                "`{}`: secret names are 1 to 512 of A-Z a-z 0-9 / _ + = . @ -",
                spec.name
            ),
        ));
    }
    // A name ending in a hyphen and six characters is ambiguous with an ARN suffix.
    if spec
        .name
        .rsplit_once('-')
        .is_some_and(|(_, tail)| tail.len() == 6)
    {
        problems.push(Invalid::new(
            "name",
            "a name ending in `-` and six characters reads as an ARN suffix; rename it",
        ));
    }
    if spec.description.chars().count() > 2048 {
        problems.push(Invalid::new("description", "at most 2048 characters"));
    }
    if let SecretFormat::Json {
        required,
        timestamps,
    } = &spec.format
    {
        for t in timestamps {
            if !required.contains(t) {
                problems.push(Invalid::new(
                    "format.timestamps",
                    format!("`{t}` is not a required member"),
                ));
            }
        }
    }
    if spec.value_set.is_some() {
        problems.push(Invalid::new(
            "value_set",
            "is read from AWS, never declared",
        ));
    }
    problems
}

/// `AWS::SecretsManager::Secret` without a value (neither `SecretString` nor
/// `GenerateSecretString`): the template creates an empty secret, and the value goes in as it
/// does for the engine, through `infra secret set`, so it never appears in a template.
pub fn cloudformation(spec: &SecretSpec) -> crate::cloudformation::CfnResource {
    crate::cloudformation::CfnResource::main(
        "AWS::SecretsManager::Secret",
        serde_json::json!({
            "Name": spec.name,
            "Description": crate::cloudformation::non_empty(&spec.description),
            "KmsKeyId": spec.kms_key_id,
            "Tags": crate::cloudformation::tag_list(&spec.tags),
        }),
    )
}

pub fn fields(spec: &SecretSpec) -> Fields {
    let mut fields = Fields::new();
    fields.insert(
        "description".into(),
        Value::String(spec.description.clone()),
    );
    fields.insert(
        "kms_key_id".into(),
        Value::String(
            spec.kms_key_id
                .clone()
                .unwrap_or_else(|| "aws/secretsmanager".into()),
        ),
    );
    tag_fields(&spec.tags, &mut fields);
    fields
}

/// Why a value was refused. Never contains the value or any part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("the value is empty")]
    Empty,
    #[error("the value is {0} bytes; Secrets Manager allows at most 65536")]
    TooLarge(usize),
    #[error("the value is not a JSON object (JSON error at line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("the value is JSON but not an object")]
    NotObject,
    #[error("the value lacks {}", .0.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))]
    Missing(Vec<String>),
    #[error("`{0}` is not a non-empty string")]
    NotString(String),
    #[error("`{0}` is not an RFC 3339 time (e.g. 2026-01-31T12:00:00Z)")]
    NotTimestamp(String),
}

/// Checks `value` against the secret's format.
pub fn check_value(format: &SecretFormat, value: &str) -> Result<(), ValueError> {
    if value.is_empty() {
        return Err(ValueError::Empty);
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(ValueError::TooLarge(value.len()));
    }
    let SecretFormat::Json {
        required,
        timestamps,
    } = format
    else {
        return Ok(());
    };
    // serde_json's messages can quote the input ("invalid type: string \"...\""): keep only
    // the position.
    let parsed: Value = serde_json::from_str(value).map_err(|e| ValueError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(object) = parsed else {
        return Err(ValueError::NotObject);
    };
    let missing: Vec<String> = required
        .iter()
        .filter(|k| !object.contains_key(*k))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(ValueError::Missing(missing));
    }
    for key in required {
        match object.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {
                if timestamps.contains(key) && chrono::DateTime::parse_from_rfc3339(s).is_err() {
                    return Err(ValueError::NotTimestamp(key.clone()));
                }
            }
            _ => return Err(ValueError::NotString(key.clone())),
        }
    }
    Ok(())
}

/// Every secret under a prefix, as ListSecrets answers: what secrets and rotations are read
/// from.
#[derive(Clone, Debug, Default)]
pub struct SecretListing {
    pub secrets: BTreeMap<String, SecretListEntry>,
}

impl SecretListing {
    /// Lists the secrets named `names`. Where the listing and `known` (the names state has)
    /// disagree, the secret is read with DescribeSecret instead.
    pub async fn load(
        aws: &Aws,
        names: &BTreeSet<&str>,
        known: &BTreeSet<&str>,
    ) -> Result<SecretListing, AwsError> {
        let mut listing = SecretListing::default();
        if names.is_empty() {
            return Ok(listing);
        }
        let prefix = super::common_prefix(names.iter().copied());
        let mut token: Option<String> = None;
        loop {
            let mut request = aws
                .secretsmanager
                .list_secrets()
                .max_results(100)
                .set_next_token(token.clone());
            if !prefix.is_empty() {
                request = request.filters(
                    Filter::builder()
                        .key(FilterNameStringType::Name)
                        .values(&prefix)
                        .build(),
                );
            }
            let page = request.send().await.map_err(failed("ListSecrets"))?;
            for entry in page.secret_list() {
                if let Some(name) = entry.name()
                    && names.contains(name)
                    && entry.deleted_date().is_none()
                {
                    listing.secrets.insert(name.to_string(), entry.clone());
                }
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        let disputed: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| listing.secrets.contains_key(*name) != known.contains(name))
            .collect();
        for name in disputed {
            match describe(aws, name).await? {
                Some(entry) => listing.secrets.insert(name.to_string(), entry),
                None => listing.secrets.remove(name),
            };
        }
        Ok(listing)
    }
}

/// One secret read directly, as a listing entry; `None` when it does not exist or is
/// scheduled for deletion.
pub async fn describe(aws: &Aws, name: &str) -> Result<Option<SecretListEntry>, AwsError> {
    Ok(describe_raw(aws, name)
        .await?
        .filter(|d| d.deleted_date().is_none())
        .map(|d| entry_of(&d)))
}

async fn describe_raw(aws: &Aws, name: &str) -> Result<Option<DescribeSecretOutput>, AwsError> {
    aws.secretsmanager
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .map_err(failed("DescribeSecret"))
        .or_missing(NOT_FOUND)
}

/// DescribeSecret's answer in ListSecrets' shape (`VersionIdsToStages` there is
/// `SecretVersionsToStages` here).
fn entry_of(d: &DescribeSecretOutput) -> SecretListEntry {
    SecretListEntry::builder()
        .set_arn(d.arn().map(str::to_string))
        .set_name(d.name().map(str::to_string))
        .set_description(d.description().map(str::to_string))
        .set_kms_key_id(d.kms_key_id().map(str::to_string))
        .set_rotation_enabled(d.rotation_enabled())
        .set_rotation_lambda_arn(d.rotation_lambda_arn().map(str::to_string))
        .set_rotation_rules(d.rotation_rules().cloned())
        .set_tags(Some(d.tags().to_vec()))
        .set_secret_versions_to_stages(d.version_ids_to_stages().cloned())
        .set_deleted_date(d.deleted_date().cloned())
        .build()
}

/// Whether a version is staged `AWSCURRENT`: the secret has a value.
pub fn has_current_value(entry: &SecretListEntry) -> bool {
    entry.secret_versions_to_stages().is_some_and(|versions| {
        versions
            .values()
            .any(|stages| stages.iter().any(|s| s == "AWSCURRENT"))
    })
}

pub fn read(listing: &SecretListing, targets: &[ReadTarget]) -> LiveMap {
    targets
        .iter()
        .map(|t| {
            let spec = listing
                .secrets
                .get(&t.physical_id)
                .map(|entry| Spec::Secret(spec_of(&t.physical_id, entry)));
            (t.address.clone(), spec)
        })
        .collect()
}

fn spec_of(name: &str, entry: &SecretListEntry) -> SecretSpec {
    SecretSpec {
        name: name.to_string(),
        description: entry.description().unwrap_or_default().to_string(),
        kms_key_id: entry.kms_key_id().map(str::to_string),
        format: SecretFormat::Text,
        tags: entry
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect(),
        value_set: Some(has_current_value(entry)),
    }
}

fn sm_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub async fn create(aws: &Aws, spec: &SecretSpec) -> Result<(), OpError> {
    match create_once(aws, spec).await {
        Ok(()) => Ok(()),
        Err(e) if name_pending_deletion(&e).is_some() => {
            match describe_raw(aws, &spec.name).await? {
                // Deleted with a recovery window: bring it back, then make it what the stack
                // says.
                Some(d) if d.deleted_date().is_some() => {
                    aws.secretsmanager
                        .restore_secret()
                        .secret_id(&spec.name)
                        .send()
                        .await
                        .map_err(failed("RestoreSecret"))?;
                    // What it had before deletion is unknown: set description, key and every
                    // tag.
                    update_definition(aws, spec).await?;
                    let untagged = SecretSpec {
                        tags: BTreeMap::new(),
                        ..spec.clone()
                    };
                    update(aws, spec, &untagged).await
                }
                // Deleted for good, and the name not free yet: wait it out.
                _ => {
                    eventual::retry(
                        &spec.name,
                        aws.patience.propagation,
                        name_pending_deletion as Transient,
                        || create_once(aws, spec),
                    )
                    .await?;
                    Ok(())
                }
            }
        }
        // It exists, though the plan read it as missing (a lagging listing, or an interrupted
        // apply): converge it if it is this resource, refuse it otherwise.
        Err(e) if e.is("ResourceExistsException") => {
            let live = describe(aws, &spec.name)
                .await?
                .ok_or_else(|| OpError::Aws(e.clone()))?;
            let live = spec_of(&spec.name, &live);
            let ours = [
                crate::model::TAG_STACK,
                crate::model::TAG_ENV,
                crate::model::TAG_ADDRESS,
            ]
            .iter()
            .all(|k| spec.tags.contains_key(*k) && spec.tags.get(*k) == live.tags.get(*k));
            if !ours {
                return Err(OpError::Refused(format!(
                    "secret `{}` exists but does not carry this resource's ownership tags; \
                     it is not this stack's to take",
                    spec.name
                )));
            }
            update(aws, spec, &live).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn create_once(aws: &Aws, spec: &SecretSpec) -> Result<(), AwsError> {
    aws.secretsmanager
        .create_secret()
        .name(&spec.name)
        .description(&spec.description)
        .set_kms_key_id(spec.kms_key_id.clone())
        .set_tags(Some(sm_tags(&spec.tags)))
        .send()
        .await
        .map_err(failed("CreateSecret"))?;
    Ok(())
}

async fn update_definition(aws: &Aws, desired: &SecretSpec) -> Result<(), OpError> {
    aws.secretsmanager
        .update_secret()
        .secret_id(&desired.name)
        .description(&desired.description)
        .set_kms_key_id(desired.kms_key_id.clone())
        .send()
        .await
        .map_err(failed("UpdateSecret"))?;
    Ok(())
}

pub async fn update(aws: &Aws, desired: &SecretSpec, live: &SecretSpec) -> Result<(), OpError> {
    if desired.description != live.description || desired.kms_key_id != live.kms_key_id {
        update_definition(aws, desired).await?;
    }
    let delta = TagDelta::between(&desired.tags, &live.tags);
    if !delta.set.is_empty() {
        aws.secretsmanager
            .tag_resource()
            .secret_id(&desired.name)
            .set_tags(Some(sm_tags(&delta.set)))
            .send()
            .await
            .map_err(failed("TagResource"))?;
    }
    if !delta.remove.is_empty() {
        aws.secretsmanager
            .untag_resource()
            .secret_id(&desired.name)
            .set_tag_keys(Some(delta.remove.into_iter().collect()))
            .send()
            .await
            .map_err(failed("UntagResource"))?;
    }
    Ok(())
}

/// Deletes a secret: with a recovery window in a protected environment, at once elsewhere.
pub async fn delete(aws: &Aws, target: &Target, name: &str) -> Result<(), OpError> {
    let mut request = aws.secretsmanager.delete_secret().secret_id(name);
    request = if target.protected {
        request.recovery_window_in_days(PROTECTED_RECOVERY_DAYS)
    } else {
        request.force_delete_without_recovery(true)
    };
    request
        .send()
        .await
        .map_err(failed("DeleteSecret"))
        .or_missing(NOT_FOUND)?;
    Ok(())
}

/// Writes `value` as the secret's new current version. The caller has checked it.
pub async fn put_value(aws: &Aws, name: &str, value: String) -> Result<(), AwsError> {
    aws.secretsmanager
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .map_err(failed("PutSecretValue"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth() -> SecretFormat {
        SecretFormat::Json {
            required: vec!["access_token".into(), "expires_at".into()],
            timestamps: vec!["expires_at".into()],
        }
    }

    #[test]
    fn values_are_checked_without_quoting_them() {
        let secret = "s3cr3t-VALUE";
        let cases = [
            (String::new(), ValueError::Empty),
            (
                format!("{{\"access_token\": \"{secret}\""),
                ValueError::NotJson {
                    line: 1,
                    column: 31,
                },
            ),
            (format!("[\"{secret}\"]"), ValueError::NotObject),
            (
                format!("{{\"access_token\": \"{secret}\"}}"),
                ValueError::Missing(vec!["expires_at".into()]),
            ),
            (
                format!("{{\"access_token\": \"{secret}\", \"expires_at\": \"{secret}\"}}"),
                ValueError::NotTimestamp("expires_at".into()),
            ),
            (
                format!("{{\"access_token\": 1, \"expires_at\": \"{secret}\"}}"),
                ValueError::NotString("access_token".into()),
            ),
        ];
        for (value, expected) in cases {
            let err = check_value(&oauth(), &value).unwrap_err();
            assert_eq!(err, expected);
            assert!(!err.to_string().contains(secret), "{err}");
        }
        let good =
            format!("{{\"access_token\": \"{secret}\", \"expires_at\": \"2026-12-31T00:00:00Z\"}}");
        assert_eq!(check_value(&oauth(), &good), Ok(()));
        assert_eq!(check_value(&SecretFormat::Text, secret), Ok(()));
    }
}
