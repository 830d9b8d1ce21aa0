//! The two models, without any I/O: how each is trained on the processor's daily aggregates,
//! what it predicts, and its held-out metrics. The last fifth of the days (at least one) is
//! held out, so the metrics measure prediction of days the model has not seen.
//!
//! - **creative scorer**: L2-regularized logistic regression of click-through on a creative's
//!   content features (the `daily_aggregates` feature columns), fitted to clicks out of
//!   impressions. Metrics: held-out log loss per impression, the log loss of predicting the
//!   training CTR for everyone, and the impression-weighted AUC.
//! - **bid optimizer**: per campaign, the conversion rate per click (smoothed toward the
//!   overall rate) and the bid it justifies at the target cost per acquisition, bounded by the
//!   campaign's historical CPC. Metrics: held-out error of the predicted conversion rate, and
//!   that of the overall rate.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The feature columns of `daily_aggregates` the scorer reads, in model order.
pub const SCORER_FEATURES: [&str; 13] = [
    "headline_words",
    "description_words",
    "headline_length",
    "has_number",
    "has_question",
    "kw_free",
    "kw_new",
    "kw_guide",
    "kw_webinar",
    "kw_demo",
    "kw_report",
    "kw_save",
    "kw_you",
];

/// One day of one creative, as the trainers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub date: String,
    pub creative_id: String,
    pub campaign_id: String,
    pub impressions: f64,
    pub clicks: f64,
    pub spend_usd: f64,
    pub conversions: f64,
    /// `None` when the creative's content is unknown (its feature columns are null).
    pub features: Option<Vec<f64>>,
}

/// Content features of a `daily_aggregates` row (JSON as read back from Parquet).
pub fn features_of(row: &Value) -> Option<Vec<f64>> {
    SCORER_FEATURES
        .iter()
        .map(|c| match &row[*c] {
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Number(n) => n.as_f64(),
            _ => None,
        })
        .collect()
}

pub fn example_of(row: &Value) -> Option<Example> {
    let number = |c: &str| row[c].as_f64().unwrap_or(0.0);
    Some(Example {
        date: row["date"].as_str()?.to_string(),
        creative_id: row["creative_id"].as_str()?.to_string(),
        campaign_id: row["campaign_id"].as_str().unwrap_or_default().to_string(),
        impressions: number("impressions"),
        clicks: number("clicks"),
        spend_usd: number("spend_usd"),
        conversions: number("conversions"),
        features: features_of(row),
    })
}

/// Splits by day: the last fifth of the distinct days (at least one) is held out.
pub fn split_by_day(examples: &[Example]) -> (Vec<&Example>, Vec<&Example>) {
    let days: BTreeSet<&str> = examples.iter().map(|e| e.date.as_str()).collect();
    let held = if days.len() < 2 {
        0
    } else {
        (days.len() / 5).max(1)
    };
    let first_held: Option<&str> = days.iter().rev().nth(held.saturating_sub(1)).copied();
    let is_held = |e: &Example| held > 0 && Some(e.date.as_str()) >= first_held;
    examples.iter().partition(|e| !is_held(e))
}

fn days_of(examples: &[&Example]) -> (Option<String>, Option<String>) {
    (
        examples.iter().map(|e| e.date.clone()).min(),
        examples.iter().map(|e| e.date.clone()).max(),
    )
}

/// The creative scorer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreativeScorer {
    pub kind: String,
    pub features: Vec<String>,
    pub means: Vec<f64>,
    pub stds: Vec<f64>,
    pub weights: Vec<f64>,
    pub bias: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ScorerParams {
    /// L2 penalty per impression on the standardized weights.
    pub l2: f64,
    /// At most this many Newton steps (it usually converges in under ten).
    pub iterations: usize,
}

impl Default for ScorerParams {
    fn default() -> ScorerParams {
        ScorerParams {
            l2: 0.001,
            iterations: 50,
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

impl CreativeScorer {
    /// The predicted click-through rate of content with `features` (in [`SCORER_FEATURES`]
    /// order).
    pub fn predict(&self, features: &[f64]) -> f64 {
        let z: f64 = features
            .iter()
            .zip(self.means.iter().zip(&self.stds))
            .zip(&self.weights)
            .map(|((x, (m, s)), w)| w * (x - m) / s)
            .sum();
        sigmoid(self.bias + z)
    }

    /// Fits the scorer to the examples with known content.
    pub fn train(examples: &[&Example], params: ScorerParams) -> Option<CreativeScorer> {
        let rows: Vec<(&Vec<f64>, f64, f64)> = examples
            .iter()
            .filter(|e| e.impressions > 0.0)
            .filter_map(|e| e.features.as_ref().map(|f| (f, e.impressions, e.clicks)))
            .collect();
        let total: f64 = rows.iter().map(|r| r.1).sum();
        if rows.is_empty() || total <= 0.0 {
            return None;
        }
        let k = SCORER_FEATURES.len();
        let mut means = vec![0.0; k];
        for (f, n, _) in &rows {
            for j in 0..k {
                means[j] += f[j] * n / total;
            }
        }
        let mut stds = vec![0.0; k];
        for (f, n, _) in &rows {
            for j in 0..k {
                stds[j] += (f[j] - means[j]).powi(2) * n / total;
            }
        }
        let stds: Vec<f64> = stds
            .into_iter()
            .map(|v| if v > 1e-12 { v.sqrt() } else { 1.0 })
            .collect();
        let standardized: Vec<(Vec<f64>, f64, f64)> = rows
            .iter()
            .map(|(f, n, c)| {
                (
                    (0..k).map(|j| (f[j] - means[j]) / stds[j]).collect(),
                    *n,
                    *c,
                )
            })
            .collect();
        let clicks: f64 = rows.iter().map(|r| r.2).sum();
        // Newton steps on the penalized log likelihood; parameter 0 is the bias (unpenalized).
        let mut theta = vec![0.0; k + 1];
        theta[0] = logit(clicks / total);
        let penalty = params.l2 * total;
        for _ in 0..params.iterations {
            let mut gradient = vec![0.0; k + 1];
            let mut hessian = vec![vec![0.0; k + 1]; k + 1];
            for (x, n, c) in &standardized {
                let z = theta[0] + x.iter().zip(&theta[1..]).map(|(a, w)| a * w).sum::<f64>();
                let p = sigmoid(z);
                let residual = n * p - c;
                let curvature = n * p * (1.0 - p);
                let xs: Vec<f64> = std::iter::once(1.0).chain(x.iter().copied()).collect();
                for a in 0..=k {
                    gradient[a] += residual * xs[a];
                    for b in 0..=k {
                        hessian[a][b] += curvature * xs[a] * xs[b];
                    }
                }
            }
            for j in 1..=k {
                gradient[j] += penalty * theta[j];
                hessian[j][j] += penalty;
            }
            let Some(step) = solve(hessian, gradient) else {
                break;
            };
            let largest = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
            for (t, s) in theta.iter_mut().zip(&step) {
                *t -= s;
            }
            if largest < 1e-9 {
                break;
            }
        }
        let bias = theta[0];
        let weights = theta[1..].to_vec();
        Some(CreativeScorer {
            kind: "creative-scorer".into(),
            features: SCORER_FEATURES.iter().map(|f| f.to_string()).collect(),
            means,
            stds,
            weights,
            bias,
        })
    }
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting; `None` when singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for (offset, row) in lower.iter_mut().enumerate() {
            let factor = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= factor * p;
            }
            b[col + 1 + offset] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let sum: f64 = (row + 1..n).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - sum) / a[row][row];
    }
    Some(x)
}

/// Log loss per impression of predicting `p(e)` for each example's clicks.
fn log_loss(examples: &[(&Example, f64)]) -> Option<f64> {
    let total: f64 = examples.iter().map(|(e, _)| e.impressions).sum();
    if total <= 0.0 {
        return None;
    }
    let loss: f64 = examples
        .iter()
        .map(|(e, p)| {
            let p = p.clamp(1e-9, 1.0 - 1e-9);
            -(e.clicks * p.ln() + (e.impressions - e.clicks).max(0.0) * (1.0 - p).ln())
        })
        .sum();
    Some(loss / total)
}

/// The probability that a random click's prediction outranks a random non-click's (ties half).
fn weighted_auc(examples: &[(&Example, f64)]) -> Option<f64> {
    let mut sorted: Vec<(f64, f64, f64)> = examples
        .iter()
        .map(|(e, p)| (*p, e.clicks, (e.impressions - e.clicks).max(0.0)))
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives: f64 = sorted.iter().map(|s| s.1).sum();
    let negatives: f64 = sorted.iter().map(|s| s.2).sum();
    if positives <= 0.0 || negatives <= 0.0 {
        return None;
    }
    let mut negatives_below = 0.0;
    let mut area = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            pos += sorted[j].1;
            neg += sorted[j].2;
            j += 1;
        }
        area += pos * (negatives_below + neg / 2.0);
        negatives_below += neg;
        i = j;
    }
    Some(area / (positives * negatives))
}

/// A trained model: its artifact (`model.json`), held-out metrics and what it was trained on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Trained {
    pub model: Value,
    pub metrics: BTreeMap<String, f64>,
    pub hyperparameters: BTreeMap<String, Value>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub rows: u64,
}

pub fn train_scorer(examples: &[Example], params: ScorerParams) -> Option<Trained> {
    let (train, test) = split_by_day(examples);
    let scorer = CreativeScorer::train(&train, params)?;
    let train_total: f64 = train.iter().map(|e| e.impressions).sum();
    let train_ctr = train.iter().map(|e| e.clicks).sum::<f64>() / train_total.max(1.0);
    let known: Vec<&Example> = test
        .iter()
        .copied()
        .filter(|e| e.features.is_some() && e.impressions > 0.0)
        .collect();
    let predicted: Vec<(&Example, f64)> = known
        .iter()
        .map(|e| {
            (
                *e,
                scorer.predict(e.features.as_deref().unwrap_or_default()),
            )
        })
        .collect();
    let baseline: Vec<(&Example, f64)> = known.iter().map(|e| (*e, train_ctr)).collect();
    let mut metrics = BTreeMap::new();
    if let (Some(model), Some(base)) = (log_loss(&predicted), log_loss(&baseline)) {
        metrics.insert("log_loss".into(), model);
        metrics.insert("baseline_log_loss".into(), base);
    }
    if let Some(auc) = weighted_auc(&predicted) {
        metrics.insert("auc".into(), auc);
    }
    metrics.insert("train_rows".into(), train.len() as f64);
    metrics.insert("test_rows".into(), known.len() as f64);
    let (from, to) = days_of(&train);
    Some(Trained {
        model: serde_json::to_value(&scorer).unwrap_or_default(),
        metrics,
        hyperparameters: [
            ("l2".to_string(), params.l2.into()),
            ("iterations".to_string(), params.iterations.into()),
        ]
        .into(),
        from,
        to,
        rows: train.len() as u64,
    })
}

/// The bid optimizer: a recommended bid per campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BidModel {
    pub kind: String,
    pub target_cpa_usd: f64,
    pub overall_conversion_rate: f64,
    pub campaigns: BTreeMap<String, CampaignBid>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CampaignBid {
    pub clicks: f64,
    pub average_cpc_usd: f64,
    /// Conversions per click, smoothed toward the overall rate.
    pub conversion_rate: f64,
    /// `target_cpa_usd x conversion_rate`, kept within half and twice the average CPC.
    pub recommended_bid_usd: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BidParams {
    pub target_cpa_usd: f64,
    /// Clicks' worth of the overall rate each campaign's rate starts from.
    pub prior_clicks: f64,
}

impl Default for BidParams {
    fn default() -> BidParams {
        BidParams {
            target_cpa_usd: 50.0,
            prior_clicks: 50.0,
        }
    }
}

impl BidModel {
    pub fn train(examples: &[&Example], params: BidParams) -> Option<BidModel> {
        let mut sums: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new();
        for e in examples {
            let s = sums.entry(&e.campaign_id).or_default();
            s.0 += e.clicks;
            s.1 += e.spend_usd;
            s.2 += e.conversions;
        }
        let clicks: f64 = sums.values().map(|s| s.0).sum();
        if clicks <= 0.0 {
            return None;
        }
        let overall = sums.values().map(|s| s.2).sum::<f64>() / clicks;
        let campaigns = sums
            .into_iter()
            .filter(|(_, s)| s.0 > 0.0)
            .map(|(id, (clicks, spend, conversions))| {
                let rate =
                    (conversions + params.prior_clicks * overall) / (clicks + params.prior_clicks);
                let cpc = spend / clicks;
                let bid = (params.target_cpa_usd * rate).clamp(cpc * 0.5, cpc * 2.0);
                (
                    id.to_string(),
                    CampaignBid {
                        clicks,
                        average_cpc_usd: cpc,
                        conversion_rate: rate,
                        recommended_bid_usd: (bid * 100.0).round() / 100.0,
                    },
                )
            })
            .collect();
        Some(BidModel {
            kind: "bid-optimizer".into(),
            target_cpa_usd: params.target_cpa_usd,
            overall_conversion_rate: overall,
            campaigns,
        })
    }
}

pub fn train_bids(examples: &[Example], params: BidParams) -> Option<Trained> {
    let (train, test) = split_by_day(examples);
    let model = BidModel::train(&train, params)?;
    // Held out: each campaign's conversions per click, weighted by its clicks.
    let mut actual: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for e in &test {
        let a = actual.entry(&e.campaign_id).or_default();
        a.0 += e.clicks;
        a.1 += e.conversions;
    }
    let (mut error, mut baseline, mut weight) = (0.0, 0.0, 0.0);
    for (campaign, (clicks, conversions)) in &actual {
        if *clicks <= 0.0 {
            continue;
        }
        let rate = conversions / clicks;
        let predicted = model
            .campaigns
            .get(*campaign)
            .map_or(model.overall_conversion_rate, |c| c.conversion_rate);
        error += clicks * (predicted - rate).abs();
        baseline += clicks * (model.overall_conversion_rate - rate).abs();
        weight += clicks;
    }
    let mut metrics = BTreeMap::new();
    if weight > 0.0 {
        metrics.insert("conversion_rate_mae".into(), error / weight);
        metrics.insert("baseline_conversion_rate_mae".into(), baseline / weight);
    }
    metrics.insert("campaigns".into(), model.campaigns.len() as f64);
    metrics.insert("train_rows".into(), train.len() as f64);
    metrics.insert("test_rows".into(), test.len() as f64);
    let (from, to) = days_of(&train);
    Some(Trained {
        model: serde_json::to_value(&model).unwrap_or_default(),
        metrics,
        hyperparameters: [
            ("target_cpa_usd".to_string(), params.target_cpa_usd.into()),
            ("prior_clicks".to_string(), params.prior_clicks.into()),
        ]
        .into(),
        from,
        to,
        rows: train.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(day: u32, creative: &str, free: bool, n: f64, c: f64) -> Example {
        let mut features = vec![5.0, 10.0, 30.0, 0.0, 0.0];
        features.extend([
            if free { 1.0 } else { 0.0 },
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
        ]);
        Example {
            date: format!("2026-01-{day:02}"),
            creative_id: creative.into(),
            campaign_id: if free { "1".into() } else { "2".into() },
            impressions: n,
            clicks: c,
            spend_usd: c * 2.0,
            conversions: (c / 10.0).floor(),
            features: Some(features),
        }
    }

    #[test]
    fn the_scorer_learns_that_free_lifts_clicks_and_beats_the_baseline() {
        let examples: Vec<Example> = (1..=10)
            .flat_map(|d| {
                [
                    example(d, "a", true, 1000.0, 30.0),
                    example(d, "b", false, 1000.0, 10.0),
                ]
            })
            .collect();
        let trained = train_scorer(&examples, ScorerParams::default()).unwrap();
        let scorer: CreativeScorer = serde_json::from_value(trained.model.clone()).unwrap();
        let free = scorer.predict(examples[0].features.as_ref().unwrap());
        let plain = scorer.predict(examples[1].features.as_ref().unwrap());
        assert!((free - 0.03).abs() < 0.003, "{free}");
        assert!((plain - 0.01).abs() < 0.002, "{plain}");
        assert!(trained.metrics["log_loss"] < trained.metrics["baseline_log_loss"]);
        assert!(trained.metrics["auc"] > 0.6, "{:?}", trained.metrics);
        // Two of ten days held out.
        assert_eq!(trained.metrics["test_rows"], 4.0);
        assert_eq!(trained.to.as_deref(), Some("2026-01-08"));
    }

    #[test]
    fn auc_counts_ties_as_half() {
        let e = |n: f64, c: f64| example(1, "x", false, n, c);
        let (a, b) = (e(10.0, 5.0), e(10.0, 0.0));
        // 5 clicks over 5 + 10 non-clicks: 5 x 10 pairs ordered right, 5 x 5 tied.
        assert_eq!(weighted_auc(&[(&a, 0.9), (&b, 0.1)]), Some(62.5 / 75.0));
        assert_eq!(weighted_auc(&[(&a, 0.5), (&b, 0.5)]), Some(0.5));
    }

    #[test]
    fn bids_follow_conversion_rates_within_the_cpc_bounds() {
        let examples: Vec<Example> = (1..=10)
            .flat_map(|d| {
                [
                    example(d, "a", true, 1000.0, 30.0),
                    example(d, "b", false, 1000.0, 10.0),
                ]
            })
            .collect();
        let trained = train_bids(&examples, BidParams::default()).unwrap();
        let model: BidModel = serde_json::from_value(trained.model).unwrap();
        // Campaign 1: 3 conversions of 30 clicks a day; its CPC is 2 USD, so at most 4.
        let c1 = &model.campaigns["1"];
        assert_eq!(c1.average_cpc_usd, 2.0);
        assert_eq!(c1.recommended_bid_usd, 4.0);
        // Campaign 2: 1 of 10 a day would justify 5, again capped at twice its CPC.
        assert!(model.campaigns["2"].recommended_bid_usd <= 4.0);
        assert!(trained.metrics.contains_key("conversion_rate_mae"));
    }
}
