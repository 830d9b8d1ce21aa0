//! CloudWatch dashboards: a name and a JSON body, compared as canonical JSON (key order and
//! whitespace never show up as a change).
//!
//! Read: ListDashboards by the names' common prefix (paged), then GetDashboard per existing
//! dashboard. PutDashboard is an upsert. CloudWatch does not tag dashboards, so ownership is
//! by name, like the other untagged kinds.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::model::{Address, Kind, KindSpec, Spec, Target};

pub const REPLACE_FIELDS: &[&str] = &[];

/// aws-behaviors.md, aws_cloudwatch_dashboard, Not found: code `ResourceNotFound`, without
/// "Exception".
const NOT_FOUND: NotFound = NotFound::codes(&["ResourceNotFound"]);

/// CloudWatch's limit on a dashboard body.
const MAX_BODY_BYTES: usize = 1_048_576;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DashboardSpec {
    pub name: String,
    /// The dashboard body: `{"widgets": [...]}`, as CloudWatch documents it.
    pub body: Value,
}

impl KindSpec for DashboardSpec {
    const KIND: Kind = Kind::Dashboard;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        // Dashboards are global to the account: their ARN has no region.
        format!(
            "arn:aws:cloudwatch::{}:dashboard/{}",
            target.account_id, self.name
        )
    }
    fn into_spec(self) -> Spec {
        Spec::Dashboard(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

pub fn validate(spec: &DashboardSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if spec.name.is_empty() || spec.name.len() > 255 || !spec.name.chars().all(ok) {
        problems.push(Invalid::new(
            "name",
            format!(
                "`{}`: dashboard names are 1 to 255 of A-Z a-z 0-9 - _",
                spec.name
            ),
        ));
    }
    match spec.body.get("widgets") {
        Some(Value::Array(widgets)) => {
            if widgets.len() > 500 {
                problems.push(Invalid::new("body.widgets", "at most 500 widgets"));
            }
            for (i, widget) in widgets.iter().enumerate() {
                if widget.get("type").and_then(Value::as_str).is_none() {
                    problems.push(Invalid::new(
                        format!("body.widgets[{i}]"),
                        "every widget has a `type`",
                    ));
                }
            }
        }
        _ => problems.push(Invalid::new(
            "body",
            "a dashboard body has a `widgets` array",
        )),
    }
    if spec.body.to_string().len() > MAX_BODY_BYTES {
        problems.push(Invalid::new("body", "larger than CloudWatch's 1 MB"));
    }
    problems
}

/// `AWS::CloudWatch::Dashboard`: the body as the JSON text CloudWatch stores.
pub fn cloudformation(spec: &DashboardSpec) -> crate::cloudformation::CfnResource {
    crate::cloudformation::CfnResource::main(
        "AWS::CloudWatch::Dashboard",
        serde_json::json!({"DashboardName": spec.name, "DashboardBody": spec.body.to_string()}),
    )
}

pub fn fields(spec: &DashboardSpec) -> Fields {
    // serde_json's maps are sorted: the value itself is the canonical form.
    Fields::from([("body".to_string(), spec.body.clone())])
}

pub async fn read(aws: &Aws, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
    let mut live = LiveMap::new();
    if targets.is_empty() {
        return Ok(live);
    }
    let prefix = super::common_prefix(targets.iter().map(|t| t.physical_id.as_str()));
    let mut names = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut request = aws
            .cloudwatch
            .list_dashboards()
            .set_next_token(token.clone());
        if !prefix.is_empty() {
            request = request.dashboard_name_prefix(&prefix);
        }
        let page = request.send().await.map_err(failed("ListDashboards"))?;
        names.extend(
            page.dashboard_entries()
                .iter()
                .filter_map(|d| d.dashboard_name().map(str::to_string)),
        );
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    for t in targets {
        live.insert(t.address.clone(), None);
    }
    let existing: Vec<(Address, String)> = targets
        .iter()
        .filter(|t| names.contains(&t.physical_id))
        .map(|t| (t.address.clone(), t.physical_id.clone()))
        .collect();
    let bodies: Vec<(Address, Option<DashboardSpec>)> = stream::iter(existing)
        .map(|(address, name)| async move {
            let out = aws
                .cloudwatch
                .get_dashboard()
                .dashboard_name(&name)
                .send()
                .await
                .map_err(failed("GetDashboard"))
                .or_missing(NOT_FOUND)?;
            let spec = out.map(|o| {
                let text = o.dashboard_body().unwrap_or_default();
                DashboardSpec {
                    name: name.clone(),
                    body: serde_json::from_str(text)
                        .unwrap_or_else(|_| Value::String(text.to_string())),
                }
            });
            Ok::<_, AwsError>((address, spec))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for (address, spec) in bodies {
        live.insert(address, spec.map(Spec::Dashboard));
    }
    Ok(live)
}

pub async fn put(aws: &Aws, spec: &DashboardSpec) -> Result<(), OpError> {
    let out = aws
        .cloudwatch
        .put_dashboard()
        .dashboard_name(&spec.name)
        .dashboard_body(spec.body.to_string())
        .send()
        .await
        .map_err(failed("PutDashboard"))?;
    // Warnings (e.g. a metric that has no data yet) come back as validation messages on a
    // successful call; only a failed call means the body was refused.
    for message in out.dashboard_validation_messages() {
        tracing::warn!(
            dashboard = %spec.name,
            path = message.data_path().unwrap_or_default(),
            "{}",
            message.message().unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    aws.cloudwatch
        .delete_dashboards()
        .dashboard_names(name)
        .send()
        .await
        .map_err(failed("DeleteDashboards"))
        .or_missing(NOT_FOUND)?;
    Ok(())
}
