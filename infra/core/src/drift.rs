//! Drift: for every resource state knows, how live differs from desired, or whether it is
//! missing live. Built from a plan, so drift and plan can never disagree.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Address;
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
        }
    }

    pub fn has_drift(&self) -> bool {
        self.drifted > 0
    }
}
