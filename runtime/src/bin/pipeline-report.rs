//! `pipeline-report [--days N] [--top N]`: what the pipeline made, read back from the data
//! bucket (`DATA_BUCKET`, with the SDK's standard AWS configuration): the top creatives by
//! click-through over the trailing days, from the processor's Parquet daily aggregates and
//! its creative metadata (headline), and what lies under each dataset's prefix. For demos and
//! for a look at a real bucket; not packaged for Lambda.

use chrono::Utc;
use clap::Parser;
use runtime::processed::{read_creatives, read_daily, totals_per_creative, trailing};
use runtime::storage::{Storage, s3_client};

#[derive(Debug, Parser)]
#[command(
    name = "pipeline-report",
    about = "Top creatives by CTR, read back from the processed Parquet"
)]
struct Args {
    /// Trailing days to total (ending today, UTC).
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// How many creatives to show.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

const PREFIXES: [&str; 5] = [
    "raw/linkedin/ad_analytics/",
    "raw/linkedin/creatives/",
    "processed/daily_aggregates/",
    "processed/weekly_summaries/",
    "processed/creative_metadata/",
];

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let bucket = runtime::config::required("DATA_BUCKET")?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let storage = Storage::new(s3_client(&sdk), &bucket);
    let (from, to) = trailing(Utc::now().date_naive(), args.days);
    let records = read_daily(&storage, from, to).await?;
    let creatives = read_creatives(&storage).await?;
    let mut totals: Vec<_> = totals_per_creative(&records).into_values().collect();
    totals.sort_by(|a, b| {
        let ctr = |t: &runtime::processed::CreativeTotals| t.performance.ctr.unwrap_or(0.0);
        ctr(b).total_cmp(&ctr(a))
    });
    println!(
        "Top {} of {} creatives by CTR, {from} to {to} ({} daily rows from s3://{bucket}/processed/daily_aggregates/):\n",
        args.top.min(totals.len()),
        totals.len(),
        records.len()
    );
    println!(
        "  {:<9} {:<9} {:>11} {:>7} {:>7} {:>10}  headline",
        "creative", "campaign", "impressions", "clicks", "CTR", "spend USD"
    );
    for t in totals.iter().take(args.top) {
        let headline = creatives
            .get(&t.creative_id)
            .map(|c| c.creative.headline.as_str())
            .unwrap_or("(no description)");
        println!(
            "  {:<9} {:<9} {:>11} {:>7} {:>6.2}% {:>10.2}  {headline}",
            t.creative_id,
            t.campaign_id,
            t.performance.impressions,
            t.performance.clicks,
            t.performance.ctr.unwrap_or(0.0) * 100.0,
            t.performance.spend_usd,
        );
    }
    println!("\nIn s3://{bucket}/:");
    for prefix in PREFIXES {
        let keys = storage.list(prefix).await?;
        let example = keys
            .last()
            .map(|k| format!("  (e.g. {k})"))
            .unwrap_or_default();
        println!("  {prefix:<30} {:>3} objects{example}", keys.len());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
