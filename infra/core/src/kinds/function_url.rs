//! Lambda Function URLs: an HTTPS endpoint for a function. Only `AWS_IAM` auth is accepted:
//! `NONE` would let anyone on the internet invoke the function, and is rejected at plan time.
//!
//! Read: GetFunctionUrlConfig per function. Auth type and invoke mode update in place. The
//! physical id is the function's name.

use std::collections::BTreeSet;

use aws_sdk_lambda::types::{FunctionUrlAuthType, InvokeMode};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget};
use crate::aws::{Aws, AwsError, OrMissing, failed};
use crate::cloudformation::CfnResource;
use crate::eventual::{self, Transient};
use crate::model::{Address, Kind, KindSpec, LambdaSpec, Ref, Spec, Target};
use serde_json::json;

pub const REPLACE_FIELDS: &[&str] = &[];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionUrlSpec {
    pub function: String,
    /// `AWS_IAM` (signed requests from principals allowed to invoke the URL).
    pub auth_type: String,
    /// `BUFFERED` or `RESPONSE_STREAM`.
    pub invoke_mode: String,
    #[serde(default)]
    pub references: BTreeSet<Address>,
}

impl FunctionUrlSpec {
    /// A URL for `function` that only signed (IAM-authorized) requests may call.
    pub fn aws_iam(function: &Ref<LambdaSpec>) -> FunctionUrlSpec {
        FunctionUrlSpec {
            function: function.name.clone(),
            auth_type: "AWS_IAM".into(),
            invoke_mode: "BUFFERED".into(),
            references: BTreeSet::from([function.address.clone()]),
        }
    }
}

impl KindSpec for FunctionUrlSpec {
    const KIND: Kind = Kind::FunctionUrl;
    fn physical_name(&self) -> &str {
        &self.function
    }
    fn arn(&self, target: &Target) -> String {
        super::lambda::arn(target, &self.function)
    }
    fn into_spec(self) -> Spec {
        Spec::FunctionUrl(self)
    }
}

pub fn validate(spec: &FunctionUrlSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    match spec.auth_type.as_str() {
        "AWS_IAM" => {}
        "NONE" => problems.push(Invalid::new(
            "auth_type",
            "NONE makes the function callable by anyone on the internet, unauthenticated; use AWS_IAM",
        )),
        other => problems.push(Invalid::new("auth_type", format!("`{other}`: AWS_IAM"))),
    }
    if !matches!(spec.invoke_mode.as_str(), "BUFFERED" | "RESPONSE_STREAM") {
        problems.push(Invalid::new(
            "invoke_mode",
            format!("`{}`: BUFFERED or RESPONSE_STREAM", spec.invoke_mode),
        ));
    }
    problems
}

/// `AWS::Lambda::Url`.
pub fn cloudformation(spec: &FunctionUrlSpec) -> CfnResource {
    CfnResource::main(
        "AWS::Lambda::Url",
        json!({
            "TargetFunctionArn": spec.function,
            "AuthType": spec.auth_type,
            "InvokeMode": spec.invoke_mode,
        }),
    )
}

pub fn fields(spec: &FunctionUrlSpec) -> Fields {
    Fields::from([
        (
            "auth_type".to_string(),
            Value::String(spec.auth_type.clone()),
        ),
        (
            "invoke_mode".to_string(),
            Value::String(spec.invoke_mode.clone()),
        ),
    ])
}

pub async fn read(aws: &Aws, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
    let found: Vec<(Address, Option<FunctionUrlSpec>)> = stream::iter(targets.iter().cloned())
        .map(|t| async move {
            let out = aws
                .lambda
                .get_function_url_config()
                .function_name(&t.physical_id)
                .send()
                .await
                .map_err(failed("GetFunctionUrlConfig"));
            let spec = match out {
                Ok(out) => Some(FunctionUrlSpec {
                    function: t.physical_id.clone(),
                    auth_type: out.auth_type().as_str().to_string(),
                    invoke_mode: out
                        .invoke_mode()
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_else(|| "BUFFERED".into()),
                    references: BTreeSet::new(),
                }),
                // aws-behaviors.md, aws_lambda_function_url, Not found.
                Err(e) if super::lambda::NOT_FOUND.matches(&e) => None,
                Err(e) => return Err(e),
            };
            Ok((t.address, spec))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    Ok(found
        .into_iter()
        .map(|(a, s)| (a, s.map(Spec::FunctionUrl)))
        .collect())
}

pub async fn create(aws: &Aws, spec: &FunctionUrlSpec) -> Result<(), OpError> {
    let result = eventual::retry(
        &spec.function,
        aws.patience.propagation,
        super::lambda::busy as Transient,
        || async {
            aws.lambda
                .create_function_url_config()
                .function_name(&spec.function)
                .auth_type(FunctionUrlAuthType::from(spec.auth_type.as_str()))
                .invoke_mode(InvokeMode::from(spec.invoke_mode.as_str()))
                .send()
                .await
                .map_err(failed("CreateFunctionUrlConfig"))
        },
    )
    .await;
    match result {
        Ok(_) => Ok(()),
        // It exists (an interrupted apply): make it what the stack says.
        Err(e) if e.aws().is("ResourceConflictException") => update(aws, spec).await,
        Err(e) => Err(e.into()),
    }
}

pub async fn update(aws: &Aws, spec: &FunctionUrlSpec) -> Result<(), OpError> {
    eventual::retry(
        &spec.function,
        aws.patience.propagation,
        super::lambda::busy as Transient,
        || async {
            aws.lambda
                .update_function_url_config()
                .function_name(&spec.function)
                .auth_type(FunctionUrlAuthType::from(spec.auth_type.as_str()))
                .invoke_mode(InvokeMode::from(spec.invoke_mode.as_str()))
                .send()
                .await
                .map_err(failed("UpdateFunctionUrlConfig"))
        },
    )
    .await?;
    Ok(())
}

pub async fn delete(aws: &Aws, function: &str) -> Result<(), OpError> {
    eventual::retry(
        function,
        aws.patience.propagation,
        super::lambda::busy as Transient,
        || async {
            aws.lambda
                .delete_function_url_config()
                .function_name(function)
                .send()
                .await
                .map_err(failed("DeleteFunctionUrlConfig"))
                .or_missing(super::lambda::NOT_FOUND)
        },
    )
    .await?;
    Ok(())
}
