//! Rotation of a Secrets Manager secret by a Lambda function every N days: a resource of its
//! own (as Terraform's `aws_secretsmanager_secret_rotation`), so that the rotation function's
//! role can grant on the secret without a dependency cycle (secret <- role <- function <-
//! rotation). Its identity is the secret's name.
//!
//! Read: from the same ListSecrets answer as the secrets ([`SecretListing`]): no call of its
//! own. Create and update: RotateSecret with `RotateImmediately=false`, so enabling rotation
//! never rotates a value on the spot (Secrets Manager only tests the function), retried
//! within bounds while Secrets Manager cannot invoke the function yet (aws-behaviors.md,
//! aws_secretsmanager_secret_rotation: `AccessDeniedException` right after the invoke
//! permission was added). Delete: CancelRotateSecret.

use std::collections::BTreeSet;

use aws_sdk_secretsmanager::config::interceptors::InterceptorContext;
use aws_sdk_secretsmanager::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_secretsmanager::types::RotationRulesType;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::secret::SecretListing;
use super::{Fields, Invalid, LiveMap, OpError, ReadTarget};
use crate::aws::{Aws, AwsError, OrMissing, failed};
use crate::eventual::{self, Transient};
use crate::model::{Address, Kind, KindSpec, LambdaSpec, Ref, Spec, Target};

pub const REPLACE_FIELDS: &[&str] = &[];

/// aws-behaviors.md, aws_secretsmanager_secret_rotation, Retries: RotateSecret is retried on
/// `AccessDeniedException` ("Secrets Manager cannot invoke the specified Lambda function").
fn invoke_propagating(e: &AwsError) -> Option<&'static str> {
    e.is("AccessDeniedException")
        .then_some("the rotation function's invoke permission is not effective yet")
}

/// RotateSecret's server errors are settled by reading the configuration back (see [`put`]),
/// not by sending it again; throttling and network failures keep the SDK's usual retries
/// (a classifier that forbids a retry overrides every other one).
#[derive(Debug)]
struct ServerErrorsAreNotRetried;

impl ClassifyRetry for ServerErrorsAreNotRetried {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.response() {
            Some(response) if response.status().is_server_error() => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "RotateSecret server errors are read back"
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretRotationSpec {
    /// The secret's name.
    pub secret: String,
    /// The rotation function's ARN.
    pub function_arn: String,
    pub after_days: i64,
    #[serde(default)]
    pub references: BTreeSet<Address>,
}

impl SecretRotationSpec {
    pub fn new<S>(secret: &Ref<S>, function: &Ref<LambdaSpec>, after_days: i64) -> Self {
        SecretRotationSpec {
            secret: secret.name.clone(),
            function_arn: function.arn.clone(),
            after_days,
            references: BTreeSet::from([secret.address.clone(), function.address.clone()]),
        }
    }
}

impl KindSpec for SecretRotationSpec {
    const KIND: Kind = Kind::SecretRotation;
    fn physical_name(&self) -> &str {
        &self.secret
    }
    fn arn(&self, target: &Target) -> String {
        super::secret::arn_pattern(target, &self.secret)
    }
    fn into_spec(self) -> Spec {
        Spec::SecretRotation(self)
    }
}

pub fn validate(spec: &SecretRotationSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    if !(1..=1000).contains(&spec.after_days) {
        problems.push(Invalid::new(
            "after_days",
            format!(
                "{}: Secrets Manager rotates every 1 to 1000 days",
                spec.after_days
            ),
        ));
    }
    if !spec.function_arn.starts_with("arn:aws:lambda:") {
        problems.push(Invalid::new(
            "function_arn",
            format!("`{}` is not a Lambda function ARN", spec.function_arn),
        ));
    }
    problems
}

/// `AWS::SecretsManager::RotationSchedule`; like the engine, it does not rotate at once.
pub fn cloudformation(spec: &SecretRotationSpec) -> crate::cloudformation::CfnResource {
    crate::cloudformation::CfnResource::main(
        "AWS::SecretsManager::RotationSchedule",
        serde_json::json!({
            "SecretId": spec.secret,
            "RotationLambdaARN": spec.function_arn,
            "RotationRules": {"AutomaticallyAfterDays": spec.after_days},
            "RotateImmediatelyOnUpdate": false,
        }),
    )
}

pub fn fields(spec: &SecretRotationSpec) -> Fields {
    Fields::from([
        (
            "function_arn".to_string(),
            Value::String(spec.function_arn.clone()),
        ),
        ("after_days".to_string(), Value::from(spec.after_days)),
    ])
}

pub fn read(listing: &SecretListing, targets: &[ReadTarget]) -> LiveMap {
    targets
        .iter()
        .map(|t| {
            let spec = listing
                .secrets
                .get(&t.physical_id)
                .filter(|entry| entry.rotation_enabled() == Some(true))
                .map(|entry| {
                    Spec::SecretRotation(SecretRotationSpec {
                        secret: t.physical_id.clone(),
                        function_arn: entry.rotation_lambda_arn().unwrap_or_default().to_string(),
                        after_days: entry
                            .rotation_rules()
                            .and_then(RotationRulesType::automatically_after_days)
                            .unwrap_or_default(),
                        references: BTreeSet::new(),
                    })
                });
            (t.address.clone(), spec)
        })
        .collect()
}

/// Sets the rotation function and schedule. If Secrets Manager answers with a server error,
/// the configuration may or may not have been stored (the emulator stores it, then fails
/// while testing a secret that has no value yet): read it back and go by what is there.
pub async fn put(aws: &Aws, spec: &SecretRotationSpec) -> Result<(), OpError> {
    let sent = eventual::retry(
        &spec.secret,
        aws.patience.propagation,
        invoke_propagating as Transient,
        || async {
            aws.secretsmanager
                .rotate_secret()
                .secret_id(&spec.secret)
                .rotation_lambda_arn(&spec.function_arn)
                .rotation_rules(
                    RotationRulesType::builder()
                        .automatically_after_days(spec.after_days)
                        .build(),
                )
                .rotate_immediately(false)
                .customize()
                .config_override(
                    aws_sdk_secretsmanager::config::Builder::default()
                        .retry_classifier(ServerErrorsAreNotRetried),
                )
                .send()
                .await
                .map_err(failed("RotateSecret"))
        },
    )
    .await;
    let error = match sent {
        Ok(_) => return Ok(()),
        Err(eventual::RetryError::Aws(error)) => error,
        Err(gave_up) => return Err(gave_up.into()),
    };
    let server_error = error.http_status.is_some_and(|s| s >= 500);
    if !server_error {
        return Err(error.into());
    }
    let error = error.sent_once();
    let described = aws
        .secretsmanager
        .describe_secret()
        .secret_id(&spec.secret)
        .send()
        .await
        .map_err(failed("DescribeSecret"))?;
    let in_place = described.rotation_enabled() == Some(true)
        && described.rotation_lambda_arn() == Some(spec.function_arn.as_str())
        && described
            .rotation_rules()
            .and_then(RotationRulesType::automatically_after_days)
            == Some(spec.after_days);
    if in_place {
        tracing::warn!(
            secret = %spec.secret,
            "RotateSecret failed ({}: {}), but the rotation configuration is in place",
            error.code,
            error.message
        );
        Ok(())
    } else {
        Err(error.into())
    }
}

pub async fn delete(aws: &Aws, secret: &str) -> Result<(), OpError> {
    aws.secretsmanager
        .cancel_rotate_secret()
        .secret_id(secret)
        .send()
        .await
        .map_err(failed("CancelRotateSecret"))
        .or_missing(super::secret::NOT_FOUND)?;
    Ok(())
}
