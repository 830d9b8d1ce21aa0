//! The processor: one run turns the collector's raw NDJSON of the recent days into the
//! analysis-ready datasets (`datasets::DAILY_AGGREGATES`, `datasets::WEEKLY_SUMMARIES`, and
//! `datasets::CREATIVE_METADATA_KEY`).
//!
//! It covers the trailing `LOOKBACK_DAYS` (the days the collector restates), widened back to
//! the Monday of the first one's ISO week so every week it rewrites is whole. Per day it keeps
//! the latest run's row per creative (restatements win), joins the creative's latest known
//! content, and rewrites the day's Parquet file; the weekly files are rewritten from the same
//! rows. Every object is rewritten whole from raw data, so re-running a window changes nothing
//! and duplicates nothing. Days are processed one at a time, so memory holds one day's rows.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::StandardUnit;
use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use datasets::{
    CREATIVE_METADATA_KEY, DAILY_AGGREGATES, RAW_ANALYTICS, RAW_CREATIVES, WEEKLY_SUMMARIES,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Boxed;
use crate::columnar::{self, Cell, ColumnarError, Columns};
use crate::config::{self, ConfigError};
use crate::features::{
    ContentFeatures, Performance, RawAnalytics, WeeklySummary, WeeklyTotals,
    latest_per_creative_day,
};
use crate::linkedin::creatives::CreativeRow;
use crate::metrics::{Metrics, MetricsError};
use crate::storage::{self, Storage, StorageError};

/// The function's configuration (the stack sets these variables).
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessorConfig {
    pub bucket: String,
    pub namespace: String,
    pub environment: String,
    pub lookback_days: u32,
}

impl ProcessorConfig {
    pub fn from_env() -> Result<ProcessorConfig, ConfigError> {
        Ok(ProcessorConfig {
            bucket: config::required("DATA_BUCKET")?,
            namespace: config::or_default("METRICS_NAMESPACE", "LinkedInAds"),
            environment: config::or_default("METRICS_ENVIRONMENT", "unknown"),
            lookback_days: config::lookback_days()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Columnar(#[from] ColumnarError),
    #[error(transparent)]
    Processed(#[from] crate::processed::ProcessedError),
    #[error("{key}: {message}")]
    Metadata { key: String, message: String },
}

/// A creative's latest known content and the features of its text: one element of
/// `all_creatives.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreativeMetadata {
    #[serde(flatten)]
    pub creative: CreativeRow,
    pub features: ContentFeatures,
}

impl CreativeMetadata {
    pub fn of(creative: CreativeRow) -> CreativeMetadata {
        let features = ContentFeatures::of(
            &creative.headline,
            &creative.description,
            &creative.call_to_action,
        );
        CreativeMetadata { creative, features }
    }
}

/// Creatives by id, each from the latest run that saw it.
pub type Creatives = BTreeMap<String, CreativeMetadata>;

/// Takes `row` unless a later run already described the creative.
pub fn merge_creative(known: &mut Creatives, row: CreativeRow) {
    match known.get(&row.creative_id) {
        Some(kept) if kept.creative.run_id >= row.run_id => {}
        _ => {
            known.insert(row.creative_id.clone(), CreativeMetadata::of(row));
        }
    }
}

/// Parses NDJSON `body` (from `key`) into `out`; returns how many lines were malformed, each
/// logged with its key and line number and otherwise skipped (as Athena's table skips them).
pub fn parse_lines<T: DeserializeOwned>(key: &str, body: &[u8], out: &mut Vec<T>) -> usize {
    let mut malformed = 0;
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(row) => out.push(row),
            Err(e) => {
                malformed += 1;
                tracing::warn!(key, line = index + 1, error = %e, "malformed raw line skipped");
            }
        }
    }
    malformed
}

/// One row of `daily_aggregates`.
#[derive(Clone, Debug)]
pub struct DailyRow<'a> {
    pub date: String,
    pub raw: RawAnalytics,
    pub performance: Performance,
    pub creative: Option<&'a CreativeMetadata>,
}

impl<'a> DailyRow<'a> {
    pub fn new(raw: RawAnalytics, creatives: &'a Creatives) -> DailyRow<'a> {
        DailyRow {
            date: raw.date.to_string(),
            performance: Performance::of(&raw),
            creative: creatives.get(&raw.creative_id),
            raw,
        }
    }

    fn content(&self, text: fn(&CreativeRow) -> &str) -> Cell<'_> {
        Cell::Str(self.creative.map(|c| text(&c.creative)))
    }

    fn count(&self, feature: fn(&ContentFeatures) -> usize) -> Cell<'_> {
        Cell::Int(self.creative.map(|c| feature(&c.features) as i64))
    }

    fn flag(&self, feature: fn(&ContentFeatures) -> bool) -> Cell<'_> {
        Cell::Bool(self.creative.map(|c| feature(&c.features)))
    }

    fn keyword(&self, word: &str) -> Cell<'_> {
        Cell::Bool(
            self.creative
                .map(|c| c.features.keywords.get(word).copied().unwrap_or(false)),
        )
    }
}

impl Columns for DailyRow<'_> {
    fn accessor(column: &str) -> Option<fn(&Self) -> Cell<'_>> {
        let accessor: fn(&Self) -> Cell<'_> = match column {
            "date" => |r| Cell::Str(Some(&r.date)),
            "creative_id" => |r| Cell::Str(Some(&r.raw.creative_id)),
            "account_id" => |r| Cell::Str(Some(&r.raw.account_id)),
            "campaign_id" => |r| Cell::Str(Some(&r.raw.campaign_id)),
            "impressions" => |r| Cell::Int(Some(r.performance.impressions)),
            "clicks" => |r| Cell::Int(Some(r.performance.clicks)),
            "spend_usd" => |r| Cell::Double(Some(r.performance.spend_usd)),
            "conversions" => |r| Cell::Int(Some(r.performance.conversions)),
            "ctr" => |r| Cell::Double(r.performance.ctr),
            "cpc_usd" => |r| Cell::Double(r.performance.cpc_usd),
            "cpm_usd" => |r| Cell::Double(r.performance.cpm_usd),
            "conversion_rate" => |r| Cell::Double(r.performance.conversion_rate),
            "status" => |r| r.content(|c| &c.status),
            "headline" => |r| r.content(|c| &c.headline),
            "description" => |r| r.content(|c| &c.description),
            "call_to_action" => {
                |r| Cell::Str(r.creative.map(|c| c.features.call_to_action.as_str()))
            }
            "landing_page" => |r| r.content(|c| &c.landing_page),
            "image_url" => |r| r.content(|c| &c.image_url),
            "headline_words" => |r| r.count(|f| f.headline_words),
            "description_words" => |r| r.count(|f| f.description_words),
            "headline_length" => |r| r.count(|f| f.headline_length),
            "has_number" => |r| r.flag(|f| f.has_number),
            "has_question" => |r| r.flag(|f| f.has_question),
            "kw_free" => |r| r.keyword("free"),
            "kw_new" => |r| r.keyword("new"),
            "kw_guide" => |r| r.keyword("guide"),
            "kw_webinar" => |r| r.keyword("webinar"),
            "kw_demo" => |r| r.keyword("demo"),
            "kw_report" => |r| r.keyword("report"),
            "kw_save" => |r| r.keyword("save"),
            "kw_you" => |r| r.keyword("you"),
            "run_id" => |r| Cell::Str(Some(&r.raw.run_id)),
            _ => return None,
        };
        Some(accessor)
    }
}

impl Columns for WeeklySummary {
    fn accessor(column: &str) -> Option<fn(&Self) -> Cell<'_>> {
        let accessor: fn(&Self) -> Cell<'_> = match column {
            "week" => |w| Cell::Str(Some(&w.week)),
            "creative_id" => |w| Cell::Str(Some(&w.creative_id)),
            "account_id" => |w| Cell::Str(Some(&w.account_id)),
            "campaign_id" => |w| Cell::Str(Some(&w.campaign_id)),
            "days" => |w| Cell::Int(Some(w.days as i64)),
            "impressions" => |w| Cell::Int(Some(w.performance.impressions)),
            "clicks" => |w| Cell::Int(Some(w.performance.clicks)),
            "spend_usd" => |w| Cell::Double(Some(w.performance.spend_usd)),
            "conversions" => |w| Cell::Int(Some(w.performance.conversions)),
            "ctr" => |w| Cell::Double(w.performance.ctr),
            "cpc_usd" => |w| Cell::Double(w.performance.cpc_usd),
            "cpm_usd" => |w| Cell::Double(w.performance.cpm_usd),
            "conversion_rate" => |w| Cell::Double(w.performance.conversion_rate),
            _ => return None,
        };
        Some(accessor)
    }
}

/// What processing one day's raw objects produced.
#[derive(Debug)]
pub struct DayOutput {
    pub key: String,
    pub file: Vec<u8>,
    pub rows_read: usize,
    pub rows_kept: usize,
    pub malformed_rows: usize,
}

/// One day: the latest run's row per creative from `objects` (`(key, NDJSON)`), joined with
/// `creatives`, as the day's Parquet file; the kept rows are added to `weekly`.
pub fn process_day(
    day: NaiveDate,
    objects: Vec<(String, Vec<u8>)>,
    creatives: &Creatives,
    weekly: &mut WeeklyTotals,
) -> Result<DayOutput, ProcessError> {
    let mut rows: Vec<RawAnalytics> = Vec::new();
    let mut malformed_rows = 0;
    for (key, body) in objects {
        malformed_rows += parse_lines(&key, &body, &mut rows);
    }
    let rows_read = rows.len();
    // A row filed under another day's partition belongs to that day's file, not this one.
    let kept: Vec<RawAnalytics> = latest_per_creative_day(rows)
        .into_iter()
        .filter(|r| r.date == day)
        .collect();
    for row in &kept {
        weekly.add(row);
    }
    let rows_kept = kept.len();
    let daily: Vec<DailyRow> = kept
        .into_iter()
        .map(|r| DailyRow::new(r, creatives))
        .collect();
    Ok(DayOutput {
        key: format!(
            "{}part-0.parquet",
            DAILY_AGGREGATES.partition_prefix(&day.to_string())
        ),
        file: columnar::write(&DAILY_AGGREGATES, &daily)?,
        rows_read,
        rows_kept,
        malformed_rows,
    })
}

/// The weekly files: `(key, Parquet)` per ISO week in `weekly`.
pub fn weekly_files(weekly: &WeeklyTotals) -> Result<Vec<(String, Vec<u8>)>, ProcessError> {
    weekly
        .summaries()
        .into_iter()
        .map(|(week, rows)| {
            Ok((
                format!("{}/{week}.parquet", WEEKLY_SUMMARIES.prefix),
                columnar::write(&WEEKLY_SUMMARIES, &rows)?,
            ))
        })
        .collect()
}

/// The days a run covers: the trailing `lookback_days` through `today`, widened back to the
/// Monday of the first day's ISO week.
pub fn window(today: NaiveDate, lookback_days: u32) -> (NaiveDate, NaiveDate) {
    let first = today
        .checked_sub_days(Days::new(u64::from(lookback_days.max(1)) - 1))
        .unwrap_or(today);
    let monday = first
        .checked_sub_days(Days::new(u64::from(first.weekday().num_days_from_monday())))
        .unwrap_or(first);
    (monday, today)
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessSummary {
    pub window: (NaiveDate, NaiveDate),
    /// Days that had raw analytics.
    pub days: usize,
    pub rows_read: usize,
    pub rows_kept: usize,
    pub malformed_rows: usize,
    pub creatives: usize,
    pub weeks: Vec<String>,
    /// The S3 keys written.
    pub objects: Vec<String>,
}

pub struct Processor {
    pub config: ProcessorConfig,
    pub s3: aws_sdk_s3::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub clock: fn() -> DateTime<Utc>,
}

impl Processor {
    pub fn from_env() -> Boxed<'static, Result<Processor, ConfigError>> {
        Box::pin(Self::load_from_env())
    }

    async fn load_from_env() -> Result<Processor, ConfigError> {
        let config = ProcessorConfig::from_env()?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(Processor {
            config,
            s3: storage::s3_client(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            clock: Utc::now,
        })
    }

    pub fn run(&self) -> Boxed<'_, Result<ProcessSummary, ProcessError>> {
        Box::pin(self.process())
    }

    async fn process(&self) -> Result<ProcessSummary, ProcessError> {
        let storage = Storage::new(self.s3.clone(), &self.config.bucket);
        let (first, last) = window((self.clock)().date_naive(), self.config.lookback_days);
        let days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= last).collect();
        let mut summary = ProcessSummary {
            window: (first, last),
            ..ProcessSummary::default()
        };

        // Creatives: what was known, updated by the window's runs.
        let mut creatives = crate::processed::read_creatives(&storage).await?;
        for day in &days {
            for key in storage
                .list(&RAW_CREATIVES.partition_prefix(&day.to_string()))
                .await?
            {
                let mut rows: Vec<CreativeRow> = Vec::new();
                if let Some(body) = storage.get(&key).await? {
                    summary.malformed_rows += parse_lines(&key, &body, &mut rows);
                }
                for row in rows {
                    merge_creative(&mut creatives, row);
                }
            }
        }

        let mut weekly = WeeklyTotals::default();
        for day in &days {
            let keys = storage
                .list(&RAW_ANALYTICS.partition_prefix(&day.to_string()))
                .await?;
            if keys.is_empty() {
                continue;
            }
            let mut objects = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(body) = storage.get(&key).await? {
                    objects.push((key, body));
                }
            }
            let out = process_day(*day, objects, &creatives, &mut weekly)?;
            storage
                .put(&out.key, "application/vnd.apache.parquet", out.file)
                .await?;
            summary.days += 1;
            summary.rows_read += out.rows_read;
            summary.rows_kept += out.rows_kept;
            summary.malformed_rows += out.malformed_rows;
            summary.objects.push(out.key);
        }
        for (key, file) in weekly_files(&weekly)? {
            storage
                .put(&key, "application/vnd.apache.parquet", file)
                .await?;
            summary.objects.push(key);
        }
        summary.weeks = weekly.summaries().into_keys().collect();

        let all: Vec<&CreativeMetadata> = creatives.values().collect();
        let body = serde_json::to_vec_pretty(&all).map_err(|e| ProcessError::Metadata {
            key: CREATIVE_METADATA_KEY.into(),
            message: e.to_string(),
        })?;
        storage
            .put(CREATIVE_METADATA_KEY, "application/json", body)
            .await?;
        summary.objects.push(CREATIVE_METADATA_KEY.into());
        summary.creatives = creatives.len();

        Metrics {
            client: self.cloudwatch.clone(),
            namespace: self.config.namespace.clone(),
            environment: self.config.environment.clone(),
        }
        .put(&[
            (
                "RowsProcessed",
                summary.rows_kept as f64,
                StandardUnit::Count,
            ),
            (
                "MalformedRows",
                summary.malformed_rows as f64,
                StandardUnit::Count,
            ),
        ])
        .await?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn the_window_starts_on_the_monday_of_its_first_week() {
        // Thursday 2026-01-08, 7 days back: Friday 2026-01-02, whose week starts 2025-12-29.
        assert_eq!(
            window(day(2026, 1, 8), 7),
            (day(2025, 12, 29), day(2026, 1, 8))
        );
        // A Monday stays.
        assert_eq!(
            window(day(2026, 1, 5), 1),
            (day(2026, 1, 5), day(2026, 1, 5))
        );
    }

    #[test]
    fn every_column_of_the_processed_datasets_has_a_value() {
        for (column, _) in DAILY_AGGREGATES.columns {
            assert!(DailyRow::accessor(column).is_some(), "daily: {column}");
        }
        for (column, _) in WEEKLY_SUMMARIES.columns {
            assert!(
                WeeklySummary::accessor(column).is_some(),
                "weekly: {column}"
            );
        }
        // The keyword columns are the keywords the features flag.
        let keyword_columns: Vec<String> = DAILY_AGGREGATES
            .column_names()
            .filter_map(|c| c.strip_prefix("kw_").map(str::to_string))
            .collect();
        assert_eq!(keyword_columns, crate::features::KEYWORDS);
    }

    #[test]
    fn malformed_lines_are_counted_and_skipped() {
        let body = b"{\"creative_id\":\"1\",\"account_id\":\"a\",\"date\":\"2026-01-02\",\"run_id\":\"r\"}\nnot json\n\n{\"creative_id\":2}\n";
        let mut rows: Vec<RawAnalytics> = Vec::new();
        assert_eq!(parse_lines("k", body, &mut rows), 2);
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn a_later_run_replaces_a_creative_and_an_earlier_one_does_not() {
        let row = |run: &str, headline: &str| CreativeRow {
            creative_id: "7".into(),
            headline: headline.into(),
            run_id: run.into(),
            ..CreativeRow::default()
        };
        let mut known = Creatives::new();
        merge_creative(&mut known, row("20260102T000000Z-a", "Old"));
        merge_creative(&mut known, row("20260103T000000Z-a", "New guide"));
        merge_creative(&mut known, row("20260101T000000Z-a", "Older"));
        assert_eq!(known["7"].creative.headline, "New guide");
        assert!(known["7"].features.keywords["guide"]);
    }
}
