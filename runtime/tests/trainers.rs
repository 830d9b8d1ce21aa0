//! The trainers on the processor's output for the sample account (`runtime::sample`), against
//! moto: held-out metrics better than the baselines, versions registered; and the `train`
//! binary as a SageMaker training entry point (channel folder in, model folder out).

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use registry::Registry;
use runtime::processor::{Processor, ProcessorConfig};
use runtime::storage::Storage;
use runtime::trainer::{self, ModelKind};
use serde_json::Value;
use testkit::Moto;

mod common;
use common::*;

fn jan_5() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 6, 0, 0).unwrap()
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Moto with 28 days of sample raw data through Jan 4, processed.
async fn processed(moto: &Moto) -> aws_types::SdkConfig {
    let sdk = setup(moto).await;
    let s3 = s3(&sdk);
    for (key, body) in runtime::sample::raw_objects(day(2026, 1, 4), 28, 7) {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    let summary = Processor {
        config: ProcessorConfig {
            bucket: BUCKET.into(),
            namespace: "LinkedInAds".into(),
            environment: "local".into(),
            lookback_days: 28,
        },
        s3,
        cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
        clock: jan_5,
    }
    .run()
    .await
    .unwrap();
    assert_eq!(summary.rows_kept, 28 * 24);
    sdk
}

#[tokio::test(flavor = "multi_thread")]
async fn both_trainers_beat_their_baselines_on_sample_data_and_register_versions() {
    let moto = Moto::start();
    let sdk = processed(&moto).await;
    let storage = Storage::new(s3(&sdk), BUCKET);
    let examples = trainer::examples_from_bucket(&storage, day(2025, 12, 8), day(2026, 1, 4))
        .await
        .unwrap();
    assert_eq!(examples.len(), 28 * 24);
    let registry = Registry::new(s3(&sdk), BUCKET, "models");

    let scorer = trainer::train(ModelKind::CreativeScorer, &examples, &Default::default()).unwrap();
    println!("creative-scorer held-out metrics: {:?}", scorer.metrics);
    let m = &scorer.metrics;
    assert!(m["log_loss"] < m["baseline_log_loss"], "{m:?}");
    assert!(m["auc"] > 0.52, "{m:?}");
    // 28 days: the last 5 are held out.
    assert_eq!((m["train_rows"], m["test_rows"]), (23.0 * 24.0, 5.0 * 24.0));
    assert_eq!(scorer.to.as_deref(), Some("2025-12-30"));

    let bids = trainer::train(ModelKind::BidOptimizer, &examples, &Default::default()).unwrap();
    println!("bid-optimizer held-out metrics: {:?}", bids.metrics);
    let m = &bids.metrics;
    assert!(
        m["conversion_rate_mae"] < m["baseline_conversion_rate_mae"],
        "{m:?}"
    );
    assert_eq!(m["campaigns"], 4.0);
    let recommended = &bids.model["campaigns"]["9001"]["recommended_bid_usd"];
    assert!(recommended.as_f64().unwrap() > 0.0, "{}", bids.model);

    for (kind, trained) in [
        (ModelKind::CreativeScorer, &scorer),
        (ModelKind::BidOptimizer, &bids),
    ] {
        let metadata = trainer::register(&registry, kind, trained, "test-rev", true)
            .await
            .unwrap();
        assert_eq!(metadata.version, 1);
        assert_eq!(metadata.details.training_data.rows, 23 * 24);
        assert_eq!(metadata.details.source_revision, "test-rev");
        let (loaded, artifact) = registry.load_promoted(kind.name()).await.unwrap().unwrap();
        assert_eq!(loaded.version, 1);
        assert_eq!(artifact, serde_json::to_vec_pretty(&trained.model).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_train_binary_is_a_sagemaker_entry_point_and_registers() {
    let moto = Moto::start();
    let sdk = processed(&moto).await;
    // SageMaker copies the channel's S3 prefix into a folder: do the same.
    let channel = tempfile::tempdir().unwrap();
    let s3 = s3(&sdk);
    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("processed/daily_aggregates/")
        .send()
        .await
        .unwrap();
    for object in listed.contents() {
        let key = object.key().unwrap();
        let body = s3
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        let path = channel.path().join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let model_dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["creative-scorer", "--register", "--promote"])
        .envs(moto.env_vars())
        .env("SM_CHANNEL_TRAIN", channel.path())
        .env("SM_MODEL_DIR", model_dir.path())
        .env("SM_HPS", r#"{"l2": "0.002"}"#)
        .env("DATA_BUCKET", BUCKET)
        .env("SOURCE_REVISION", "cafe123")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["registered_version"], 1);
    assert_eq!(result["hyperparameters"]["l2"], 0.002);
    assert!(result["metrics"]["auc"].as_f64().unwrap() > 0.5, "{result}");
    let model: Value =
        serde_json::from_slice(&std::fs::read(model_dir.path().join("model.json")).unwrap())
            .unwrap();
    assert_eq!(model["kind"], "creative-scorer");
    let metadata: Value =
        serde_json::from_slice(&std::fs::read(model_dir.path().join("metadata.json")).unwrap())
            .unwrap();
    assert_eq!(metadata["source_revision"], "cafe123");
    let registry = Registry::new(s3.clone(), BUCKET, "models");
    let (promoted, _) = registry
        .load_promoted("creative-scorer")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(promoted.version, 1);

    // A bad hyperparameter is named.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
        .args([
            "bid-optimizer",
            "--hyperparameters",
            r#"{"target_cpa_usd": "lots"}"#,
        ])
        .envs(moto.env_vars())
        .env("SM_CHANNEL_TRAIN", channel.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: hyperparameter `target_cpa_usd`: \"lots\" is not a non-negative number"
    );
}
