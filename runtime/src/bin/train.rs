//! `train <creative-scorer|bid-optimizer>`: trains one model on the processor's daily
//! aggregates and prints its held-out metrics as JSON.
//!
//! As a SageMaker training entry point it reads every Parquet file under `SM_CHANNEL_TRAIN`,
//! takes hyperparameters from `SM_HPS`, and writes `model.json` and `metadata.json` to
//! `SM_MODEL_DIR`. Locally it reads `--data DIR`, or the trailing `--days` of the bucket
//! `DATA_BUCKET` (the AWS endpoint from the SDK's standard configuration), and with
//! `--register` adds a version to the registry (`MODEL_REGISTRY_PREFIX`, default `models`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use runtime::trainer::{self, ModelKind};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    CreativeScorer,
    BidOptimizer,
}

#[derive(Debug, Parser)]
#[command(name = "train", about = "Train a pipeline model on processed data")]
struct Args {
    model: Model,
    /// Parquet files of daily aggregates (default: SM_CHANNEL_TRAIN, else the bucket).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Days of the bucket's daily aggregates to train on, ending yesterday (UTC).
    #[arg(long, default_value_t = 28)]
    days: u32,
    /// Hyperparameters as JSON, e.g. '{"l2": 0.001}' (default: SM_HPS).
    #[arg(long)]
    hyperparameters: Option<String>,
    /// Register the trained model as a new version.
    #[arg(long)]
    register: bool,
    /// Promote the registered version.
    #[arg(long, requires = "register")]
    promote: bool,
}

async fn run(args: Args) -> Result<Value, Box<dyn std::error::Error>> {
    let kind = match args.model {
        Model::CreativeScorer => ModelKind::CreativeScorer,
        Model::BidOptimizer => ModelKind::BidOptimizer,
    };
    let hps_text = args
        .hyperparameters
        .or_else(|| std::env::var("SM_HPS").ok())
        .unwrap_or_else(|| "{}".into());
    let hps: BTreeMap<String, Value> = serde_json::from_str(&hps_text)
        .map_err(|e| format!("hyperparameters: not a JSON object: {e}"))?;
    let revision = std::env::var("SOURCE_REVISION").unwrap_or_else(|_| "unknown".into());
    let channel = args
        .data
        .or_else(|| std::env::var("SM_CHANNEL_TRAIN").ok().map(PathBuf::from));
    let sdk = || aws_config::load_defaults(aws_config::BehaviorVersion::latest());
    let bucket = || {
        runtime::config::required("DATA_BUCKET").map_err(|e| format!("{e} (or give --data DIR)"))
    };
    let examples = match &channel {
        Some(dir) => trainer::examples_from_dir(dir)?,
        None => {
            let storage = runtime::storage::Storage::new(
                runtime::storage::s3_client(&sdk().await),
                &bucket()?,
            );
            let yesterday = chrono::Utc::now().date_naive().pred_opt().ok_or("date")?;
            let (from, to) = runtime::processed::trailing(yesterday, args.days);
            trainer::examples_from_bucket(&storage, from, to).await?
        }
    };
    let trained = trainer::train(kind, &examples, &hps)?;
    if let Ok(dir) = std::env::var("SM_MODEL_DIR") {
        trainer::write_model_dir(&PathBuf::from(dir), &trained, &revision)?;
    }
    let mut version = Value::Null;
    if args.register {
        let registry = registry::Registry::new(
            runtime::storage::s3_client(&sdk().await),
            &bucket()?,
            &runtime::config::or_default("MODEL_REGISTRY_PREFIX", "models"),
        );
        let metadata =
            trainer::register(&registry, kind, &trained, &revision, args.promote).await?;
        version = json!(metadata.version);
    }
    Ok(json!({
        "model": kind.name(),
        "rows": trained.rows,
        "training_days": [trained.from, trained.to],
        "metrics": trained.metrics,
        "hyperparameters": trained.hyperparameters,
        "registered_version": version,
        "promoted": args.promote,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    runtime::init_tracing();
    match run(Args::parse()).await {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
