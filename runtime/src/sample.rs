//! A deterministic synthetic ad account, for tests, demos and trainers run on sample data: 24
//! creatives in 4 campaigns whose click-through depends on their copy (a "free" offer, a
//! question and a number lift it; "webinar" lowers it) and on their campaign, written as the
//! collector writes raw data. The same seed gives the same bytes.

use chrono::{Datelike, Days, NaiveDate};
use serde_json::json;

/// `(headline, description)` of the sample creatives; the index picks the campaign.
const COPY: [(&str, &str); 24] = [
    ("Free guide: ship ads faster", "Download the free playbook"),
    ("Is your funnel leaking?", "See where B2B budgets go"),
    ("Join our webinar", "Live on Thursday"),
    ("10 ways to cut CPC", "A report for B2B marketers"),
    ("Get the free report", "2026 benchmark data inside"),
    ("Webinar: attribution", "Register today"),
    ("Why do ads stall?", "Free diagnostic for your account"),
    ("New: creative scoring", "Book a demo"),
    ("Save 5 hours a week", "Automate your reporting"),
    ("Our platform", "Learn more about us"),
    ("Free template pack", "20 ad templates that work"),
    ("Webinar series", "Three sessions in March"),
    ("What is your CTR?", "Compare with 1,200 teams"),
    ("The B2B ads guide", "Everything in one place"),
    ("Free audit", "We review your campaigns"),
    ("Product update", "See what changed"),
    ("3 tests to run now", "Quick wins for paid social"),
    ("Webinar replay", "Watch on demand"),
    ("Ready to scale?", "Talk to our team"),
    ("Free trial, 14 days", "No card needed"),
    ("Customer stories", "How teams grew pipeline"),
    ("Need more leads?", "Free lead-gen checklist"),
    ("Annual report 2026", "Download the report"),
    ("Meet the team", "Our story"),
];

const CAMPAIGNS: [&str; 4] = ["9001", "9002", "9003", "9004"];
pub const ACCOUNT: &str = "500000001";

/// The sample creative ids (`700001` on).
pub fn creative_ids() -> Vec<String> {
    (0..COPY.len())
        .map(|i| format!("{}", 700_001 + i))
        .collect()
}

fn true_ctr(index: usize) -> f64 {
    let (headline, description) = COPY[index];
    let text = format!("{headline} {description}").to_lowercase();
    let mut ctr = 0.006;
    if text.contains("free") {
        ctr *= 1.7;
    }
    if text.contains('?') {
        ctr *= 1.35;
    }
    if text.chars().any(|c| c.is_ascii_digit()) {
        ctr *= 1.2;
    }
    if text.contains("webinar") {
        ctr *= 0.7;
    }
    ctr * [1.0, 1.15, 0.9, 1.05][index % CAMPAIGNS.len()]
}

/// The creatives as `raw/linkedin/creatives` lines of run `run_id`.
pub fn creative_lines(run_id: &str) -> Vec<String> {
    COPY.iter()
        .enumerate()
        .map(|(i, (headline, description))| {
            json!({
                "creative_id": format!("{}", 700_001 + i),
                "account_id": ACCOUNT,
                "campaign_id": CAMPAIGNS[i % CAMPAIGNS.len()],
                "status": "ACTIVE",
                "headline": headline,
                "description": description,
                "call_to_action": if i % 3 == 0 { "DOWNLOAD" } else { "LEARN_MORE" },
                "landing_page": "",
                "image_url": "",
                "targeting_summary": "",
                "run_id": run_id,
            })
            .to_string()
        })
        .collect()
}

/// One creative's numbers on one day.
struct DayMetrics {
    index: usize,
    impressions: u64,
    clicks: u64,
    cost: f64,
    conversions: u64,
}

/// Every creative's numbers on `day`, the same for the same seed.
fn day_metrics(day: NaiveDate, seed: u64) -> Vec<DayMetrics> {
    let mut rng = fastrand::Rng::with_seed(
        seed.wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(day.num_days_from_ce().unsigned_abs().into()),
    );
    (0..COPY.len())
        .map(|index| {
            let impressions = 800 + rng.u64(0..2200);
            let noise = 0.7 + rng.f64() * 0.6;
            let clicks = (impressions as f64 * true_ctr(index) * noise).round() as u64;
            let cpc = 3.0 + (index % CAMPAIGNS.len()) as f64;
            let conversion_rate = [0.12, 0.05, 0.08, 0.03][index % CAMPAIGNS.len()];
            let conversions = (clicks as f64 * conversion_rate * (0.5 + rng.f64())).round();
            DayMetrics {
                index,
                impressions,
                clicks,
                cost: (clicks as f64 * cpc * 100.0).round() / 100.0,
                conversions: conversions as u64,
            }
        })
        .collect()
}

/// One day's `raw/linkedin/ad_analytics` lines of run `run_id`, one per creative.
pub fn analytics_lines(day: NaiveDate, run_id: &str, seed: u64) -> Vec<String> {
    day_metrics(day, seed)
        .into_iter()
        .map(|m| {
            json!({
                "creative_id": format!("{}", 700_001 + m.index),
                "account_id": ACCOUNT,
                "campaign_id": CAMPAIGNS[m.index % CAMPAIGNS.len()],
                "date": day.to_string(),
                "impressions": m.impressions,
                "clicks": m.clicks,
                "cost_local": m.cost,
                "cost_usd": m.cost,
                "conversions": m.conversions,
                "run_id": run_id,
            })
            .to_string()
        })
        .collect()
}

/// The sample account's creatives as LinkedIn's creatives API answers them (one page, text
/// ads).
pub fn api_creatives() -> serde_json::Value {
    let elements: Vec<serde_json::Value> = COPY
        .iter()
        .enumerate()
        .map(|(i, (headline, description))| {
            json!({
                "id": format!("urn:li:sponsoredCreative:{}", 700_001 + i),
                "account": format!("urn:li:sponsoredAccount:{ACCOUNT}"),
                "campaign": format!("urn:li:sponsoredCampaign:{}", CAMPAIGNS[i % CAMPAIGNS.len()]),
                "intendedStatus": "ACTIVE",
                "content": {"textAd": {"headline": headline, "description": description}},
                "leadgenCallToAction": {"label": if i % 3 == 0 { "DOWNLOAD" } else { "LEARN_MORE" }},
            })
        })
        .collect();
    json!({"paging": {"count": elements.len(), "start": 0, "links": []}, "metadata": {}, "elements": elements})
}

/// The sample account's daily creative analytics from `start` through `end`, as LinkedIn's
/// adAnalytics API answers them (money as decimal strings).
pub fn api_analytics(start: NaiveDate, end: NaiveDate, seed: u64) -> serde_json::Value {
    let date = |d: NaiveDate| json!({"year": d.year(), "month": d.month(), "day": d.day()});
    let mut elements = Vec::new();
    for day in start.iter_days().take_while(|d| *d <= end) {
        for m in day_metrics(day, seed) {
            elements.push(json!({
                "pivotValues": [format!("urn:li:sponsoredCreative:{}", 700_001 + m.index)],
                "dateRange": {"start": date(day), "end": date(day)},
                "impressions": m.impressions,
                "clicks": m.clicks,
                "costInLocalCurrency": format!("{:.2}", m.cost),
                "costInUsd": format!("{:.2}", m.cost),
                "externalWebsiteConversions": m.conversions,
            }));
        }
    }
    json!({"paging": {"count": elements.len(), "start": 0, "links": []}, "elements": elements})
}

/// `(key, NDJSON)` objects of `days` days ending `last`, one run per day, plus the creatives.
pub fn raw_objects(last: NaiveDate, days: u32, seed: u64) -> Vec<(String, String)> {
    let mut objects = Vec::new();
    for back in (0..u64::from(days)).rev() {
        let Some(day) = last.checked_sub_days(Days::new(back)) else {
            continue;
        };
        let run_id = format!("{}T060000Z-5a5a5a5a", day.format("%Y%m%d"));
        objects.push((
            format!("raw/linkedin/ad_analytics/dt={day}/{run_id}.ndjson"),
            analytics_lines(day, &run_id, seed).join("\n") + "\n",
        ));
    }
    let run_id = format!("{}T060000Z-5a5a5a5a", last.format("%Y%m%d"));
    objects.push((
        format!("raw/linkedin/creatives/dt={last}/{run_id}.ndjson"),
        creative_lines(&run_id).join("\n") + "\n",
    ));
    objects
}
