//! What the processor computes, without any I/O: which raw row wins per (creative, day), the
//! daily performance ratios, the content features of a creative's text, and ISO-week
//! summaries. The processor (`crate::processor`) reads raw NDJSON into these types and writes
//! what they return.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// One line of `raw/linkedin/ad_analytics/dt=.../<run-id>.ndjson` (the raw table's columns).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RawAnalytics {
    pub creative_id: String,
    pub account_id: String,
    #[serde(default)]
    pub campaign_id: String,
    /// `YYYY-MM-DD`.
    pub date: NaiveDate,
    #[serde(default)]
    pub impressions: i64,
    #[serde(default)]
    pub clicks: i64,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default)]
    pub conversions: i64,
    /// Run ids start with the run's UTC time (`20260131T060000Z-...`), so that they sort in
    /// the order the runs happened.
    pub run_id: String,
}

/// Keeps, per (creative, day), the row of the latest run: LinkedIn restates recent days
/// (late conversions), and every run re-pulls them.
pub fn latest_per_creative_day(rows: impl IntoIterator<Item = RawAnalytics>) -> Vec<RawAnalytics> {
    let mut latest: BTreeMap<(String, NaiveDate), RawAnalytics> = BTreeMap::new();
    for row in rows {
        let key = (row.creative_id.clone(), row.date);
        match latest.get(&key) {
            Some(kept) if kept.run_id >= row.run_id => {}
            _ => {
                latest.insert(key, row);
            }
        }
    }
    latest.into_values().collect()
}

/// Totals and the ratios derived from them; a ratio whose denominator is zero is `None`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    pub impressions: i64,
    pub clicks: i64,
    pub spend_usd: f64,
    pub conversions: i64,
    pub ctr: Option<f64>,
    pub cpc_usd: Option<f64>,
    pub cpm_usd: Option<f64>,
    pub conversion_rate: Option<f64>,
}

impl Performance {
    pub fn new(impressions: i64, clicks: i64, spend_usd: f64, conversions: i64) -> Performance {
        let ratio = |n: f64, d: i64| (d > 0).then(|| n / d as f64);
        Performance {
            impressions,
            clicks,
            spend_usd,
            conversions,
            ctr: ratio(clicks as f64, impressions),
            cpc_usd: ratio(spend_usd, clicks),
            cpm_usd: ratio(spend_usd * 1000.0, impressions),
            conversion_rate: ratio(conversions as f64, clicks),
        }
    }

    /// The performance of one raw row.
    pub fn of(row: &RawAnalytics) -> Performance {
        Performance::new(row.impressions, row.clicks, row.cost_usd, row.conversions)
    }
}

/// Words in ad copy that the models look for.
pub const KEYWORDS: [&str; 8] = [
    "free", "new", "guide", "webinar", "demo", "report", "save", "you",
];

/// Features of a creative's text: what the models can see of its content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContentFeatures {
    pub headline_words: usize,
    pub description_words: usize,
    pub headline_length: usize,
    pub has_number: bool,
    pub has_question: bool,
    /// LinkedIn's call-to-action label in upper snake case (`LEARN_MORE`), or `NONE`.
    pub call_to_action: String,
    /// One flag per [`KEYWORDS`] entry, by keyword.
    pub keywords: BTreeMap<String, bool>,
}

impl ContentFeatures {
    pub fn of(headline: &str, description: &str, call_to_action: &str) -> ContentFeatures {
        let words = |text: &str| text.split_whitespace().count();
        let text = format!("{headline} {description}").to_lowercase();
        let tokens: Vec<&str> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let cta = call_to_action.trim();
        ContentFeatures {
            headline_words: words(headline),
            description_words: words(description),
            headline_length: headline.chars().count(),
            has_number: text.chars().any(|c| c.is_ascii_digit()),
            has_question: text.contains('?'),
            call_to_action: if cta.is_empty() {
                "NONE".into()
            } else {
                cta.to_uppercase().replace([' ', '-'], "_")
            },
            keywords: KEYWORDS
                .iter()
                .map(|k| (k.to_string(), tokens.contains(k)))
                .collect(),
        }
    }
}

/// `2026-W01`: the ISO 8601 week a day belongs to (its year may differ from the day's).
pub fn iso_week(date: NaiveDate) -> String {
    let week = date.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

/// One creative's performance over one ISO week.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeeklySummary {
    pub week: String,
    pub creative_id: String,
    pub account_id: String,
    pub campaign_id: String,
    /// Days of the week with a row for the creative.
    pub days: usize,
    pub performance: Performance,
}

/// Sums deduplicated daily rows per (ISO week, creative), a day at a time, so that only the
/// sums stay in memory.
#[derive(Clone, Debug, Default)]
pub struct WeeklyTotals {
    totals: BTreeMap<(String, String), WeekTotal>,
}

#[derive(Clone, Debug, Default)]
struct WeekTotal {
    account_id: String,
    campaign_id: String,
    days: usize,
    impressions: i64,
    clicks: i64,
    spend_usd: f64,
    conversions: i64,
}

impl WeeklyTotals {
    pub fn add(&mut self, row: &RawAnalytics) {
        let total = self
            .totals
            .entry((iso_week(row.date), row.creative_id.clone()))
            .or_default();
        total.account_id.clone_from(&row.account_id);
        total.campaign_id.clone_from(&row.campaign_id);
        total.days += 1;
        total.impressions += row.impressions;
        total.clicks += row.clicks;
        total.spend_usd += row.cost_usd;
        total.conversions += row.conversions;
    }

    /// The summaries by week key, each week's sorted by creative id.
    pub fn summaries(&self) -> BTreeMap<String, Vec<WeeklySummary>> {
        let mut weeks: BTreeMap<String, Vec<WeeklySummary>> = BTreeMap::new();
        for ((week, creative_id), t) in &self.totals {
            weeks.entry(week.clone()).or_default().push(WeeklySummary {
                week: week.clone(),
                creative_id: creative_id.clone(),
                account_id: t.account_id.clone(),
                campaign_id: t.campaign_id.clone(),
                days: t.days,
                performance: Performance::new(t.impressions, t.clicks, t.spend_usd, t.conversions),
            });
        }
        weeks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn row(creative: &str, date: NaiveDate, run: &str, clicks: i64) -> RawAnalytics {
        RawAnalytics {
            creative_id: creative.into(),
            account_id: "500000001".into(),
            campaign_id: "9".into(),
            date,
            impressions: 1000,
            clicks,
            cost_usd: 25.0,
            conversions: 2,
            run_id: run.into(),
        }
    }

    #[test]
    fn the_latest_run_wins_per_creative_and_day() {
        let d = day(2026, 1, 2);
        let rows = vec![
            row("1", d, "20260102T060000Z-a", 10),
            row("1", d, "20260103T060000Z-b", 12),
            row("1", d, "20260102T120000Z-c", 11),
            row("2", d, "20260102T060000Z-a", 5),
        ];
        let kept = latest_per_creative_day(rows);
        assert_eq!(kept.len(), 2);
        assert_eq!(
            (kept[0].clicks, kept[0].run_id.as_str()),
            (12, "20260103T060000Z-b")
        );
        assert_eq!(kept[1].clicks, 5);
    }

    #[test]
    fn ratios_are_computed_by_hand_and_undefined_without_a_denominator() {
        // 40 clicks on 8000 impressions for 100 USD with 4 conversions.
        let p = Performance::new(8000, 40, 100.0, 4);
        assert_eq!(p.ctr, Some(0.005));
        assert_eq!(p.cpc_usd, Some(2.5));
        assert_eq!(p.cpm_usd, Some(12.5));
        assert_eq!(p.conversion_rate, Some(0.1));
        let none = Performance::new(0, 0, 3.0, 0);
        assert_eq!(
            (none.ctr, none.cpc_usd, none.cpm_usd, none.conversion_rate),
            (None, None, None, None)
        );
    }

    #[test]
    fn content_features_of_a_text_ad() {
        let f = ContentFeatures::of(
            "Is your pipeline ready for 2027?",
            "Download the free guide and save 10 hours a week.",
            "Learn more",
        );
        assert_eq!((f.headline_words, f.description_words), (6, 10));
        assert_eq!(f.headline_length, 32);
        assert!(f.has_number && f.has_question);
        assert_eq!(f.call_to_action, "LEARN_MORE");
        assert!(f.keywords["free"] && f.keywords["guide"] && f.keywords["save"]);
        assert!(!f.keywords["you"] && !f.keywords["webinar"]);
        let empty = ContentFeatures::of("", "", "");
        assert_eq!(empty.call_to_action, "NONE");
        assert!(!empty.has_number && !empty.has_question);
    }

    #[test]
    fn iso_weeks_cross_year_boundaries() {
        // 2026-01-01 is a Thursday: ISO week 1 of 2026 starts on Monday 2025-12-29.
        assert_eq!(iso_week(day(2025, 12, 28)), "2025-W52");
        assert_eq!(iso_week(day(2025, 12, 29)), "2026-W01");
        assert_eq!(iso_week(day(2026, 1, 4)), "2026-W01");
        assert_eq!(iso_week(day(2026, 1, 5)), "2026-W02");
        // 2020 had 53 ISO weeks; 2021-01-03 still belongs to its last.
        assert_eq!(iso_week(day(2021, 1, 3)), "2020-W53");
    }

    #[test]
    fn weekly_summaries_sum_the_days_of_each_iso_week() {
        let mut totals = WeeklyTotals::default();
        for r in [
            row("1", day(2025, 12, 28), "r", 10),
            row("1", day(2025, 12, 29), "r", 20),
            row("1", day(2026, 1, 4), "r", 30),
            row("2", day(2026, 1, 4), "r", 1),
        ] {
            totals.add(&r);
        }
        let weekly = totals.summaries();
        assert_eq!(weekly.keys().collect::<Vec<_>>(), ["2025-W52", "2026-W01"]);
        let w1 = &weekly["2026-W01"];
        assert_eq!(w1.len(), 2);
        assert_eq!((w1[0].creative_id.as_str(), w1[0].days), ("1", 2));
        assert_eq!(w1[0].performance.clicks, 50);
        assert_eq!(w1[0].performance.impressions, 2000);
        assert_eq!(w1[0].performance.ctr, Some(0.025));
        assert_eq!(w1[0].campaign_id, "9");
        assert_eq!(weekly["2025-W52"][0].performance.spend_usd, 25.0);
    }
}
