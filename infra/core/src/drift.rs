//! Drift: for every resource state knows, how live differs from desired, or whether it is
//! missing live (built from a plan, so drift and plan can never disagree); and orphans: live
//! resources tagged for this stack and env that state does not know, found with one paged
//! Resource Groups Tagging API query (it covers the services that API covers: S3, Lambda,
//! CloudWatch Logs, SNS, Glue, ... but not IAM).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::aws::{Aws, AwsError, aws_error};
use crate::model::{Address, TAG_ADDRESS, TAG_ENV, TAG_STACK};
use crate::plan::{Action, Plan, SecretStatus};
use crate::state::StateDoc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftStatus {
    /// Exists live with fields that differ from desired.
    Changed,
    /// In state, but gone live.
    Missing,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftedField {
    pub field: String,
    pub live: Option<Value>,
    pub desired: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftItem {
    pub address: Address,
    pub physical_id: String,
    pub status: DriftStatus,
    pub fields: Vec<DriftedField>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub stack: String,
    pub env: String,
    pub checked: usize,
    pub drifted: usize,
    pub resources: Vec<DriftItem>,
    /// Whether each secret has a value. A missing value is not drift (the stack declares no
    /// values), but a nightly report is where it should show.
    #[serde(default)]
    pub secrets: Vec<SecretStatus>,
    /// Live resources tagged for this stack and env that state does not know.
    #[serde(default)]
    pub orphans: Vec<Orphan>,
}

/// A live resource carrying this stack's and env's tags, unknown to state (left by an
/// out-of-band copy, or by a tool other than this one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    pub arn: String,
    /// Its `infra:address` tag, if it has one.
    pub address: Option<String>,
}

/// The live resources tagged `infra:stack` = `stack` and `infra:env` = `env` that `state` does
/// not know (by address, or whose ARN does not name the physical id state has for it).
pub async fn find_orphans(
    aws: &Aws,
    stack: &str,
    env: &str,
    state: Option<&StateDoc>,
) -> Result<Vec<Orphan>, AwsError> {
    let filter = |key: &str, value: &str| {
        aws_sdk_resourcegroupstagging::types::TagFilter::builder()
            .key(key)
            .values(value)
            .build()
    };
    let mut orphans = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .tagging
            .get_resources()
            .tag_filters(filter(TAG_STACK, stack))
            .tag_filters(filter(TAG_ENV, env))
            .set_pagination_token(token.take())
            .send()
            .await
            .map_err(|e| aws_error("GetResources", e))?;
        for mapping in page.resource_tag_mapping_list() {
            let Some(arn) = mapping.resource_arn() else {
                continue;
            };
            let tag = |key: &str| {
                mapping
                    .tags()
                    .iter()
                    .find(|t| t.key() == key)
                    .map(|t| t.value().to_string())
            };
            // The filters are checked again here: the local emulator answers some services'
            // resources (Glue) without applying them.
            if tag(TAG_STACK).as_deref() != Some(stack) || tag(TAG_ENV).as_deref() != Some(env) {
                continue;
            }
            let address = tag(TAG_ADDRESS);
            let known = address.as_deref().and_then(|a| {
                state?
                    .resources
                    .iter()
                    .find(|(k, _)| k.to_string() == a)
                    .map(|(_, e)| e)
            });
            let ours = known.is_some_and(|e| arn == e.arn || arn.contains(&e.physical_id));
            if !ours {
                orphans.push(Orphan {
                    arn: arn.to_string(),
                    address,
                });
            }
        }
        match page.pagination_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    orphans.sort_by(|a, b| a.arn.cmp(&b.arn));
    Ok(orphans)
}

impl DriftReport {
    pub fn from_plan(plan: &Plan, state: Option<&StateDoc>) -> DriftReport {
        let mut resources = Vec::new();
        let known = |a: &Address| state.is_some_and(|s| s.resources.contains_key(a));
        let mut checked = 0;
        for change in &plan.changes {
            if !known(&change.address) {
                continue;
            }
            checked += 1;
            let status = match change.action {
                Action::Update | Action::Replace => DriftStatus::Changed,
                Action::Create => DriftStatus::Missing,
                Action::Delete if change.live.is_none() => DriftStatus::Missing,
                Action::Delete | Action::NoOp => continue,
            };
            let fields = if status == DriftStatus::Changed {
                change
                    .fields
                    .iter()
                    .map(|f| DriftedField {
                        field: f.field.clone(),
                        live: f.before.clone(),
                        desired: f.after.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
            resources.push(DriftItem {
                address: change.address.clone(),
                physical_id: change.physical_id.clone(),
                status,
                fields,
            });
        }
        DriftReport {
            stack: plan.stack.clone(),
            env: plan.env.clone(),
            checked,
            drifted: resources.len(),
            resources,
            secrets: plan.secrets.clone(),
            orphans: Vec::new(),
        }
    }

    pub fn has_drift(&self) -> bool {
        self.drifted > 0 || !self.orphans.is_empty()
    }
}
