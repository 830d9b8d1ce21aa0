//! IAM policy documents: a small builder for stack authors, and the canonical form used to
//! compare documents (percent-decoded, single values as lists, order not significant).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Address, Ref};

/// An IAM (or resource) policy document, plus the addresses of the resources it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyDocument {
    pub document: Value,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub references: BTreeSet<Address>,
}

impl PolicyDocument {
    pub fn new(statements: Vec<Statement>) -> PolicyDocument {
        let references = statements
            .iter()
            .flat_map(|s| s.references.iter().cloned())
            .collect();
        let document = json!({
            "Version": "2012-10-17",
            "Statement": statements.into_iter().map(Statement::into_json).collect::<Vec<_>>(),
        });
        PolicyDocument {
            document,
            references,
        }
    }

    /// A document taken as it is (e.g. read back from AWS).
    pub fn from_json(document: Value) -> PolicyDocument {
        PolicyDocument {
            document,
            references: BTreeSet::new(),
        }
    }

    /// Parses a document as AWS returns it: JSON, possibly percent-encoded.
    pub fn parse_aws(text: &str) -> Result<PolicyDocument, serde_json::Error> {
        let decoded = decode_policy_text(text);
        Ok(PolicyDocument::from_json(serde_json::from_str(&decoded)?))
    }

    /// The document as compact JSON, as sent to AWS.
    pub fn to_aws(&self) -> String {
        self.document.to_string()
    }

    /// The canonical form: what two documents are compared by.
    pub fn canonical(&self) -> Value {
        canonical_policy(&self.document)
    }
}

/// One statement, built fluently: `Statement::allow(["s3:GetObject"]).on(bucket.arn + "/*")`.
#[derive(Clone, Debug)]
pub struct Statement {
    sid: Option<String>,
    effect: &'static str,
    principal: Option<Value>,
    actions: Vec<String>,
    resources: Vec<String>,
    condition: Option<Value>,
    references: BTreeSet<Address>,
}

impl Statement {
    pub fn allow<I, S>(actions: I) -> Statement
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Statement {
            sid: None,
            effect: "Allow",
            principal: None,
            actions: actions.into_iter().map(Into::into).collect(),
            resources: Vec::new(),
            condition: None,
            references: BTreeSet::new(),
        }
    }

    pub fn sid(mut self, sid: &str) -> Statement {
        self.sid = Some(sid.to_string());
        self
    }

    /// A literal resource ARN or pattern.
    pub fn on(mut self, resource: impl Into<String>) -> Statement {
        self.resources.push(resource.into());
        self
    }

    /// The ARN of a resource of the stack (plus `suffix`, e.g. `/raw/*`); records the edge.
    pub fn on_ref<K>(mut self, target: &Ref<K>, suffix: &str) -> Statement {
        self.resources.push(format!("{}{}", target.arn, suffix));
        self.references.insert(target.address.clone());
        self
    }

    /// A service principal, e.g. `lambda.amazonaws.com`.
    pub fn service_principal(mut self, service: &str) -> Statement {
        self.principal = Some(json!({ "Service": service }));
        self
    }

    /// Adds `operator: { key: value }` to the statement's condition block.
    pub fn condition(mut self, operator: &str, key: &str, value: impl Into<Value>) -> Statement {
        let condition = self.condition.get_or_insert_with(|| json!({}));
        if let Value::Object(ops) = condition {
            let entry = ops.entry(operator.to_string()).or_insert_with(|| json!({}));
            if let Value::Object(keys) = entry {
                keys.insert(key.to_string(), value.into());
            }
        }
        self
    }

    fn into_json(self) -> Value {
        let mut out = Map::new();
        if let Some(sid) = self.sid {
            out.insert("Sid".into(), Value::String(sid));
        }
        out.insert("Effect".into(), Value::String(self.effect.into()));
        if let Some(principal) = self.principal {
            out.insert("Principal".into(), principal);
        }
        out.insert("Action".into(), one_or_many(self.actions));
        if !self.resources.is_empty() {
            out.insert("Resource".into(), one_or_many(self.resources));
        }
        if let Some(condition) = self.condition {
            out.insert("Condition".into(), condition);
        }
        Value::Object(out)
    }
}

fn one_or_many(mut items: Vec<String>) -> Value {
    if items.len() == 1 {
        Value::String(items.remove(0))
    } else {
        Value::Array(items.into_iter().map(Value::String).collect())
    }
}

/// IAM answers documents percent-encoded; other services answer plain JSON.
pub fn decode_policy_text(text: &str) -> String {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return text.to_string();
    }
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Canonical form of a policy document: `Statement` always a list, single strings inside
/// Action/NotAction/Resource/NotResource/Principal/Condition turned into sorted, deduplicated
/// lists, statements sorted. Documents equal in meaning (up to ordering) are equal here.
pub fn canonical_policy(document: &Value) -> Value {
    let Value::Object(doc) = document else {
        return document.clone();
    };
    let mut out = Map::new();
    for (key, value) in doc {
        if key == "Statement" {
            let statements = match value {
                Value::Array(items) => items.iter().map(canonical_statement).collect(),
                single => vec![canonical_statement(single)],
            };
            let mut statements: Vec<Value> = statements;
            statements.sort_by_key(|s| s.to_string());
            out.insert(key.clone(), Value::Array(statements));
        } else {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

fn canonical_statement(statement: &Value) -> Value {
    let Value::Object(fields) = statement else {
        return statement.clone();
    };
    let mut out = Map::new();
    for (key, value) in fields {
        let canonical = match key.as_str() {
            "Action" | "NotAction" | "Resource" | "NotResource" => string_set(value),
            "Principal" | "NotPrincipal" => match value {
                Value::Object(principals) => Value::Object(
                    principals
                        .iter()
                        .map(|(k, v)| (k.clone(), string_set(v)))
                        .collect(),
                ),
                // "*" and {"AWS": "*"} mean the same.
                Value::String(s) if s == "*" => json!({ "AWS": ["*"] }),
                other => other.clone(),
            },
            "Condition" => match value {
                Value::Object(operators) => Value::Object(
                    operators
                        .iter()
                        .map(|(op, keys)| {
                            let keys = match keys {
                                Value::Object(keys) => Value::Object(
                                    keys.iter()
                                        .map(|(k, v)| (k.clone(), string_set(v)))
                                        .collect(),
                                ),
                                other => other.clone(),
                            };
                            (op.clone(), keys)
                        })
                        .collect(),
                ),
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), canonical);
    }
    Value::Object(out)
}

fn string_set(value: &Value) -> Value {
    let items: BTreeSet<String> = match value {
        Value::Array(items) => items.iter().map(scalar_text).collect(),
        other => std::iter::once(scalar_text(other)).collect(),
    };
    Value::Array(items.into_iter().map(Value::String).collect())
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_single_values_do_not_matter() {
        let a = json!({"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["s3:PutObject","s3:GetObject"],"Resource":"arn:a"},
            {"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]});
        let b = json!({"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com"]},"Action":["sts:AssumeRole"]},
            {"Action":["s3:GetObject","s3:PutObject"],"Resource":["arn:a"],"Effect":"Allow"}]});
        assert_eq!(canonical_policy(&a), canonical_policy(&b));
    }

    #[test]
    fn different_actions_differ() {
        let a = json!({"Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}});
        let b = json!({"Statement":{"Effect":"Allow","Action":"s3:PutObject","Resource":"*"}});
        assert_ne!(canonical_policy(&a), canonical_policy(&b));
    }

    #[test]
    fn percent_encoded_documents_decode() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        let doc = PolicyDocument::parse_aws(encoded).unwrap();
        assert_eq!(doc.document, json!({"Version":"2012-10-17","Statement":[]}));
    }

    #[test]
    fn canonical_is_idempotent() {
        let a = json!({"Statement":[{"Effect":"Allow","Action":"a:B","Resource":["y","x","x"],
            "Condition":{"StringEquals":{"k":"v"}}}]});
        let once = canonical_policy(&a);
        assert_eq!(canonical_policy(&once), once);
    }
}
