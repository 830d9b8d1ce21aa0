//! The optimizer: one run reads the trailing days of processed data and the creatives, loads
//! the promoted creative scorer and bid model (deciding by rules alone, and saying so, when
//! there is none), makes its decisions (`crate::decisions`), carries them out through
//! LinkedIn's partial updates unless dry-run, writes every decision with its reason and inputs
//! to `decisions/dt=YYYY-MM-DD/<run-id>.json`, and emits its metrics.
//!
//! Once the decisions are made, the file is written on every way out of the run: each action
//! is marked `executed`, `failed` (with the error), `not_tried` (the run stopped first: a 401,
//! no access token) or `dry_run`, and a run that stopped says why in the file's `error`; the
//! error is returned only after the file and the metrics are out, so the invocation still
//! fails. (A run that fails before that, reading data, models or campaign settings, has sent
//! nothing and writes nothing.)
//!
//! The cooldown is read from earlier decision files: a creative or campaign whose action was
//! executed within `cooldown_hours` is left alone. Dry-run, failed and not-tried decisions
//! changed nothing on LinkedIn and start no cooldown, so an env switched from dry-run to
//! acting acts at once. Dry-run decisions are counted in `DryRunActions`, never in the
//! executed actions' metrics. The scorer's predictions are stored with the decisions, so the
//! next run can measure them against the day's actual CTRs (`PredictionAccuracy`).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudwatch::types::StandardUnit;
use chrono::{DateTime, Duration, Utc};
use registry::{Registry, RegistryError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Boxed;
use crate::config::{self, ConfigError};
use crate::credentials::{self, CredentialsOrSecret};
use crate::decisions::{self, Action, CampaignSettings, Decision, Situation, Status, Thresholds};
use crate::linkedin::analytics::encode;
use crate::linkedin::api::{self, ApiClient, ApiError};
use crate::metrics::{Metrics, MetricsError};
use crate::processed::{self, ProcessedError};
use crate::retry::Backoff;
use crate::storage::{self, Storage, StorageError};
use crate::training::{BidModel, CreativeScorer};

pub const SCORER: &str = "creative-scorer";
pub const BID_MODEL: &str = "bid-optimizer";

#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerConfig {
    pub bucket: String,
    pub namespace: String,
    pub environment: String,
    pub secret_id: String,
    pub api_base_url: String,
    pub version: String,
    pub registry_prefix: String,
    pub dry_run: bool,
    pub lookback_days: u32,
    pub thresholds: Thresholds,
}

impl OptimizerConfig {
    pub fn from_env() -> Result<OptimizerConfig, ConfigError> {
        let dry_run = match config::or_default("OPTIMIZER_DRY_RUN", "true").as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(ConfigError::Invalid {
                    name: "OPTIMIZER_DRY_RUN",
                    message: format!("`{other}`: true or false"),
                });
            }
        };
        Ok(OptimizerConfig {
            bucket: config::required("DATA_BUCKET")?,
            namespace: config::or_default("METRICS_NAMESPACE", "LinkedInAds"),
            environment: config::or_default("METRICS_ENVIRONMENT", "unknown"),
            secret_id: config::required("LINKEDIN_SECRET_ID")?,
            api_base_url: config::base_url("LINKEDIN_API_BASE_URL", api::DEFAULT_BASE_URL)?,
            version: config::required("LINKEDIN_VERSION")?,
            registry_prefix: config::or_default("MODEL_REGISTRY_PREFIX", "models"),
            dry_run,
            lookback_days: config::parsed(
                "OPTIMIZER_LOOKBACK_DAYS",
                "7",
                |d: &u32| (1..=90).contains(d),
                "1 to 90 days",
            )?,
            thresholds: Thresholds {
                min_impressions: config::parsed(
                    "OPTIMIZER_MIN_IMPRESSIONS",
                    "1000",
                    |n: &i64| *n >= 1,
                    "at least 1",
                )?,
                confidence_z: config::parsed(
                    "OPTIMIZER_CONFIDENCE_Z",
                    "1.96",
                    |z: &f64| z.is_finite() && *z > 0.0,
                    "a positive z score",
                )?,
                max_actions: config::parsed(
                    "OPTIMIZER_MAX_ACTIONS",
                    "10",
                    |n: &usize| *n <= 1000,
                    "0 to 1000",
                )?,
                cooldown_hours: config::parsed(
                    "OPTIMIZER_COOLDOWN_HOURS",
                    "72",
                    |h: &u32| *h <= 24 * 90,
                    "0 to 2160 hours",
                )?,
                max_bid_change_percent: config::parsed(
                    "OPTIMIZER_MAX_BID_CHANGE_PERCENT",
                    "20",
                    |p: &f64| (0.0..=100.0).contains(p),
                    "0 to 100",
                )?,
                budget_increase_percent: config::parsed(
                    "OPTIMIZER_BUDGET_INCREASE_PERCENT",
                    "20",
                    |p: &f64| (0.0..=100.0).contains(p),
                    "0 to 100",
                )?,
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OptimizeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Processed(#[from] ProcessedError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Credentials(#[from] CredentialsOrSecret),
}

/// A decisions file (`decisions/dt=.../<run-id>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionsFile {
    pub run_id: String,
    pub decided_at: DateTime<Utc>,
    pub dry_run: bool,
    /// `<model> v<N>` used, or `rules`.
    pub scorer: String,
    pub bid_model: String,
    pub decisions: Vec<Value>,
    /// The scorer's predicted CTR per creative (none when deciding by rules).
    #[serde(default)]
    pub predictions: BTreeMap<String, f64>,
    /// Why the run stopped before trying every planned action (its decisions marked
    /// `not_tried`); `null` when it tried them all. Files from before this field read as
    /// `null`: such a run either tried every action or wrote no file.
    #[serde(default)]
    pub error: Option<String>,
}

impl DecisionsFile {
    /// The creatives and campaigns this run changed on LinkedIn: the subjects of its executed
    /// actions, what the cooldown holds back.
    pub fn acted_on(&self) -> impl Iterator<Item = &str> + '_ {
        let dry_run = self.dry_run;
        self.decisions
            .iter()
            .filter(move |d| executed(dry_run, d))
            .filter_map(|d| {
                d["creative_id"]
                    .as_str()
                    .or_else(|| d["campaign_id"].as_str())
            })
    }
}

/// Whether a recorded decision was carried out on LinkedIn.
fn executed(dry_run: bool, decision: &Value) -> bool {
    match decision.get("status").and_then(Value::as_str) {
        // `executed` is written only once LinkedIn accepted the write; `dry_run`, `failed`,
        // `not_tried`, `skipped` changed nothing. (Files from before `not_tried` existed wrote
        // the same words for the same meanings.)
        Some(status) => status == "executed",
        // A record that does not say whether its action was sent is taken as sent, unless its
        // run was a dry run (which sends nothing): the cooldown exists to keep an action from
        // being repeated, and holding a creative or campaign back for one cooldown costs less
        // than pausing it twice or raising its budget twice.
        None => {
            !dry_run
                && matches!(
                    decision.get("action").and_then(Value::as_str),
                    Some("pause" | "scale_budget" | "adjust_bid")
                )
        }
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct OptimizeSummary {
    pub run_id: String,
    pub dry_run: bool,
    pub scorer: String,
    pub bid_model: String,
    /// Executed on LinkedIn (never dry-run decisions).
    pub creatives_paused: usize,
    pub campaigns_scaled: usize,
    pub bids_adjusted: usize,
    /// Actions decided in a dry run: nothing sent.
    pub dry_run_actions: usize,
    pub skipped: usize,
    pub failed: usize,
    /// Planned, but never sent because the run stopped first.
    pub not_tried: usize,
    pub prediction_accuracy: Option<f64>,
    pub decisions_key: String,
}

pub struct Optimizer {
    pub config: OptimizerConfig,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub backoff: Backoff,
    pub clock: fn() -> DateTime<Utc>,
}

async fn load_model<T: serde::de::DeserializeOwned>(
    registry: &Registry,
    name: &str,
) -> Result<Option<(String, T)>, OptimizeError> {
    let Some((metadata, artifact)) = registry.load_promoted(name).await? else {
        tracing::warn!(model = name, "no promoted version: deciding by rules");
        return Ok(None);
    };
    match serde_json::from_slice::<T>(&artifact) {
        Ok(model) => {
            let label = format!("{name} v{}", metadata.version);
            tracing::info!(model = %label, "loaded the promoted model");
            Ok(Some((label, model)))
        }
        Err(e) => {
            tracing::error!(model = name, version = metadata.version, error = %e, "the promoted model is unreadable: deciding by rules");
            Ok(None)
        }
    }
}

/// The label of the model used, or `rules`.
fn label(model: Option<&String>) -> String {
    model.cloned().unwrap_or_else(|| "rules".to_string())
}

fn amount(value: &Value) -> Option<f64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

impl Optimizer {
    pub fn from_env() -> Boxed<'static, Result<Optimizer, ConfigError>> {
        Box::pin(Self::load_from_env())
    }

    async fn load_from_env() -> Result<Optimizer, ConfigError> {
        let config = OptimizerConfig::from_env()?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(Optimizer {
            config,
            s3: storage::s3_client(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            backoff: Backoff::STANDARD,
            clock: Utc::now,
        })
    }

    async fn api(&self) -> Result<ApiClient, OptimizeError> {
        let token =
            credentials::linkedin_access_token(&self.secrets, &self.config.secret_id).await?;
        Ok(
            ApiClient::new(&self.config.api_base_url, &self.config.version, &token)
                .with_backoff(self.backoff),
        )
    }

    /// Earlier decision files within the cooldown (and the day before, for predictions),
    /// oldest first.
    async fn earlier(
        &self,
        storage: &Storage,
        now: DateTime<Utc>,
    ) -> Result<Vec<DecisionsFile>, OptimizeError> {
        let hours = i64::from(self.config.thresholds.cooldown_hours).max(24);
        let first = (now - Duration::hours(hours)).date_naive();
        let mut files = Vec::new();
        for day in first.iter_days().take_while(|d| *d <= now.date_naive()) {
            for key in storage.list(&format!("decisions/dt={day}/")).await? {
                if let Some(body) = storage.get(&key).await? {
                    match serde_json::from_slice::<DecisionsFile>(&body) {
                        Ok(file) => files.push(file),
                        Err(e) => {
                            tracing::warn!(%key, error = %e, "unreadable decisions file skipped")
                        }
                    }
                }
            }
        }
        files.sort_by_key(|f| f.decided_at);
        Ok(files)
    }

    pub fn run(&self) -> Boxed<'_, Result<OptimizeSummary, OptimizeError>> {
        Box::pin(self.optimize())
    }

    async fn optimize(&self) -> Result<OptimizeSummary, OptimizeError> {
        let now = (self.clock)();
        let run_id = format!("{}-{:08x}", now.format("%Y%m%dT%H%M%SZ"), fastrand::u32(..));
        let storage = Storage::new(self.s3.clone(), &self.config.bucket);
        let registry = Registry::new(
            self.s3.clone(),
            &self.config.bucket,
            &self.config.registry_prefix,
        );
        let today = now.date_naive();
        let yesterday = today.pred_opt().unwrap_or(today);
        let (from, to) = processed::trailing(yesterday, self.config.lookback_days);
        let records = processed::read_daily(&storage, from, to).await?;
        let totals = processed::totals_per_creative(&records);
        let creatives = processed::read_creatives(&storage).await?;
        let scorer = load_model::<CreativeScorer>(&registry, SCORER).await?;
        let bids = load_model::<BidModel>(&registry, BID_MODEL).await?;

        let earlier = self.earlier(&storage, now).await?;
        let cooldown_start =
            now - Duration::hours(i64::from(self.config.thresholds.cooldown_hours));
        let mut cooling_down = BTreeSet::new();
        let cooling = |f: &&DecisionsFile| {
            self.config.thresholds.cooldown_hours > 0 && f.decided_at >= cooldown_start
        };
        for file in earlier.iter().filter(cooling) {
            cooling_down.extend(file.acted_on().map(str::to_string));
        }
        let previous_predictions = earlier.iter().rev().find(|f| !f.predictions.is_empty());
        let prediction_accuracy = previous_predictions.and_then(|previous| {
            let latest: Vec<_> = records
                .iter()
                .filter(|r| r.date == yesterday.to_string())
                .cloned()
                .collect();
            decisions::prediction_accuracy(
                &previous.predictions,
                &processed::totals_per_creative(&latest),
            )
        });

        let thresholds = self.config.thresholds;
        let no_settings = BTreeMap::new();
        let situation = |campaigns| Situation {
            totals: &totals,
            creatives: &creatives,
            scorer: scorer.as_ref().map(|(_, m)| m),
            bids: bids.as_ref().map(|(_, m)| m),
            campaigns,
            cooling_down: &cooling_down,
            thresholds,
        };
        // Which campaigns' settings matter: those with a winner, and those the bid model
        // covers.
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for d in decisions::decide(&situation(&no_settings)) {
            if d.action == Action::ScaleBudget {
                wanted.insert(d.campaign_id.clone(), d.account_id.clone());
            }
        }
        if let Some((_, model)) = &bids {
            for t in totals.values() {
                if model.campaigns.contains_key(&t.campaign_id) {
                    wanted.insert(t.campaign_id.clone(), t.account_id.clone());
                }
            }
        }
        let mut api_client = None;
        let mut settings = BTreeMap::new();
        let mut currencies: BTreeMap<String, String> = BTreeMap::new();
        if !wanted.is_empty() {
            let api = self.api().await?;
            for (campaign, account) in &wanted {
                let answer = api
                    .get(&format!("/adAccounts/{account}/adCampaigns/{campaign}"))
                    .await?;
                settings.insert(
                    campaign.clone(),
                    CampaignSettings {
                        daily_budget: amount(&answer["dailyBudget"]["amount"]),
                        bid: amount(&answer["unitCost"]["amount"]),
                    },
                );
                let currency = answer["dailyBudget"]["currencyCode"]
                    .as_str()
                    .or_else(|| answer["unitCost"]["currencyCode"].as_str())
                    .unwrap_or("USD");
                currencies.insert(campaign.clone(), currency.to_string());
            }
            api_client = Some(api);
        }
        let mut decided = decisions::decide(&situation(&settings));

        // From here on the decisions file is written whatever happens: what stops the run (a
        // 401, no access token) is returned once the file and the metrics are out.
        let stopped = if self.config.dry_run {
            for d in decided.iter_mut().filter(|d| d.status == Status::Planned) {
                d.status = Status::DryRun;
            }
            None
        } else {
            self.execute(api_client, &currencies, &mut decided)
                .await
                .err()
        };

        let predictions = scorer
            .as_ref()
            .map(|(_, s)| decisions::predictions(s, &creatives))
            .unwrap_or_default();
        let count = |status: Status, action: Option<Action>| {
            decided
                .iter()
                .filter(|d| d.status == status && action.is_none_or(|a| d.action == a))
                .count()
        };
        let key = format!("decisions/dt={today}/{run_id}.json");
        let summary = OptimizeSummary {
            run_id: run_id.clone(),
            dry_run: self.config.dry_run,
            scorer: label(scorer.as_ref().map(|(l, _)| l)),
            bid_model: label(bids.as_ref().map(|(l, _)| l)),
            creatives_paused: count(Status::Executed, Some(Action::Pause)),
            campaigns_scaled: count(Status::Executed, Some(Action::ScaleBudget)),
            bids_adjusted: count(Status::Executed, Some(Action::AdjustBid)),
            dry_run_actions: count(Status::DryRun, None),
            skipped: count(Status::Skipped, None),
            failed: count(Status::Failed, None),
            not_tried: count(Status::NotTried, None),
            prediction_accuracy,
            decisions_key: key.clone(),
        };
        let file = DecisionsFile {
            run_id,
            decided_at: now,
            dry_run: self.config.dry_run,
            scorer: summary.scorer.clone(),
            bid_model: summary.bid_model.clone(),
            decisions: decided
                .iter()
                .map(|d: &Decision| serde_json::to_value(d).unwrap_or_default())
                .collect(),
            predictions,
            error: stopped.as_ref().map(ToString::to_string),
        };
        let written = storage
            .put(
                &key,
                "application/json",
                serde_json::to_vec_pretty(&file).unwrap_or_default(),
            )
            .await;

        // Executed actions only; dry-run ones apart, so no dashboard shows what never happened.
        let mut data = vec![
            (
                "CreativesPaused",
                summary.creatives_paused as f64,
                StandardUnit::Count,
            ),
            (
                "CreativesScaled",
                summary.campaigns_scaled as f64,
                StandardUnit::Count,
            ),
            (
                "BidsAdjusted",
                summary.bids_adjusted as f64,
                StandardUnit::Count,
            ),
            (
                "OptimizationActions",
                (summary.creatives_paused + summary.campaigns_scaled + summary.bids_adjusted)
                    as f64,
                StandardUnit::Count,
            ),
            (
                "DryRunActions",
                summary.dry_run_actions as f64,
                StandardUnit::Count,
            ),
        ];
        if let Some(accuracy) = prediction_accuracy {
            data.push(("PredictionAccuracy", accuracy, StandardUnit::None));
        }
        let published = Metrics {
            client: self.cloudwatch.clone(),
            namespace: self.config.namespace.clone(),
            environment: self.config.environment.clone(),
        }
        .put(&data)
        .await;

        if let Some(error) = stopped {
            if let Err(e) = &written {
                tracing::error!(%key, error = %e, "the decisions file could not be written: this run's actions are not recorded");
            }
            if let Err(e) = &published {
                tracing::error!(error = %e, "the run's metrics could not be published");
            }
            tracing::error!(%key, error = %error, not_tried = summary.not_tried, "the run stopped before trying every action");
            return Err(error);
        }
        written?;
        published?;
        Ok(summary)
    }

    /// Carries out the planned actions; each is marked `Executed` or `Failed` (with the
    /// error). A refused write, or one still failing after the retries, fails that action and
    /// the run goes on. A 401, or no access token, stops the run: every further write would be
    /// refused the same way, so the actions not yet sent are marked `NotTried` and the error
    /// is returned (for the caller to record before returning it).
    async fn execute(
        &self,
        api_client: Option<ApiClient>,
        currencies: &BTreeMap<String, String>,
        decided: &mut [Decision],
    ) -> Result<(), OptimizeError> {
        let result = self.send_planned(api_client, currencies, decided).await;
        if result.is_err() {
            for d in decided.iter_mut().filter(|d| d.status == Status::Planned) {
                d.status = Status::NotTried;
            }
        }
        result
    }

    async fn send_planned(
        &self,
        api_client: Option<ApiClient>,
        currencies: &BTreeMap<String, String>,
        decided: &mut [Decision],
    ) -> Result<(), OptimizeError> {
        if !decided.iter().any(|d| d.status == Status::Planned) {
            return Ok(());
        }
        let api = match api_client {
            Some(api) => api,
            None => self.api().await?,
        };
        for d in decided.iter_mut().filter(|d| d.status == Status::Planned) {
            let Some((path, set)) = partial_update(d, currencies) else {
                continue;
            };
            match api.partial_update(&path, set).await {
                Ok(_) => d.status = Status::Executed,
                Err(e) => {
                    tracing::error!(%path, error = %e, "partial update failed");
                    d.status = Status::Failed;
                    d.error = Some(e.to_string());
                    if matches!(e, ApiError::Unauthorized { .. }) {
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(())
    }
}

/// The Rest.li partial update that carries out `d`: the entity's path and the fields to set
/// (none for a keep).
fn partial_update(d: &Decision, currencies: &BTreeMap<String, String>) -> Option<(String, Value)> {
    let currency = currencies.get(&d.campaign_id).map_or("USD", String::as_str);
    let money = |x: Option<f64>| {
        json!({
            "amount": format!("{:.2}", x.unwrap_or_default()),
            "currencyCode": currency,
        })
    };
    let campaign = || format!("/adAccounts/{}/adCampaigns/{}", d.account_id, d.campaign_id);
    match d.action {
        Action::Pause => Some((
            format!(
                "/adAccounts/{}/creatives/{}",
                d.account_id,
                encode(&format!(
                    "urn:li:sponsoredCreative:{}",
                    d.creative_id.as_deref().unwrap_or_default()
                ))
            ),
            json!({"intendedStatus": "PAUSED"}),
        )),
        Action::ScaleBudget => Some((campaign(), json!({"dailyBudget": money(d.inputs.proposed)}))),
        Action::AdjustBid => Some((campaign(), json!({"unitCost": money(d.inputs.proposed)}))),
        Action::Keep => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dry_run: bool, decisions: Value) -> DecisionsFile {
        // The shape of files written before `error` and `not_tried` existed.
        serde_json::from_value(json!({
            "run_id": "20260104T060000Z-00000000", "decided_at": "2026-01-04T06:00:00Z",
            "dry_run": dry_run, "scorer": "rules", "bid_model": "rules",
            "decisions": decisions,
        }))
        .unwrap()
    }

    #[test]
    fn only_executed_actions_start_a_cooldown() {
        let decisions = json!([
            {"action": "pause", "status": "executed", "campaign_id": "9001", "creative_id": "101"},
            {"action": "pause", "status": "dry_run", "campaign_id": "9001", "creative_id": "102"},
            {"action": "pause", "status": "failed", "campaign_id": "9001", "creative_id": "103"},
            {"action": "scale_budget", "status": "not_tried", "campaign_id": "9002", "creative_id": null},
            {"action": "adjust_bid", "status": "executed", "campaign_id": "9003", "creative_id": null},
            {"action": "keep", "status": "none", "campaign_id": "9001", "creative_id": "104"},
            {"action": "pause", "status": "skipped", "campaign_id": "9001", "creative_id": "105"},
        ]);
        let acting = file(false, decisions);
        assert_eq!(acting.error, None);
        assert_eq!(acting.acted_on().collect::<Vec<_>>(), ["101", "9003"]);
        // A dry run's decisions changed nothing.
        let dry = file(
            true,
            json!([
                {"action": "pause", "status": "dry_run", "campaign_id": "9001", "creative_id": "101"},
                {"action": "scale_budget", "status": "dry_run", "campaign_id": "9002"},
            ]),
        );
        assert_eq!(dry.acted_on().count(), 0);
    }

    #[test]
    fn a_record_without_a_status_counts_as_sent_unless_its_run_was_dry() {
        let decisions = json!([
            {"action": "pause", "campaign_id": "9001", "creative_id": "101"},
            {"action": "scale_budget", "campaign_id": "9002"},
            {"action": "keep", "campaign_id": "9001", "creative_id": "102"},
        ]);
        assert_eq!(
            file(false, decisions.clone())
                .acted_on()
                .collect::<Vec<_>>(),
            ["101", "9002"]
        );
        assert_eq!(file(true, decisions).acted_on().count(), 0);
    }
}
