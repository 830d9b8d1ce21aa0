//! The typed resource model: addresses, kinds, resources, typed references between them, and
//! the [`Stack`] a stack author builds. Everything here is plain data; nothing talks to AWS.

pub mod policy;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use crate::kinds::alarm::{AlarmMetric, AlarmSpec, MetricStat};
pub use crate::kinds::bucket::{
    BucketSpec, Encryption, LifecycleRule, PublicAccessBlock, Transition,
};
pub use crate::kinds::crawler::CrawlerSpec;
pub use crate::kinds::dashboard::DashboardSpec;
pub use crate::kinds::function_url::FunctionUrlSpec;
pub use crate::kinds::glue_database::GlueDatabaseSpec;
pub use crate::kinds::glue_table::{GlueTableSpec, Storage, TableColumn, View};
pub use crate::kinds::lambda::{LambdaCode, LambdaSpec};
pub use crate::kinds::log_group::LogGroupSpec;
pub use crate::kinds::permission::PermissionSpec;
pub use crate::kinds::role::RoleSpec;
pub use crate::kinds::rule::{RuleSpec, RuleTarget};
pub use crate::kinds::secret::{SecretFormat, SecretSpec};
pub use crate::kinds::secret_rotation::SecretRotationSpec;
pub use crate::kinds::topic::TopicSpec;
pub use crate::kinds::workgroup::{NamedQuery, WorkgroupSpec};
pub use policy::{PolicyDocument, Statement};

/// The resource kinds the engine knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Bucket,
    Role,
    Topic,
    LogGroup,
    Lambda,
    Permission,
    FunctionUrl,
    Rule,
    GlueDatabase,
    GlueTable,
    Crawler,
    Workgroup,
    Alarm,
    Dashboard,
    Secret,
    SecretRotation,
}

impl Kind {
    pub const ALL: [Kind; 16] = [
        Kind::Bucket,
        Kind::Role,
        Kind::Topic,
        Kind::LogGroup,
        Kind::Lambda,
        Kind::Permission,
        Kind::FunctionUrl,
        Kind::Rule,
        Kind::GlueDatabase,
        Kind::GlueTable,
        Kind::Crawler,
        Kind::Workgroup,
        Kind::Alarm,
        Kind::Dashboard,
        Kind::Secret,
        Kind::SecretRotation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bucket => "bucket",
            Kind::Role => "role",
            Kind::Topic => "topic",
            Kind::LogGroup => "log_group",
            Kind::Lambda => "lambda",
            Kind::Permission => "permission",
            Kind::FunctionUrl => "function_url",
            Kind::Rule => "rule",
            Kind::GlueDatabase => "glue_database",
            Kind::GlueTable => "glue_table",
            Kind::Crawler => "crawler",
            Kind::Workgroup => "workgroup",
            Kind::Alarm => "alarm",
            Kind::Dashboard => "dashboard",
            Kind::Secret => "secret",
            Kind::SecretRotation => "secret_rotation",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ModelError::UnknownKind(s.to_string()))
    }
}

/// `<kind>.<name>`: a resource's identity in the stack, stable across environments.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub kind: Kind,
    pub name: String,
}

impl Address {
    pub fn new(kind: Kind, name: impl Into<String>) -> Address {
        Address {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.name)
    }
}

impl FromStr for Address {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s
            .split_once('.')
            .ok_or_else(|| ModelError::BadAddress(s.to_string()))?;
        if name.is_empty() {
            return Err(ModelError::BadAddress(s.to_string()));
        }
        Ok(Address::new(kind.parse()?, name))
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Desired properties of one resource, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spec {
    Bucket(BucketSpec),
    Role(RoleSpec),
    Topic(TopicSpec),
    LogGroup(LogGroupSpec),
    Lambda(LambdaSpec),
    Permission(PermissionSpec),
    FunctionUrl(FunctionUrlSpec),
    Rule(RuleSpec),
    GlueDatabase(GlueDatabaseSpec),
    GlueTable(GlueTableSpec),
    Crawler(CrawlerSpec),
    Workgroup(WorkgroupSpec),
    Alarm(AlarmSpec),
    Dashboard(DashboardSpec),
    Secret(SecretSpec),
    SecretRotation(SecretRotationSpec),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Bucket(_) => Kind::Bucket,
            Spec::Role(_) => Kind::Role,
            Spec::Topic(_) => Kind::Topic,
            Spec::LogGroup(_) => Kind::LogGroup,
            Spec::Lambda(_) => Kind::Lambda,
            Spec::Permission(_) => Kind::Permission,
            Spec::FunctionUrl(_) => Kind::FunctionUrl,
            Spec::Rule(_) => Kind::Rule,
            Spec::GlueDatabase(_) => Kind::GlueDatabase,
            Spec::GlueTable(_) => Kind::GlueTable,
            Spec::Crawler(_) => Kind::Crawler,
            Spec::Workgroup(_) => Kind::Workgroup,
            Spec::Alarm(_) => Kind::Alarm,
            Spec::Dashboard(_) => Kind::Dashboard,
            Spec::Secret(_) => Kind::Secret,
            Spec::SecretRotation(_) => Kind::SecretRotation,
        }
    }

    /// The resource's tags; `None` for kinds AWS does not tag (permissions, Function URLs).
    pub fn tags(&self) -> Option<&BTreeMap<String, String>> {
        match self {
            Spec::Bucket(s) => Some(&s.tags),
            Spec::Role(s) => Some(&s.tags),
            Spec::Topic(s) => Some(&s.tags),
            Spec::LogGroup(s) => Some(&s.tags),
            Spec::Lambda(s) => Some(&s.tags),
            Spec::Rule(s) => Some(&s.tags),
            Spec::GlueDatabase(s) => Some(&s.tags),
            Spec::Crawler(s) => Some(&s.tags),
            Spec::Workgroup(s) => Some(&s.tags),
            Spec::Alarm(s) => Some(&s.tags),
            Spec::Secret(s) => Some(&s.tags),
            Spec::Permission(_)
            | Spec::FunctionUrl(_)
            | Spec::GlueTable(_)
            | Spec::Dashboard(_)
            | Spec::SecretRotation(_) => None,
        }
    }

    pub fn tags_mut(&mut self) -> Option<&mut BTreeMap<String, String>> {
        match self {
            Spec::Bucket(s) => Some(&mut s.tags),
            Spec::Role(s) => Some(&mut s.tags),
            Spec::Topic(s) => Some(&mut s.tags),
            Spec::LogGroup(s) => Some(&mut s.tags),
            Spec::Lambda(s) => Some(&mut s.tags),
            Spec::Rule(s) => Some(&mut s.tags),
            Spec::GlueDatabase(s) => Some(&mut s.tags),
            Spec::Crawler(s) => Some(&mut s.tags),
            Spec::Workgroup(s) => Some(&mut s.tags),
            Spec::Alarm(s) => Some(&mut s.tags),
            Spec::Secret(s) => Some(&mut s.tags),
            Spec::Permission(_)
            | Spec::FunctionUrl(_)
            | Spec::GlueTable(_)
            | Spec::Dashboard(_)
            | Spec::SecretRotation(_) => None,
        }
    }

    /// Addresses this spec refers to: the edges of the dependency graph.
    pub fn references(&self) -> BTreeSet<Address> {
        match self {
            Spec::Bucket(_)
            | Spec::LogGroup(_)
            | Spec::GlueDatabase(_)
            | Spec::Dashboard(_)
            | Spec::Secret(_) => BTreeSet::new(),
            Spec::Alarm(s) => s.references.clone(),
            Spec::SecretRotation(s) => s.references.clone(),
            Spec::GlueTable(s) => s.references.clone(),
            Spec::Crawler(s) => s.references.clone(),
            Spec::Workgroup(s) => s.references.clone(),
            Spec::Role(s) => s.references(),
            Spec::Topic(s) => s.references(),
            Spec::Lambda(s) => s.references.clone(),
            Spec::Permission(s) => s.references.clone(),
            Spec::FunctionUrl(s) => s.references.clone(),
            Spec::Rule(s) => s.references.clone(),
        }
    }
}

/// One resource of a stack: its address, the physical name derived for the environment, its
/// ARN (derivable from the name for every kind we manage, so plans hold no unknowns), and
/// its desired properties.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub address: Address,
    pub physical_id: String,
    pub arn: String,
    /// Refuse to delete or replace unless told explicitly. Recorded in state, so removing a
    /// protected resource from the code does not silently delete it.
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub depends_on: BTreeSet<Address>,
    pub spec: Spec,
    /// Policy rules (`compliance::Rule` ids) this resource is allowed to break, each with
    /// the reason a reviewer accepted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub waivers: BTreeMap<String, String>,
}

/// A typed handle on a resource of kind `K` in a stack: what other resources hold to refer
/// to it. It knows its target's address, name and ARN.
pub struct Ref<K> {
    pub address: Address,
    pub name: String,
    pub arn: String,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Ref<K> {
    fn clone(&self) -> Self {
        Ref {
            address: self.address.clone(),
            name: self.name.clone(),
            arn: self.arn.clone(),
            kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Ref<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ref({})", self.address)
    }
}

/// A kind's desired-properties type, usable with [`Stack::add`].
pub trait KindSpec: Sized {
    const KIND: Kind;
    /// The physical name of this resource (bucket name, role name, topic name, ...).
    fn physical_name(&self) -> &str;
    /// What identifies it live, when that is more than its name (e.g. function + statement).
    fn physical_id(&self) -> String {
        self.physical_name().to_string()
    }
    fn arn(&self, target: &Target) -> String;
    fn into_spec(self) -> Spec;
    /// Takes the physical name an `[[import]]` entry gives it (already checked by
    /// [`crate::kinds::imported_name`], which refuses the kinds that keep this default: those
    /// whose identity follows another resource's).
    fn import_as(&mut self, _name: String) {}
}

/// Where a stack is deployed: the environment's identity and its state location.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The stack's name, e.g. `linkedin-ads`.
    pub stack: String,
    /// Prefix of physical names, e.g. `linkedin-ads`.
    pub project: String,
    pub env: String,
    pub account_id: String,
    pub region: String,
    /// A protected environment refuses destroy unless told explicitly.
    pub protected: bool,
    pub state: StateLocation,
}

impl Target {
    /// `<project>-<env>-<name>`: the physical name of a resource of this environment.
    pub fn name(&self, name: &str) -> String {
        format!("{}-{}-{}", self.project, self.env, name)
    }

    /// The four ownership tags every taggable resource carries.
    pub fn ownership_tags(&self, address: &Address) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TAG_MANAGED_BY.to_string(), "infra".to_string()),
            (TAG_STACK.to_string(), self.stack.clone()),
            (TAG_ENV.to_string(), self.env.clone()),
            (TAG_ADDRESS.to_string(), address.to_string()),
        ])
    }
}

pub const TAG_MANAGED_BY: &str = "managed-by";
pub const TAG_STACK: &str = "infra:stack";
pub const TAG_ENV: &str = "infra:env";
pub const TAG_ADDRESS: &str = "infra:address";

/// Where state, lock and journal live: `s3://<bucket>/<prefix>/{state.json,lock.json,journal/}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateLocation {
    pub bucket: String,
    pub prefix: String,
}

/// Where a stack keeps versioned models (`s3://<bucket>/<prefix>/<model>/...`), which
/// `infra models` manages. Not a resource: the bucket is one, the models are data in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRegistry {
    pub bucket: String,
    pub prefix: String,
}

/// A stack: the target it is built for and its resources, in the order they were added.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stack {
    pub target: Target,
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub model_registry: Option<ModelRegistry>,
    /// Live resources this stack adopts (`[[import]]` in the env file): address -> the
    /// physical name the resource keeps. Set before resources are added: [`Stack::add`] gives
    /// an imported resource this name instead of the derived one, so every reference to it
    /// carries the imported name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub imports: BTreeMap<Address, String>,
}

impl Stack {
    pub fn new(target: Target) -> Stack {
        Stack {
            target,
            resources: Vec::new(),
            model_registry: None,
            imports: BTreeMap::new(),
        }
    }

    /// The physical name of `<kind>.<name>`: the imported one if an `[[import]]` names it,
    /// else `derived`. For names needed before the resource is added (a function's log group
    /// is named after the function; a topic's policy names the topic's own ARN).
    pub fn name_of(&self, kind: Kind, name: &str, derived: String) -> String {
        self.imports
            .get(&Address::new(kind, name))
            .cloned()
            .unwrap_or(derived)
    }

    /// Adds a resource under `<K::KIND>.<name>` and returns a typed handle on it. The
    /// ownership tags are added here, so every taggable resource carries them.
    pub fn add<K: KindSpec>(&mut self, name: &str, mut spec: K) -> Ref<K> {
        let address = Address::new(K::KIND, name);
        if let Some(imported) = self.imports.get(&address) {
            spec.import_as(imported.clone());
        }
        let physical_id = spec.physical_id();
        let arn = spec.arn(&self.target);
        let mut spec = spec.into_spec();
        let ownership = self.target.ownership_tags(&address);
        if let Some(tags) = spec.tags_mut() {
            tags.extend(ownership);
        }
        let depends_on = spec.references();
        self.resources.push(Resource {
            address: address.clone(),
            physical_id: physical_id.clone(),
            arn: arn.clone(),
            protected: false,
            depends_on,
            spec,
            waivers: BTreeMap::new(),
        });
        Ref {
            address,
            name: physical_id,
            arn,
            kind: PhantomData,
        }
    }

    /// Marks a resource as protected (see [`Resource::protected`]).
    pub fn protect<K>(&mut self, r: &Ref<K>) {
        if let Some(res) = self.resources.iter_mut().find(|x| x.address == r.address) {
            res.protected = true;
        }
    }

    /// Adds an explicit dependency edge `from -> to` that no reference carries.
    pub fn depend<A, B>(&mut self, from: &Ref<A>, to: &Ref<B>) {
        if let Some(res) = self
            .resources
            .iter_mut()
            .find(|x| x.address == from.address)
        {
            res.depends_on.insert(to.address.clone());
        }
    }

    /// Allows `target` to break `rule`, for `reason` (shown in every plan).
    pub fn waive<K>(&mut self, target: &Ref<K>, rule: crate::compliance::Rule, reason: &str) {
        let _ = self.waive_address(&target.address, rule.id(), reason);
    }

    /// As [`Stack::waive`], by address and rule id (e.g. from an env file); errors name what
    /// is unknown.
    pub fn waive_address(
        &mut self,
        address: &Address,
        rule: &str,
        reason: &str,
    ) -> Result<(), String> {
        if crate::compliance::Rule::from_id(rule).is_none() {
            return Err(format!(
                "`{rule}` is not a policy rule (one of {})",
                crate::compliance::Rule::ALL.map(|r| r.id()).join(", ")
            ));
        }
        if reason.trim().is_empty() {
            return Err("a waiver needs a reason".into());
        }
        let resource = self
            .resources
            .iter_mut()
            .find(|r| &r.address == address)
            .ok_or_else(|| format!("the stack has no resource `{address}`"))?;
        resource.waivers.insert(rule.into(), reason.trim().into());
        Ok(())
    }

    pub fn get(&self, address: &Address) -> Option<&Resource> {
        self.resources.iter().find(|r| &r.address == address)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error(
        "unknown resource kind `{0}` (known: bucket, role, topic, log_group, lambda, permission, function_url, rule, glue_database, glue_table, crawler, workgroup, alarm, dashboard, secret, secret_rotation)"
    )]
    UnknownKind(String),
    #[error("`{0}` is not an address of the form <kind>.<name>")]
    BadAddress(String),
}
