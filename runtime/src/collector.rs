//! The collector: one run pulls the ad accounts' creatives (resolving sponsored posts and
//! their images) and the trailing `LOOKBACK_DAYS` of daily analytics per creative, then
//! writes them to S3 as NDJSON under the run's id, and emits its metrics.
//!
//! Nothing is written until every LinkedIn call of the run has succeeded, so a run that gives
//! up leaves no partial data. Each run writes new objects (the run id is in the key): LinkedIn
//! restates recent days, and the processor keeps the latest run's row per (creative, day), so
//! re-running a window never duplicates data downstream.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudwatch::types::StandardUnit;
use chrono::{DateTime, Days, NaiveDate, Utc};
use datasets::{RAW_ANALYTICS, RAW_CREATIVES};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::Boxed;
use crate::config::{self, ConfigError};
use crate::credentials::{self, CredentialsOrSecret};
use crate::linkedin::analytics::{self, AnalyticsRow, FIELD_LIMIT, METRICS};
use crate::linkedin::api::{ApiClient, ApiError};
use crate::linkedin::creatives::{self, Content, CreativeRow, PostContent};
use crate::metrics::{Metrics, MetricsError};
use crate::retry::Backoff;
use crate::storage::{self, Storage, StorageError};

/// The function's configuration (the stack sets these variables).
#[derive(Clone, Debug, PartialEq)]
pub struct CollectorConfig {
    pub bucket: String,
    pub namespace: String,
    pub environment: String,
    pub secret_id: String,
    pub api_base_url: String,
    pub version: String,
    pub accounts: Vec<String>,
    pub lookback_days: u32,
}

impl CollectorConfig {
    pub fn from_env() -> Result<CollectorConfig, ConfigError> {
        let accounts: Vec<String> = config::required("LINKEDIN_AD_ACCOUNTS")?
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if accounts
            .iter()
            .any(|a| !a.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(ConfigError::Invalid {
                name: "LINKEDIN_AD_ACCOUNTS",
                message: "comma-separated numeric account ids".into(),
            });
        }
        let lookback_days = config::lookback_days()?;
        Ok(CollectorConfig {
            bucket: config::required("DATA_BUCKET")?,
            namespace: config::or_default("METRICS_NAMESPACE", "LinkedInAds"),
            environment: config::or_default("METRICS_ENVIRONMENT", "unknown"),
            secret_id: config::required("LINKEDIN_SECRET_ID")?,
            api_base_url: config::base_url(
                "LINKEDIN_API_BASE_URL",
                crate::linkedin::api::DEFAULT_BASE_URL,
            )?,
            version: config::required("LINKEDIN_VERSION")?,
            accounts,
            lookback_days,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Credentials(#[from] CredentialsOrSecret),
    #[error("LinkedIn answer from {path}: {message}")]
    Answer { path: String, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub window: (NaiveDate, NaiveDate),
    pub creatives: usize,
    pub analytics_rows: usize,
    /// The S3 keys written.
    pub objects: Vec<String>,
    /// Totals of the latest complete day (yesterday, UTC): what the alarms watch.
    pub day: NaiveDate,
    pub daily_spend_usd: f64,
    pub impressions: f64,
    pub clicks: f64,
}

pub struct Collector {
    pub config: CollectorConfig,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub backoff: Backoff,
    /// Fields per analytics request; LinkedIn's limit unless a test needs more chunks.
    pub field_limit: usize,
    pub clock: fn() -> DateTime<Utc>,
}

impl Collector {
    pub fn from_env() -> Boxed<'static, Result<Collector, ConfigError>> {
        Box::pin(Self::load_from_env())
    }

    async fn load_from_env() -> Result<Collector, ConfigError> {
        let config = CollectorConfig::from_env()?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let s3 = storage::s3_client(&sdk);
        Ok(Collector {
            config,
            s3,
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            backoff: Backoff::STANDARD,
            field_limit: FIELD_LIMIT,
            clock: Utc::now,
        })
    }

    pub fn run(&self) -> Boxed<'_, Result<RunSummary, CollectError>> {
        Box::pin(self.collect())
    }

    async fn collect(&self) -> Result<RunSummary, CollectError> {
        let now = (self.clock)();
        let run_id = format!("{}-{:08x}", now.format("%Y%m%dT%H%M%SZ"), fastrand::u32(..));
        let api = ApiClient::new(
            &self.config.api_base_url,
            &self.config.version,
            &credentials::linkedin_access_token(&self.secrets, &self.config.secret_id).await?,
        )
        .with_backoff(self.backoff);

        // Creatives first: their count sizes the analytics slices, and they map a creative
        // to its account and campaign.
        let mut creative_rows = Vec::new();
        let mut posts: BTreeMap<String, (PostContent, Option<String>)> = BTreeMap::new();
        for account in &self.config.accounts {
            let mut page_token: Option<String> = None;
            loop {
                let path = creatives::creatives_path(account, page_token.as_deref());
                let answer = api.get(&path).await?;
                let page =
                    creatives::parse_creatives(&answer).map_err(|e| CollectError::Answer {
                        path: format!("/adAccounts/{account}/creatives"),
                        message: e.to_string(),
                    })?;
                for creative in &page.creatives {
                    if let Content::Post(urn) = &creative.content
                        && !posts.contains_key(urn)
                    {
                        let post =
                            creatives::parse_post(&api.get(&creatives::post_path(urn)).await?);
                        let image = match &post.image {
                            Some(image) => creatives::parse_image(
                                &api.get(&creatives::image_path(image)).await?,
                            ),
                            None => None,
                        };
                        posts.insert(urn.clone(), (post, image));
                    }
                    let resolved = match &creative.content {
                        Content::Post(urn) => posts.get(urn),
                        _ => None,
                    };
                    creative_rows.push(CreativeRow::of(
                        account,
                        creative,
                        resolved.map(|(p, _)| p),
                        resolved.and_then(|(_, i)| i.as_deref()),
                        &run_id,
                    ));
                }
                match page.next_page_token {
                    Some(next) => page_token = Some(next),
                    None => break,
                }
            }
        }

        let today = now.date_naive();
        let start = today
            .checked_sub_days(Days::new(u64::from(self.config.lookback_days) - 1))
            .unwrap_or(today);
        let metric_names: Vec<&str> = METRICS.iter().map(|(m, _)| *m).collect();
        let chunks = analytics::field_chunks(&metric_names, self.field_limit);
        let mut rows: BTreeMap<(String, NaiveDate), AnalyticsRow> = BTreeMap::new();
        for (from, to) in analytics::date_slices(start, today, creative_rows.len()) {
            for fields in &chunks {
                let query = analytics::analytics_query(&self.config.accounts, from, to, fields);
                let answer = api.get(&format!("/adAnalytics?{query}")).await?;
                analytics::merge_answer(&mut rows, &answer).map_err(|e| CollectError::Answer {
                    path: "/adAnalytics".into(),
                    message: e.to_string(),
                })?;
            }
        }

        // Every call succeeded: now write.
        let owners: BTreeMap<&str, (&str, &str)> = creative_rows
            .iter()
            .map(|c| {
                (
                    c.creative_id.as_str(),
                    (c.account_id.as_str(), c.campaign_id.as_str()),
                )
            })
            .collect();
        let mut by_day: BTreeMap<NaiveDate, Vec<Value>> = BTreeMap::new();
        for row in rows.values() {
            let (account, campaign) = owners
                .get(row.creative_id.as_str())
                .copied()
                .unwrap_or(("", ""));
            by_day
                .entry(row.date)
                .or_default()
                .push(raw_analytics_line(row, account, campaign, &run_id));
        }
        let mut objects = Vec::new();
        for (day, lines) in &by_day {
            let key = format!(
                "{}{run_id}.ndjson",
                RAW_ANALYTICS.partition_prefix(&day.to_string())
            );
            self.put(&key, ndjson(lines)).await?;
            objects.push(key);
        }
        if !creative_rows.is_empty() {
            let lines: Vec<Value> = creative_rows
                .iter()
                .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
                .collect();
            let key = format!(
                "{}{run_id}.ndjson",
                RAW_CREATIVES.partition_prefix(&today.to_string())
            );
            self.put(&key, ndjson(&lines)).await?;
            objects.push(key);
        }

        let day = today.checked_sub_days(Days::new(1)).unwrap_or(today);
        let total = |column: &str| -> f64 {
            rows.values()
                .filter(|r| r.date == day)
                .filter_map(|r| r.metrics.get(column))
                .sum()
        };
        let summary = RunSummary {
            run_id,
            window: (start, today),
            creatives: creative_rows.len(),
            analytics_rows: rows.len(),
            objects,
            day,
            daily_spend_usd: total("cost_usd"),
            impressions: total("impressions"),
            clicks: total("clicks"),
        };
        self.emit(&summary).await?;
        Ok(summary)
    }

    async fn put(&self, key: &str, body: String) -> Result<(), CollectError> {
        Storage::new(self.s3.clone(), &self.config.bucket)
            .put(key, "application/x-ndjson", body.into_bytes())
            .await?;
        Ok(())
    }

    async fn emit(&self, summary: &RunSummary) -> Result<(), CollectError> {
        let metrics = Metrics {
            client: self.cloudwatch.clone(),
            namespace: self.config.namespace.clone(),
            environment: self.config.environment.clone(),
        };
        metrics
            .put(&[
                (
                    "RowsCollected",
                    summary.analytics_rows as f64,
                    StandardUnit::Count,
                ),
                ("DailySpend", summary.daily_spend_usd, StandardUnit::None),
                ("Impressions", summary.impressions, StandardUnit::Count),
                ("Clicks", summary.clicks, StandardUnit::Count),
            ])
            .await?;
        Ok(())
    }
}

/// The raw analytics table's columns; money as numbers, counts as integers.
fn raw_analytics_line(row: &AnalyticsRow, account: &str, campaign: &str, run_id: &str) -> Value {
    let mut line = Map::new();
    line.insert("creative_id".into(), json!(row.creative_id));
    line.insert("account_id".into(), json!(account));
    line.insert("campaign_id".into(), json!(campaign));
    line.insert("date".into(), json!(row.date.to_string()));
    let money: BTreeSet<&str> = ["cost_local", "cost_usd"].into();
    for (_, column) in METRICS {
        let value = row.metrics.get(column).copied().unwrap_or(0.0);
        let value = if money.contains(column) {
            json!(value)
        } else {
            json!(value.round() as i64)
        };
        line.insert(column.to_string(), value);
    }
    line.insert("run_id".into(), json!(run_id));
    Value::Object(line)
}

fn ndjson(lines: &[Value]) -> String {
    let mut out = String::new();
    for line in lines {
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}
