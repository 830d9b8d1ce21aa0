//! The registry against moto: versions, promotion, rollback, concurrent registrations that
//! must never share a version number nor end up with each other's artifacts, and an artifact
//! slot already taken.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use registry::{NewVersion, Registry, RegistryError};
use testkit::Moto;

const BUCKET: &str = "registry-test-bucket";

/// The registry under test talks to S3 through the AWS-behaviour layer, where conditional
/// writes meet S3's 409 `ConditionalRequestConflict`; the bucket is made directly, and the
/// direct client (moto itself, the ground truth) is returned for the checks.
async fn registry(moto: &Moto) -> (Registry, aws_sdk_s3::Client) {
    let client = |sdk: aws_types::SdkConfig| {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        )
    };
    let direct = client(moto.sdk_config().await);
    direct.create_bucket().bucket(BUCKET).send().await.unwrap();
    let registry = Registry::new(client(moto.engine_sdk_config().await), BUCKET, "models/");
    (registry, direct)
}

/// The object's bytes, read straight from moto.
async fn object(direct: &aws_sdk_s3::Client, key: &str) -> Vec<u8> {
    direct
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{key}: {e:?}"))
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec()
}

/// Writes the object straight to moto, outside the registry.
async fn put(direct: &aws_sdk_s3::Client, key: &str, body: &[u8]) {
    direct
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
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
    let (registry, _) = registry(&moto).await;
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

fn writers_artifact(writer: usize) -> Vec<u8> {
    format!("{{\"writer\":{writer}}}").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_registrations_get_different_versions() {
    let moto = Moto::start();
    let (registry, direct) = registry(&moto).await;
    let tasks: Vec<_> = (0..8)
        .map(|writer| {
            let registry = registry.clone();
            tokio::spawn(async move {
                registry
                    .register(
                        "bid-optimizer",
                        "model.json",
                        writers_artifact(writer),
                        details(0.5),
                        Utc::now(),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Version -> the writer told it registered it, and the metadata it was given.
    let mut registered = BTreeMap::new();
    for (writer, task) in tasks.into_iter().enumerate() {
        let metadata = task.await.unwrap();
        let version = metadata.version;
        let earlier = registered.insert(version, (writer, metadata));
        assert!(earlier.is_none(), "version {version} taken twice");
    }
    assert_eq!(
        registered.keys().copied().collect::<BTreeSet<u32>>(),
        (1..=8).collect()
    );
    // Each version's artifact is its own writer's: the bytes that writer sent, under the
    // metadata that writer claimed (an artifact swapped or overwritten fails here).
    let listing = registry.list("bid-optimizer").await.unwrap();
    assert_eq!(listing.versions.len(), 8);
    for stored in &listing.versions {
        let (writer, metadata) = &registered[&stored.version];
        assert_eq!(
            stored.claim, metadata.claim,
            "v{}: the metadata is not writer {writer}'s",
            stored.version
        );
        let key = format!("models/bid-optimizer/v{}/model.json", stored.version);
        assert_eq!(
            String::from_utf8(object(&direct, &key).await).unwrap(),
            String::from_utf8(writers_artifact(*writer)).unwrap(),
            "{key}: not writer {writer}'s artifact"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_artifact_slot_already_taken_is_refused_unless_it_holds_the_same_bytes() {
    let moto = Moto::start();
    let (registry, direct) = registry(&moto).await;
    // v1's artifact written outside the protocol, with other bytes: registering claims v1,
    // finds its artifact slot taken, and refuses; the stray bytes stay.
    let v1 = "models/bid-optimizer/v1/model.json";
    put(&direct, v1, b"{\"writer\":\"stray\"}").await;
    let err = registry
        .register(
            "bid-optimizer",
            "model.json",
            writers_artifact(1),
            details(0.5),
            Utc::now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ArtifactTaken { version: 1, .. }),
        "{err}"
    );
    assert_eq!(object(&direct, v1).await, b"{\"writer\":\"stray\"}");

    // The same bytes already there (this registration's own write, answered late and
    // retried): registered.
    put(
        &direct,
        "models/bid-optimizer/v2/model.json",
        b"{\"writer\":2}",
    )
    .await;
    let v2 = registry
        .register(
            "bid-optimizer",
            "model.json",
            writers_artifact(2),
            details(0.5),
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
}
