//! Reading the processor's datasets back, for the handlers and trainers downstream of it: the
//! daily aggregates of a range of days, per-creative totals over them, and the creative
//! metadata.

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use datasets::{CREATIVE_METADATA_KEY, DAILY_AGGREGATES};
use serde::{Deserialize, Serialize};

use crate::features::Performance;
use crate::processor::{CreativeMetadata, Creatives};
use crate::storage::{Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ProcessedError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{key}: {message}")]
    Unreadable { key: String, message: String },
}

/// The columns of a `daily_aggregates` row that downstream models and rules use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DailyRecord {
    pub date: String,
    pub creative_id: String,
    #[serde(default)]
    pub account_id: String,
    #[serde(default)]
    pub campaign_id: String,
    #[serde(default)]
    pub impressions: i64,
    #[serde(default)]
    pub clicks: i64,
    #[serde(default)]
    pub spend_usd: f64,
    #[serde(default)]
    pub conversions: i64,
}

/// Parses one `daily_aggregates` Parquet file.
pub fn parse_daily(key: &str, file: Vec<u8>) -> Result<Vec<DailyRecord>, ProcessedError> {
    let unreadable = |message: String| ProcessedError::Unreadable {
        key: key.to_string(),
        message,
    };
    crate::columnar::read_json(file)
        .map_err(|e| unreadable(e.to_string()))?
        .into_iter()
        .map(|row| serde_json::from_value(row).map_err(|e| unreadable(e.to_string())))
        .collect()
}

/// The daily aggregates of `from` through `to` (days without a file are skipped).
pub async fn read_daily(
    storage: &Storage,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DailyRecord>, ProcessedError> {
    let mut records = Vec::new();
    for day in from.iter_days().take_while(|d| *d <= to) {
        let key = format!(
            "{}part-0.parquet",
            DAILY_AGGREGATES.partition_prefix(&day.to_string())
        );
        if let Some(file) = storage.get(&key).await? {
            records.extend(parse_daily(&key, file)?);
        }
    }
    Ok(records)
}

/// The trailing `days` days ending `to`.
pub fn trailing(to: NaiveDate, days: u32) -> (NaiveDate, NaiveDate) {
    let from = to
        .checked_sub_days(Days::new(u64::from(days.max(1)) - 1))
        .unwrap_or(to);
    (from, to)
}

/// One creative's totals over a range of days.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CreativeTotals {
    pub creative_id: String,
    pub account_id: String,
    pub campaign_id: String,
    pub performance: Performance,
}

/// Totals per creative (by id) of `records`.
pub fn totals_per_creative(records: &[DailyRecord]) -> BTreeMap<String, CreativeTotals> {
    let mut sums: BTreeMap<&str, (&DailyRecord, i64, i64, f64, i64)> = BTreeMap::new();
    for r in records {
        let s = sums.entry(&r.creative_id).or_insert((r, 0, 0, 0.0, 0));
        s.1 += r.impressions;
        s.2 += r.clicks;
        s.3 += r.spend_usd;
        s.4 += r.conversions;
    }
    sums.into_iter()
        .map(|(id, (r, impressions, clicks, spend, conversions))| {
            (
                id.to_string(),
                CreativeTotals {
                    creative_id: id.to_string(),
                    account_id: r.account_id.clone(),
                    campaign_id: r.campaign_id.clone(),
                    performance: Performance::new(impressions, clicks, spend, conversions),
                },
            )
        })
        .collect()
}

/// The creative metadata the processor keeps (none before its first run).
pub async fn read_creatives(storage: &Storage) -> Result<Creatives, ProcessedError> {
    let Some(body) = storage.get(CREATIVE_METADATA_KEY).await? else {
        return Ok(Creatives::new());
    };
    let all: Vec<CreativeMetadata> =
        serde_json::from_slice(&body).map_err(|e| ProcessedError::Unreadable {
            key: CREATIVE_METADATA_KEY.into(),
            message: e.to_string(),
        })?;
    Ok(all
        .into_iter()
        .map(|c| (c.creative.creative_id.clone(), c))
        .collect())
}
