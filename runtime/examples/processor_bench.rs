//! Processor throughput and peak memory on a generated raw dataset:
//! `cargo run --release -p runtime --example processor_bench [-- ROWS]` (default 1,050,000).
//!
//! The dataset is what the collector writes for 25,000 creatives over 14 days, every day pulled
//! by 3 runs (restatements), as NDJSON objects; it is generated a day at a time, as the
//! processor downloads it. Timed: parsing, latest-run-wins, the join with creative content,
//! features, Parquet encoding of each day and of the weekly files. Not timed: generation and
//! S3 transfer (the handler's S3 calls are a few per day, bounded by the network, not by us).
//! Memory: the peak of live heap bytes (a counting allocator) and the process's peak RSS.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use runtime::features::WeeklyTotals;
use runtime::linkedin::creatives::CreativeRow;
use runtime::processor::{Creatives, merge_creative, process_day, weekly_files};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const DAYS: u64 = 14;
const RUNS: u64 = 3;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::args()
        .nth(1)
        .map(|a| a.replace('_', "").parse())
        .transpose()?
        .unwrap_or(1_050_000);
    let creatives_count = (rows / (DAYS * RUNS)).max(1);
    let first = NaiveDate::from_ymd_opt(2026, 1, 5).ok_or("date")?;

    let mut creatives = Creatives::new();
    for c in 0..creatives_count {
        merge_creative(
            &mut creatives,
            CreativeRow {
                creative_id: format!("{}", 100_000 + c),
                account_id: "500000001".into(),
                campaign_id: format!("{}", 9000 + c % 50),
                status: "ACTIVE".into(),
                headline: format!("Ship ads {}x faster with the new guide", c % 9 + 1),
                description: "Is your funnel leaking? Download the free report today.".into(),
                call_to_action: "LEARN_MORE".into(),
                run_id: "20260101T000000Z-00000000".into(),
                ..CreativeRow::default()
            },
        );
    }

    let mut weekly = WeeklyTotals::default();
    let mut processing = Duration::ZERO;
    let (mut read, mut kept, mut output_bytes) = (0usize, 0usize, 0usize);
    for d in 0..DAYS {
        let day = first.checked_add_days(Days::new(d)).ok_or("date")?;
        let objects: Vec<(String, Vec<u8>)> = (0..RUNS)
            .map(|run| {
                let run_id = format!("20260120T{:02}0000Z-0000000{run}", run * 6);
                let mut body = String::with_capacity(creatives_count as usize * 330);
                for c in 0..creatives_count {
                    let impressions = 1000 + (c * 37 + d * 11) % 5000;
                    let clicks = (c + d + run) % 40;
                    body.push_str(&format!(
                        "{{\"creative_id\":\"{}\",\"account_id\":\"500000001\",\"campaign_id\":\"{}\",\"date\":\"{day}\",\"impressions\":{impressions},\"clicks\":{clicks},\"cost_local\":{cost},\"cost_usd\":{cost},\"conversions\":{},\"likes\":1,\"comments\":0,\"shares\":0,\"follows\":0,\"total_engagements\":3,\"landing_page_clicks\":{clicks},\"video_views\":0,\"one_click_leads\":0,\"run_id\":\"{run_id}\"}}\n",
                        100_000 + c,
                        9000 + c % 50,
                        clicks / 10,
                        cost = clicks as f64 * 2.5,
                    ));
                }
                (format!("raw/linkedin/ad_analytics/dt={day}/{run_id}.ndjson"), body.into_bytes())
            })
            .collect();
        let started = Instant::now();
        let out = process_day(day, objects, &creatives, &mut weekly)?;
        processing += started.elapsed();
        read += out.rows_read;
        kept += out.rows_kept;
        output_bytes += out.file.len();
    }
    let started = Instant::now();
    let weeks = weekly_files(&weekly)?;
    processing += started.elapsed();
    output_bytes += weeks.iter().map(|(_, f)| f.len()).sum::<usize>();

    let seconds = processing.as_secs_f64();
    println!(
        "processor benchmark: {read} raw rows ({creatives_count} creatives x {DAYS} days x {RUNS} runs)"
    );
    println!("  rows kept (latest run per creative and day): {kept}");
    println!("  processing time:  {seconds:.2} s");
    println!(
        "  throughput:       {:.0} raw rows/s",
        read as f64 / seconds
    );
    println!(
        "  peak heap:        {:.1} MiB (live bytes, including one day's downloaded raw objects)",
        PEAK.load(Ordering::Relaxed) as f64 / 1_048_576.0
    );
    if let Some(rss) = peak_rss_mib() {
        println!("  peak RSS:         {rss:.1} MiB");
    }
    println!(
        "  Parquet written:  {:.1} MiB in {} daily files and {} weekly files",
        output_bytes as f64 / 1_048_576.0,
        DAYS,
        weeks.len()
    );
    Ok(())
}
