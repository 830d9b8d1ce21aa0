//! Who is calling: the guard every env command passes before any other AWS call. An env file
//! names the account and region its resources live in; credentials of another account would
//! read (and apply would write) that other account, and a shell set to another region says
//! the operator meant another place. Both stop the command, naming the two values.

use aws_config::meta::region::ProvideRegion;

use crate::aws::{Aws, AwsError, failed};
use crate::model::Target;

/// The identity the credentials resolve to (STS `GetCallerIdentity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account: String,
    pub arn: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error(
        "the env file names account {expected} (`account_id`), but the AWS credentials are of \
         account {actual} ({arn}). Nothing was read or changed: use credentials of account \
         {expected} (e.g. AWS_PROFILE), or fix `account_id`"
    )]
    WrongAccount {
        expected: String,
        actual: String,
        arn: String,
    },
    #[error(
        "the env file names region {expected} (`region`), but {setting} says {actual}. Nothing \
         was read or changed: set {setting} to {expected} (or unset it) for this env"
    )]
    WrongRegion {
        expected: String,
        actual: String,
        setting: &'static str,
    },
    #[error("cannot tell which AWS account the credentials are of: {0}")]
    Unknown(#[from] AwsError),
}

/// Checks the credentials' account and the operator's configured region against `target`.
pub async fn verify(aws: &Aws, target: &Target) -> Result<Caller, CallerError> {
    if let Some((actual, setting)) = configured_region().await
        && actual != target.region
    {
        return Err(CallerError::WrongRegion {
            expected: target.region.clone(),
            actual,
            setting,
        });
    }
    let identity = aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(failed("GetCallerIdentity"))?;
    let caller = Caller {
        account: identity.account().unwrap_or_default().to_string(),
        arn: identity.arn().unwrap_or_default().to_string(),
    };
    if caller.account != target.account_id {
        return Err(CallerError::WrongAccount {
            expected: target.account_id.clone(),
            actual: caller.account,
            arn: caller.arn,
        });
    }
    Ok(caller)
}

/// The region the operator's environment names, and where: `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, else the active profile's `region`. Instance metadata is not asked:
/// a runner's own region says nothing about where the operator means to deploy.
async fn configured_region() -> Option<(String, &'static str)> {
    for variable in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Ok(value) = std::env::var(variable)
            && !value.trim().is_empty()
        {
            return Some((value.trim().to_string(), variable));
        }
    }
    aws_config::profile::ProfileFileRegionProvider::new()
        .region()
        .await
        .map(|region| (region.as_ref().to_string(), "the AWS profile's `region`"))
}
