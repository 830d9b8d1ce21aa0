//! What the optimizer decides, without any I/O: per creative, pause or keep; per campaign,
//! raise the daily budget or move the bid; then the guardrails (cooldown, a campaign's last
//! active creative, the most actions per run). Every evaluated creative and campaign gets a
//! decision with its reason and the numbers it was made from.
//!
//! - **Pause**: the creative's CTR is significantly below its campaign's: the upper Wilson
//!   bound of its CTR (at `confidence_z`) is under the campaign's CTR, after at least
//!   `min_impressions`. With a creative scorer, the model must agree (predict the creative's
//!   content below the campaign's CTR); otherwise the creative is kept and the veto is said.
//! - **Scale**: a campaign whose best creative is a clear winner (its lower Wilson bound above
//!   the campaign's CTR, and the model agreeing) gets its daily budget raised by
//!   `budget_increase_percent`.
//! - **Bid**: with a bid model, a campaign's bid moves toward the recommended one by at most
//!   `max_bid_change_percent`; moves under 1% are not made. Without one, bids stay.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::processed::CreativeTotals;
use crate::processor::CreativeMetadata;
use crate::training::{BidModel, CreativeScorer, SCORER_FEATURES};

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Thresholds {
    pub min_impressions: i64,
    pub confidence_z: f64,
    pub max_actions: usize,
    pub cooldown_hours: u32,
    pub max_bid_change_percent: f64,
    pub budget_increase_percent: f64,
}

/// The Wilson score interval of `clicks` out of `impressions` at `z`.
pub fn wilson(clicks: i64, impressions: i64, z: f64) -> (f64, f64) {
    if impressions <= 0 {
        return (0.0, 1.0);
    }
    let n = impressions as f64;
    let p = clicks as f64 / n;
    let z2 = z * z;
    let center = p + z2 / (2.0 * n);
    let margin = z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt();
    let denominator = 1.0 + z2 / n;
    (
        ((center - margin) / denominator).max(0.0),
        ((center + margin) / denominator).min(1.0),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Pause,
    ScaleBudget,
    AdjustBid,
    Keep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// An action to carry out (before execution).
    Planned,
    /// Carried out on LinkedIn.
    Executed,
    /// Decided, but dry-run: nothing sent. Counted apart from executed actions (the
    /// `DryRunActions` metric) and never the start of a cooldown.
    DryRun,
    /// Held back by a guardrail (the reason says which).
    Skipped,
    /// LinkedIn refused or failed it (the decision's `error` says how).
    Failed,
    /// Planned, but never sent: the run stopped first (LinkedIn answered 401 to an earlier
    /// write, or there was no access token); the decisions file's `error` says why.
    NotTried,
    /// No action.
    None,
}

/// The numbers a decision was made from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Inputs {
    pub impressions: i64,
    pub clicks: i64,
    pub ctr: Option<f64>,
    pub wilson_lower: Option<f64>,
    pub wilson_upper: Option<f64>,
    pub campaign_ctr: Option<f64>,
    pub predicted_ctr: Option<f64>,
    /// Budget or bid now, and proposed (USD).
    pub current: Option<f64>,
    pub proposed: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    pub action: Action,
    pub status: Status,
    pub account_id: String,
    pub campaign_id: String,
    /// The creative, for creative decisions.
    pub creative_id: Option<String>,
    pub reason: String,
    pub inputs: Inputs,
    /// Why LinkedIn did not carry it out, for a `Failed` decision: the API error, which names
    /// the path and LinkedIn's answer, never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How strongly the numbers call for the action (orders actions under the cap).
    #[serde(skip)]
    pub priority: f64,
}

/// A campaign's current settings on LinkedIn (USD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CampaignSettings {
    pub daily_budget: Option<f64>,
    pub bid: Option<f64>,
}

/// Everything the decisions are made from.
pub struct Situation<'a> {
    pub totals: &'a BTreeMap<String, CreativeTotals>,
    pub creatives: &'a BTreeMap<String, CreativeMetadata>,
    pub scorer: Option<&'a CreativeScorer>,
    pub bids: Option<&'a BidModel>,
    pub campaigns: &'a BTreeMap<String, CampaignSettings>,
    /// Creatives and campaigns acted on within the cooldown.
    pub cooling_down: &'a BTreeSet<String>,
    pub thresholds: Thresholds,
}

fn features(creative: &CreativeMetadata) -> Vec<f64> {
    let f = &creative.features;
    SCORER_FEATURES
        .iter()
        .map(|name| match *name {
            "headline_words" => f.headline_words as f64,
            "description_words" => f.description_words as f64,
            "headline_length" => f.headline_length as f64,
            "has_number" => f64::from(u8::from(f.has_number)),
            "has_question" => f64::from(u8::from(f.has_question)),
            other => other
                .strip_prefix("kw_")
                .and_then(|k| f.keywords.get(k))
                .map_or(0.0, |b| f64::from(u8::from(*b))),
        })
        .collect()
}

/// The scorer's prediction for each creative with known content.
pub fn predictions(
    scorer: &CreativeScorer,
    creatives: &BTreeMap<String, CreativeMetadata>,
) -> BTreeMap<String, f64> {
    creatives
        .iter()
        .map(|(id, c)| (id.clone(), scorer.predict(&features(c))))
        .collect()
}

fn campaign_ctrs(totals: &BTreeMap<String, CreativeTotals>) -> BTreeMap<&str, (i64, i64)> {
    let mut sums: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for t in totals.values() {
        let s = sums.entry(t.campaign_id.as_str()).or_default();
        s.0 += t.performance.impressions;
        s.1 += t.performance.clicks;
    }
    sums
}

fn percent(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |x| format!("{:.3}%", x * 100.0))
}

fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Every decision for `situation`, with the guardrails applied (statuses `Planned`,
/// `Skipped` or `None`).
pub fn decide(situation: &Situation<'_>) -> Vec<Decision> {
    let t = situation.thresholds;
    let campaign_sums = campaign_ctrs(situation.totals);
    let campaign_ctr = |campaign: &str| {
        campaign_sums
            .get(campaign)
            .filter(|(i, _)| *i > 0)
            .map(|(i, c)| *c as f64 / *i as f64)
    };
    let predicted = |id: &str| {
        let scorer = situation.scorer?;
        Some(scorer.predict(&features(situation.creatives.get(id)?)))
    };

    let mut decisions = Vec::new();
    // Campaign -> its best clear winner's margin over the campaign CTR.
    let mut winners: BTreeMap<&str, (f64, &CreativeTotals)> = BTreeMap::new();
    for totals in situation.totals.values() {
        let Some(creative) = situation.creatives.get(&totals.creative_id) else {
            continue;
        };
        if creative.creative.status != "ACTIVE" {
            continue;
        }
        let p = &totals.performance;
        let (lower, upper) = wilson(p.clicks, p.impressions, t.confidence_z);
        let campaign = campaign_ctr(&totals.campaign_id);
        let model_ctr = predicted(&totals.creative_id);
        let inputs = Inputs {
            impressions: p.impressions,
            clicks: p.clicks,
            ctr: p.ctr,
            wilson_lower: Some(lower),
            wilson_upper: Some(upper),
            campaign_ctr: campaign,
            predicted_ctr: model_ctr,
            ..Inputs::default()
        };
        let mut decision = Decision {
            action: Action::Keep,
            status: Status::None,
            account_id: totals.account_id.clone(),
            campaign_id: totals.campaign_id.clone(),
            creative_id: Some(totals.creative_id.clone()),
            reason: String::new(),
            inputs,
            error: None,
            priority: 0.0,
        };
        let Some(campaign) = campaign else {
            decision.reason = "its campaign has no impressions".into();
            decisions.push(decision);
            continue;
        };
        if p.impressions < t.min_impressions {
            decision.reason = format!(
                "{} impressions, fewer than the {} needed to judge",
                p.impressions, t.min_impressions
            );
        } else if upper < campaign {
            match model_ctr {
                Some(m) if m >= campaign => {
                    decision.reason = format!(
                        "CTR upper bound {} is below the campaign's {}, but the model predicts {} for its content: kept",
                        percent(Some(upper)),
                        percent(Some(campaign)),
                        percent(Some(m))
                    );
                }
                _ => {
                    decision.action = Action::Pause;
                    decision.status = Status::Planned;
                    decision.priority = (campaign - upper) / campaign;
                    decision.reason = format!(
                        "CTR upper bound {} is below the campaign's {}{}",
                        percent(Some(upper)),
                        percent(Some(campaign)),
                        model_ctr.map_or(String::new(), |m| format!(
                            ", and the model predicts {}",
                            percent(Some(m))
                        ))
                    );
                }
            }
        } else if lower > campaign && model_ctr.is_none_or(|m| m >= campaign) {
            decision.reason = format!(
                "a clear winner: CTR lower bound {} is above the campaign's {}",
                percent(Some(lower)),
                percent(Some(campaign))
            );
            let margin = (lower - campaign) / campaign;
            let best = winners
                .entry(&totals.campaign_id)
                .or_insert((margin, totals));
            if margin > best.0 {
                *best = (margin, totals);
            }
        } else {
            decision.reason = format!(
                "CTR {} is not significantly different from the campaign's {}",
                percent(p.ctr),
                percent(Some(campaign))
            );
        }
        decisions.push(decision);
    }

    for (campaign_id, (margin, winner)) in &winners {
        let settings = situation
            .campaigns
            .get(*campaign_id)
            .copied()
            .unwrap_or_default();
        let mut decision = Decision {
            action: Action::ScaleBudget,
            status: Status::Planned,
            account_id: winner.account_id.clone(),
            campaign_id: campaign_id.to_string(),
            creative_id: None,
            reason: format!(
                "creative {} is a clear winner: daily budget up {}%",
                winner.creative_id, t.budget_increase_percent
            ),
            inputs: Inputs {
                impressions: winner.performance.impressions,
                clicks: winner.performance.clicks,
                ctr: winner.performance.ctr,
                campaign_ctr: campaign_ctr(campaign_id),
                current: settings.daily_budget,
                proposed: settings
                    .daily_budget
                    .map(|b| round_cents(b * (1.0 + t.budget_increase_percent / 100.0))),
                ..Inputs::default()
            },
            error: None,
            priority: *margin,
        };
        if settings.daily_budget.is_none() {
            decision.status = Status::Skipped;
            decision.reason = format!(
                "creative {} is a clear winner, but the campaign has no daily budget to raise",
                winner.creative_id
            );
        }
        decisions.push(decision);
    }

    if let Some(model) = situation.bids {
        for (campaign_id, settings) in situation.campaigns {
            let (Some(recommendation), Some(current)) =
                (model.campaigns.get(campaign_id), settings.bid)
            else {
                continue;
            };
            let limit = t.max_bid_change_percent / 100.0;
            let proposed = round_cents(
                recommendation
                    .recommended_bid_usd
                    .clamp(current * (1.0 - limit), current * (1.0 + limit)),
            );
            let change = (proposed - current) / current;
            if change.abs() < 0.01 {
                continue;
            }
            let account_id = situation
                .totals
                .values()
                .find(|t| &t.campaign_id == campaign_id)
                .map(|t| t.account_id.clone())
                .unwrap_or_default();
            decisions.push(Decision {
                action: Action::AdjustBid,
                status: Status::Planned,
                account_id,
                campaign_id: campaign_id.clone(),
                creative_id: None,
                reason: format!(
                    "the bid model recommends {:.2} USD (conversion rate {:.3}); moved at most {}%",
                    recommendation.recommended_bid_usd,
                    recommendation.conversion_rate,
                    t.max_bid_change_percent
                ),
                inputs: Inputs {
                    campaign_ctr: campaign_ctr(campaign_id),
                    current: Some(current),
                    proposed: Some(proposed),
                    ..Inputs::default()
                },
                error: None,
                priority: change.abs(),
            });
        }
    }

    apply_guardrails(&mut decisions, situation);
    decisions
}

fn apply_guardrails(decisions: &mut [Decision], situation: &Situation<'_>) {
    let t = situation.thresholds;
    // Actives per campaign, for the last-active-creative rule.
    let mut active: BTreeMap<String, usize> = BTreeMap::new();
    for c in situation.creatives.values() {
        if c.creative.status == "ACTIVE" {
            *active.entry(c.creative.campaign_id.clone()).or_default() += 1;
        }
    }
    // Strongest first: pauses, then budgets, then bids, each by priority.
    let mut order: Vec<usize> = (0..decisions.len())
        .filter(|&i| decisions[i].status == Status::Planned)
        .collect();
    order.sort_by(|&a, &b| {
        decisions[a]
            .action
            .cmp(&decisions[b].action)
            .then(decisions[b].priority.total_cmp(&decisions[a].priority))
    });
    let mut taken = 0;
    for i in order {
        let d = &mut decisions[i];
        let subject = d
            .creative_id
            .clone()
            .unwrap_or_else(|| d.campaign_id.clone());
        if situation.cooling_down.contains(&subject) {
            d.status = Status::Skipped;
            d.reason = format!(
                "{} (held back: acted on within the {} h cooldown)",
                d.reason, t.cooldown_hours
            );
            continue;
        }
        if d.action == Action::Pause {
            let remaining = active.entry(d.campaign_id.clone()).or_default();
            if *remaining <= 1 {
                d.status = Status::Skipped;
                d.reason = format!(
                    "{} (held back: the campaign's last active creative)",
                    d.reason
                );
                continue;
            }
            *remaining -= 1;
        }
        if taken >= t.max_actions {
            d.status = Status::Skipped;
            d.reason = format!(
                "{} (held back: at most {} actions per run)",
                d.reason, t.max_actions
            );
            if d.action == Action::Pause {
                *active.entry(d.campaign_id.clone()).or_default() += 1;
            }
            continue;
        }
        taken += 1;
    }
}

/// Share of accuracy of yesterday's predictions against the day's actual CTRs: one minus the
/// impression-weighted mean of |predicted - actual| / max(predicted, actual).
pub fn prediction_accuracy(
    predicted: &BTreeMap<String, f64>,
    actual: &BTreeMap<String, CreativeTotals>,
) -> Option<f64> {
    let (mut error, mut weight) = (0.0, 0.0);
    for (id, p) in predicted {
        let Some(t) = actual.get(id) else { continue };
        let Some(ctr) = t.performance.ctr else {
            continue;
        };
        let scale = p.max(ctr);
        if scale <= 0.0 {
            continue;
        }
        let n = t.performance.impressions as f64;
        error += n * (p - ctr).abs() / scale;
        weight += n;
    }
    (weight > 0.0).then(|| (1.0 - error / weight).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_bounds_match_the_formula() {
        // 10 of 1000 at z = 1.96, by hand: (0.0119208 -/+ 0.0064592) / 1.0038416.
        let (lo, hi) = wilson(10, 1000, 1.96);
        assert!((lo - 0.0054407).abs() < 1e-6, "{lo}");
        assert!((hi - 0.0183097).abs() < 1e-6, "{hi}");
        assert_eq!(wilson(0, 0, 1.96), (0.0, 1.0));
    }

    #[test]
    fn bids_move_toward_the_model_by_at_most_the_maximum_percent() {
        use crate::features::Performance;
        use crate::training::CampaignBid;
        let totals: BTreeMap<String, CreativeTotals> = ["1", "2"]
            .iter()
            .map(|c| {
                (
                    c.to_string(),
                    CreativeTotals {
                        creative_id: c.to_string(),
                        account_id: "500000001".into(),
                        campaign_id: format!("90{c}"),
                        performance: Performance::new(1000, 10, 50.0, 1),
                    },
                )
            })
            .collect();
        let bid = |usd: f64| CampaignBid {
            clicks: 10.0,
            average_cpc_usd: 5.0,
            conversion_rate: 0.1,
            recommended_bid_usd: usd,
        };
        let model = BidModel {
            kind: "bid-optimizer".into(),
            target_cpa_usd: 50.0,
            overall_conversion_rate: 0.1,
            campaigns: [
                ("901".to_string(), bid(10.0)),
                ("902".to_string(), bid(5.02)),
            ]
            .into(),
        };
        let settings = |b: f64| CampaignSettings {
            daily_budget: Some(100.0),
            bid: Some(b),
        };
        let campaigns = [
            ("901".to_string(), settings(5.0)),
            ("902".to_string(), settings(5.0)),
        ]
        .into();
        let situation = Situation {
            totals: &totals,
            creatives: &BTreeMap::new(),
            scorer: None,
            bids: Some(&model),
            campaigns: &campaigns,
            cooling_down: &BTreeSet::new(),
            thresholds: Thresholds {
                min_impressions: 100,
                confidence_z: 1.96,
                max_actions: 10,
                cooldown_hours: 0,
                max_bid_change_percent: 20.0,
                budget_increase_percent: 20.0,
            },
        };
        let bids: Vec<Decision> = decide(&situation)
            .into_iter()
            .filter(|d| d.action == Action::AdjustBid)
            .collect();
        // 10 USD recommended, 5 now: at most +20%. 5.02 is under a 1% move: left alone.
        assert_eq!(bids.len(), 1);
        assert_eq!(bids[0].campaign_id, "901");
        assert_eq!(
            (bids[0].inputs.current, bids[0].inputs.proposed),
            (Some(5.0), Some(6.0))
        );
        assert_eq!(bids[0].status, Status::Planned);
    }
}
