//! The diff and the rendered plan, on synthetic live state: no AWS involved. Plans are
//! snapshot-tested (insta) so that a change to what reviewers read is itself reviewed.

use std::collections::{BTreeMap, BTreeSet};

use infra_core::kinds::LiveMap;
use infra_core::model::{
    Address, Kind, LogGroupSpec, PolicyDocument, RoleSpec, Spec, Stack, StateLocation, Statement,
    Target,
};
use infra_core::plan::{self, Action, PlanError, PlanOptions};
use infra_core::render;
use infra_core::state::StateDoc;
use serde_json::json;

fn target() -> Target {
    Target {
        stack: "demo".into(),
        project: "demo".into(),
        env: "test".into(),
        account_id: "123456789012".into(),
        region: "us-east-1".into(),
        protected: false,
        state: StateLocation {
            bucket: "demo-state".into(),
            prefix: "demo/test".into(),
        },
    }
}

fn stack() -> Stack {
    let mut stack = Stack::new(target());
    let logs = stack.add(
        "worker",
        LogGroupSpec {
            name: "/aws/lambda/demo-test-worker".into(),
            retention_days: Some(14),
            tags: BTreeMap::new(),
        },
    );
    stack.add(
        "worker",
        RoleSpec::for_service("demo-test-worker".into(), "lambda.amazonaws.com", "worker").inline(
            "worker",
            PolicyDocument::new(vec![
                Statement::allow(["logs:CreateLogStream", "logs:PutLogEvents"]).on_ref(&logs, ":*"),
                Statement::allow(["s3:GetObject"]).on("arn:aws:s3:::demo-data/raw/*"),
            ]),
        ),
    );
    stack
}

/// Live state equal to the stack, as if applied.
fn live_of(stack: &Stack) -> LiveMap {
    stack
        .resources
        .iter()
        .map(|r| (r.address.clone(), Some(r.spec.clone())))
        .collect()
}

fn state_of(stack: &Stack) -> StateDoc {
    let mut doc = StateDoc::new(&stack.target.stack, &stack.target.env);
    doc.lineage = "00000000-0000-0000-0000-000000000000".into();
    for r in &stack.resources {
        doc.record(r);
    }
    doc.serial = 7;
    doc
}

fn role_mut(live: &mut LiveMap) -> &mut RoleSpec {
    match live.get_mut(&Address::new(Kind::Role, "worker")) {
        Some(Some(Spec::Role(role))) => role,
        _ => unreachable!("the fixture has role.worker"),
    }
}

fn diff(stack: &Stack, state: Option<&StateDoc>, live: &LiveMap) -> Result<plan::Plan, PlanError> {
    plan::diff(stack, state, live, &BTreeSet::new(), PlanOptions::default())
}

/// Timestamps and lineages vary; the text is what reviewers read.
fn text(plan: &plan::Plan) -> String {
    render::plan_text(plan)
}

#[test]
fn create_everything_from_nothing() {
    let stack = stack();
    let plan = diff(&stack, None, &LiveMap::new()).unwrap();
    assert_eq!((plan.summary.create, plan.summary.update), (2, 0));
    insta::assert_snapshot!("create", text(&plan));
    insta::assert_snapshot!("create_markdown", render::plan_markdown(&plan));
}

#[test]
fn applied_stack_is_a_no_op() {
    let stack = stack();
    let plan = diff(&stack, Some(&state_of(&stack)), &live_of(&stack)).unwrap();
    assert!(!plan.has_changes());
    insta::assert_snapshot!("no_op", text(&plan));
    insta::assert_snapshot!("no_op_markdown", render::plan_markdown(&plan));
}

#[test]
fn policy_order_and_encoding_do_not_make_a_diff() {
    let stack = stack();
    let mut live = live_of(&stack);
    let role = role_mut(&mut live);
    // As AWS answers: statements and actions reordered, single values as lists.
    let doc = role.inline_policies["worker"].document.clone();
    let mut statements = doc["Statement"].as_array().unwrap().clone();
    statements.reverse();
    for s in &mut statements {
        if let Some(actions) = s["Action"].as_array_mut() {
            actions.reverse();
        }
        if let Some(r) = s["Resource"].as_str() {
            s["Resource"] = json!([r]);
        }
    }
    role.inline_policies.insert(
        "worker".into(),
        PolicyDocument::from_json(json!({"Version": "2012-10-17", "Statement": statements})),
    );
    let plan = diff(&stack, Some(&state_of(&stack)), &live).unwrap();
    assert!(!plan.has_changes(), "{}", text(&plan));
}

#[test]
fn a_policy_change_shows_as_a_unified_diff() {
    let stack = stack();
    let mut live = live_of(&stack);
    let role = role_mut(&mut live);
    role.inline_policies.insert(
        "worker".into(),
        PolicyDocument::new(vec![
            Statement::allow(["logs:CreateLogStream", "logs:PutLogEvents"])
                .on("arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/demo-test-worker:*"),
            Statement::allow(["s3:GetObject", "s3:PutObject"]).on("arn:aws:s3:::demo-data/*"),
        ]),
    );
    role.tags.remove("infra:env");
    let plan = diff(&stack, Some(&state_of(&stack)), &live).unwrap();
    let change = plan
        .changes
        .iter()
        .find(|c| c.address.kind == Kind::Role)
        .unwrap();
    assert_eq!(change.action, Action::Update);
    let fields: Vec<&str> = change.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["inline_policies.worker", "tags.infra:env"]);
    insta::assert_snapshot!("update_policy", text(&plan));
    insta::assert_snapshot!("update_policy_markdown", render::plan_markdown(&plan));
}

#[test]
fn a_path_change_replaces_the_role() {
    let stack = stack();
    let mut live = live_of(&stack);
    role_mut(&mut live).path = "/legacy/".into();
    let plan = diff(&stack, Some(&state_of(&stack)), &live).unwrap();
    let change = plan
        .changes
        .iter()
        .find(|c| c.address.kind == Kind::Role)
        .unwrap();
    assert_eq!(change.action, Action::Replace);
    assert!(
        change
            .fields
            .iter()
            .any(|f| f.field == "path" && f.forces_replacement)
    );
    insta::assert_snapshot!("replace", text(&plan));
    insta::assert_snapshot!("replace_markdown", render::plan_markdown(&plan));
}

#[test]
fn a_resource_removed_from_the_stack_is_deleted() {
    let full = stack();
    let state = state_of(&full);
    let live = live_of(&full);
    let mut smaller = full.clone();
    smaller.resources.retain(|r| r.address.kind != Kind::Role);
    let plan = diff(&smaller, Some(&state), &live).unwrap();
    let change = plan
        .changes
        .iter()
        .find(|c| c.address.kind == Kind::Role)
        .unwrap();
    assert_eq!(change.action, Action::Delete);
    insta::assert_snapshot!("delete", text(&plan));
    insta::assert_snapshot!("delete_markdown", render::plan_markdown(&plan));
}

#[test]
fn a_protected_resource_is_not_deleted_without_permission() {
    let mut full = stack();
    full.resources[1].protected = true;
    let state = state_of(&full);
    let mut smaller = full.clone();
    smaller.resources.truncate(1);
    let err = diff(&smaller, Some(&state), &live_of(&full)).unwrap_err();
    assert!(matches!(err, PlanError::Protected(_)), "{err}");
    assert!(err.to_string().contains("role.worker (delete)"), "{err}");
    let allowed = plan::diff(
        &smaller,
        Some(&state),
        &live_of(&full),
        &BTreeSet::new(),
        PlanOptions {
            allow_protected: true,
            ..PlanOptions::default()
        },
    )
    .unwrap();
    assert_eq!(allowed.summary.delete, 1);
}

#[test]
fn a_live_resource_unknown_to_state_is_adopted_only_when_ours() {
    let stack = stack();
    let live = live_of(&stack);
    // Tags say it is ours (an interrupted apply): adopt.
    let plan = diff(&stack, None, &live).unwrap();
    assert!(
        plan.changes
            .iter()
            .all(|c| c.adopt && c.action == Action::NoOp)
    );
    assert!(plan.has_changes(), "adoption writes state");

    // Not ours: refuse, naming it.
    let mut foreign = live.clone();
    role_mut(&mut foreign).tags.clear();
    let err = diff(&stack, None, &foreign).unwrap_err();
    assert!(
        err.to_string().contains("role.worker (demo-test-worker)"),
        "{err}"
    );

    // Unless the journal says an interrupted apply meant to create it.
    let journaled = BTreeSet::from([Address::new(Kind::Role, "worker")]);
    let plan = plan::diff(&stack, None, &foreign, &journaled, PlanOptions::default()).unwrap();
    let role = plan
        .changes
        .iter()
        .find(|c| c.address.kind == Kind::Role)
        .unwrap();
    assert!(role.adopt && role.action == Action::Update);
}

#[test]
fn deleted_out_of_band_is_recreated_with_a_note() {
    let stack = stack();
    let mut live = live_of(&stack);
    live.insert(Address::new(Kind::LogGroup, "worker"), None);
    let plan = diff(&stack, Some(&state_of(&stack)), &live).unwrap();
    let change = plan
        .changes
        .iter()
        .find(|c| c.address.kind == Kind::LogGroup)
        .unwrap();
    assert_eq!(change.action, Action::Create);
    assert!(change.notes[0].contains("deleted out of band"));
}

#[test]
fn invalid_resources_are_reported_before_any_call() {
    let mut stack = stack();
    if let Spec::LogGroup(g) = &mut stack.resources[0].spec {
        g.retention_days = Some(15);
    }
    let err = plan::validate(&stack).unwrap_err();
    assert!(
        err.to_string()
            .contains("log_group.worker: retention_days: 15 days"),
        "{err}"
    );
}

#[test]
fn json_plan_has_the_documented_keys() {
    let stack = stack();
    let plan = diff(&stack, None, &LiveMap::new()).unwrap();
    let json = render::plan_json(&plan);
    assert_eq!(json["env"], "test");
    assert_eq!(json["summary"]["create"], 2);
    for key in ["update", "replace", "delete"] {
        assert_eq!(json["summary"][key], 0);
    }
    let change = &json["changes"][0];
    assert!(
        change["address"].is_string()
            && change["action"] == "create"
            && change["fields"].is_array()
    );
}

/// A stack with an alarm and a secret, and live state as AWS reports it.
fn monitored() -> (Stack, LiveMap) {
    use infra_core::model::{AlarmMetric, AlarmSpec, MetricStat, SecretFormat, SecretSpec};
    let mut stack = stack();
    stack.add(
        "worker-errors",
        AlarmSpec::new(
            "demo-test-worker-errors".into(),
            AlarmMetric::Single(
                MetricStat::new("AWS/Lambda", "Errors", "Sum", 300)
                    .dimension("FunctionName", "demo-test-worker"),
            ),
            "GreaterThanThreshold",
            0.0,
        ),
    );
    stack.add(
        "api-key",
        SecretSpec::new("demo-test-api-key".into(), "key", SecretFormat::Text),
    );
    let mut live = live_of(&stack);
    for spec in live.values_mut().flatten() {
        match spec {
            Spec::Alarm(a) => a.threshold = 5.0,
            Spec::Secret(s) => s.value_set = Some(false),
            _ => {}
        }
    }
    (stack, live)
}

#[test]
fn an_alarm_threshold_change_and_secret_status_render_without_values() {
    let (stack, live) = monitored();
    let state = state_of(&stack);
    let plan = diff(&stack, Some(&state), &live).unwrap();
    assert_eq!(plan.summary.update, 1);
    insta::assert_snapshot!("alarm_and_secret", text(&plan));
    let json = render::plan_json(&plan);
    assert_eq!(
        json["secrets"],
        json!([{"address": "secret.api-key", "name": "demo-test-api-key", "value_set": false}])
    );
}
