//! The data contract of the data bucket: where each dataset lives and its columns, with their
//! Athena types. The handlers in `runtime` write these datasets and the catalog in `stacks`
//! declares Glue tables over them; both read the constants here, so a column added on one side
//! is on the other. This crate has no dependencies, so the IaC tool does not link the handlers.

/// How a dataset's objects are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    JsonLines,
    /// Apache Parquet, Snappy-compressed, one row group per object.
    Parquet,
}

/// A dataset in the bucket: a Glue table over a key prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// The Glue table's name.
    pub table: &'static str,
    /// The key prefix, without a trailing `/`.
    pub prefix: &'static str,
    pub format: Format,
    /// `dt=YYYY-MM-DD/` folders under the prefix (a `dt` partition key), or none.
    pub daily_partitions: bool,
    /// `(name, Athena type)` in file order; the partition key is not among them.
    pub columns: &'static [(&'static str, &'static str)],
    pub description: &'static str,
}

impl Dataset {
    /// The key prefix of one day's partition, with its trailing `/`.
    pub fn partition_prefix(&self, day: &str) -> String {
        format!("{}/dt={day}/", self.prefix)
    }

    pub fn column_names(&self) -> impl Iterator<Item = &'static str> {
        self.columns.iter().map(|(name, _)| *name)
    }
}

/// The collector's daily analytics, one NDJSON object per creative and day per run.
pub const RAW_ANALYTICS: Dataset = Dataset {
    table: "raw_analytics",
    prefix: "raw/linkedin/ad_analytics",
    format: Format::JsonLines,
    daily_partitions: true,
    columns: &[
        ("creative_id", "string"),
        ("account_id", "string"),
        ("campaign_id", "string"),
        ("date", "string"),
        ("impressions", "bigint"),
        ("clicks", "bigint"),
        ("cost_local", "double"),
        ("cost_usd", "double"),
        ("conversions", "bigint"),
        ("likes", "bigint"),
        ("comments", "bigint"),
        ("shares", "bigint"),
        ("follows", "bigint"),
        ("total_engagements", "bigint"),
        ("landing_page_clicks", "bigint"),
        ("video_views", "bigint"),
        ("one_click_leads", "bigint"),
        ("run_id", "string"),
    ],
    description: "One row per creative and day, per collection run",
};

/// The collector's creatives with their content, one NDJSON object per creative per run,
/// under the day of the run.
pub const RAW_CREATIVES: Dataset = Dataset {
    table: "raw_creatives",
    prefix: "raw/linkedin/creatives",
    format: Format::JsonLines,
    daily_partitions: true,
    columns: &[
        ("creative_id", "string"),
        ("account_id", "string"),
        ("campaign_id", "string"),
        ("status", "string"),
        ("headline", "string"),
        ("description", "string"),
        ("call_to_action", "string"),
        ("landing_page", "string"),
        ("image_url", "string"),
        ("targeting_summary", "string"),
        ("run_id", "string"),
    ],
    description: "Creative content and status, per collection run",
};

/// The processor's rows per creative and day: the latest run's numbers, the ratios, and the
/// content features of the creative's latest known content (null when it is unknown).
/// Objects: `dt=YYYY-MM-DD/part-0.parquet`, rewritten whole on each run.
pub const DAILY_AGGREGATES: Dataset = Dataset {
    table: "daily_aggregates",
    prefix: "processed/daily_aggregates",
    format: Format::Parquet,
    daily_partitions: true,
    columns: &[
        ("date", "string"),
        ("creative_id", "string"),
        ("account_id", "string"),
        ("campaign_id", "string"),
        ("impressions", "bigint"),
        ("clicks", "bigint"),
        ("spend_usd", "double"),
        ("conversions", "bigint"),
        ("ctr", "double"),
        ("cpc_usd", "double"),
        ("cpm_usd", "double"),
        ("conversion_rate", "double"),
        ("status", "string"),
        ("headline", "string"),
        ("description", "string"),
        ("call_to_action", "string"),
        ("landing_page", "string"),
        ("image_url", "string"),
        ("headline_words", "bigint"),
        ("description_words", "bigint"),
        ("headline_length", "bigint"),
        ("has_number", "boolean"),
        ("has_question", "boolean"),
        ("kw_free", "boolean"),
        ("kw_new", "boolean"),
        ("kw_guide", "boolean"),
        ("kw_webinar", "boolean"),
        ("kw_demo", "boolean"),
        ("kw_report", "boolean"),
        ("kw_save", "boolean"),
        ("kw_you", "boolean"),
        ("run_id", "string"),
    ],
    description: "Per creative and day: latest-run metrics, ratios and content features",
};

/// The processor's rows per creative and ISO week. Objects: `YYYY-Www.parquet`, one per week,
/// rewritten whole on each run that touches the week.
pub const WEEKLY_SUMMARIES: Dataset = Dataset {
    table: "weekly_summaries",
    prefix: "processed/weekly_summaries",
    format: Format::Parquet,
    daily_partitions: false,
    columns: &[
        ("week", "string"),
        ("creative_id", "string"),
        ("account_id", "string"),
        ("campaign_id", "string"),
        ("days", "bigint"),
        ("impressions", "bigint"),
        ("clicks", "bigint"),
        ("spend_usd", "double"),
        ("conversions", "bigint"),
        ("ctr", "double"),
        ("cpc_usd", "double"),
        ("cpm_usd", "double"),
        ("conversion_rate", "double"),
    ],
    description: "Per creative and ISO week: summed metrics and ratios",
};

/// The latest known content of every creative the processor has seen, with its features: a
/// JSON array sorted by creative id (not a table: the optimizer and copy generator read it).
pub const CREATIVE_METADATA_KEY: &str = "processed/creative_metadata/all_creatives.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_unique_and_types_are_athena_types() {
        for dataset in [
            RAW_ANALYTICS,
            RAW_CREATIVES,
            DAILY_AGGREGATES,
            WEEKLY_SUMMARIES,
        ] {
            let mut names: Vec<&str> = dataset.column_names().collect();
            names.sort_unstable();
            let count = names.len();
            names.dedup();
            assert_eq!(names.len(), count, "{}", dataset.table);
            assert!(
                !names.contains(&"dt"),
                "{}: dt is the partition",
                dataset.table
            );
            for (name, ty) in dataset.columns {
                assert!(
                    ["string", "bigint", "double", "boolean"].contains(ty),
                    "{}.{name}: {ty}",
                    dataset.table
                );
            }
        }
        assert_eq!(
            DAILY_AGGREGATES.partition_prefix("2026-01-02"),
            "processed/daily_aggregates/dt=2026-01-02/"
        );
    }
}
