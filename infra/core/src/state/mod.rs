//! State: what the engine has applied, per (stack, env), kept in S3 next to a lock and a
//! journal. The document maps addresses to kind, physical id, ARN, a hash of the properties
//! last applied, the protection flag and the recorded dependencies; plus serial and lineage.
//! No property values are stored, so no secret can end up here.

pub mod journal;
pub mod lock;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kinds;
use crate::model::{Address, Kind, Resource};

pub use journal::{Journal, JournalEntry};
pub use lock::{LockGuard, LockInfo, LockLost, LockWatch, TakenOver, Takeover};
pub use store::{StateError, StateStore, Stored};

pub const STATE_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDoc {
    pub version: u32,
    /// Identifies this state's history; a plan made against another lineage is refused.
    pub lineage: String,
    /// Incremented on every write.
    pub serial: u64,
    pub stack: String,
    pub env: String,
    pub resources: BTreeMap<Address, StateEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateEntry {
    pub kind: Kind,
    pub physical_id: String,
    pub arn: String,
    /// SHA-256 of the canonical fields last applied.
    pub properties_hash: String,
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub depends_on: BTreeSet<Address>,
}

impl StateDoc {
    pub fn new(stack: &str, env: &str) -> StateDoc {
        StateDoc {
            version: STATE_FORMAT_VERSION,
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            stack: stack.to_string(),
            env: env.to_string(),
            resources: BTreeMap::new(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<StateDoc, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Records that `resource` now exists with its desired properties.
    pub fn record(&mut self, resource: &Resource) {
        self.resources.insert(
            resource.address.clone(),
            StateEntry {
                kind: resource.address.kind,
                physical_id: resource.physical_id.clone(),
                arn: resource.arn.clone(),
                properties_hash: properties_hash(resource),
                protected: resource.protected,
                depends_on: resource.depends_on.clone(),
            },
        );
    }

    pub fn forget(&mut self, address: &Address) {
        self.resources.remove(address);
    }
}

/// Hash of a resource's canonical fields: equal for equal desired properties.
pub fn properties_hash(resource: &Resource) -> String {
    let fields = kinds::fields(&resource.spec);
    let bytes = serde_json::to_vec(&fields).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}
