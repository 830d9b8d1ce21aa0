//! A stack as one CloudFormation template (`infra synth --format cloudformation`): the input
//! of the second engine, where AWS's own service does the apply.
//!
//! This module owns what is common to every resource: logical ids derived from addresses,
//! `DependsOn` from the stack's graph, deletion policies from protection, the tag list form,
//! where Lambda code lives (the assets bucket, under content-addressed keys) and the
//! template's limits. What each resource becomes is its kind's business: a `cloudformation`
//! function next to the kind's other verbs (`kinds::cloudformation` dispatches), so adding a
//! kind adds its template form beside its create and update.
//!
//! References are written as the final names and ARNs the model already knows (no unknowns
//! in a plan, none in a template); the graph's edges become `DependsOn`, so CloudFormation
//! creates and deletes in the engine's order. A kind's sub-resources (a topic's policy and
//! subscriptions, a workgroup's named queries) refer to their parent with `Ref`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::model::{Address, LambdaCode, Stack, Target};

/// CloudFormation's limit on resources in one template.
pub const MAX_RESOURCES: usize = 500;
/// The largest template body sent inline (`TemplateBody`); larger ones go through the assets
/// bucket (`TemplateURL`).
pub const MAX_INLINE_BYTES: usize = 51_200;
/// The largest template CloudFormation accepts from S3.
pub const MAX_TEMPLATE_BYTES: usize = 1_000_000;

/// Why a stack has no template.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("{first} and {second} would both have the logical id `{id}`: rename one")]
    LogicalIdClash {
        first: String,
        second: String,
        id: String,
    },
    #[error("{0}: its handler is not packaged, so its code has no key in the assets bucket")]
    NotPackaged(Address),
    #[error(
        "the template has {0} resources; CloudFormation allows {MAX_RESOURCES} per stack: split the stack"
    )]
    TooManyResources(usize),
    #[error(
        "the template is {0} bytes; CloudFormation allows {MAX_TEMPLATE_BYTES} (through S3): split the stack"
    )]
    TooLarge(usize),
}

/// Where the engine's artifacts live in an account and region, as `cdk bootstrap` makes: one
/// bucket, created once, holding Lambda code under content-addressed keys (an unchanged zip is
/// never uploaded twice) and templates too large to send inline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assets {
    pub bucket: String,
}

impl Assets {
    pub fn of(target: &Target) -> Assets {
        Assets {
            bucket: format!("infra-assets-{}-{}", target.account_id, target.region),
        }
    }

    /// The key of a Lambda package: its handler and the SHA-256 of its bytes, so that the key
    /// changes exactly when the code does (CloudFormation updates code only on a new key).
    pub fn code_key(code: &LambdaCode) -> Option<String> {
        use base64::Engine as _;
        let digest = base64::engine::general_purpose::STANDARD
            .decode(&code.code_sha256)
            .ok()
            .filter(|d| d.len() == 32)?;
        Some(format!(
            "lambda/{}/{}.zip",
            code.handler,
            hex::encode(digest)
        ))
    }

    /// The key a template is uploaded under when it is too large to send inline.
    pub fn template_key(target: &Target, body: &str) -> String {
        use sha2::Digest as _;
        let digest = hex::encode(sha2::Sha256::digest(body.as_bytes()));
        format!("templates/{}-{}/{digest}.json", target.stack, target.env)
    }
}

/// What a kind's `cloudformation` function sees besides its spec.
pub struct Context<'a> {
    pub target: &'a Target,
    pub assets: &'a Assets,
    pub address: &'a Address,
    /// The resource's own logical id, which its sub-resources `Ref`.
    pub logical_id: &'a str,
}

impl Context<'_> {
    /// `{"Ref": <this resource>}`: its physical id (a topic's ARN, a workgroup's name, ...).
    pub fn own_ref(&self) -> Value {
        json!({ "Ref": self.logical_id })
    }
}

/// One CloudFormation resource a resource of the stack becomes.
#[derive(Clone, Debug, PartialEq)]
pub struct CfnResource {
    /// Appended to the resource's logical id; empty for the resource itself.
    pub suffix: String,
    pub kind: &'static str,
    pub properties: Value,
}

impl CfnResource {
    /// The resource itself.
    pub fn main(kind: &'static str, properties: Value) -> CfnResource {
        CfnResource {
            suffix: String::new(),
            kind,
            properties: without_nulls(properties),
        }
    }

    /// A resource CloudFormation models apart that the engine keeps inside this one.
    pub fn part(suffix: &str, kind: &'static str, properties: Value) -> CfnResource {
        CfnResource {
            suffix: logical_part(suffix),
            kind,
            properties: without_nulls(properties),
        }
    }
}

/// Tags as most resource types take them: `[{"Key", "Value"}]`, sorted by key.
pub fn tag_list(tags: &BTreeMap<String, String>) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({ "Key": k, "Value": v }))
            .collect(),
    )
}

/// `Some(text)` unless empty: optional strings are left out rather than sent empty.
pub fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// Object members whose value is `null` are optional properties not set: dropped, at every
/// depth, so kinds can write `Option`s directly.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// `lambda.copy-generator` -> `LambdaCopyGenerator`: logical ids are alphanumeric, so each
/// run of other characters starts a new capitalized word.
pub fn logical_id(address: &Address) -> String {
    logical_part(&format!("{}.{}", address.kind, address.name))
}

fn logical_part(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The template of `stack`: every resource as its CloudFormation types, in a deterministic
/// document (keys sorted, nothing of the machine or the run in it).
pub fn template(stack: &Stack, assets: &Assets) -> Result<Value, TemplateError> {
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    let mut claim = |id: String, owner: String| -> Result<(), TemplateError> {
        match ids.get(&id) {
            Some(first) => Err(TemplateError::LogicalIdClash {
                first: first.clone(),
                second: owner,
                id,
            }),
            None => {
                ids.insert(id, owner);
                Ok(())
            }
        }
    };
    let intrinsics = arn_intrinsics(stack);
    let mut resources = Map::new();
    let mut ordered: Vec<_> = stack.resources.iter().collect();
    ordered.sort_by(|a, b| a.address.cmp(&b.address));
    for resource in ordered {
        let id = logical_id(&resource.address);
        let cx = Context {
            target: &stack.target,
            assets,
            address: &resource.address,
            logical_id: &id,
        };
        for mut part in crate::kinds::cloudformation(resource, &cx)? {
            // What the resource refers to becomes `Ref` / `Fn::GetAtt`: CloudFormation then
            // knows the order itself (and an implementation that ignores `DependsOn`, as
            // moto's change sets do, still creates a role before its function).
            let mut linked = std::collections::BTreeSet::new();
            part.properties = link(part.properties, &mut |text| {
                let (address, intrinsic) = intrinsics.get(text)?;
                (resource.depends_on.contains(address) && *address != &resource.address).then(
                    || {
                        linked.insert(logical_id(address));
                        intrinsic.clone()
                    },
                )
            });
            let depends_on: Vec<Value> = resource
                .depends_on
                .iter()
                .map(logical_id)
                .filter(|id| !linked.contains(id))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(Value::String)
                .collect();
            let part_id = format!("{id}{}", part.suffix);
            let owner = if part.suffix.is_empty() {
                resource.address.to_string()
            } else {
                format!("{} ({})", resource.address, part.kind)
            };
            claim(part_id.clone(), owner)?;
            let mut entry = Map::new();
            entry.insert("Type".into(), Value::String(part.kind.into()));
            entry.insert("Properties".into(), part.properties);
            if part.suffix.is_empty() && !depends_on.is_empty() {
                entry.insert("DependsOn".into(), Value::Array(depends_on.clone()));
            }
            // Protection lives in the template too: CloudFormation keeps a protected
            // resource when the stack deletes or replaces it.
            if resource.protected {
                entry.insert("DeletionPolicy".into(), "Retain".into());
                entry.insert("UpdateReplacePolicy".into(), "Retain".into());
            }
            resources.insert(part_id, Value::Object(entry));
        }
    }
    if resources.len() > MAX_RESOURCES {
        return Err(TemplateError::TooManyResources(resources.len()));
    }
    let target = &stack.target;
    Ok(json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": format!("{} ({}), synthesized by infra", target.stack, target.env),
        "Metadata": {
            "infra": {
                "stack": target.stack,
                "env": target.env,
                "account_id": target.account_id,
                "region": target.region,
            }
        },
        "Resources": resources,
    }))
}

/// Each ARN a template can write as an intrinsic instead: `Fn::GetAtt [id, Arn]` for the
/// types whose `Arn` attribute is the ARN the model knows, `Ref` for a topic (whose `Ref` is
/// its ARN). A log group's `Arn` ends in `:*` in CloudFormation, so it stays a literal.
fn arn_intrinsics(stack: &Stack) -> BTreeMap<String, (&Address, Value)> {
    use crate::model::Kind;
    stack
        .resources
        .iter()
        .filter_map(|r| {
            let id = logical_id(&r.address);
            let intrinsic = match r.address.kind {
                Kind::Role | Kind::Lambda | Kind::Bucket | Kind::Rule => {
                    json!({ "Fn::GetAtt": [id, "Arn"] })
                }
                Kind::Topic => json!({ "Ref": id }),
                _ => return None,
            };
            Some((r.arn.clone(), (&r.address, intrinsic)))
        })
        .collect()
}

/// `value` with every string that `intrinsic` knows replaced by what it gives.
fn link(value: Value, intrinsic: &mut dyn FnMut(&str) -> Option<Value>) -> Value {
    match value {
        Value::String(text) => intrinsic(&text).unwrap_or(Value::String(text)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| link(v, &mut *intrinsic))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, link(v, &mut *intrinsic)))
                .collect(),
        ),
        other => other,
    }
}

/// How a template's body reaches CloudFormation.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    Inline,
    /// Through the assets bucket: larger than an inline body may be.
    ViaAssets,
}

/// The template as written and sent: pretty JSON, a final newline.
pub fn to_text(template: &Value) -> String {
    serde_json::to_string_pretty(template).unwrap_or_default() + "\n"
}

/// Where a template of `text` goes, or why it cannot go at all; checked before any call.
pub fn route(text: &str) -> Result<Body, TemplateError> {
    match text.len() {
        n if n > MAX_TEMPLATE_BYTES => Err(TemplateError::TooLarge(n)),
        n if n > MAX_INLINE_BYTES => Ok(Body::ViaAssets),
        _ => Ok(Body::Inline),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    #[test]
    fn logical_ids_are_alphanumeric_words() {
        assert_eq!(
            logical_id(&Address::new(Kind::Lambda, "copy-generator")),
            "LambdaCopyGenerator"
        );
        assert_eq!(
            logical_id(&Address::new(Kind::GlueTable, "raw_analytics")),
            "GlueTableRawAnalytics"
        );
        assert_eq!(
            logical_part("top_creatives_by_ctr_7d"),
            "TopCreativesByCtr7d"
        );
    }

    #[test]
    fn nulls_are_dropped_at_every_depth() {
        let value = without_nulls(json!({"a": null, "b": {"c": null, "d": [ {"e": null} ]}}));
        assert_eq!(value, json!({"b": {"d": [{}]}}));
    }

    #[test]
    fn code_keys_are_the_hex_digest() {
        let code = LambdaCode {
            handler: "collector".into(),
            zip: "x.zip".into(),
            code_sha256: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=".into(),
            size: 0,
        };
        assert_eq!(
            Assets::code_key(&code).as_deref(),
            Some(
                "lambda/collector/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855.zip"
            )
        );
        let unpackaged = LambdaCode {
            code_sha256: "(packaged at plan time)".into(),
            ..code
        };
        assert_eq!(Assets::code_key(&unpackaged), None);
    }

    #[test]
    fn large_templates_go_through_the_assets_bucket() {
        assert_eq!(route(&"x".repeat(MAX_INLINE_BYTES)), Ok(Body::Inline));
        assert_eq!(
            route(&"x".repeat(MAX_INLINE_BYTES + 1)),
            Ok(Body::ViaAssets)
        );
        assert_eq!(
            route(&"x".repeat(MAX_TEMPLATE_BYTES + 1)),
            Err(TemplateError::TooLarge(MAX_TEMPLATE_BYTES + 1))
        );
    }
}
