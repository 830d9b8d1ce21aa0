//! S3 buckets: encryption, public access block, versioning, lifecycle rules, tags.
//!
//! Read: one ListBuckets for existence, then five GETs per existing bucket (S3 has no batch
//! read of bucket configuration). Nothing but the name forces replacement.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, Delete, ExpirationStatus,
    LifecycleExpiration, LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectIdentifier,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    TransitionStorageClass, VersioningConfiguration,
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{DeleteOptions, Fields, Invalid, LiveMap, OpError, ReadTarget, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, failed};
use crate::cloudformation::{CfnResource, non_empty, tag_list};
use crate::eventual::Transient;
use crate::model::{Kind, KindSpec, Spec, Target};
use serde_json::json;

pub const REPLACE_FIELDS: &[&str] = &[];

/// aws-behaviors.md, aws_s3_bucket, Not found: `NoSuchBucket` from any call.
const NO_BUCKET: NotFound = NotFound::codes(&["NoSuchBucket"]);
/// aws-behaviors.md, aws_s3_bucket, "Absent" codes per sub-call: no configuration of that
/// kind, not an error.
const NO_ENCRYPTION: NotFound =
    NotFound::codes(&["ServerSideEncryptionConfigurationNotFoundError"]);
const NO_PUBLIC_ACCESS_BLOCK: NotFound = NotFound::codes(&["NoSuchPublicAccessBlockConfiguration"]);
const NO_LIFECYCLE: NotFound = NotFound::codes(&["NoSuchLifecycleConfiguration"]);
const NO_TAGS: NotFound = NotFound::codes(&["NoSuchTagSet"]);

/// aws-behaviors.md, aws_s3_bucket, Retries: CreateBucket is retried on `OperationAborted`
/// (a bucket of that name deleted moments ago).
fn create_aborted(e: &AwsError) -> Option<&'static str> {
    e.is("OperationAborted")
        .then_some("the name of a bucket deleted moments ago is not free yet")
}

/// aws-behaviors.md, aws_s3_bucket, Retries: right after CreateBucket the configuration Puts
/// retry `NoSuchBucket` (and `OperationAborted`) until the new bucket is visible.
pub(crate) fn new_bucket_settling(e: &AwsError) -> Option<&'static str> {
    (e.is("NoSuchBucket") || e.is("OperationAborted"))
        .then_some("S3 eventual consistency: the new bucket is not visible yet")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BucketSpec {
    pub name: String,
    pub encryption: Encryption,
    pub public_access_block: PublicAccessBlock,
    pub versioning: bool,
    #[serde(default)]
    pub lifecycle_rules: Vec<LifecycleRule>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Default encryption of new objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Encryption {
    /// Live only: no default encryption configured.
    None,
    /// SSE-S3 (AES256).
    SseS3,
    /// SSE-KMS with the AWS managed key (`key_id: None`) or a customer key.
    Kms {
        key_id: Option<String>,
        bucket_key: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    pub const ALL: PublicAccessBlock = PublicAccessBlock {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };
    pub const NONE: PublicAccessBlock = PublicAccessBlock {
        block_public_acls: false,
        ignore_public_acls: false,
        block_public_policy: false,
        restrict_public_buckets: false,
    };
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    pub id: String,
    /// Key prefix the rule applies to; empty for the whole bucket.
    pub prefix: String,
    pub enabled: bool,
    pub expiration_days: Option<i32>,
    #[serde(default)]
    pub transitions: Vec<Transition>,
    pub noncurrent_expiration_days: Option<i32>,
    pub abort_incomplete_multipart_days: Option<i32>,
}

impl LifecycleRule {
    pub fn new(id: &str, prefix: &str) -> LifecycleRule {
        LifecycleRule {
            id: id.to_string(),
            prefix: prefix.to_string(),
            enabled: true,
            expiration_days: None,
            transitions: Vec::new(),
            noncurrent_expiration_days: None,
            abort_incomplete_multipart_days: None,
        }
    }
    pub fn expire_after(mut self, days: i32) -> LifecycleRule {
        self.expiration_days = Some(days);
        self
    }
    pub fn transition(mut self, days: i32, storage_class: &str) -> LifecycleRule {
        self.transitions.push(Transition {
            days,
            storage_class: storage_class.to_string(),
        });
        self
    }
    pub fn expire_noncurrent_after(mut self, days: i32) -> LifecycleRule {
        self.noncurrent_expiration_days = Some(days);
        self
    }
    pub fn abort_multipart_after(mut self, days: i32) -> LifecycleRule {
        self.abort_incomplete_multipart_days = Some(days);
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub days: i32,
    pub storage_class: String,
}

/// Storage classes a lifecycle transition may target, with the fewest days AWS accepts.
const TRANSITION_CLASSES: &[(&str, i32)] = &[
    ("STANDARD_IA", 30),
    ("ONEZONE_IA", 30),
    ("INTELLIGENT_TIERING", 0),
    ("GLACIER_IR", 0),
    ("GLACIER", 0),
    ("DEEP_ARCHIVE", 0),
];

impl KindSpec for BucketSpec {
    const KIND: Kind = Kind::Bucket;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, _target: &Target) -> String {
        format!("arn:aws:s3:::{}", self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::Bucket(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

/// S3's bucket naming rules (general purpose buckets).
pub fn validate_name(name: &str) -> Result<(), String> {
    let len = name.len();
    if !(3..=63).contains(&len) {
        return Err(format!(
            "`{name}` is {len} characters; bucket names are 3 to 63"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(format!(
            "`{name}`: bucket names use only lowercase letters, digits, `-` and `.`"
        ));
    }
    let first = name.chars().next().unwrap_or('-');
    let last = name.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(format!(
            "`{name}`: bucket names start and end with a letter or digit"
        ));
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(format!("`{name}`: bucket names have no `..`, `.-` or `-.`"));
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err(format!("`{name}`: bucket names are not IP addresses"));
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(format!("`{name}`: the prefix `{prefix}` is reserved"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Err(format!("`{name}`: the suffix `{suffix}` is reserved"));
        }
    }
    Ok(())
}

pub fn validate(spec: &BucketSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    if let Err(message) = validate_name(&spec.name) {
        problems.push(Invalid::new("name", message));
    }
    if spec.encryption == Encryption::None {
        problems.push(Invalid::new(
            "encryption",
            "buckets are encrypted (SSE-S3 or KMS)",
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    for rule in &spec.lifecycle_rules {
        let field = format!("lifecycle_rules.{}", rule.id);
        if rule.id.is_empty() || rule.id.len() > 255 {
            problems.push(Invalid::new(&field, "rule ids are 1 to 255 characters"));
        }
        if !ids.insert(rule.id.clone()) {
            problems.push(Invalid::new(&field, "duplicate rule id"));
        }
        for days in [
            rule.expiration_days,
            rule.noncurrent_expiration_days,
            rule.abort_incomplete_multipart_days,
        ]
        .into_iter()
        .flatten()
        {
            if days < 1 {
                problems.push(Invalid::new(
                    &field,
                    format!("{days} days: lifecycle days are at least 1"),
                ));
            }
        }
        let mut last_days = -1;
        for t in &rule.transitions {
            match TRANSITION_CLASSES
                .iter()
                .find(|(c, _)| *c == t.storage_class)
            {
                None => problems.push(Invalid::new(
                    &field,
                    format!("unknown transition storage class `{}`", t.storage_class),
                )),
                Some((class, min)) if t.days < *min => problems.push(Invalid::new(
                    &field,
                    format!(
                        "transition to {class} after {} days; S3 requires at least {min}",
                        t.days
                    ),
                )),
                _ => {}
            }
            if t.days <= last_days {
                problems.push(Invalid::new(
                    &field,
                    "transitions must be in increasing days",
                ));
            }
            last_days = t.days;
            if let Some(exp) = rule.expiration_days
                && exp <= t.days
            {
                problems.push(Invalid::new(
                    &field,
                    format!(
                        "expiration after {exp} days comes before the transition at {} days",
                        t.days
                    ),
                ));
            }
        }
        if rule.expiration_days.is_none()
            && rule.transitions.is_empty()
            && rule.noncurrent_expiration_days.is_none()
            && rule.abort_incomplete_multipart_days.is_none()
        {
            problems.push(Invalid::new(
                &field,
                "a lifecycle rule needs at least one action",
            ));
        }
    }
    problems
}

/// `AWS::S3::Bucket`: encryption, public access block, versioning, lifecycle and tags in one
/// resource.
pub fn cloudformation(spec: &BucketSpec) -> CfnResource {
    let encryption = match &spec.encryption {
        Encryption::None => Value::Null,
        Encryption::SseS3 => json!({"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]}),
        Encryption::Kms { key_id, bucket_key } => json!({"ServerSideEncryptionConfiguration": [{
            "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_id},
            "BucketKeyEnabled": bucket_key,
        }]}),
    };
    let rules: Vec<Value> = spec
        .lifecycle_rules
        .iter()
        .map(|rule| {
            let transitions: Vec<Value> = rule
                .transitions
                .iter()
                .map(|t| json!({"StorageClass": t.storage_class, "TransitionInDays": t.days}))
                .collect();
            json!({
                "Id": rule.id,
                "Prefix": non_empty(&rule.prefix),
                "Status": if rule.enabled { "Enabled" } else { "Disabled" },
                "ExpirationInDays": rule.expiration_days,
                "Transitions": (!transitions.is_empty()).then_some(transitions),
                "NoncurrentVersionExpiration": rule
                    .noncurrent_expiration_days
                    .map(|days| json!({"NoncurrentDays": days})),
                "AbortIncompleteMultipartUpload": rule
                    .abort_incomplete_multipart_days
                    .map(|days| json!({"DaysAfterInitiation": days})),
            })
        })
        .collect();
    let block = &spec.public_access_block;
    CfnResource::main(
        "AWS::S3::Bucket",
        json!({
            "BucketName": spec.name,
            "BucketEncryption": encryption,
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": block.block_public_acls,
                "IgnorePublicAcls": block.ignore_public_acls,
                "BlockPublicPolicy": block.block_public_policy,
                "RestrictPublicBuckets": block.restrict_public_buckets,
            },
            "VersioningConfiguration": spec.versioning.then(|| json!({"Status": "Enabled"})),
            "LifecycleConfiguration": (!rules.is_empty()).then(|| json!({"Rules": rules})),
            "Tags": tag_list(&spec.tags),
        }),
    )
}

pub fn fields(spec: &BucketSpec) -> Fields {
    let mut fields = Fields::new();
    fields.insert(
        "encryption".into(),
        serde_json::to_value(&spec.encryption).unwrap_or(Value::Null),
    );
    fields.insert(
        "public_access_block".into(),
        serde_json::to_value(spec.public_access_block).unwrap_or(Value::Null),
    );
    fields.insert(
        "versioning".into(),
        Value::String(
            if spec.versioning {
                "Enabled"
            } else {
                "Disabled"
            }
            .into(),
        ),
    );
    for rule in &spec.lifecycle_rules {
        let mut rule = rule.clone();
        rule.transitions.sort_by_key(|t| t.days);
        fields.insert(
            format!("lifecycle_rules.{}", rule.id),
            serde_json::to_value(&rule).unwrap_or(Value::Null),
        );
    }
    tag_fields(&spec.tags, &mut fields);
    fields
}

pub async fn read(aws: &Aws, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
    let mut live = LiveMap::new();
    if targets.is_empty() {
        return Ok(live);
    }
    let existing = list_buckets(aws).await?;
    // ListBuckets is eventually consistent: a bucket state knows is read directly even when
    // the listing lacks it (its reads then say NoSuchBucket if it is really gone).
    let found: Vec<&ReadTarget> = targets
        .iter()
        .filter(|t| existing.contains(&t.physical_id) || t.known)
        .collect();
    for t in targets {
        live.insert(t.address.clone(), None);
    }
    let specs: Vec<(crate::model::Address, Option<BucketSpec>)> = stream::iter(found)
        .map(|t| async move {
            Ok::<_, AwsError>((t.address.clone(), read_one(aws, &t.physical_id).await?))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for (address, spec) in specs {
        live.insert(address, spec.map(Spec::Bucket));
    }
    Ok(live)
}

pub async fn list_buckets(aws: &Aws) -> Result<std::collections::BTreeSet<String>, AwsError> {
    let mut names = std::collections::BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let out = aws
            .s3
            .list_buckets()
            .max_buckets(1000)
            .set_continuation_token(token.clone())
            .send()
            .await
            .map_err(failed("ListBuckets"))?;
        names.extend(
            out.buckets()
                .iter()
                .filter_map(|b| b.name().map(str::to_string)),
        );
        match out.continuation_token() {
            Some(next) if !next.is_empty() && Some(next) != token.as_deref() => {
                token = Some(next.to_string())
            }
            _ => break,
        }
    }
    Ok(names)
}

/// Reads one bucket's configuration; `None` if it vanished meanwhile.
async fn read_one(aws: &Aws, name: &str) -> Result<Option<BucketSpec>, AwsError> {
    let s3 = &aws.s3;
    let (encryption, pab, versioning, lifecycle, tagging) = tokio::join!(
        s3.get_bucket_encryption().bucket(name).send(),
        s3.get_public_access_block().bucket(name).send(),
        s3.get_bucket_versioning().bucket(name).send(),
        s3.get_bucket_lifecycle_configuration().bucket(name).send(),
        s3.get_bucket_tagging().bucket(name).send(),
    );
    // A sub-call's NoSuchBucket means the bucket is gone; its own "absent" code means no
    // configuration of that kind.
    let versioning = match versioning.map_err(failed("GetBucketVersioning")) {
        Ok(v) => v,
        Err(e) if NO_BUCKET.matches(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let encryption = match encryption.map_err(failed("GetBucketEncryption")) {
        Ok(out) => out
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| {
                let bucket_key = r.bucket_key_enabled().unwrap_or(false);
                r.apply_server_side_encryption_by_default()
                    .map(|d| match d.sse_algorithm() {
                        ServerSideEncryption::Aes256 => Encryption::SseS3,
                        _ => Encryption::Kms {
                            key_id: d.kms_master_key_id().map(str::to_string),
                            bucket_key,
                        },
                    })
            })
            .unwrap_or(Encryption::None),
        Err(e) if NO_BUCKET.matches(&e) => return Ok(None),
        Err(e) if NO_ENCRYPTION.matches(&e) => Encryption::None,
        Err(e) => return Err(e),
    };
    let public_access_block = match pab.map_err(failed("GetPublicAccessBlock")) {
        Ok(out) => out
            .public_access_block_configuration()
            .map(|c| PublicAccessBlock {
                block_public_acls: c.block_public_acls().unwrap_or(false),
                ignore_public_acls: c.ignore_public_acls().unwrap_or(false),
                block_public_policy: c.block_public_policy().unwrap_or(false),
                restrict_public_buckets: c.restrict_public_buckets().unwrap_or(false),
            })
            .unwrap_or(PublicAccessBlock::NONE),
        Err(e) if NO_BUCKET.matches(&e) => return Ok(None),
        Err(e) if NO_PUBLIC_ACCESS_BLOCK.matches(&e) => PublicAccessBlock::NONE,
        Err(e) => return Err(e),
    };
    let lifecycle_rules = match lifecycle.map_err(failed("GetBucketLifecycleConfiguration")) {
        Ok(out) => out.rules().iter().map(rule_from_aws).collect(),
        Err(e) if NO_BUCKET.matches(&e) => return Ok(None),
        Err(e) if NO_LIFECYCLE.matches(&e) => Vec::new(),
        Err(e) => return Err(e),
    };
    let tags = match tagging.map_err(failed("GetBucketTagging")) {
        Ok(out) => out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        Err(e) if NO_BUCKET.matches(&e) => return Ok(None),
        Err(e) if NO_TAGS.matches(&e) => BTreeMap::new(),
        Err(e) => return Err(e),
    };
    let mut lifecycle_rules: Vec<LifecycleRule> = lifecycle_rules;
    lifecycle_rules.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Some(BucketSpec {
        name: name.to_string(),
        encryption,
        public_access_block,
        versioning: versioning.status() == Some(&BucketVersioningStatus::Enabled),
        lifecycle_rules,
        tags,
    }))
}

fn rule_from_aws(rule: &aws_sdk_s3::types::LifecycleRule) -> LifecycleRule {
    #[allow(deprecated)]
    let prefix = rule
        .filter()
        .and_then(|f| f.prefix())
        .or(rule.prefix())
        .unwrap_or("")
        .to_string();
    LifecycleRule {
        id: rule.id().unwrap_or("").to_string(),
        prefix,
        enabled: rule.status() == &ExpirationStatus::Enabled,
        expiration_days: rule.expiration().and_then(|e| e.days()),
        transitions: rule
            .transitions()
            .iter()
            .map(|t| Transition {
                days: t.days().unwrap_or(0),
                storage_class: t
                    .storage_class()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        noncurrent_expiration_days: rule
            .noncurrent_version_expiration()
            .and_then(|e| e.noncurrent_days()),
        abort_incomplete_multipart_days: rule
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
    }
}

pub async fn create(aws: &Aws, target: &Target, spec: &BucketSpec) -> Result<(), OpError> {
    let mut request = aws.s3.create_bucket().bucket(&spec.name);
    if target.region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(target.region.as_str()))
                .build(),
        );
    }
    let bound = aws.patience.propagation;
    let created = crate::eventual::retry(&spec.name, bound, create_aborted as Transient, || {
        let request = request.clone();
        async move { request.send().await.map_err(failed("CreateBucket")) }
    })
    .await;
    match created {
        Ok(_) => {}
        // Ours already (an earlier, interrupted apply created it): configure it below.
        Err(crate::eventual::RetryError::Aws(e)) if e.is("BucketAlreadyOwnedByYou") => {}
        Err(e) => return Err(e.into()),
    }
    let settle = new_bucket_settling as Transient;
    // Public access is blocked before anything else can be written.
    super::retry_op(&spec.name, bound, settle, || {
        put_public_access_block(aws, spec)
    })
    .await?;
    super::retry_op(&spec.name, bound, settle, || put_encryption(aws, spec)).await?;
    super::retry_op(&spec.name, bound, settle, || put_tags(aws, spec)).await?;
    if spec.versioning {
        super::retry_op(&spec.name, bound, settle, || put_versioning(aws, spec)).await?;
    }
    super::retry_op(&spec.name, bound, settle, || put_lifecycle(aws, spec)).await?;
    Ok(())
}

/// Brings the bucket to `desired`. On a bucket `just_created` (by an interrupted apply), the
/// Puts wait out a new bucket's settling as create's do.
pub async fn update(
    aws: &Aws,
    desired: &BucketSpec,
    live: &BucketSpec,
    just_created: bool,
) -> Result<(), OpError> {
    let bound = if just_created {
        aws.patience.propagation
    } else {
        std::time::Duration::ZERO
    };
    let settle = new_bucket_settling as Transient;
    let name = &desired.name;
    if desired.public_access_block != live.public_access_block {
        super::retry_op(name, bound, settle, || {
            put_public_access_block(aws, desired)
        })
        .await?;
    }
    if desired.encryption != live.encryption {
        super::retry_op(name, bound, settle, || put_encryption(aws, desired)).await?;
    }
    if desired.versioning != live.versioning {
        super::retry_op(name, bound, settle, || put_versioning(aws, desired)).await?;
    }
    let desired_fields = fields(desired);
    let live_fields = fields(live);
    let lifecycle_differs = desired_fields
        .iter()
        .filter(|(k, _)| k.starts_with("lifecycle_rules."))
        .ne(live_fields
            .iter()
            .filter(|(k, _)| k.starts_with("lifecycle_rules.")));
    if lifecycle_differs {
        super::retry_op(name, bound, settle, || put_lifecycle(aws, desired)).await?;
    }
    let tags_differ = desired_fields
        .iter()
        .filter(|(k, _)| k.starts_with("tags."))
        .ne(live_fields.iter().filter(|(k, _)| k.starts_with("tags.")));
    if tags_differ {
        super::retry_op(name, bound, settle, || put_tags(aws, desired)).await?;
    }
    Ok(())
}

async fn put_public_access_block(aws: &Aws, spec: &BucketSpec) -> Result<(), OpError> {
    let p = spec.public_access_block;
    aws.s3
        .put_public_access_block()
        .bucket(&spec.name)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(p.block_public_acls)
                .ignore_public_acls(p.ignore_public_acls)
                .block_public_policy(p.block_public_policy)
                .restrict_public_buckets(p.restrict_public_buckets)
                .build(),
        )
        .send()
        .await
        .map_err(failed("PutPublicAccessBlock"))?;
    Ok(())
}

async fn put_encryption(aws: &Aws, spec: &BucketSpec) -> Result<(), OpError> {
    let rule = match &spec.encryption {
        Encryption::None => {
            aws.s3
                .delete_bucket_encryption()
                .bucket(&spec.name)
                .send()
                .await
                .map_err(failed("DeleteBucketEncryption"))?;
            return Ok(());
        }
        Encryption::SseS3 => ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()?,
            )
            .build(),
        Encryption::Kms { key_id, bucket_key } => ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::AwsKms)
                    .set_kms_master_key_id(key_id.clone())
                    .build()?,
            )
            .bucket_key_enabled(*bucket_key)
            .build(),
    };
    aws.s3
        .put_bucket_encryption()
        .bucket(&spec.name)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()?,
        )
        .send()
        .await
        .map_err(failed("PutBucketEncryption"))?;
    Ok(())
}

async fn put_versioning(aws: &Aws, spec: &BucketSpec) -> Result<(), OpError> {
    let status = if spec.versioning {
        BucketVersioningStatus::Enabled
    } else {
        BucketVersioningStatus::Suspended
    };
    aws.s3
        .put_bucket_versioning()
        .bucket(&spec.name)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .map_err(failed("PutBucketVersioning"))?;
    Ok(())
}

async fn put_lifecycle(aws: &Aws, spec: &BucketSpec) -> Result<(), OpError> {
    if spec.lifecycle_rules.is_empty() {
        aws.s3
            .delete_bucket_lifecycle()
            .bucket(&spec.name)
            .send()
            .await
            .map_err(failed("DeleteBucketLifecycle"))?;
        return Ok(());
    }
    let mut rules = Vec::new();
    for rule in &spec.lifecycle_rules {
        let mut b = aws_sdk_s3::types::LifecycleRule::builder()
            .id(&rule.id)
            .filter(LifecycleRuleFilter::builder().prefix(&rule.prefix).build())
            .status(if rule.enabled {
                ExpirationStatus::Enabled
            } else {
                ExpirationStatus::Disabled
            });
        if let Some(days) = rule.expiration_days {
            b = b.expiration(LifecycleExpiration::builder().days(days).build());
        }
        for t in &rule.transitions {
            b = b.transitions(
                aws_sdk_s3::types::Transition::builder()
                    .days(t.days)
                    .storage_class(TransitionStorageClass::from(t.storage_class.as_str()))
                    .build(),
            );
        }
        if let Some(days) = rule.noncurrent_expiration_days {
            b = b.noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(days)
                    .build(),
            );
        }
        if let Some(days) = rule.abort_incomplete_multipart_days {
            b = b.abort_incomplete_multipart_upload(
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(days)
                    .build(),
            );
        }
        rules.push(b.build()?);
    }
    aws.s3
        .put_bucket_lifecycle_configuration()
        .bucket(&spec.name)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(rules))
                .build()?,
        )
        .send()
        .await
        .map_err(failed("PutBucketLifecycleConfiguration"))?;
    Ok(())
}

async fn put_tags(aws: &Aws, spec: &BucketSpec) -> Result<(), OpError> {
    let mut tags = Vec::new();
    for (k, v) in &spec.tags {
        tags.push(Tag::builder().key(k).value(v).build()?);
    }
    if tags.is_empty() {
        aws.s3
            .delete_bucket_tagging()
            .bucket(&spec.name)
            .send()
            .await
            .map_err(failed("DeleteBucketTagging"))?;
        return Ok(());
    }
    aws.s3
        .put_bucket_tagging()
        .bucket(&spec.name)
        .tagging(Tagging::builder().set_tag_set(Some(tags)).build()?)
        .send()
        .await
        .map_err(failed("PutBucketTagging"))?;
    Ok(())
}

pub async fn delete(aws: &Aws, name: &str, options: DeleteOptions) -> Result<(), OpError> {
    if options.purge_data {
        purge(aws, name).await?;
    }
    match aws
        .s3
        .delete_bucket()
        .bucket(name)
        .send()
        .await
        .map_err(failed("DeleteBucket"))
    {
        Ok(_) => Ok(()),
        Err(e) if e.is("NoSuchBucket") => Ok(()),
        Err(e) if e.is("BucketNotEmpty") => Err(OpError::Refused(format!(
            "bucket {name} is not empty; `infra destroy --purge-data` deletes its objects, \
             every version and delete marker first ({e})"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Deletes every object version and delete marker, 1,000 per DeleteObjects call.
pub async fn purge(aws: &Aws, name: &str) -> Result<u64, OpError> {
    let mut deleted = 0;
    loop {
        let out = match aws
            .s3
            .list_object_versions()
            .bucket(name)
            .max_keys(1000)
            .send()
            .await
            .map_err(failed("ListObjectVersions"))
        {
            Ok(out) => out,
            Err(e) if e.is("NoSuchBucket") => return Ok(deleted),
            Err(e) => return Err(e.into()),
        };
        let mut ids = Vec::new();
        for v in out.versions() {
            if let Some(key) = v.key() {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(v.version_id().map(str::to_string))
                        .build()?,
                );
            }
        }
        for m in out.delete_markers() {
            if let Some(key) = m.key() {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(m.version_id().map(str::to_string))
                        .build()?,
                );
            }
        }
        if ids.is_empty() {
            return Ok(deleted);
        }
        for chunk in ids.chunks(1000) {
            let result = aws
                .s3
                .delete_objects()
                .bucket(name)
                .delete(
                    Delete::builder()
                        .set_objects(Some(chunk.to_vec()))
                        .quiet(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(failed("DeleteObjects"))?;
            if let Some(err) = result.errors().first() {
                return Err(OpError::Aws(AwsError {
                    operation: "DeleteObjects".into(),
                    code: err.code().unwrap_or("Unknown").to_string(),
                    message: format!(
                        "{}: {}",
                        err.key().unwrap_or(""),
                        err.message().unwrap_or("")
                    ),
                    http_status: None,
                }));
            }
            deleted += chunk.len() as u64;
        }
    }
}
