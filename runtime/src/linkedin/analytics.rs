//! LinkedIn ad analytics requests and answers, without any I/O: the Rest.li 2.0 query string
//! built by hand (a generic encoder would double-encode it), metric fields chunked within the
//! 20-field limit, date ranges sliced below the row cap, and answers merged per (creative,
//! day). See `api-notes.md` ("Ad analytics").

use std::collections::BTreeMap;

use chrono::{Datelike, Days, NaiveDate};
use serde::Serialize;
use serde_json::Value;

/// At most this many fields per request; `dateRange` and `pivotValues` count.
pub const FIELD_LIMIT: usize = 20;

/// Sent in every chunk: they identify the row a chunk's metrics belong to.
pub const KEY_FIELDS: [&str; 2] = ["dateRange", "pivotValues"];

/// LinkedIn silently truncates an answer at about this many elements.
pub const ROW_CAP: usize = 15_000;

/// The metrics collected, as LinkedIn names them, with the raw table's column for each.
pub const METRICS: [(&str, &str); 13] = [
    ("impressions", "impressions"),
    ("clicks", "clicks"),
    ("costInLocalCurrency", "cost_local"),
    ("costInUsd", "cost_usd"),
    ("externalWebsiteConversions", "conversions"),
    ("likes", "likes"),
    ("comments", "comments"),
    ("shares", "shares"),
    ("follows", "follows"),
    ("totalEngagements", "total_engagements"),
    ("landingPageClicks", "landing_page_clicks"),
    ("videoViews", "video_views"),
    ("oneClickLeads", "one_click_leads"),
];

/// Percent-encodes a string value for a Rest.li 2.0 query: everything but unreserved
/// characters, so that `:` `,` `(` `)` inside a value never read as structure.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `urn:li:sponsoredAccount:<id>`.
pub fn account_urn(account: &str) -> String {
    format!("urn:li:sponsoredAccount:{account}")
}

fn restli_date(date: NaiveDate) -> String {
    format!(
        "(year:{},month:{},day:{})",
        date.year(),
        date.month(),
        date.day()
    )
}

/// The query string of one analytics request: pivot CREATIVE, daily, over `start..=end`.
pub fn analytics_query(
    accounts: &[String],
    start: NaiveDate,
    end: NaiveDate,
    fields: &[&str],
) -> String {
    let accounts: Vec<String> = accounts.iter().map(|a| encode(&account_urn(a))).collect();
    format!(
        "q=analytics&pivot=CREATIVE&timeGranularity=DAILY&dateRange=(start:{},end:{})&accounts=List({})&fields={}",
        restli_date(start),
        restli_date(end),
        accounts.join(","),
        fields.join(",")
    )
}

/// The metric names split into requests of at most `limit` fields, each led by
/// [`KEY_FIELDS`].
pub fn field_chunks<'a>(metrics: &[&'a str], limit: usize) -> Vec<Vec<&'a str>> {
    let per_chunk = limit.saturating_sub(KEY_FIELDS.len()).max(1);
    metrics
        .chunks(per_chunk)
        .map(|chunk| {
            KEY_FIELDS
                .iter()
                .copied()
                .chain(chunk.iter().copied())
                .collect()
        })
        .collect()
}

/// `start..=end` cut into consecutive ranges short enough that `creatives` rows a day stay
/// well below [`ROW_CAP`] (at most half of it) in one answer.
pub fn date_slices(
    start: NaiveDate,
    end: NaiveDate,
    creatives: usize,
) -> Vec<(NaiveDate, NaiveDate)> {
    let days_per_slice = ((ROW_CAP / 2) / creatives.max(1)).max(1) as u64;
    let mut slices = Vec::new();
    let mut from = start;
    while from <= end {
        let to = from
            .checked_add_days(Days::new(days_per_slice - 1))
            .map_or(end, |d| d.min(end));
        slices.push((from, to));
        match to.checked_add_days(Days::new(1)) {
            Some(next) => from = next,
            None => break,
        }
    }
    slices
}

/// One creative on one day, merged from every chunk's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AnalyticsRow {
    pub creative_id: String,
    pub date: NaiveDate,
    /// Raw-table column -> value; money stays as LinkedIn's decimal, parsed to a number.
    pub metrics: BTreeMap<String, f64>,
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnswerError {
    #[error("the answer has no `elements` array")]
    NoElements,
    #[error("element {0}: no creative in `pivotValues`")]
    NoCreative(usize),
    #[error("element {0}: no valid `dateRange.start`")]
    NoDate(usize),
    #[error("element {index}: `{field}` is not a number")]
    NotANumber { index: usize, field: String },
}

/// Adds the elements of one chunk's answer to `rows`, keyed by (creative, day).
pub fn merge_answer(
    rows: &mut BTreeMap<(String, NaiveDate), AnalyticsRow>,
    answer: &Value,
) -> Result<(), AnswerError> {
    let elements = answer["elements"]
        .as_array()
        .ok_or(AnswerError::NoElements)?;
    for (index, element) in elements.iter().enumerate() {
        let creative = element["pivotValues"][0]
            .as_str()
            .and_then(|urn| urn.rsplit(':').next())
            .filter(|id| !id.is_empty())
            .ok_or(AnswerError::NoCreative(index))?
            .to_string();
        let start = &element["dateRange"]["start"];
        let date = (|| {
            NaiveDate::from_ymd_opt(
                i32::try_from(start["year"].as_i64()?).ok()?,
                u32::try_from(start["month"].as_u64()?).ok()?,
                u32::try_from(start["day"].as_u64()?).ok()?,
            )
        })()
        .ok_or(AnswerError::NoDate(index))?;
        let row = rows
            .entry((creative.clone(), date))
            .or_insert_with(|| AnalyticsRow {
                creative_id: creative,
                date,
                metrics: BTreeMap::new(),
            });
        for (name, column) in METRICS {
            let value = match &element[name] {
                Value::Null => continue,
                Value::Number(n) => n.as_f64(),
                // Money comes as a decimal string.
                Value::String(s) => s.parse::<f64>().ok(),
                _ => None,
            }
            .filter(|v| v.is_finite())
            .ok_or_else(|| AnswerError::NotANumber {
                index,
                field: name.to_string(),
            })?;
            row.metrics.insert(column.to_string(), value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn the_query_keeps_restli_structure_literal_and_encodes_urns() {
        let query = analytics_query(
            &["500000001".into(), "500000002".into()],
            day(2026, 1, 1),
            day(2026, 1, 31),
            &["dateRange", "pivotValues", "impressions", "clicks"],
        );
        assert_eq!(
            query,
            "q=analytics&pivot=CREATIVE&timeGranularity=DAILY\
             &dateRange=(start:(year:2026,month:1,day:1),end:(year:2026,month:1,day:31))\
             &accounts=List(urn%3Ali%3AsponsoredAccount%3A500000001,urn%3Ali%3AsponsoredAccount%3A500000002)\
             &fields=dateRange,pivotValues,impressions,clicks"
        );
    }

    #[test]
    fn fields_are_chunked_within_the_limit_each_with_the_key_fields() {
        let metrics: Vec<&str> = METRICS.iter().map(|(m, _)| *m).collect();
        let one = field_chunks(&metrics, FIELD_LIMIT);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].len(), 15);
        let small = field_chunks(&metrics, 6);
        assert_eq!(small.len(), 4);
        for chunk in &small {
            assert!(chunk.len() <= 6);
            assert_eq!(&chunk[..2], KEY_FIELDS);
        }
        let all: Vec<&str> = small.iter().flat_map(|c| c[2..].to_vec()).collect();
        assert_eq!(all, metrics);
    }

    #[test]
    fn date_ranges_are_sliced_below_the_row_cap() {
        assert_eq!(
            date_slices(day(2026, 1, 1), day(2026, 1, 7), 10),
            [(day(2026, 1, 1), day(2026, 1, 7))]
        );
        // 3000 creatives: 2 days a slice keeps 6000 rows under half the cap.
        assert_eq!(
            date_slices(day(2026, 1, 1), day(2026, 1, 5), 3000),
            [
                (day(2026, 1, 1), day(2026, 1, 2)),
                (day(2026, 1, 3), day(2026, 1, 4)),
                (day(2026, 1, 5), day(2026, 1, 5)),
            ]
        );
        // More creatives than the cap allows in a day: one day a slice.
        assert_eq!(
            date_slices(day(2026, 1, 1), day(2026, 1, 3), 20_000).len(),
            3
        );
    }

    #[test]
    fn chunks_merge_per_creative_and_day_and_money_strings_parse() {
        let mut rows = BTreeMap::new();
        let range = |d: u32| json!({"start": {"year": 2026, "month": 1, "day": d}, "end": {"year": 2026, "month": 1, "day": d}});
        merge_answer(
            &mut rows,
            &json!({"paging": {}, "elements": [
                {"pivotValues": ["urn:li:sponsoredCreative:111"], "dateRange": range(2), "impressions": 19090, "clicks": 100},
                {"pivotValues": ["urn:li:sponsoredCreative:111"], "dateRange": range(3), "impressions": 5, "clicks": 0},
            ]}),
        )
        .unwrap();
        merge_answer(
            &mut rows,
            &json!({"elements": [
                {"pivotValues": ["urn:li:sponsoredCreative:111"], "dateRange": range(2), "costInLocalCurrency": "209.449"},
            ]}),
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        let row = &rows[&("111".to_string(), day(2026, 1, 2))];
        assert_eq!(row.metrics["impressions"], 19090.0);
        assert_eq!(row.metrics["clicks"], 100.0);
        assert_eq!(row.metrics["cost_local"], 209.449);
        assert_eq!(merge_answer(&mut rows, &json!({"elements": []})), Ok(()));
        assert_eq!(
            merge_answer(
                &mut rows,
                &json!({"elements": [{"pivotValues": ["urn:li:sponsoredCreative:1"], "dateRange": range(2), "clicks": "many"}]})
            ),
            Err(AnswerError::NotANumber {
                index: 0,
                field: "clicks".into()
            })
        );
    }
}
