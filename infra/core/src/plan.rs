//! Planning: read live state for every resource the stack declares or state knows, diff the
//! canonical fields, and produce a [`Plan`]: a value listing every change, which `apply`
//! interprets and renderers print. Nothing here writes to AWS.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::aws::{Aws, AwsError};
use crate::graph::{Graph, GraphError};
use crate::kinds::tag_index::TagIndex;
use crate::kinds::{self, Invalid, LiveMap, ReadTarget};
use crate::model::{Address, Resource, Spec, Stack, TAG_ADDRESS, TAG_ENV, TAG_STACK, Target};
use crate::state::StateDoc;

pub const PLAN_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    NoOp,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::NoOp => " ",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::NoOp => "no-op",
        }
    }
}

/// One field that differs; `before` is live (absent for a create), `after` desired (absent
/// for a delete).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub address: Address,
    pub action: Action,
    pub physical_id: String,
    pub fields: Vec<FieldChange>,
    /// Why this change, in words, when the action alone does not say (e.g. deleted out of band).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The live resource exists but state does not know it (created by an interrupted apply):
    /// apply records it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// Adopted through an `[[import]]` entry: a live resource this stack never created, taken
    /// under management (`adopt` is set too: apply records it in state first, then makes the
    /// listed updates, its ownership tags among them).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub import: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
    /// The desired resource (not for deletes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Resource>,
    /// The live properties read while planning (not for creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Spec>,
    /// For deletes: what the resource depended on, as state recorded it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub depends_on: BTreeSet<Address>,
}

impl Change {
    /// Whether applying this change does anything (an adoption only writes state).
    pub fn is_change(&self) -> bool {
        self.action != Action::NoOp || self.adopt
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    pub no_op: usize,
    #[serde(default)]
    pub adopt: usize,
    /// Live resources taken under management through `[[import]]` entries (not counted in
    /// `adopt`, which is for what an interrupted apply created).
    #[serde(default)]
    pub import: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanMode {
    Normal,
    Destroy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub mode: PlanMode,
    pub stack: String,
    pub env: String,
    pub target: Target,
    pub created_at: DateTime<Utc>,
    /// Hash of the desired model this plan was made from.
    pub desired_hash: String,
    /// State this plan was made against (`None`: no state yet).
    pub state_lineage: Option<String>,
    pub state_serial: Option<u64>,
    pub changes: Vec<Change>,
    pub summary: Summary,
    /// Whether each secret of the stack has a value: all a plan ever says about values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretStatus>,
    /// A fingerprint of every live resource read (its canonical fields; `absent` when it did
    /// not exist), so that applying a saved plan can tell what changed since.
    #[serde(default)]
    pub fingerprints: BTreeMap<Address, String>,
}

/// Whether a secret of the stack has a current value (never the value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretStatus {
    pub address: Address,
    pub name: String,
    pub value_set: bool,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(Change::is_change)
    }

    pub fn parse(bytes: &[u8]) -> Result<Plan, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Plan the deletion of everything state knows.
    pub destroy: bool,
    /// Allow deleting or replacing protected resources.
    pub allow_protected: bool,
    /// Allow replacing an imported resource where the stack differs from it in a property
    /// AWS cannot change in place (the live resource, and what it holds, would be deleted).
    pub replace_imported: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the stack is not valid:\n{}", .0.iter().map(|(a, i)| format!("  {a}: {}: {}", i.field, i.message)).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<(Address, Invalid)>),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("reading live state failed: {0}")]
    Aws(#[from] AwsError),
    #[error("state belongs to stack `{stack}` env `{env}`, not to this one")]
    WrongState { stack: String, env: String },
    #[error(
        "these resources exist but are not managed by this stack (no matching `infra:address` \
         tag and no state entry); remove them, or import them (`[[import]]` in the env file):\n{}",
        .0.iter().map(|(a, p)| format!("  {a} ({p})")).collect::<Vec<_>>().join("\n")
    )]
    Unmanaged(Vec<(Address, String)>),
    #[error(
        "refusing to {} protected resources without `--allow-protected`:\n{}",
        .0.iter().map(|(_, a)| *a).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join("/"),
        .0.iter().map(|(a, action)| format!("  {a} ({action})")).collect::<Vec<_>>().join("\n")
    )]
    Protected(Vec<(Address, &'static str)>),
    /// `[[import]]` entries that cannot be imported, each with why. Nothing was written.
    #[error(
        "these imports cannot be done:\n{}",
        .0.iter().map(|(a, why)| format!("  {a}: {why}")).collect::<Vec<_>>().join("\n")
    )]
    Import(Vec<(Address, String)>),
}

/// Checks every resource of the stack and its graph: no AWS call.
pub fn validate(stack: &Stack) -> Result<Graph, PlanError> {
    let mut problems = Vec::new();
    for r in &stack.resources {
        for invalid in kinds::validate(r) {
            problems.push((r.address.clone(), invalid));
        }
    }
    if !problems.is_empty() {
        return Err(PlanError::Invalid(problems));
    }
    Ok(Graph::build(&stack.resources)?)
}

/// The stack a (saved) plan would leave: every resource it creates, updates or keeps, as the
/// plan file says. Waivers come from `current` (the env file now), never from the file, so an
/// edited plan cannot waive a rule; the result goes through [`validate`] and the policy rules
/// like any stack before it is applied.
pub fn planned_stack(plan: &Plan, current: &Stack) -> Stack {
    let mut stack = Stack::new(plan.target.clone());
    stack.resources = plan
        .changes
        .iter()
        .filter_map(|change| change.desired.clone())
        .map(|mut resource| {
            resource.waivers = current
                .get(&resource.address)
                .map(|r| r.waivers.clone())
                .unwrap_or_default();
            resource
        })
        .collect();
    stack
}

/// Hash of the desired model: every resource's address, identity and canonical fields.
pub fn desired_hash(stack: &Stack) -> String {
    let mut hasher = Sha256::new();
    for r in &stack.resources {
        hasher.update(r.address.to_string());
        hasher.update([0]);
        hasher.update(serde_json::to_vec(r).unwrap_or_default());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// The desired state of a stack as a deterministic document (object keys sorted, resources by
/// address): what `infra synth` writes to `plans/<env>.json` for review without AWS access.
/// Lambda code is not in it (its hash comes from packaging at plan time).
pub fn desired_document(stack: &Stack) -> Value {
    let mut resources: Vec<&Resource> = stack.resources.iter().collect();
    resources.sort_by(|a, b| a.address.cmp(&b.address));
    let resources: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let mut value = serde_json::to_value(r).unwrap_or_default();
            if let Some(Value::Object(code)) = value.pointer_mut("/spec/code") {
                code.remove("zip");
                code.remove("size");
                code.insert(
                    "code_sha256".into(),
                    Value::String("(packaged at plan time)".into()),
                );
            }
            value
        })
        .collect();
    // serde_json's maps are sorted (no `preserve_order`), so keys come out in order.
    let mut document = serde_json::json!({
        "stack": stack.target.stack,
        "env": stack.target.env,
        "target": stack.target,
        "model_registry": stack.model_registry,
        "resources": resources,
    });
    // Only where an env imports: the other envs' documents stay as they were.
    if !stack.imports.is_empty()
        && let Value::Object(map) = &mut document
    {
        map.insert("imports".into(), serde_json::json!(stack.imports));
    }
    document
}

/// Reads live state for the stack's and state's resources (`tags`: see [`kinds::read`]).
pub async fn refresh(
    aws: &Aws,
    stack: &Stack,
    state: Option<&StateDoc>,
    tags: Option<&TagIndex>,
) -> Result<LiveMap, AwsError> {
    let mut targets: BTreeMap<Address, ReadTarget> = BTreeMap::new();
    for r in &stack.resources {
        targets.insert(
            r.address.clone(),
            ReadTarget {
                address: r.address.clone(),
                physical_id: r.physical_id.clone(),
                known: state.is_some_and(|s| s.resources.contains_key(&r.address)),
            },
        );
    }
    if let Some(state) = state {
        for (address, entry) in &state.resources {
            targets
                .entry(address.clone())
                .or_insert_with(|| ReadTarget {
                    address: address.clone(),
                    physical_id: entry.physical_id.clone(),
                    known: true,
                });
        }
    }
    let targets: Vec<ReadTarget> = targets.into_values().collect();
    // Boxed: the read of every kind at once is a large future, too large for small stacks
    // (test threads, debug builds) when held inline by the caller's.
    Box::pin(kinds::read(aws, &stack.target, &targets, tags)).await
}

/// Diffs desired against live. `possibly_ours` lists addresses an interrupted apply may have
/// created without recording them (from the journal).
pub fn diff(
    stack: &Stack,
    state: Option<&StateDoc>,
    live: &LiveMap,
    possibly_ours: &BTreeSet<Address>,
    options: PlanOptions,
) -> Result<Plan, PlanError> {
    let target = &stack.target;
    if let Some(state) = state
        && (state.stack != target.stack || state.env != target.env)
    {
        return Err(PlanError::WrongState {
            stack: state.stack.clone(),
            env: state.env.clone(),
        });
    }
    let known = |a: &Address| state.is_some_and(|s| s.resources.contains_key(a));
    let mut changes = Vec::new();
    let mut unmanaged = Vec::new();
    let mut protected = Vec::new();
    let mut refused_imports = Vec::new();

    if !options.destroy {
        for desired in &stack.resources {
            let address = &desired.address;
            let live_spec = live.get(address).cloned().flatten();
            let in_state = known(address);
            let state_protected = state
                .and_then(|s| s.resources.get(address))
                .is_some_and(|e| e.protected);
            let importing = match import_status(
                stack,
                state,
                address,
                &desired.physical_id,
                &live_spec,
                target,
            ) {
                Ok(importing) => importing,
                Err(why) => {
                    refused_imports.push((address.clone(), why));
                    continue;
                }
            };
            let mut change = Change {
                address: address.clone(),
                action: Action::NoOp,
                physical_id: desired.physical_id.clone(),
                fields: Vec::new(),
                notes: Vec::new(),
                adopt: false,
                import: false,
                protected: desired.protected || state_protected,
                desired: Some(desired.clone()),
                live: None,
                depends_on: BTreeSet::new(),
            };
            match live_spec {
                None => {
                    change.action = Action::Create;
                    change.fields = field_changes(
                        address.kind,
                        &Default::default(),
                        &kinds::fields(&desired.spec),
                    );
                    if in_state {
                        change.notes.push(
                            "in state but missing live (deleted out of band); re-creating".into(),
                        );
                    }
                }
                Some(mut live_spec) => {
                    kinds::align_live(&desired.spec, &mut live_spec);
                    if importing {
                        change.adopt = true;
                        change.import = true;
                        change.notes.push(format!(
                            "imported: the live `{}` comes under management as it is (what it holds stays); only the fields below change",
                            desired.physical_id
                        ));
                    } else if !in_state {
                        if owned_by(target, address, &live_spec) || possibly_ours.contains(address)
                        {
                            change.adopt = true;
                            change.notes.push(
                                "exists live but not in state (an interrupted apply created it); adopting".into(),
                            );
                        } else {
                            unmanaged.push((address.clone(), desired.physical_id.clone()));
                            continue;
                        }
                    }
                    let fields = field_changes(
                        address.kind,
                        &kinds::fields(&live_spec),
                        &kinds::fields(&desired.spec),
                    );
                    change.action = if fields.is_empty() {
                        Action::NoOp
                    } else if fields.iter().any(|f| f.forces_replacement) {
                        Action::Replace
                    } else {
                        Action::Update
                    };
                    if change.action == Action::Replace
                        && change.protected
                        && !options.allow_protected
                    {
                        protected.push((address.clone(), "replace"));
                    }
                    if change.action == Action::Replace && importing && !options.replace_imported {
                        let forcing: Vec<&str> = fields
                            .iter()
                            .filter(|f| f.forces_replacement)
                            .map(|f| f.field.as_str())
                            .collect();
                        refused_imports.push((
                            address.clone(),
                            format!(
                                "the stack differs from `{}` in {} (AWS cannot change it in place), so importing it means replacing it: deleting it and what it holds. Make the stack match, or pass --replace-imported",
                                desired.physical_id,
                                forcing.join(", ")
                            ),
                        ));
                    }
                    change.fields = fields;
                    change.live = Some(live_spec);
                }
            }
            changes.push(change);
        }
    }

    if let Some(state) = state {
        for (address, entry) in &state.resources {
            if !options.destroy && stack.get(address).is_some() {
                continue;
            }
            let live_spec = live.get(address).cloned().flatten();
            let mut change = Change {
                address: address.clone(),
                action: Action::Delete,
                physical_id: entry.physical_id.clone(),
                fields: Vec::new(),
                notes: Vec::new(),
                adopt: false,
                import: false,
                protected: entry.protected,
                desired: None,
                live: live_spec.clone(),
                depends_on: entry.depends_on.clone(),
            };
            match live_spec {
                Some(spec) => {
                    change.fields =
                        field_changes(address.kind, &kinds::fields(&spec), &Default::default());
                    if entry.protected && !options.allow_protected {
                        protected.push((address.clone(), "delete"));
                    }
                }
                None => change
                    .notes
                    .push("already gone live; only removed from state".into()),
            }
            changes.push(change);
        }
    }

    if !refused_imports.is_empty() {
        return Err(PlanError::Import(refused_imports));
    }
    if !unmanaged.is_empty() {
        return Err(PlanError::Unmanaged(unmanaged));
    }
    if !protected.is_empty() {
        return Err(PlanError::Protected(protected));
    }
    changes.sort_by(|a, b| a.address.cmp(&b.address));
    let summary = summarize(&changes);
    let secrets = if options.destroy {
        Vec::new()
    } else {
        secret_statuses(stack, live)
    };
    Ok(Plan {
        format_version: PLAN_FORMAT_VERSION,
        mode: if options.destroy {
            PlanMode::Destroy
        } else {
            PlanMode::Normal
        },
        stack: target.stack.clone(),
        env: target.env.clone(),
        target: target.clone(),
        created_at: Utc::now(),
        desired_hash: desired_hash(stack),
        state_lineage: state.map(|s| s.lineage.clone()),
        state_serial: state.map(|s| s.serial),
        changes,
        summary,
        secrets,
        fingerprints: fingerprints(live),
    })
}

/// The fingerprint of each read resource: SHA-256 of its canonical fields, or `absent`.
pub fn fingerprints(live: &LiveMap) -> BTreeMap<Address, String> {
    live.iter()
        .map(|(address, spec)| {
            let print = match spec {
                Some(spec) => {
                    let fields = kinds::fields(spec);
                    hex::encode(Sha256::digest(
                        serde_json::to_vec(&fields).unwrap_or_default(),
                    ))
                }
                None => "absent".to_string(),
            };
            (address.clone(), print)
        })
        .collect()
}

/// The resources a saved plan will touch whose live fingerprint differs from the plan's
/// (re-read now, in the same batches as a refresh).
pub async fn changed_since(aws: &Aws, plan: &Plan) -> Result<Vec<Address>, AwsError> {
    let targets: Vec<ReadTarget> = plan
        .changes
        .iter()
        .filter(|c| c.is_change())
        .map(|c| ReadTarget {
            address: c.address.clone(),
            physical_id: c.physical_id.clone(),
            known: c.live.is_some(),
        })
        .collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let now = fingerprints(&kinds::read(aws, &plan.target, &targets, None).await?);
    Ok(targets
        .into_iter()
        .filter(|t| {
            let of = |prints: &BTreeMap<Address, String>| {
                prints
                    .get(&t.address)
                    .cloned()
                    .unwrap_or_else(|| "absent".into())
            };
            of(&plan.fingerprints) != of(&now)
        })
        .map(|t| t.address)
        .collect())
}

fn secret_statuses(stack: &Stack, live: &LiveMap) -> Vec<SecretStatus> {
    stack
        .resources
        .iter()
        .filter(|r| matches!(r.spec, Spec::Secret(_)))
        .map(|r| SecretStatus {
            address: r.address.clone(),
            name: r.physical_id.clone(),
            value_set: matches!(
                live.get(&r.address),
                Some(Some(Spec::Secret(s))) if s.value_set == Some(true)
            ),
        })
        .collect()
}

/// Whether `address` is imported by this plan (`Ok(true)`), was imported before or is not
/// imported at all (`Ok(false)`), or names an import that cannot be done (`Err`, why): the
/// id does not exist live, state holds the address under another name, or the live resource
/// carries the ownership tags of another stack, env or address.
fn import_status(
    stack: &Stack,
    state: Option<&StateDoc>,
    address: &Address,
    physical_id: &str,
    live: &Option<Spec>,
    target: &Target,
) -> Result<bool, String> {
    let Some(id) = stack.imports.get(address) else {
        return Ok(false);
    };
    if let Some(entry) = state.and_then(|s| s.resources.get(address)) {
        // Imported by an earlier apply: the entry is done (and may stay, as in Terraform).
        return if entry.physical_id == physical_id {
            Ok(false)
        } else {
            Err(format!(
                "state already manages {address} as `{}`: an import cannot take it over (remove the [[import]] entry, or remove it from state first)",
                entry.physical_id
            ))
        };
    }
    let Some(live) = live else {
        return Err(format!(
            "no {} named `{id}` exists in account {} ({})",
            address.kind.as_str(),
            target.account_id,
            target.region
        ));
    };
    if let Some(tags) = live.tags() {
        let tag = |key: &str| tags.get(key).map(String::as_str);
        let (owner_stack, owner_env, owner_address) =
            (tag(TAG_STACK), tag(TAG_ENV), tag(TAG_ADDRESS));
        let ours =
            owner_stack == Some(target.stack.as_str()) && owner_env == Some(target.env.as_str());
        if owner_stack.is_some() || owner_env.is_some() {
            if !ours {
                return Err(format!(
                    "`{id}` belongs to stack `{}` env `{}` (its infra:stack and infra:env tags): one stack's resource is never taken by another",
                    owner_stack.unwrap_or("?"),
                    owner_env.unwrap_or("?")
                ));
            }
            if owner_address.is_some_and(|a| a != address.to_string()) {
                return Err(format!(
                    "`{id}` is this stack's {} (its infra:address tag), not {address}",
                    owner_address.unwrap_or("?")
                ));
            }
        }
    }
    Ok(true)
}

/// A live resource carrying this stack's ownership tags for `address`. Kinds AWS does not
/// tag (a permission, a Function URL) live inside a function this stack owns, by name.
fn owned_by(target: &Target, address: &Address, live: &Spec) -> bool {
    let Some(tags) = live.tags() else {
        return true;
    };
    tags.get(TAG_ADDRESS) == Some(&address.to_string())
        && tags.get(TAG_ENV) == Some(&target.env)
        && tags.get(TAG_STACK) == Some(&target.stack)
}

/// The fields that differ between `before` and `after` (canonical fields of one kind); empty
/// when they are equal.
pub fn field_changes(
    kind: crate::model::Kind,
    before: &kinds::Fields,
    after: &kinds::Fields,
) -> Vec<FieldChange> {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let b = before.get(name);
            let a = after.get(name);
            if b == a {
                return None;
            }
            Some(FieldChange {
                field: name.clone(),
                before: b.cloned(),
                after: a.cloned(),
                // Only a change to an existing resource can force its replacement.
                forces_replacement: b.is_some()
                    && a.is_some()
                    && kinds::forces_replacement(kind, name),
            })
        })
        .collect()
}

fn summarize(changes: &[Change]) -> Summary {
    let mut s = Summary::default();
    for c in changes {
        match c.action {
            Action::Create => s.create += 1,
            Action::Update => s.update += 1,
            Action::Replace => s.replace += 1,
            Action::Delete => s.delete += 1,
            Action::NoOp => s.no_op += 1,
        }
        if c.import {
            s.import += 1;
        } else if c.adopt {
            s.adopt += 1;
        }
    }
    s
}
