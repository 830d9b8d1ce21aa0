//! Properties of normalization and diffing, over generated policy documents: canonical form
//! is idempotent, blind to the order of statements and of values inside them, and a diff of
//! any fields with themselves is empty.

use infra_core::kinds::Fields;
use infra_core::model::Kind;
use infra_core::model::policy::canonical_policy;
use infra_core::plan::field_changes;
use proptest::prelude::*;
use serde_json::{Value, json};

fn action() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("s3:GetObject".to_string()),
        Just("s3:PutObject".to_string()),
        Just("logs:PutLogEvents".to_string()),
        Just("cloudwatch:PutMetricData".to_string()),
        "[a-z]{2,8}:[A-Z][a-zA-Z]{2,12}",
    ]
}

fn resource() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        "arn:aws:s3:::[a-z0-9-]{3,12}(/[a-z*]{1,6})?",
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/[a-z-]{1,10}",
    ]
}

/// A value as AWS may hand it back: one string, or a list of strings.
fn one_or_many(items: Vec<String>) -> Value {
    if items.len() == 1 && items[0].len().is_multiple_of(2) {
        Value::String(items[0].clone())
    } else {
        json!(items)
    }
}

prop_compose! {
    fn statement()(
        effect in prop_oneof![Just("Allow"), Just("Deny")],
        actions in prop::collection::vec(action(), 1..5),
        resources in prop::collection::vec(resource(), 1..4),
        sid in proptest::option::of("[A-Z][a-zA-Z]{0,10}"),
        condition in proptest::option::of(prop::collection::vec("[a-z/*]{1,8}", 1..3)),
        principal in proptest::option::of(prop_oneof![
            Just(json!("*")),
            Just(json!({"Service": "lambda.amazonaws.com"})),
            Just(json!({"AWS": ["arn:aws:iam::123456789012:root"]})),
        ]),
    ) -> Value {
        let mut s = json!({
            "Effect": effect,
            "Action": one_or_many(actions),
            "Resource": one_or_many(resources),
        });
        if let Some(sid) = sid {
            s["Sid"] = json!(sid);
        }
        if let Some(values) = condition {
            s["Condition"] = json!({"StringLike": {"s3:prefix": one_or_many(values)}});
        }
        if let Some(principal) = principal {
            s["Principal"] = principal;
        }
        s
    }
}

prop_compose! {
    fn document()(statements in prop::collection::vec(statement(), 1..6)) -> Value {
        if statements.len() == 1 {
            json!({"Version": "2012-10-17", "Statement": statements[0].clone()})
        } else {
            json!({"Version": "2012-10-17", "Statement": statements})
        }
    }
}

/// `document` with its statements, and the values inside each, in another order.
fn reordered(document: &Value, seed: u64) -> Value {
    let mut doc = document.clone();
    let rotate = |items: &mut Vec<Value>, by: u64| {
        if !items.is_empty() {
            let n = (by as usize) % items.len();
            items.rotate_left(n);
            if by.is_multiple_of(3) {
                items.reverse();
            }
        }
    };
    let statements = match doc.get_mut("Statement") {
        Some(Value::Array(items)) => items,
        _ => return doc,
    };
    rotate(statements, seed);
    for (i, statement) in statements.iter_mut().enumerate() {
        for key in ["Action", "Resource"] {
            if let Some(Value::Array(values)) = statement.get_mut(key) {
                let mut items = std::mem::take(values);
                rotate(&mut items, seed.wrapping_add(i as u64 * 7 + 1));
                *values = items;
            }
        }
    }
    doc
}

fn fields_of(document: &Value) -> Fields {
    Fields::from([("policy".to_string(), canonical_policy(document))])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonical_form_is_idempotent(doc in document()) {
        let once = canonical_policy(&doc);
        prop_assert_eq!(canonical_policy(&once), once);
    }

    #[test]
    fn documents_differing_only_in_order_compare_equal(doc in document(), seed in any::<u64>()) {
        let other = reordered(&doc, seed);
        prop_assert_eq!(canonical_policy(&other), canonical_policy(&doc));
        prop_assert!(field_changes(Kind::Role, &fields_of(&doc), &fields_of(&other)).is_empty());
    }

    #[test]
    fn a_diff_of_any_fields_with_themselves_is_empty(doc in document(), retention in 1..4000i32) {
        let mut fields = fields_of(&doc);
        fields.insert("retention_days".into(), json!(retention));
        for kind in [Kind::Role, Kind::LogGroup, Kind::Bucket, Kind::Alarm] {
            prop_assert!(field_changes(kind, &fields, &fields.clone()).is_empty());
        }
    }

    #[test]
    fn a_real_change_is_always_seen(doc in document(), extra in action()) {
        let mut changed = doc.clone();
        let statement = json!({"Effect": "Allow", "Action": extra, "Resource": "arn:aws:s3:::changed"});
        match changed.get_mut("Statement") {
            Some(Value::Array(items)) => items.push(statement),
            _ => changed["Statement"] = json!([doc["Statement"].clone(), statement]),
        }
        prop_assert!(!field_changes(Kind::Role, &fields_of(&doc), &fields_of(&changed)).is_empty());
    }
}
