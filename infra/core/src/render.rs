//! Rendering plans and drift reports for people (text, and markdown for pull-request comments)
//! and programs (JSON). The JSON shapes are documented in README.md ("Plan JSON").

use std::fmt::Write as _;

use serde_json::{Value, json};
use similar::TextDiff;

use crate::cloudformation_engine::{
    ChangeSetPlan, ResourceDrift, StackAction, StackChange, StackOperation,
};
use crate::drift::{DriftReport, DriftStatus};
use crate::plan::{Action, Change, FieldChange, Plan, PlanMode, SecretStatus};

/// The plan for a terminal or a log: one block per change, per-field details, a summary.
pub fn plan_text(plan: &Plan) -> String {
    plan_text_of(plan, true)
}

/// The plan as [`plan_text`] prints it, one line per change without the fields: what a person
/// watching an apply reads (the per-field plan is `infra plan`).
pub fn plan_summary_text(plan: &Plan) -> String {
    plan_text_of(plan, false)
}

fn plan_text_of(plan: &Plan, with_fields: bool) -> String {
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
    if !with_fields {
        out.push('\n');
    }
    for action in order {
        for change in changes.iter().filter(|c| c.action == action) {
            if with_fields {
                out.push('\n');
            }
            change_text(&mut out, change, with_fields);
        }
    }
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "\nPlan: {}{} to create, {} to update, {} to replace, {} to delete{}.",
        if s.import > 0 {
            format!("{} to import, ", s.import)
        } else {
            String::new()
        },
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

/// How a change is labelled and marked: its action, except for adoptions (`=`, "adopt") and
/// imports (`<=`, "import", then what else happens to it).
fn label_and_symbol(change: &Change) -> (String, &'static str) {
    match (change.import, change.adopt, change.action) {
        (true, _, Action::NoOp) => ("import".into(), "<="),
        (true, _, action) => (format!("import, then {}", action.as_str()), "<="),
        (false, true, Action::NoOp) => ("adopt".into(), "="),
        (_, _, action) => (action.as_str().into(), action.symbol()),
    }
}

fn change_text(out: &mut String, change: &Change, with_fields: bool) {
    let (label, symbol) = label_and_symbol(change);
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
    if change.action == Action::Delete || !with_fields {
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
                "import": c.import,
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
        "Drift in {} / {}: {} of {} managed resources differ from the stack{}.",
        report.stack,
        report.env,
        report.drifted,
        report.checked,
        if report.orphans.is_empty() {
            String::new()
        } else {
            format!(", and {} orphan(s) are tagged for it", report.orphans.len())
        }
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
    for orphan in &report.orphans {
        let _ = writeln!(
            out,
            "\n  ? {}  (orphan: tagged for this stack and env, unknown to state){}",
            orphan.arn,
            orphan
                .address
                .as_ref()
                .map_or(String::new(), |a| format!("  infra:address={a}"))
        );
    }
    let _ = writeln!(
        out,
        "\n`infra apply --env {}` restores the stack's values; orphans are left for you to \
         import or delete.",
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
        "orphans": report.orphans,
        "secrets": report.secrets,
    })
}

/// The plan as GitHub-flavoured markdown for a pull-request comment: a summary table, the
/// destroys and replacements called out first, then each change in a collapsible section
/// with its fields (documents and SQL as `diff` blocks).
pub fn plan_markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### {} for `{}` / `{}`\n",
        if plan.mode == PlanMode::Destroy {
            "Destroy plan"
        } else {
            "Plan"
        },
        plan.stack,
        plan.env
    );
    let _ = writeln!(
        out,
        "{}\n",
        match (&plan.state_serial, &plan.state_lineage) {
            (Some(serial), Some(lineage)) => format!(
                "Against state serial {serial} (lineage `{}`).",
                &lineage[..8.min(lineage.len())]
            ),
            _ => "No state yet.".to_string(),
        }
    );
    let changes: Vec<&Change> = plan.changes.iter().filter(|c| c.is_change()).collect();
    if changes.is_empty() {
        let _ = writeln!(
            out,
            "**No changes.** Live resources match the stack ({} checked).",
            plan.changes.len()
        );
        secrets_markdown(&mut out, &plan.env, &plan.secrets);
        return out;
    }
    let s = &plan.summary;
    if s.import > 0 {
        let _ = writeln!(out, "| import | create | update | replace | delete |");
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |\n",
            s.import, s.create, s.update, s.replace, s.delete
        );
    } else {
        let _ = writeln!(out, "| create | update | replace | delete |");
        let _ = writeln!(out, "|---:|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |\n",
            s.create, s.update, s.replace, s.delete
        );
    }
    let destructive: Vec<&&Change> = changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .collect();
    if !destructive.is_empty() {
        let _ = writeln!(out, "> [!WARNING]");
        let _ = writeln!(
            out,
            "> **{} resource(s) will be destroyed or replaced:**",
            destructive.len()
        );
        for c in &destructive {
            let why: Vec<&str> = c
                .fields
                .iter()
                .filter(|f| f.forces_replacement)
                .map(|f| f.field.as_str())
                .collect();
            let _ = writeln!(
                out,
                "> - `{}` {}{}{}",
                c.address,
                c.action.as_str(),
                if c.protected { " (protected)" } else { "" },
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": `{}` forces replacement", why.join("`, `"))
                }
            );
        }
        out.push('\n');
    }
    let order = [
        Action::Delete,
        Action::Replace,
        Action::Create,
        Action::Update,
        Action::NoOp,
    ];
    for action in order {
        for change in changes.iter().filter(|c| c.action == action) {
            change_markdown(&mut out, change);
        }
    }
    secrets_markdown(&mut out, &plan.env, &plan.secrets);
    out
}

fn change_markdown(out: &mut String, change: &Change) {
    if change.action == Action::Delete {
        let _ = writeln!(
            out,
            "- <code>- {}</code> (delete{}) <code>{}</code>",
            change.address,
            if change.protected { ", protected" } else { "" },
            change.physical_id
        );
        for note in &change.notes {
            let _ = writeln!(out, "  _{note}_");
        }
        out.push('\n');
        return;
    }
    let (label, symbol) = label_and_symbol(change);
    let _ = writeln!(
        out,
        "<details><summary><code>{} {}</code> ({label}{}){}</summary>\n",
        symbol.trim(),
        change.address,
        if change.protected { ", protected" } else { "" },
        if change.physical_id.is_empty() {
            String::new()
        } else {
            format!(" <code>{}</code>", change.physical_id)
        },
    );
    for note in &change.notes {
        let _ = writeln!(out, "_{note}_\n");
    }
    for field in &change.fields {
        let suffix = if field.forces_replacement {
            " (forces replacement)"
        } else {
            ""
        };
        if change.action == Action::Create {
            markdown_value(out, &field.field, suffix, field.after.as_ref());
        } else {
            markdown_change(
                out,
                &field.field,
                suffix,
                field.before.as_ref(),
                field.after.as_ref(),
            );
        }
    }
    let _ = writeln!(out, "</details>\n");
}

/// A created value: inline when short, a code block when it spans lines.
fn markdown_value(out: &mut String, field: &str, suffix: &str, value: Option<&Value>) {
    let text = value.map(pretty).unwrap_or_default();
    if text.contains('\n') {
        let language = if matches!(value, Some(Value::Object(_) | Value::Array(_))) {
            "json"
        } else {
            ""
        };
        let _ = writeln!(out, "**`{field}`**{suffix}\n\n```{language}\n{text}\n```\n");
    } else {
        let _ = writeln!(out, "- `{field}`: `{text}`{suffix}\n");
    }
}

/// A changed value: `old` → `new` for scalars, a `diff` block for documents.
fn markdown_change(
    out: &mut String,
    field: &str,
    suffix: &str,
    from: Option<&Value>,
    to: Option<&Value>,
) {
    let from_text = from.map(pretty);
    let to_text = to.map(pretty);
    let multiline = |t: &Option<String>| t.as_deref().is_some_and(|t| t.contains('\n'));
    if !multiline(&from_text) && !multiline(&to_text) {
        let _ = writeln!(
            out,
            "- `{field}`: `{}` → `{}`{suffix}\n",
            from_text.unwrap_or_else(|| "(absent)".into()),
            to_text.unwrap_or_else(|| "(absent)".into()),
        );
        return;
    }
    let (from, to) = (
        from_text.unwrap_or_default() + "\n",
        to_text.unwrap_or_default() + "\n",
    );
    let unified = TextDiff::from_lines(&from, &to)
        .unified_diff()
        .context_radius(3)
        .header("live", "desired")
        .to_string();
    let _ = writeln!(out, "**`{field}`**{suffix}\n\n```diff\n{}```\n", unified);
}

fn secrets_markdown(out: &mut String, env: &str, secrets: &[SecretStatus]) {
    if secrets.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n| secret | value |\n|---|---|");
    for s in secrets {
        let _ = writeln!(
            out,
            "| `{}` | {} |",
            s.address,
            if s.value_set {
                "set".to_string()
            } else {
                format!(
                    "**not set**: `infra secret set --env {env} {}`",
                    s.address.name
                )
            }
        );
    }
}

/// The drift report as markdown: counts, then each drifted resource with its fields.
pub fn drift_markdown(report: &DriftReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Drift in `{}` / `{}`\n", report.stack, report.env);
    if !report.has_drift() {
        let _ = writeln!(
            out,
            "**No drift.** {} managed resources match the stack.",
            report.checked
        );
        secrets_markdown(&mut out, &report.env, &report.secrets);
        return out;
    }
    let count = |status: DriftStatus| {
        report
            .resources
            .iter()
            .filter(|r| r.status == status)
            .count()
    };
    let _ = writeln!(out, "| checked | changed | missing live | orphans |");
    let _ = writeln!(out, "|---:|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} |\n",
        report.checked,
        count(DriftStatus::Changed),
        count(DriftStatus::Missing),
        report.orphans.len()
    );
    for orphan in &report.orphans {
        let _ = writeln!(
            out,
            "- **orphan** (tagged for this stack and env, unknown to state): <code>{}</code>{}\n",
            orphan.arn,
            orphan
                .address
                .as_ref()
                .map_or(String::new(), |a| format!(" `infra:address={a}`"))
        );
    }
    for item in &report.resources {
        match item.status {
            DriftStatus::Missing => {
                let _ = writeln!(
                    out,
                    "- **missing live**: `{}` <code>{}</code>\n",
                    item.address, item.physical_id
                );
            }
            DriftStatus::Changed => {
                let _ = writeln!(
                    out,
                    "<details><summary><code>~ {}</code> (changed) <code>{}</code></summary>\n",
                    item.address, item.physical_id
                );
                for f in &item.fields {
                    markdown_change(&mut out, &f.field, "", f.live.as_ref(), f.desired.as_ref());
                }
                let _ = writeln!(out, "</details>\n");
            }
        }
    }
    let _ = writeln!(
        out,
        "`infra apply --env {}` restores the stack's values.",
        report.env
    );
    secrets_markdown(&mut out, &report.env, &report.secrets);
    out
}

/// The stack's dependency graph in Graphviz DOT: one node per resource (labelled with its
/// physical name), an edge from each resource to what it depends on.
pub fn graph_dot(stack: &crate::model::Stack) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "digraph \"{}-{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];",
        stack.target.stack, stack.target.env
    );
    for r in &stack.resources {
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\"];",
            r.address,
            r.address,
            r.physical_id.replace('"', "'")
        );
    }
    for r in &stack.resources {
        for d in &r.depends_on {
            let _ = writeln!(out, "  \"{}\" -> \"{d}\";", r.address);
        }
    }
    out.push_str("}\n");
    out
}

/// The stack's dependency graph as a Mermaid flowchart (GitHub renders it in markdown).
pub fn graph_mermaid(stack: &crate::model::Stack) -> String {
    let id = |a: &crate::model::Address| a.to_string().replace(['.', '-', ':'], "_");
    let mut out = String::from("flowchart LR\n");
    for r in &stack.resources {
        let _ = writeln!(out, "  {}[\"{}\"]", id(&r.address), r.address);
    }
    for r in &stack.resources {
        for d in &r.depends_on {
            let _ = writeln!(out, "  {} --> {}", id(&r.address), id(d));
        }
    }
    out
}

/// A change set that changes no resource but must still be executed.
const STACK_LEVEL_ONLY: &str =
    "No resource changes, but CloudFormation has stack-level changes (tags, outputs) to execute.";

/// A CloudFormation change set (the `cloudformation` engine's plan): one line per resource,
/// destruction first, the properties CloudFormation says change, and a summary in the native
/// plan's words.
pub fn change_set_text(plan: &ChangeSetPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Plan for {} / {} (CloudFormation stack {}, {}{})",
        plan.stack,
        plan.env,
        plan.stack_name,
        match plan.operation {
            StackOperation::Create => "a new stack",
            StackOperation::Update => "an update",
        },
        if plan.uploaded.is_empty() {
            String::new()
        } else {
            format!(
                "; {} new asset(s) uploaded to the assets bucket",
                plan.uploaded.len()
            )
        }
    );
    if !plan.has_changes() {
        let _ = writeln!(out, "\nNo changes. The stack matches the template.");
        return out;
    }
    if plan.changes.is_empty() {
        let _ = writeln!(out, "\n{STACK_LEVEL_ONLY}");
        return out;
    }
    out.push('\n');
    let width = plan
        .changes
        .iter()
        .map(|c| change_set_subject(c).len())
        .max()
        .unwrap_or(0);
    for change in &plan.changes {
        let _ = write!(
            out,
            "  {:<3} {:<width$}  {}",
            change.action.symbol(),
            change_set_subject(change),
            change.resource_type,
        );
        if !matches!(change.action, StackAction::Create | StackAction::Delete) {
            let _ = write!(out, "  {}", change.action.as_str());
            if !change.properties.is_empty() {
                let _ = write!(out, ": {}", change.properties.join(", "));
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\nPlan: {}.", change_set_counts(plan));
    out
}

/// `address (LogicalId)`, or the logical id alone for a resource the template does not name.
fn change_set_subject(change: &StackChange) -> String {
    match &change.address {
        Some(address) => format!("{address} ({})", change.logical_id),
        None => change.logical_id.clone(),
    }
}

/// "2 to create, 1 to update, 0 to replace, 0 to delete", plus any other action seen.
fn change_set_counts(plan: &ChangeSetPlan) -> String {
    let counts = plan.counts();
    let n = |action| counts.get(&action).copied().unwrap_or(0);
    let mut parts = vec![
        format!("{} to create", n(StackAction::Create)),
        format!("{} to update", n(StackAction::Update)),
        format!("{} to replace", n(StackAction::Replace)),
        format!("{} to delete", n(StackAction::Delete)),
    ];
    for (action, label) in [
        (StackAction::MayReplace, "that may replace"),
        (StackAction::Import, "to import"),
        (StackAction::Dynamic, "decided at execution"),
    ] {
        if n(action) > 0 {
            parts.push(format!("{} {label}", n(action)));
        }
    }
    parts.join(", ")
}

pub fn change_set_json(plan: &ChangeSetPlan) -> Value {
    let counts = plan.counts();
    let n = |action| counts.get(&action).copied().unwrap_or(0);
    json!({
        "engine": "cloudformation",
        "stack": plan.stack,
        "env": plan.env,
        "stack_name": plan.stack_name,
        "operation": plan.operation,
        "change_set": plan.change_set,
        "change_set_name": plan.change_set.as_ref().map(|_| &plan.change_set_name),
        "template_bytes": plan.template_bytes,
        "template_via_assets": plan.template_via_assets,
        "uploaded": plan.uploaded,
        "has_changes": plan.has_changes(),
        "changes": plan.changes.iter().map(|c| json!({
            "address": c.address,
            "logical_id": c.logical_id,
            "resource_type": c.resource_type,
            "action": c.action,
            "properties": c.properties,
        })).collect::<Vec<_>>(),
        "summary": {
            "create": n(StackAction::Create),
            "update": n(StackAction::Update) + n(StackAction::MayReplace),
            "replace": n(StackAction::Replace),
            "delete": n(StackAction::Delete),
            "import": n(StackAction::Import),
            "dynamic": n(StackAction::Dynamic),
        },
    })
}

pub fn change_set_markdown(plan: &ChangeSetPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Plan for `{}` / `{}` (CloudFormation stack `{}`)\n",
        plan.stack, plan.env, plan.stack_name
    );
    if !plan.has_changes() {
        let _ = writeln!(out, "**No changes.** The stack matches the template.");
        return out;
    }
    if plan.changes.is_empty() {
        let _ = writeln!(out, "{STACK_LEVEL_ONLY}");
        return out;
    }
    let destructive: Vec<&StackChange> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, StackAction::Delete | StackAction::Replace))
        .collect();
    if !destructive.is_empty() {
        let _ = writeln!(out, "> [!WARNING]");
        let _ = writeln!(
            out,
            "> **{} resource(s) will be destroyed or replaced:**",
            destructive.len()
        );
        for c in destructive {
            let _ = writeln!(
                out,
                "> - `{}` ({})",
                change_set_subject(c),
                c.action.as_str()
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "| | resource | type | change |");
    let _ = writeln!(out, "|---|---|---|---|");
    for c in &plan.changes {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | {}{} |",
            c.action.symbol(),
            change_set_subject(c),
            c.resource_type,
            c.action.as_str(),
            if c.properties.is_empty() {
                String::new()
            } else {
                format!(": {}", c.properties.join(", "))
            }
        );
    }
    let _ = writeln!(out, "\nPlan: {}.", change_set_counts(plan));
    out
}

/// CloudFormation's drift detection of a stack, one line per drifted resource.
pub fn stack_drift_text(stack_name: &str, drifts: &[ResourceDrift]) -> String {
    let mut out = String::new();
    if drifts.is_empty() {
        let _ = writeln!(
            out,
            "No drift in CloudFormation stack {stack_name}: every resource matches the template."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Drift in CloudFormation stack {stack_name}: {} resource(s) differ from the template.\n",
        drifts.len()
    );
    for d in drifts {
        let _ = writeln!(
            out,
            "  {}  {}  {}{}",
            d.address.as_deref().unwrap_or(&d.logical_id),
            d.resource_type,
            d.status,
            if d.properties.is_empty() {
                String::new()
            } else {
                format!(": {}", d.properties.join(", "))
            }
        );
    }
    out
}

pub fn stack_drift_json(stack_name: &str, drifts: &[ResourceDrift]) -> Value {
    json!({
        "engine": "cloudformation",
        "stack_name": stack_name,
        "has_drift": !drifts.is_empty(),
        "drifted": drifts,
    })
}

pub fn stack_drift_markdown(stack_name: &str, drifts: &[ResourceDrift]) -> String {
    let mut out = format!("### Drift of CloudFormation stack `{stack_name}`\n\n");
    if drifts.is_empty() {
        out.push_str("**No drift.** Every resource matches the template.\n");
        return out;
    }
    let _ = writeln!(out, "| resource | type | status | properties |");
    let _ = writeln!(out, "|---|---|---|---|");
    for d in drifts {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            d.address.as_deref().unwrap_or(&d.logical_id),
            d.resource_type,
            d.status,
            d.properties.join(", ")
        );
    }
    out
}
