//! Running a trainer (`crate::training`): where its examples come from (the processor's daily
//! aggregates in the bucket, or Parquet files in a folder such as SageMaker's training
//! channel), and where the model goes (the registry, or a folder such as SageMaker's model
//! directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, Utc};
use datasets::DAILY_AGGREGATES;
use registry::{Metadata, NewVersion, Registry, RegistryError, TrainingData};
use serde_json::Value;

use crate::storage::{Storage, StorageError};
use crate::training::{self, BidParams, Example, ScorerParams, Trained};

/// The models there are trainers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    CreativeScorer,
    BidOptimizer,
}

impl ModelKind {
    /// The model's name in the registry.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::CreativeScorer => "creative-scorer",
            ModelKind::BidOptimizer => "bid-optimizer",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("hyperparameter `{name}`: {message}")]
    Hyperparameter { name: String, message: String },
    #[error(
        "{model}: no usable examples (need rows with impressions and, for the scorer, content)"
    )]
    NoData { model: &'static str },
}

/// The examples of one `daily_aggregates` Parquet file.
pub fn examples_of(path: &str, file: Vec<u8>) -> Result<Vec<Example>, TrainError> {
    let rows = crate::columnar::read_json(file).map_err(|e| TrainError::File {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    Ok(rows.iter().filter_map(training::example_of).collect())
}

/// The examples of `from` through `to` in the bucket.
pub async fn examples_from_bucket(
    storage: &Storage,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<Example>, TrainError> {
    let mut examples = Vec::new();
    for day in from.iter_days().take_while(|d| *d <= to) {
        let key = format!(
            "{}part-0.parquet",
            DAILY_AGGREGATES.partition_prefix(&day.to_string())
        );
        if let Some(file) = storage.get(&key).await? {
            examples.extend(examples_of(&key, file)?);
        }
    }
    Ok(examples)
}

/// The examples of every `.parquet` file under `dir`, in path order.
pub fn examples_from_dir(dir: &Path) -> Result<Vec<Example>, TrainError> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, files)?;
            } else if path.extension().is_some_and(|e| e == "parquet") {
                files.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|e| TrainError::File {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    files.sort();
    let mut examples = Vec::new();
    for path in files {
        let bytes = std::fs::read(&path).map_err(|e| TrainError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        examples.extend(examples_of(&path.display().to_string(), bytes)?);
    }
    Ok(examples)
}

fn number(hps: &BTreeMap<String, Value>, name: &str, default: f64) -> Result<f64, TrainError> {
    match hps.get(name) {
        None => Ok(default),
        // SageMaker passes hyperparameters as strings.
        Some(v) => v
            .as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .filter(|x: &f64| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| TrainError::Hyperparameter {
                name: name.to_string(),
                message: format!("{v} is not a non-negative number"),
            }),
    }
}

/// Trains `kind` on `examples` with hyperparameters `hps` (unknown names are ignored).
pub fn train(
    kind: ModelKind,
    examples: &[Example],
    hps: &BTreeMap<String, Value>,
) -> Result<Trained, TrainError> {
    let trained = match kind {
        ModelKind::CreativeScorer => {
            let defaults = ScorerParams::default();
            let params = ScorerParams {
                l2: number(hps, "l2", defaults.l2)?,
                iterations: number(hps, "iterations", defaults.iterations as f64)? as usize,
            };
            training::train_scorer(examples, params)
        }
        ModelKind::BidOptimizer => {
            let defaults = BidParams::default();
            let params = BidParams {
                target_cpa_usd: number(hps, "target_cpa_usd", defaults.target_cpa_usd)?,
                prior_clicks: number(hps, "prior_clicks", defaults.prior_clicks)?,
            };
            training::train_bids(examples, params)
        }
    };
    trained.ok_or(TrainError::NoData { model: kind.name() })
}

/// What a registration records of `trained`.
pub fn new_version(trained: &Trained, source_revision: &str) -> NewVersion {
    let day = |d: &Option<String>| d.as_deref().and_then(|d| d.parse::<NaiveDate>().ok());
    NewVersion {
        training_data: TrainingData {
            from: day(&trained.from),
            to: day(&trained.to),
            rows: trained.rows,
        },
        metrics: trained.metrics.clone(),
        hyperparameters: trained.hyperparameters.clone(),
        source_revision: source_revision.to_string(),
    }
}

/// Registers `trained` as the next version of `kind`, promoting it if asked.
pub async fn register(
    registry: &Registry,
    kind: ModelKind,
    trained: &Trained,
    source_revision: &str,
    promote: bool,
) -> Result<Metadata, TrainError> {
    let artifact = serde_json::to_vec_pretty(&trained.model).unwrap_or_default();
    let metadata = registry
        .register(
            kind.name(),
            "model.json",
            artifact,
            new_version(trained, source_revision),
            Utc::now(),
        )
        .await?;
    if promote {
        registry
            .promote(kind.name(), metadata.version, Utc::now())
            .await?;
    }
    Ok(metadata)
}

/// Writes `model.json` and `metadata.json` into `dir` (SageMaker uploads the folder).
pub fn write_model_dir(
    dir: &Path,
    trained: &Trained,
    source_revision: &str,
) -> Result<(), TrainError> {
    let write = |name: &str, value: Vec<u8>| {
        std::fs::write(dir.join(name), value).map_err(|e| TrainError::File {
            path: dir.join(name).display().to_string(),
            message: e.to_string(),
        })
    };
    std::fs::create_dir_all(dir).map_err(|e| TrainError::File {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    write(
        "model.json",
        serde_json::to_vec_pretty(&trained.model).unwrap_or_default(),
    )?;
    write(
        "metadata.json",
        serde_json::to_vec_pretty(&new_version(trained, source_revision)).unwrap_or_default(),
    )
}
