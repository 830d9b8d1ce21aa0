//! Rendering plans and drift reports for people (text) and programs (JSON). The JSON shapes
//! are documented in README.md ("Plan JSON").

use std::fmt::Write as _;

use serde_json::{Value, json};
use similar::TextDiff;

use crate::drift::{DriftReport, DriftStatus};
use crate::plan::{Action, Change, FieldChange, Plan, PlanMode, SecretStatus};

/// The plan for a terminal or a log: one block per change, per-field details, a summary.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} for {} / {}{}",
        if plan.mode == PlanMode::Destroy {
            "Destroy plan"
        } else {
            "Plan"
        },
        plan.stack,
        plan.env,
        match (&plan.state_serial, &plan.state_lineage) {
            (Some(serial), Some(lineage)) => format!(
                " (state serial {serial}, lineage {})",
                &lineage[..8.min(lineage.len())]
            ),
            _ => " (no state yet)".to_string(),
        }
    );
    let changes: Vec<&Change> = plan.changes.iter().filter(|c| c.is_change()).collect();
    if changes.is_empty() {
        let _ = writeln!(
            out,
            "\nNo changes. Live resources match the stack ({} checked).",
            plan.changes.len()
        );
        secrets_text(&mut out, &plan.env, &plan.secrets);
        return out;
    }
    // Destruction first: that is what a reviewer must not miss.
    let order = [
        Action::Delete,
        Action::Replace,
        Action::Create,
        Action::Update,
        Action::NoOp,
    ];
    for action in order {
        for change in changes.iter().filter(|c| c.action == action) {
            out.push('\n');
            change_text(&mut out, change);
        }
    }
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "\nPlan: {} to create, {} to update, {} to replace, {} to delete{}.",
        s.create,
        s.update,
        s.replace,
        s.delete,
        if s.adopt > 0 {
            format!(", {} to adopt", s.adopt)
        } else {
            String::new()
        }
    );
    secrets_text(&mut out, &plan.env, &plan.secrets);
    out
}

/// Which secrets have a value; values themselves never reach a plan.
fn secrets_text(out: &mut String, env: &str, secrets: &[SecretStatus]) {
    if secrets.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nSecret values (only whether one is set):");
    for s in secrets {
        if s.value_set {
            let _ = writeln!(out, "  {}  set", s.address);
        } else {
            let _ = writeln!(
                out,
                "  {}  NOT SET: `infra secret set --env {env} {}` reads it from stdin",
                s.address, s.address.name
            );
        }
    }
}

fn change_text(out: &mut String, change: &Change) {
    let label = if change.adopt && change.action == Action::NoOp {
        "adopt".to_string()
    } else {
        change.action.as_str().to_string()
    };
    let symbol = if change.adopt && change.action == Action::NoOp {
        "="
    } else {
        change.action.symbol()
    };
    let _ = writeln!(
        out,
        "{symbol:>3} {}  ({label}{}){}",
        change.address,
        if change.protected { ", protected" } else { "" },
        if change.physical_id.is_empty() {
            String::new()
        } else {
            format!("  {}", change.physical_id)
        },
    );
    for note in &change.notes {
        let _ = writeln!(out, "      # {note}");
    }
    if change.action == Action::Delete {
        return;
    }
    for field in &change.fields {
        field_text(out, field, change.action == Action::Create);
    }
}

fn field_text(out: &mut String, field: &FieldChange, creating: bool) {
    let replace = if field.forces_replacement {
        "  # forces replacement"
    } else {
        ""
    };
    if creating {
        let value = field.after.as_ref().map(pretty).unwrap_or_default();
        if value.contains('\n') {
            let _ = writeln!(out, "      {}:", field.field);
            for line in value.lines() {
                let _ = writeln!(out, "          {line}");
            }
        } else {
            let _ = writeln!(out, "      {}: {value}", field.field);
        }
        return;
    }
    value_change(
        out,
        &field.field,
        replace,
        field.before.as_ref(),
        field.after.as_ref(),
        ("live", "desired"),
    );
}

/// One changed value: `field: old -> new` for scalars, a unified diff for documents, the
/// whole document when one side is absent.
fn value_change(
    out: &mut String,
    field: &str,
    suffix: &str,
    from: Option<&Value>,
    to: Option<&Value>,
    labels: (&str, &str),
) {
    let from_text = from.map(pretty);
    let to_text = to.map(pretty);
    let multiline = |t: &Option<String>| t.as_deref().is_some_and(|t| t.contains('\n'));
    if !multiline(&from_text) && !multiline(&to_text) {
        let _ = writeln!(
            out,
            "      {field}: {} -> {}{suffix}",
            from_text.unwrap_or_else(|| "(absent)".into()),
            to_text.unwrap_or_else(|| "(absent)".into()),
        );
        return;
    }
    match (from_text, to_text) {
        (Some(from), Some(to)) => {
            let _ = writeln!(out, "      {field}:{suffix}");
            let (from, to) = (from + "\n", to + "\n");
            let diff = TextDiff::from_lines(&from, &to);
            let unified = diff
                .unified_diff()
                .context_radius(3)
                .header(labels.0, labels.1)
                .to_string();
            for line in unified.lines() {
                let _ = writeln!(out, "        {line}");
            }
        }
        (from, to) => {
            let (state, text) = match (from, to) {
                (None, Some(to)) => (format!("absent in {}, in {}:", labels.0, labels.1), to),
                (Some(from), _) => (format!("absent in {}, in {}:", labels.1, labels.0), from),
                (None, None) => return,
            };
            let _ = writeln!(out, "      {field}: {state}{suffix}");
            for line in text.lines() {
                let _ = writeln!(out, "          {line}");
            }
        }
    }
}

/// Scalars on one line; objects and lists pretty-printed so that diffs are per line.
fn pretty(value: &Value) -> String {
    match value {
        // Multi-line text (SQL) is shown as text, so that changes diff line by line.
        Value::String(s) if s.contains('\n') => s.clone(),
        Value::String(s) => format!("{s:?}"),
        Value::Object(map) if map.is_empty() => "{}".into(),
        Value::Array(items) if items.is_empty() => "[]".into(),
        Value::Object(_) | Value::Array(_) => {
            serde_json::to_string_pretty(value).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

/// The plan as JSON (schema in docs/plan-json.md): `env`, `stack`, `changes[]` with
/// `address`, `action` and changed `fields`, and `summary` counts.
pub fn plan_json(plan: &Plan) -> Value {
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .map(|c| {
            json!({
                "address": c.address.to_string(),
                "kind": c.address.kind.as_str(),
                "action": c.action.as_str(),
                "physical_id": c.physical_id,
                "adopt": c.adopt,
                "protected": c.protected,
                "notes": c.notes,
                "fields": c.fields.iter().map(|f| json!({
                    "field": f.field,
                    "before": f.before,
                    "after": f.after,
                    "forces_replacement": f.forces_replacement,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "format_version": plan.format_version,
        "mode": plan.mode,
        "stack": plan.stack,
        "env": plan.env,
        "state_serial": plan.state_serial,
        "state_lineage": plan.state_lineage,
        "desired_hash": plan.desired_hash,
        "has_changes": plan.has_changes(),
        "changes": changes,
        "summary": plan.summary,
        "secrets": plan.secrets,
    })
}

pub fn drift_text(report: &DriftReport) -> String {
    let mut out = String::new();
    if !report.has_drift() {
        let _ = writeln!(
            out,
            "No drift in {} / {}: {} managed resources match the stack.",
            report.stack, report.env, report.checked
        );
        secrets_text(&mut out, &report.env, &report.secrets);
        return out;
    }
    let _ = writeln!(
        out,
        "Drift in {} / {}: {} of {} managed resources differ from the stack.",
        report.stack, report.env, report.drifted, report.checked
    );
    for item in &report.resources {
        match item.status {
            DriftStatus::Missing => {
                let _ = writeln!(
                    out,
                    "\n  ! {}  (missing live)  {}",
                    item.address, item.physical_id
                );
            }
            DriftStatus::Changed => {
                let _ = writeln!(
                    out,
                    "\n  ~ {}  (changed: live -> desired)  {}",
                    item.address, item.physical_id
                );
                for f in &item.fields {
                    value_change(
                        &mut out,
                        &f.field,
                        "",
                        f.live.as_ref(),
                        f.desired.as_ref(),
                        ("live", "desired"),
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\n`infra apply --env {}` restores the stack's values.",
        report.env
    );
    secrets_text(&mut out, &report.env, &report.secrets);
    out
}

pub fn drift_json(report: &DriftReport) -> Value {
    json!({
        "stack": report.stack,
        "env": report.env,
        "checked": report.checked,
        "drifted": report.drifted,
        "resources": report.resources,
        "secrets": report.secrets,
    })
}
