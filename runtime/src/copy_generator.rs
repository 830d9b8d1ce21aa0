//! The copy generator: one run picks the weakest active creatives of the trailing days (lowest
//! CTR among those with enough impressions), asks Claude for new copy for each from its
//! content and performance, checks every variant against LinkedIn's length limits, and
//! stores the drafts under `generated/copy/dt=YYYY-MM-DD/<creative-id>.json` for a person to
//! review. It never calls LinkedIn: nothing is published.
//!
//! A creative whose request is refused (a 4xx other than 429) or whose answer cannot be read
//! is recorded as failed and the run goes on; refused credentials, or throttling beyond the
//! retry budget, end the run, since every further call would meet the same answer.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::StandardUnit;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Boxed;
use crate::anthropic::{self, AnthropicClient, AnthropicError, Message, MessagesRequest, Usage};
use crate::config::{self, ConfigError};
use crate::credentials::{self, SecretError};
use crate::features::Performance;
use crate::metrics::{Metrics, MetricsError};
use crate::processed::{self, CreativeTotals, ProcessedError};
use crate::processor::CreativeMetadata;
use crate::retry::Backoff;
use crate::storage::{self, Storage, StorageError};

/// LinkedIn's limits, in characters, on the copy of each ad format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub headline: usize,
    pub description: usize,
}

/// Text ads: headline 25, description 75.
pub const TEXT_AD: Limits = Limits {
    headline: 25,
    description: 75,
};
/// Sponsored content: headline 200, introductory text 600.
pub const SPONSORED_CONTENT: Limits = Limits {
    headline: 200,
    description: 600,
};

/// The ad format of a creative, as far as the collected content tells it: a sponsored post
/// has a landing page or an image; anything else gets the stricter text-ad limits.
pub fn format_of(creative: &CreativeMetadata) -> (&'static str, Limits) {
    let c = &creative.creative;
    if c.landing_page.is_empty() && c.image_url.is_empty() {
        ("text_ad", TEXT_AD)
    } else {
        ("sponsored_content", SPONSORED_CONTENT)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CopyConfig {
    pub bucket: String,
    pub namespace: String,
    pub environment: String,
    pub secret_id: String,
    pub base_url: String,
    pub model: String,
    pub lookback_days: u32,
    /// At most this many creatives per run.
    pub max_creatives: usize,
    /// A creative needs this many impressions in the window before its CTR counts.
    pub min_impressions: i64,
    /// Variants asked for per creative.
    pub variants: usize,
}

impl CopyConfig {
    pub fn from_env() -> Result<CopyConfig, ConfigError> {
        Ok(CopyConfig {
            bucket: config::required("DATA_BUCKET")?,
            namespace: config::or_default("METRICS_NAMESPACE", "LinkedInAds"),
            environment: config::or_default("METRICS_ENVIRONMENT", "unknown"),
            secret_id: config::required("ANTHROPIC_SECRET_ID")?,
            base_url: config::base_url("ANTHROPIC_BASE_URL", anthropic::DEFAULT_BASE_URL)?,
            model: config::required("ANTHROPIC_MODEL")?,
            lookback_days: config::lookback_days()?,
            max_creatives: config::parsed(
                "COPY_MAX_CREATIVES",
                "3",
                |n: &usize| (1..=50).contains(n),
                "1 to 50",
            )?,
            min_impressions: config::parsed(
                "COPY_MIN_IMPRESSIONS",
                "1000",
                |n: &i64| *n >= 0,
                "a count of impressions",
            )?,
            variants: config::parsed(
                "COPY_VARIANTS",
                "3",
                |n: &usize| (1..=10).contains(n),
                "1 to 10",
            )?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Processed(#[from] ProcessedError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Anthropic(#[from] AnthropicError),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// One variant of copy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub headline: String,
    pub description: String,
}

/// A variant that breaks a limit, and how.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rejected {
    #[serde(flatten)]
    pub variant: Variant,
    pub problems: Vec<String>,
}

/// The variants within `limits`, and the others with their problems.
pub fn check_variants(variants: Vec<Variant>, limits: Limits) -> (Vec<Variant>, Vec<Rejected>) {
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for variant in variants {
        let mut problems = Vec::new();
        for (field, text, limit) in [
            ("headline", &variant.headline, limits.headline),
            ("description", &variant.description, limits.description),
        ] {
            let length = text.trim().chars().count();
            if length == 0 {
                problems.push(format!("{field} is empty"));
            } else if length > limit {
                problems.push(format!(
                    "{field} is {length} characters, LinkedIn allows {limit}"
                ));
            }
        }
        if problems.is_empty() {
            accepted.push(Variant {
                headline: variant.headline.trim().to_string(),
                description: variant.description.trim().to_string(),
            });
        } else {
            rejected.push(Rejected { variant, problems });
        }
    }
    (accepted, rejected)
}

/// The variants in Claude's answer: a JSON object `{"variants": [...]}`, possibly fenced or
/// surrounded by prose.
pub fn parse_variants(text: &str) -> Result<Vec<Variant>, String> {
    let start = text.find('{').ok_or("the answer has no JSON object")?;
    let end = text.rfind('}').ok_or("the answer has no JSON object")?;
    if end < start {
        return Err("the answer has no JSON object".into());
    }
    #[derive(Deserialize)]
    struct Answer {
        variants: Vec<Variant>,
    }
    serde_json::from_str::<Answer>(&text[start..=end])
        .map(|a| a.variants)
        .map_err(|e| format!("the answer's JSON is not {{\"variants\": [...]}}: {e}"))
}

pub const SYSTEM_PROMPT: &str = "You write LinkedIn ad copy for B2B marketers. \
Answer with JSON only, no prose: {\"variants\": [{\"headline\": \"...\", \"description\": \"...\"}]}.";

/// The user prompt for one creative.
pub fn prompt(
    creative: &CreativeMetadata,
    totals: &CreativeTotals,
    campaign_ctr: Option<f64>,
    days: u32,
    variants: usize,
) -> String {
    let (format, limits) = format_of(creative);
    let (format_name, description_name) = match format {
        "text_ad" => ("text ad", "description"),
        _ => ("sponsored content ad", "introductory text (description)"),
    };
    let c = &creative.creative;
    let p = &totals.performance;
    let percent = |r: Option<f64>| r.map_or("n/a".to_string(), |r| format!("{:.2}%", r * 100.0));
    format!(
        "Rewrite this underperforming LinkedIn {format_name}. Write {variants} variants.\n\
         Limits: headline at most {} characters; {description_name} at most {} characters.\n\
         Current headline: {}\n\
         Current {description_name}: {}\n\
         Call to action: {}\n\
         Performance over the last {days} days: {} impressions, {} clicks, CTR {} \
         (campaign average {}), {} conversions, {:.2} USD spent.",
        limits.headline,
        limits.description,
        c.headline,
        c.description,
        creative.features.call_to_action,
        p.impressions,
        p.clicks,
        percent(p.ctr),
        percent(campaign_ctr),
        p.conversions,
        p.spend_usd,
    )
}

/// The weakest active creatives: enough impressions, lowest CTR first (ties by id), at most
/// `max`.
pub fn weakest<'a>(
    creatives: &'a BTreeMap<String, CreativeMetadata>,
    totals: &'a BTreeMap<String, CreativeTotals>,
    min_impressions: i64,
    max: usize,
) -> Vec<(&'a CreativeMetadata, &'a CreativeTotals)> {
    let mut candidates: Vec<(&CreativeMetadata, &CreativeTotals, f64)> = totals
        .values()
        .filter(|t| t.performance.impressions >= min_impressions)
        .filter_map(|t| {
            let c = creatives.get(&t.creative_id)?;
            (c.creative.status == "ACTIVE").then_some((c, t, t.performance.ctr.unwrap_or(0.0)))
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.2.total_cmp(&b.2)
            .then_with(|| a.1.creative_id.cmp(&b.1.creative_id))
    });
    candidates
        .into_iter()
        .take(max)
        .map(|(c, t, _)| (c, t))
        .collect()
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CopySummary {
    pub run_id: String,
    pub creatives: Vec<String>,
    pub copies_generated: usize,
    pub rejected_variants: usize,
    /// Creatives whose request or answer failed, with why.
    pub failed: BTreeMap<String, String>,
    pub usage: Usage,
    pub objects: Vec<String>,
}

pub struct CopyGenerator {
    pub config: CopyConfig,
    pub s3: aws_sdk_s3::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub backoff: Backoff,
    pub clock: fn() -> DateTime<Utc>,
}

impl CopyGenerator {
    pub fn from_env() -> Boxed<'static, Result<CopyGenerator, ConfigError>> {
        Box::pin(Self::load_from_env())
    }

    async fn load_from_env() -> Result<CopyGenerator, ConfigError> {
        let config = CopyConfig::from_env()?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(CopyGenerator {
            config,
            s3: storage::s3_client(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            backoff: Backoff::STANDARD,
            clock: Utc::now,
        })
    }

    pub fn run(&self) -> Boxed<'_, Result<CopySummary, CopyError>> {
        Box::pin(self.generate())
    }

    async fn generate(&self) -> Result<CopySummary, CopyError> {
        let now = (self.clock)();
        let storage = Storage::new(self.s3.clone(), &self.config.bucket);
        let mut summary = CopySummary {
            run_id: format!("{}-{:08x}", now.format("%Y%m%dT%H%M%SZ"), fastrand::u32(..)),
            ..CopySummary::default()
        };
        let yesterday = now.date_naive().pred_opt().unwrap_or(now.date_naive());
        let (from, to) = processed::trailing(yesterday, self.config.lookback_days);
        let records = processed::read_daily(&storage, from, to).await?;
        let totals = processed::totals_per_creative(&records);
        let creatives = processed::read_creatives(&storage).await?;
        let chosen = weakest(
            &creatives,
            &totals,
            self.config.min_impressions,
            self.config.max_creatives,
        );
        if chosen.is_empty() {
            tracing::info!("no active creative with enough impressions: nothing to rewrite");
            self.emit(&summary).await?;
            return Ok(summary);
        }
        let campaign_ctr = campaign_ctrs(&totals);
        let api_key = credentials::current_value(&self.secrets, &self.config.secret_id).await?;
        let client =
            AnthropicClient::new(&self.config.base_url, api_key.trim()).with_backoff(self.backoff);
        for (creative, performance) in chosen {
            let id = performance.creative_id.clone();
            summary.creatives.push(id.clone());
            let campaign = campaign_ctr
                .get(&performance.campaign_id)
                .copied()
                .flatten();
            let request = MessagesRequest {
                model: self.config.model.clone(),
                max_tokens: 1024,
                system: Some(SYSTEM_PROMPT.into()),
                messages: vec![Message {
                    role: "user".into(),
                    content: prompt(
                        creative,
                        performance,
                        campaign,
                        self.config.lookback_days,
                        self.config.variants,
                    ),
                }],
                temperature: Some(0.7),
            };
            let answer = match client.messages(&request).await {
                Ok(answer) => answer,
                Err(e @ (AnthropicError::Rejected { .. } | AnthropicError::Answer(_)))
                    if !e.is_auth() =>
                {
                    tracing::error!(creative = %id, error = %e, "copy request failed");
                    summary.failed.insert(id, e.to_string());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            summary.usage.input_tokens += answer.usage.input_tokens;
            summary.usage.output_tokens += answer.usage.output_tokens;
            let (format, limits) = format_of(creative);
            let (variants, rejected, problem) = match parse_variants(&answer.text) {
                Ok(v) => {
                    let (ok, bad) = check_variants(v, limits);
                    (ok, bad, None)
                }
                Err(e) => (Vec::new(), Vec::new(), Some(e)),
            };
            if let Some(problem) = &problem {
                summary.failed.insert(id.clone(), problem.clone());
            }
            summary.copies_generated += variants.len();
            summary.rejected_variants += rejected.len();
            let draft = json!({
                "creative_id": id,
                "account_id": performance.account_id,
                "campaign_id": performance.campaign_id,
                "format": format,
                "status": "pending_review",
                "generated_at": now.to_rfc3339(),
                "run_id": summary.run_id,
                "model": self.config.model,
                "source": {
                    "headline": creative.creative.headline,
                    "description": creative.creative.description,
                    "call_to_action": creative.features.call_to_action,
                },
                "performance": performance.performance,
                "campaign_ctr": campaign,
                "limits": limits,
                "variants": variants,
                "rejected": rejected,
                "problem": problem,
                "stop_reason": answer.stop_reason,
                "usage": answer.usage,
            });
            let key = format!("generated/copy/dt={}/{id}.json", now.date_naive());
            let body = serde_json::to_vec_pretty(&draft).unwrap_or_default();
            storage.put(&key, "application/json", body).await?;
            summary.objects.push(key);
        }
        self.emit(&summary).await?;
        Ok(summary)
    }

    async fn emit(&self, summary: &CopySummary) -> Result<(), CopyError> {
        Metrics {
            client: self.cloudwatch.clone(),
            namespace: self.config.namespace.clone(),
            environment: self.config.environment.clone(),
        }
        .put(&[
            (
                "CopiesGenerated",
                summary.copies_generated as f64,
                StandardUnit::Count,
            ),
            (
                "AnthropicInputTokens",
                summary.usage.input_tokens as f64,
                StandardUnit::Count,
            ),
            (
                "AnthropicOutputTokens",
                summary.usage.output_tokens as f64,
                StandardUnit::Count,
            ),
        ])
        .await?;
        Ok(())
    }
}

/// Each campaign's CTR over all its creatives.
fn campaign_ctrs(totals: &BTreeMap<String, CreativeTotals>) -> BTreeMap<String, Option<f64>> {
    let mut sums: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for t in totals.values() {
        let s = sums.entry(t.campaign_id.clone()).or_default();
        s.0 += t.performance.impressions;
        s.1 += t.performance.clicks;
    }
    sums.into_iter()
        .map(|(c, (i, k))| (c, Performance::new(i, k, 0.0, 0).ctr))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(h: &str, d: &str) -> Variant {
        Variant {
            headline: h.into(),
            description: d.into(),
        }
    }

    #[test]
    fn variants_over_a_limit_or_empty_are_rejected_with_the_reason() {
        let (ok, bad) = check_variants(
            vec![
                variant("Ship ads 2x faster", "Free guide for B2B marketers"),
                variant("A headline far too long for a text ad", "Fine"),
                variant(" ", "Fine"),
            ],
            TEXT_AD,
        );
        assert_eq!(ok.len(), 1);
        assert_eq!(
            bad[0].problems,
            ["headline is 37 characters, LinkedIn allows 25"]
        );
        assert_eq!(bad[1].problems, ["headline is empty"]);
    }

    #[test]
    fn variants_are_found_in_fenced_or_wrapped_answers() {
        let text = "Here you go:\n```json\n{\"variants\": [{\"headline\": \"H\", \"description\": \"D\"}]}\n```";
        assert_eq!(parse_variants(text).unwrap(), [variant("H", "D")]);
        assert!(parse_variants("no json here").is_err());
        assert!(parse_variants("{\"other\": 1}").is_err());
    }
}
