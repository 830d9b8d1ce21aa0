//! The registry against moto: versions, promotion, rollback, and concurrent registrations
//! that must never share a version number.

use std::collections::BTreeSet;

use chrono::Utc;
use registry::{NewVersion, Registry, RegistryError};
use testkit::Moto;

const BUCKET: &str = "registry-test-bucket";

/// The registry under test talks to S3 through the AWS-behaviour layer, where conditional
/// writes meet S3's 409 `ConditionalRequestConflict`; the bucket is made directly.
async fn registry(moto: &Moto) -> Registry {
    let client = |sdk: aws_types::SdkConfig| {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        )
    };
    let direct = client(moto.sdk_config().await);
    direct.create_bucket().bucket(BUCKET).send().await.unwrap();
    Registry::new(client(moto.engine_sdk_config().await), BUCKET, "models/")
}

fn details(auc: f64) -> NewVersion {
    NewVersion {
        metrics: [("auc".to_string(), auc)].into(),
        source_revision: "abc123".into(),
        ..NewVersion::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_promotion_and_rollback() {
    let moto = Moto::start();
    let registry = registry(&moto).await;
    let model = "creative-scorer";
    assert_eq!(registry.load_promoted(model).await.unwrap(), None);
    let v1 = registry
        .register(
            model,
            "model.json",
            b"{\"w\":1}".to_vec(),
            details(0.6),
            Utc::now(),
        )
        .await
        .unwrap();
    let v2 = registry
        .register(
            model,
            "model.json",
            b"{\"w\":2}".to_vec(),
            details(0.7),
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(registry.models().await.unwrap(), [model]);

    registry.promote(model, 1, Utc::now()).await.unwrap();
    let pointer = registry.promote(model, 2, Utc::now()).await.unwrap();
    assert_eq!((pointer.version, pointer.history.clone()), (2, vec![1]));
    let (metadata, artifact) = registry.load_promoted(model).await.unwrap().unwrap();
    assert_eq!((metadata.version, artifact), (2, b"{\"w\":2}".to_vec()));
    assert_eq!(metadata.details.metrics["auc"], 0.7);

    let back = registry.rollback(model, Utc::now()).await.unwrap();
    assert_eq!((back.version, back.history.len()), (1, 0));
    assert_eq!(
        registry.load_promoted(model).await.unwrap().unwrap().1,
        b"{\"w\":1}".to_vec()
    );
    let err = registry.rollback(model, Utc::now()).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::NothingToRollBack { current: 1, .. }),
        "{err}"
    );

    let listing = registry.list(model).await.unwrap();
    assert_eq!(listing.versions.len(), 2);
    assert_eq!(listing.promoted.unwrap().version, 1);
    let err = registry.promote(model, 9, Utc::now()).await.unwrap_err();
    assert_eq!(err.to_string(), "model `creative-scorer` has no version 9");
    let err = registry
        .promote("Bad Name", 1, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidName(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_registrations_get_different_versions() {
    let moto = Moto::start();
    let registry = registry(&moto).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let registry = registry.clone();
            tokio::spawn(async move {
                registry
                    .register(
                        "bid-optimizer",
                        "model.json",
                        format!("{{\"writer\":{i}}}").into_bytes(),
                        details(0.5),
                        Utc::now(),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for task in tasks {
        let metadata = task.await.unwrap();
        assert!(
            versions.insert(metadata.version),
            "version {} taken twice",
            metadata.version
        );
    }
    assert_eq!(versions, (1..=8).collect());
    // Each version's artifact is its own writer's.
    let listing = registry.list("bid-optimizer").await.unwrap();
    assert_eq!(listing.versions.len(), 8);
}
