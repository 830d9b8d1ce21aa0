//! Built-in policy checks on the desired model, run before any plan: the settings that quietly
//! open data to the world or leave an incident invisible. Each rule has a stable id; the only
//! way past a violation is a waiver on that resource naming the rule and saying why
//! (`Stack::waive`, or `[[waivers]]` in the env file), and waived violations stay visible.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::kinds::alarm::AlarmMetric;
use crate::kinds::bucket::{Encryption, PublicAccessBlock};
use crate::model::{Address, Kind, Resource, Spec, Stack};

/// One built-in rule. Ids are stable: waivers and CI configuration refer to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Rule {
    BucketEncrypted,
    BucketPublicAccessBlocked,
    IamNoWildcardAction,
    IamWildcardResource,
    IamAwsManagedPolicy,
    LogGroupRetention,
    LambdaErrorsAlarm,
    FunctionUrlAuth,
    SecretRotationFunction,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::BucketEncrypted,
        Rule::BucketPublicAccessBlocked,
        Rule::IamNoWildcardAction,
        Rule::IamWildcardResource,
        Rule::IamAwsManagedPolicy,
        Rule::LogGroupRetention,
        Rule::LambdaErrorsAlarm,
        Rule::FunctionUrlAuth,
        Rule::SecretRotationFunction,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::BucketEncrypted => "S3-ENCRYPTED",
            Rule::BucketPublicAccessBlocked => "S3-PUBLIC-ACCESS-BLOCKED",
            Rule::IamNoWildcardAction => "IAM-NO-WILDCARD-ACTION",
            Rule::IamWildcardResource => "IAM-WILDCARD-RESOURCE",
            Rule::IamAwsManagedPolicy => "IAM-AWS-MANAGED-POLICY",
            Rule::LogGroupRetention => "LOGS-RETENTION",
            Rule::LambdaErrorsAlarm => "LAMBDA-ERRORS-ALARM",
            Rule::FunctionUrlAuth => "LAMBDA-URL-AUTH",
            Rule::SecretRotationFunction => "SECRET-ROTATION-FUNCTION",
        }
    }

    /// What the rule requires, in one line.
    pub fn requirement(self) -> &'static str {
        match self {
            Rule::BucketEncrypted => "every bucket encrypts new objects by default",
            Rule::BucketPublicAccessBlocked => {
                "every bucket blocks all four kinds of public access"
            }
            Rule::IamNoWildcardAction => {
                "no IAM statement allows `*` or a whole service (`s3:*`) as an action"
            }
            Rule::IamWildcardResource => {
                "`\"Resource\": \"*\"` only for actions that support no resource-level permissions"
            }
            Rule::IamAwsManagedPolicy => {
                "no role attaches an AWS-managed policy (`arn:aws:iam::aws:policy/...`): grant what it needs inline"
            }
            Rule::LogGroupRetention => "every log group has a retention period",
            Rule::LambdaErrorsAlarm => "every Lambda function has an alarm on its Errors metric",
            Rule::FunctionUrlAuth => "no Function URL with auth type NONE",
            Rule::SecretRotationFunction => {
                "every secret rotation names a rotation function of the stack"
            }
        }
    }

    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// A rule a resource breaks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Violation {
    pub rule: Rule,
    pub address: Address,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]: {}", self.address, self.rule, self.message)
    }
}

/// The outcome of checking a stack.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// Violations without a waiver: any of these fails the plan.
    pub violations: Vec<Violation>,
    /// Violations a waiver allows, with the waiver's reason.
    pub waived: Vec<(Violation, String)>,
    /// Waivers that allow nothing (the rule passes, or the rule id is unknown): stale
    /// exceptions that should be removed.
    pub unused_waivers: Vec<(Address, String)>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Actions that support no resource-level permissions, so `"Resource": "*"` is the only way to
/// grant them (IAM's service authorization reference). Any other action must name resources.
pub const ACTIONS_WITHOUT_RESOURCES: &[&str] = &[
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
    "logs:DescribeLogGroups",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "s3:ListAllMyBuckets",
    "secretsmanager:GetRandomPassword",
    "secretsmanager:ListSecrets",
    "sts:GetCallerIdentity",
    "athena:ListWorkGroups",
    "kms:ListAliases",
    // The registry's login token: ECR defines no resource type for it (image pulls themselves,
    // `ecr:BatchGetImage` and the layer actions, name their repositories).
    "ecr:GetAuthorizationToken",
];

/// Whether `arn` is an AWS-managed policy (`arn:<partition>:iam::aws:policy/...`): written and
/// changed by AWS, not by this stack, and broad by design (`AWSGlueServiceRole` grants `glue:*`
/// on `*`), so the rules on inline policies cannot see what it grants.
pub fn is_aws_managed_policy(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(
        parts.as_slice(),
        ["arn", partition, "iam", "", "aws", resource]
            if partition.starts_with("aws") && resource.starts_with("policy/")
    )
}

/// Checks every resource of `stack` against every rule.
pub fn check(stack: &Stack) -> Report {
    let mut found = Vec::new();
    for resource in &stack.resources {
        found.extend(check_resource(stack, resource));
    }
    let mut report = Report::default();
    let mut used: BTreeSet<(Address, String)> = BTreeSet::new();
    for violation in found {
        let waiver = stack
            .get(&violation.address)
            .and_then(|r| r.waivers.get(violation.rule.id()));
        match waiver {
            Some(reason) => {
                used.insert((violation.address.clone(), violation.rule.id().to_string()));
                report.waived.push((violation, reason.clone()));
            }
            None => report.violations.push(violation),
        }
    }
    for resource in &stack.resources {
        for rule in resource.waivers.keys() {
            if !used.contains(&(resource.address.clone(), rule.clone())) {
                report
                    .unused_waivers
                    .push((resource.address.clone(), rule.clone()));
            }
        }
    }
    report.violations.sort();
    report
}

fn check_resource(stack: &Stack, resource: &Resource) -> Vec<Violation> {
    let at = |rule: Rule, message: String| Violation {
        rule,
        address: resource.address.clone(),
        message,
    };
    let mut out = Vec::new();
    match &resource.spec {
        Spec::Bucket(bucket) => {
            if bucket.encryption == Encryption::None {
                out.push(at(
                    Rule::BucketEncrypted,
                    format!("bucket `{}` has no default encryption", bucket.name),
                ));
            }
            if bucket.public_access_block != PublicAccessBlock::ALL {
                out.push(at(
                    Rule::BucketPublicAccessBlocked,
                    format!(
                        "bucket `{}` does not block all public access (all four settings must be true)",
                        bucket.name
                    ),
                ));
            }
        }
        Spec::Role(role) => {
            for (name, document) in &role.inline_policies {
                for problem in policy_problems(&document.canonical()) {
                    out.push(at(
                        problem.0,
                        format!("inline policy `{name}`: {}", problem.1),
                    ));
                }
            }
            for arn in &role.managed_policies {
                if is_aws_managed_policy(arn) {
                    out.push(at(
                        Rule::IamAwsManagedPolicy,
                        format!(
                            "role `{}` attaches the AWS-managed policy `{arn}`, whose grants AWS \
                             sets and the policy rules cannot check: grant what the role needs in \
                             an inline policy",
                            role.name
                        ),
                    ));
                }
            }
        }
        Spec::LogGroup(group) if group.retention_days.is_none() => {
            out.push(at(
                Rule::LogGroupRetention,
                format!("log group `{}` keeps events forever", group.name),
            ));
        }
        Spec::Lambda(function) if !has_errors_alarm(stack, &function.name) => {
            out.push(at(
                Rule::LambdaErrorsAlarm,
                format!(
                    "no alarm watches AWS/Lambda Errors for FunctionName={}",
                    function.name
                ),
            ));
        }
        Spec::FunctionUrl(url) if url.auth_type != "AWS_IAM" => {
            out.push(at(
                Rule::FunctionUrlAuth,
                format!(
                    "the URL of `{}` has auth type {}: anyone could call it",
                    url.function, url.auth_type
                ),
            ));
        }
        Spec::SecretRotation(rotation) => {
            let is_function = stack
                .resources
                .iter()
                .any(|r| r.address.kind == Kind::Lambda && r.arn == rotation.function_arn);
            if !is_function {
                out.push(at(
                    Rule::SecretRotationFunction,
                    format!(
                        "rotation of `{}` names `{}`, which is not a Lambda function of this stack",
                        rotation.secret, rotation.function_arn
                    ),
                ));
            }
        }
        _ => {}
    }
    out
}

/// Errors alarms on `function`: a single-metric alarm, or any metric of a math alarm.
fn has_errors_alarm(stack: &Stack, function: &str) -> bool {
    let watches = |m: &crate::kinds::alarm::MetricStat| {
        m.namespace == "AWS/Lambda"
            && m.metric == "Errors"
            && m.dimensions.get("FunctionName").map(String::as_str) == Some(function)
    };
    stack.resources.iter().any(|r| match &r.spec {
        Spec::Alarm(alarm) => match &alarm.metric {
            AlarmMetric::Single(m) => watches(m),
            AlarmMetric::Math { metrics, .. } => metrics.values().any(watches),
        },
        _ => false,
    })
}

/// Problems of one policy document (in canonical form: `Statement` a list, `Action` and
/// `Resource` lists).
pub fn policy_problems(document: &Value) -> Vec<(Rule, String)> {
    let mut out = Vec::new();
    let statements = document
        .get("Statement")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (index, statement) in statements.iter().enumerate() {
        if statement.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let label = match statement.get("Sid").and_then(Value::as_str) {
            Some(sid) => format!("statement `{sid}`"),
            None => format!("statement {}", index + 1),
        };
        if statement.get("NotAction").is_some() {
            out.push((
                Rule::IamNoWildcardAction,
                format!("{label} allows NotAction, i.e. every other action"),
            ));
        }
        let actions = strings(statement.get("Action"));
        for action in &actions {
            if action == "*" || action.ends_with(":*") {
                out.push((
                    Rule::IamNoWildcardAction,
                    format!("{label} allows `{action}`"),
                ));
            }
        }
        let resources = strings(statement.get("Resource"));
        if resources.iter().any(|r| r == "*") {
            let needless: Vec<&String> = actions
                .iter()
                .filter(|a| !ACTIONS_WITHOUT_RESOURCES.contains(&a.as_str()))
                .collect();
            if !needless.is_empty() {
                out.push((
                    Rule::IamWildcardResource,
                    format!(
                        "{label} grants {} on `\"Resource\": \"*\"`, but {} resource-level \
                         permissions: name the resources",
                        needless
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        if needless.len() == 1 {
                            "it supports"
                        } else {
                            "they support"
                        }
                    ),
                ));
            }
        }
    }
    out
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_ids_are_unique_and_round_trip() {
        let ids: BTreeSet<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), Rule::ALL.len());
        for rule in Rule::ALL {
            assert_eq!(Rule::from_id(rule.id()), Some(rule));
        }
    }

    #[test]
    fn wildcard_actions_and_resources_are_caught() {
        let doc = json!({"Statement": [
            {"Sid": "All", "Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b/*"]},
            {"Sid": "Star", "Effect": "Allow", "Action": ["*"], "Resource": ["arn:aws:s3:::b"]},
            {"Sid": "Metrics", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"], "Resource": ["*"]},
            {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject", "cloudwatch:PutMetricData"], "Resource": ["*"]},
            {"Sid": "Deny", "Effect": "Deny", "Action": ["*"], "Resource": ["*"]},
        ]});
        let problems = policy_problems(&doc);
        let rules: Vec<(Rule, &str)> = problems
            .iter()
            .map(|(r, m)| (*r, m.split(' ').nth(1).unwrap_or("")))
            .collect();
        assert_eq!(
            rules,
            vec![
                (Rule::IamNoWildcardAction, "`All`"),
                (Rule::IamNoWildcardAction, "`Star`"),
                (Rule::IamWildcardResource, "`Read`"),
            ]
        );
        assert!(problems[2].1.contains("`s3:GetObject`"));
        assert!(!problems[2].1.contains("PutMetricData"));
    }

    #[test]
    fn ecr_login_alone_may_use_a_wildcard_resource() {
        let doc = json!({"Statement": [
            {"Sid": "Login", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
            {"Sid": "Pull", "Effect": "Allow", "Action": ["ecr:BatchGetImage"], "Resource": ["*"]},
        ]});
        let problems = policy_problems(&doc);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, Rule::IamWildcardResource);
        assert!(problems[0].1.contains("`Pull`") && problems[0].1.contains("ecr:BatchGetImage"));
    }

    #[test]
    fn aws_managed_policies_are_told_from_the_account_s_own() {
        for arn in [
            "arn:aws:iam::aws:policy/AdministratorAccess",
            "arn:aws:iam::aws:policy/service-role/AWSGlueServiceRole",
            "arn:aws-us-gov:iam::aws:policy/ReadOnlyAccess",
            "arn:aws-cn:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        ] {
            assert!(is_aws_managed_policy(arn), "{arn}");
        }
        for arn in [
            "arn:aws:iam::123456789012:policy/linkedin-ads-reader",
            "arn:aws:iam::aws:role/AdministratorAccess",
            "AdministratorAccess",
            "",
        ] {
            assert!(!is_aws_managed_policy(arn), "{arn}");
        }
    }

    fn stack_with_role(managed: &[&str]) -> (Stack, crate::model::Ref<crate::model::RoleSpec>) {
        use crate::model::{PolicyDocument, RoleSpec, StateLocation, Statement, Target};
        let mut stack = Stack::new(Target {
            stack: "s".into(),
            project: "p".into(),
            env: "dev".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            protected: false,
            state: StateLocation {
                bucket: "state".into(),
                prefix: "p/dev".into(),
            },
        });
        let mut role = RoleSpec::for_service("p-dev-worker".into(), "lambda.amazonaws.com", "w")
            .inline(
                "worker",
                PolicyDocument::new(vec![
                    Statement::allow(["s3:GetObject"]).on("arn:aws:s3:::p-dev-data/in/*"),
                ]),
            );
        for arn in managed {
            role = role.managed(arn);
        }
        let role = stack.add("worker", role);
        (stack, role)
    }

    #[test]
    fn an_aws_managed_policy_on_a_role_fails_unless_waived() {
        let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
        let (mut stack, role) = stack_with_role(&[admin]);
        let report = check(&stack);
        assert!(!report.passed());
        assert_eq!(report.violations.len(), 1, "{report:?}");
        let violation = &report.violations[0];
        assert_eq!(violation.rule.id(), "IAM-AWS-MANAGED-POLICY");
        assert_eq!(violation.address.to_string(), "role.worker");
        assert!(violation.message.contains(admin), "{violation}");
        assert!(
            violation.to_string().contains("[IAM-AWS-MANAGED-POLICY]"),
            "{violation}"
        );

        // A waiver with a reason lets it through, and stays visible.
        let reason = "break-glass role of ticket SEC-7, removed after the audit";
        stack.waive(&role, Rule::IamAwsManagedPolicy, reason);
        let report = check(&stack);
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.waived.len(), 1);
        assert_eq!(report.waived[0].0.rule, Rule::IamAwsManagedPolicy);
        assert_eq!(report.waived[0].1, reason);
        assert!(report.unused_waivers.is_empty());
    }

    #[test]
    fn a_customer_managed_policy_is_not_an_aws_managed_one() {
        let (mut stack, role) =
            stack_with_role(&["arn:aws:iam::123456789012:policy/p-dev-worker-extra"]);
        assert!(check(&stack).passed());
        // A waiver of a rule that passes allows nothing, and is reported as stale.
        stack.waive(
            &role,
            Rule::IamAwsManagedPolicy,
            "no longer needed, see SEC-7",
        );
        let report = check(&stack);
        assert!(report.passed());
        assert_eq!(
            report.unused_waivers,
            vec![(role.address.clone(), "IAM-AWS-MANAGED-POLICY".to_string())]
        );
    }
}
