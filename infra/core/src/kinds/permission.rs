//! Lambda invoke permissions (statements of a function's resource policy): who may invoke
//! the function, limited by source ARN or source account.
//!
//! Read: GetPolicy once per function answers every statement. AWS has no update: any change
//! replaces the statement. The physical id is `<function>/<statement id>`.
//!
//! AWS loses permission changes sent to one function in parallel (aws-behaviors.md,
//! aws_lambda_permission: the provider holds a per-function mutex), so changes to one
//! function's policy go one at a time here too, whatever the apply's parallelism. Add and
//! remove retry, within bounds, a function that is not visible yet or is busy being created
//! or updated.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget};
use crate::aws::{Aws, AwsError, OrMissing, failed};
use crate::cloudformation::CfnResource;
use crate::eventual::{self, Transient};
use crate::model::{Address, Kind, KindSpec, LambdaSpec, PolicyDocument, Ref, Spec, Target};
use serde_json::json;

/// One lock per function: changes to its resource policy are made one at a time.
static POLICY_LOCKS: LazyLock<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

/// Waits for `function`'s turn to change its policy; the turn lasts as long as the guard.
async fn policy_turn(function: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let lock = {
        let mut locks = match POLICY_LOCKS.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(locks.entry(function.to_string()).or_default())
    };
    lock.lock_owned().await
}

/// aws-behaviors.md, aws_lambda_permission, Retries: AddPermission is retried on
/// `ResourceNotFoundException` (a function not visible yet) and on the conflict of a function
/// being created or updated.
fn adding(e: &AwsError) -> Option<&'static str> {
    if e.is("ResourceNotFoundException") {
        return Some("Lambda eventual consistency: the function is not visible yet");
    }
    super::lambda::busy(e)
}

pub const REPLACE_FIELDS: &[&str] = &[
    "action",
    "principal",
    "source_arn",
    "source_account",
    "function",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PermissionSpec {
    pub function: String,
    pub statement_id: String,
    pub action: String,
    /// A service principal, e.g. `events.amazonaws.com`.
    pub principal: String,
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
    #[serde(default)]
    pub references: BTreeSet<Address>,
}

impl PermissionSpec {
    /// `service` may invoke `function`, only from `source` (e.g. an EventBridge rule).
    pub fn invoke_from<S>(
        function: &Ref<LambdaSpec>,
        statement_id: &str,
        service: &str,
        source: &Ref<S>,
    ) -> PermissionSpec {
        PermissionSpec {
            function: function.name.clone(),
            statement_id: statement_id.into(),
            action: "lambda:InvokeFunction".into(),
            principal: service.into(),
            source_arn: Some(source.arn.clone()),
            source_account: None,
            references: BTreeSet::from([function.address.clone(), source.address.clone()]),
        }
    }

    /// `service` may invoke `function` on behalf of resources of `account` only.
    pub fn invoke_for_account(
        function: &Ref<LambdaSpec>,
        statement_id: &str,
        service: &str,
        account: &str,
    ) -> PermissionSpec {
        PermissionSpec {
            function: function.name.clone(),
            statement_id: statement_id.into(),
            action: "lambda:InvokeFunction".into(),
            principal: service.into(),
            source_arn: None,
            source_account: Some(account.into()),
            references: BTreeSet::from([function.address.clone()]),
        }
    }

    fn id(&self) -> String {
        format!("{}/{}", self.function, self.statement_id)
    }
}

impl KindSpec for PermissionSpec {
    const KIND: Kind = Kind::Permission;
    fn physical_name(&self) -> &str {
        // Never called for naming: the physical id is built by `Stack::add` from this.
        &self.statement_id
    }
    fn physical_id(&self) -> String {
        self.id()
    }
    fn arn(&self, target: &Target) -> String {
        format!(
            "{}#{}",
            super::lambda::arn(target, &self.function),
            self.statement_id
        )
    }
    fn into_spec(self) -> Spec {
        Spec::Permission(self)
    }
}

pub fn validate(spec: &PermissionSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if spec.statement_id.is_empty()
        || spec.statement_id.len() > 100
        || !spec.statement_id.chars().all(ok)
    {
        problems.push(Invalid::new(
            "statement_id",
            format!("`{}`: 1 to 100 of A-Z a-z 0-9 - _", spec.statement_id),
        ));
    }
    if spec.action != "lambda:InvokeFunction" && spec.action != "lambda:InvokeFunctionUrl" {
        problems.push(Invalid::new(
            "action",
            format!(
                "`{}`: lambda:InvokeFunction or lambda:InvokeFunctionUrl",
                spec.action
            ),
        ));
    }
    if spec.principal == "*" {
        problems.push(Invalid::new(
            "principal",
            "`*` would let anyone invoke the function",
        ));
    }
    if spec.principal.ends_with(".amazonaws.com")
        && spec.source_arn.is_none()
        && spec.source_account.is_none()
    {
        problems.push(Invalid::new(
            "principal",
            format!("{} without source_arn or source_account would let any account's resources invoke the function", spec.principal),
        ));
    }
    problems
}

/// `AWS::Lambda::Permission`. CloudFormation names the statement itself (it has no
/// statement id property), so a template's statements differ from the engine's by id only.
pub fn cloudformation(spec: &PermissionSpec) -> CfnResource {
    CfnResource::main(
        "AWS::Lambda::Permission",
        json!({
            "FunctionName": spec.function,
            "Action": spec.action,
            "Principal": spec.principal,
            "SourceArn": spec.source_arn,
            "SourceAccount": spec.source_account,
        }),
    )
}

pub fn fields(spec: &PermissionSpec) -> Fields {
    let text = |v: &Option<String>| v.clone().map(Value::String).unwrap_or(Value::Null);
    Fields::from([
        ("function".to_string(), Value::String(spec.function.clone())),
        ("action".to_string(), Value::String(spec.action.clone())),
        (
            "principal".to_string(),
            Value::String(spec.principal.clone()),
        ),
        ("source_arn".to_string(), text(&spec.source_arn)),
        ("source_account".to_string(), text(&spec.source_account)),
    ])
}

pub async fn read(aws: &Aws, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
    let mut by_function: BTreeMap<String, Vec<&ReadTarget>> = BTreeMap::new();
    for t in targets {
        let function = t
            .physical_id
            .split_once('/')
            .map(|(f, _)| f)
            .unwrap_or(&t.physical_id);
        by_function.entry(function.to_string()).or_default().push(t);
    }
    let policies: Vec<(String, BTreeMap<String, PermissionSpec>)> =
        stream::iter(by_function.keys().cloned())
            .map(|function| async move {
                let statements = read_policy(aws, &function).await?;
                Ok::<_, AwsError>((function, statements))
            })
            .buffer_unordered(8)
            .try_collect()
            .await?;
    let policies: BTreeMap<String, BTreeMap<String, PermissionSpec>> =
        policies.into_iter().collect();
    let mut live = LiveMap::new();
    for (function, ts) in by_function {
        for t in ts {
            let sid = t
                .physical_id
                .split_once('/')
                .map(|(_, s)| s)
                .unwrap_or_default();
            let spec = policies.get(&function).and_then(|p| p.get(sid)).cloned();
            live.insert(t.address.clone(), spec.map(Spec::Permission));
        }
    }
    Ok(live)
}

/// The function's resource policy statements by id; none if the function or policy is gone.
async fn read_policy(
    aws: &Aws,
    function: &str,
) -> Result<BTreeMap<String, PermissionSpec>, AwsError> {
    // aws-behaviors.md, aws_lambda_permission, Not found: `ResourceNotFoundException` (no
    // policy, or no function).
    let Some(out) = aws
        .lambda
        .get_policy()
        .function_name(function)
        .send()
        .await
        .map_err(failed("GetPolicy"))
        .or_missing(super::lambda::NOT_FOUND)?
    else {
        return Ok(BTreeMap::new());
    };
    let Ok(policy) = PolicyDocument::parse_aws(out.policy().unwrap_or("{}")) else {
        return Ok(BTreeMap::new());
    };
    let canonical = policy.canonical();
    let mut statements = BTreeMap::new();
    for s in canonical["Statement"].as_array().into_iter().flatten() {
        let Some(sid) = s["Sid"].as_str() else {
            continue;
        };
        let first = |v: &Value| {
            v.as_array()
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let condition = |op: &str, key: &str| {
            s["Condition"][op]
                .as_object()
                .and_then(|keys| {
                    keys.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(key))
                        .map(|(_, v)| v)
                })
                .and_then(first)
        };
        statements.insert(
            sid.to_string(),
            PermissionSpec {
                function: function.to_string(),
                statement_id: sid.to_string(),
                action: first(&s["Action"]).unwrap_or_default(),
                principal: first(&s["Principal"]["Service"])
                    .or_else(|| first(&s["Principal"]["AWS"]))
                    .unwrap_or_default(),
                source_arn: condition("ArnLike", "AWS:SourceArn")
                    .or_else(|| condition("ArnEquals", "AWS:SourceArn")),
                source_account: condition("StringEquals", "AWS:SourceAccount"),
                references: BTreeSet::new(),
            },
        );
    }
    Ok(statements)
}

pub async fn create(aws: &Aws, spec: &PermissionSpec) -> Result<(), OpError> {
    let _turn = policy_turn(&spec.function).await;
    match add(aws, spec).await {
        Ok(()) => Ok(()),
        // The statement id exists (an interrupted apply): replace it with ours, once.
        Err(OpError::Aws(e)) if e.is("ResourceConflictException") => {
            remove(aws, &spec.function, &spec.statement_id).await?;
            add(aws, spec).await
        }
        Err(e) => Err(e),
    }
}

async fn add(aws: &Aws, spec: &PermissionSpec) -> Result<(), OpError> {
    eventual::retry(
        &spec.id(),
        aws.patience.propagation,
        adding as Transient,
        || async {
            aws.lambda
                .add_permission()
                .function_name(&spec.function)
                .statement_id(&spec.statement_id)
                .action(&spec.action)
                .principal(&spec.principal)
                .set_source_arn(spec.source_arn.clone())
                .set_source_account(spec.source_account.clone())
                .send()
                .await
                .map_err(failed("AddPermission"))
        },
    )
    .await?;
    Ok(())
}

async fn remove(aws: &Aws, function: &str, sid: &str) -> Result<(), OpError> {
    eventual::retry(
        &format!("{function}/{sid}"),
        aws.patience.propagation,
        super::lambda::busy as Transient,
        || async {
            aws.lambda
                .remove_permission()
                .function_name(function)
                .statement_id(sid)
                .send()
                .await
                .map_err(failed("RemovePermission"))
                // The statement or the whole function is gone already.
                .or_missing(super::lambda::NOT_FOUND)
        },
    )
    .await?;
    Ok(())
}

pub async fn delete(aws: &Aws, physical_id: &str) -> Result<(), OpError> {
    let Some((function, sid)) = physical_id.split_once('/') else {
        return Err(OpError::Refused(format!(
            "`{physical_id}` is not <function>/<statement id>"
        )));
    };
    let _turn = policy_turn(function).await;
    remove(aws, function, sid).await
}
