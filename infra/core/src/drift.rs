//! Drift: for every resource state knows, how live differs from desired, or whether it is
//! missing live (built from a plan, so drift and plan can never disagree); and orphans: live
//! resources tagged for this stack and env that state does not know, from the same paged
//! Resource Groups Tagging API listing the refresh reads tags from (it covers the services
//! that API covers: S3, Lambda, CloudWatch Logs, SNS, Glue, ... but not IAM).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::BTreeMap;

use crate::aws::{Aws, AwsError};
use crate::kinds::tag_index::TagIndex;
use crate::kinds::{self, ReadTarget};
use crate::model::{Address, TAG_ADDRESS, Target};
use crate::plan::{Action, Plan, SecretStatus};
use crate::state::{StateDoc, StateEntry};

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

/// The live resources in `tagged` (the env's tagging-API listing, see [`TagIndex::load`])
/// that `state` does not know (by address, or whose ARN does not name the physical id state
/// has for it).
pub fn find_orphans(tagged: &TagIndex, state: Option<&StateDoc>) -> Vec<Orphan> {
    let known: BTreeMap<String, &StateEntry> = state
        .map(|s| {
            s.resources
                .iter()
                .map(|(address, entry)| (address.to_string(), entry))
                .collect()
        })
        .unwrap_or_default();
    let mut orphans: Vec<Orphan> = tagged
        .iter()
        .filter_map(|(arn, tags)| {
            let address = tags.get(TAG_ADDRESS).cloned();
            let entry = address.as_deref().and_then(|a| known.get(a));
            let ours = entry.is_some_and(|e| arn == e.arn || arn.contains(&e.physical_id));
            (!ours).then(|| Orphan {
                arn: arn.to_string(),
                address,
            })
        })
        .collect();
    orphans.sort_by(|a, b| a.arn.cmp(&b.arn));
    orphans
}

/// The orphans that exist when read directly. The tagging API's listing lags behind writes:
/// a resource deleted moments ago is still listed (Resource Groups Tagging API,
/// GetResources), so each candidate is read with its own kind's call first. A candidate whose
/// kind its ARN does not tell is reported as listed.
pub async fn confirm_orphans(
    aws: &Aws,
    target: &Target,
    orphans: Vec<Orphan>,
) -> Result<Vec<Orphan>, AwsError> {
    let mut reads = Vec::new();
    let mut addresses = Vec::new();
    for (i, orphan) in orphans.iter().enumerate() {
        let address = kinds::identify(&orphan.arn).map(|(kind, physical_id)| {
            let address = Address::new(kind, format!("orphan-{i}"));
            // Not in state: where a listing (ListSecrets) still shows it, it is read directly.
            reads.push(ReadTarget {
                address: address.clone(),
                physical_id,
                known: false,
            });
            address
        });
        addresses.push(address);
    }
    if reads.is_empty() {
        return Ok(orphans);
    }
    // No index: tags are read per candidate, not from the lagging listing again.
    let no_index = TagIndex::default();
    let live = Box::pin(kinds::read(aws, target, &reads, Some(&no_index))).await?;
    Ok(orphans
        .into_iter()
        .zip(addresses)
        .filter(|(_, address)| match address {
            Some(address) => live.get(address).is_some_and(Option::is_some),
            None => true,
        })
        .map(|(orphan, _)| orphan)
        .collect())
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
