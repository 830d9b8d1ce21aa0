//! The apply journal: a write-ahead log in S3. Before every create the engine records its
//! intent; after every operation, its outcome. One object per entry under
//! `journal/<run-id>/`, since S3 objects cannot be appended to. A run that finishes cleanly
//! checkpoints (deletes) its entries once state holds every outcome; a run that was killed
//! leaves them, and the next plan uses its unmatched intents to adopt what it created.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::{StateError, StateStore};
use crate::aws::failed;
use crate::model::Address;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum JournalEntry {
    Intent {
        run: String,
        seq: u64,
        at: DateTime<Utc>,
        address: Address,
        operation: String,
        physical_id: String,
    },
    Outcome {
        run: String,
        seq: u64,
        at: DateTime<Utc>,
        address: Address,
        operation: String,
        ok: bool,
        error: Option<String>,
    },
}

#[derive(Debug)]
pub struct Journal {
    store: StateStore,
    pub run: String,
    seq: AtomicU64,
}

impl Journal {
    pub fn start(store: StateStore) -> Journal {
        let run = format!(
            "{}-{}",
            Utc::now().format("%Y%m%dT%H%M%SZ"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Journal {
            store,
            run,
            seq: AtomicU64::new(0),
        }
    }

    fn prefix(store: &StateStore) -> String {
        store.key("journal/")
    }

    pub async fn intent(
        &self,
        address: &Address,
        operation: &str,
        physical_id: &str,
    ) -> Result<(), StateError> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        self.write(JournalEntry::Intent {
            run: self.run.clone(),
            seq,
            at: Utc::now(),
            address: address.clone(),
            operation: operation.to_string(),
            physical_id: physical_id.to_string(),
        })
        .await
    }

    pub async fn outcome(
        &self,
        address: &Address,
        operation: &str,
        error: Option<String>,
    ) -> Result<(), StateError> {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        self.write(JournalEntry::Outcome {
            run: self.run.clone(),
            seq,
            at: Utc::now(),
            address: address.clone(),
            operation: operation.to_string(),
            ok: error.is_none(),
            error,
        })
        .await
    }

    async fn write(&self, entry: JournalEntry) -> Result<(), StateError> {
        let seq = match &entry {
            JournalEntry::Intent { seq, .. } | JournalEntry::Outcome { seq, .. } => *seq,
        };
        let key = format!("{}{}/{:08}.json", Self::prefix(&self.store), self.run, seq);
        self.store
            .aws
            .s3
            .put_object()
            .bucket(&self.store.location.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(
                serde_json::to_vec(&entry).unwrap_or_default(),
            ))
            .send()
            .await
            .map_err(failed("PutObject"))?;
        Ok(())
    }

    /// Keys of every entry left in the journal (runs not checkpointed), oldest first.
    pub async fn list_keys(store: &StateStore) -> Result<Vec<String>, StateError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = store
                .aws
                .s3
                .list_objects_v2()
                .bucket(&store.location.bucket)
                .prefix(Self::prefix(store))
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(failed("ListObjectsV2"));
            let page = match page {
                Ok(page) => page,
                Err(e) if e.is("NoSuchBucket") => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_string()),
                None => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The entries behind `keys`.
    pub async fn read_entries(
        store: &StateStore,
        keys: &[String],
    ) -> Result<Vec<(String, JournalEntry)>, StateError> {
        let mut entries = Vec::new();
        for key in keys {
            let out = match store
                .aws
                .s3
                .get_object()
                .bucket(&store.location.bucket)
                .key(key)
                .send()
                .await
                .map_err(failed("GetObject"))
            {
                Ok(out) => out,
                // Checkpointed by a concurrent run meanwhile.
                Err(e) if e.is("NoSuchKey") => continue,
                Err(e) => return Err(e.into()),
            };
            let bytes = store.collect(out.body, key).await?;
            if let Ok(entry) = serde_json::from_slice::<JournalEntry>(&bytes) {
                entries.push((key.clone(), entry));
            }
        }
        Ok(entries)
    }

    /// Addresses whose create was intended but did not succeed (no outcome: the process
    /// died; a failed outcome: it may have stopped half way). Such a resource may exist
    /// without being in state, and without its tags yet.
    pub fn unfinished_creates(entries: &[(String, JournalEntry)]) -> BTreeSet<Address> {
        let mut open: BTreeSet<(String, Address)> = BTreeSet::new();
        for (_, entry) in entries {
            match entry {
                JournalEntry::Intent { run, address, .. } => {
                    open.insert((run.clone(), address.clone()));
                }
                JournalEntry::Outcome {
                    run,
                    address,
                    ok: true,
                    ..
                } => {
                    open.remove(&(run.clone(), address.clone()));
                }
                JournalEntry::Outcome { .. } => {}
            }
        }
        open.into_iter().map(|(_, a)| a).collect()
    }

    /// Deletes the given journal objects (after state holds their outcomes).
    pub async fn checkpoint(store: &StateStore, keys: &[String]) -> Result<(), StateError> {
        for chunk in keys.chunks(1000) {
            let mut ids = Vec::new();
            for key in chunk {
                ids.push(
                    ObjectIdentifier::builder()
                        .key(key)
                        .build()
                        .map_err(|e| StateError::Bootstrap(e.to_string()))?,
                );
            }
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| StateError::Bootstrap(e.to_string()))?;
            store
                .aws
                .s3
                .delete_objects()
                .bucket(&store.location.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(failed("DeleteObjects"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn at() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(0, 0).unwrap_or_default()
    }

    fn intent(run: &str, name: &str) -> (String, JournalEntry) {
        let address = Address::new(Kind::Role, name);
        (
            String::new(),
            JournalEntry::Intent {
                run: run.into(),
                seq: 0,
                at: at(),
                address,
                operation: "create".into(),
                physical_id: name.into(),
            },
        )
    }

    fn outcome(run: &str, name: &str, ok: bool) -> (String, JournalEntry) {
        let address = Address::new(Kind::Role, name);
        (
            String::new(),
            JournalEntry::Outcome {
                run: run.into(),
                seq: 1,
                at: at(),
                address,
                operation: "create".into(),
                ok,
                error: None,
            },
        )
    }

    #[test]
    fn only_successful_outcomes_close_an_intent() {
        let entries = vec![
            intent("r1", "done"),
            outcome("r1", "done", true),
            intent("r1", "killed"),
            intent("r1", "failed"),
            outcome("r1", "failed", false),
        ];
        let open: Vec<String> = Journal::unfinished_creates(&entries)
            .iter()
            .map(|a| a.name.clone())
            .collect();
        assert_eq!(open, ["failed", "killed"]);
    }
}
