//! `infra models` against moto: register (with metadata), promote, list, rollback, and bad
//! input refused before any AWS call. Only the data bucket is needed, so the test creates it
//! rather than applying the whole stack.

use testkit::{Moto, infra};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const BUCKET: &str = "linkedin-ads-local-data-123456789012";

async fn bucket(moto: &Moto) -> aws_sdk_s3::Client {
    let sdk = moto.sdk_config().await;
    let s3 = testkit::s3_client(&sdk);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    s3
}

#[tokio::test(flavor = "multi_thread")]
async fn register_promote_list_and_roll_back() {
    let moto = Moto::start();
    let s3 = bucket(&moto).await;
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("model.json");
    std::fs::write(&artifact, r#"{"weights":[0.1]}"#).unwrap();
    let metadata = dir.path().join("metadata.json");
    std::fs::write(
        &metadata,
        r#"{"metrics":{"auc":0.71},"training_data":{"from":"2026-01-01","to":"2026-01-07","rows":120},"source_revision":"abc123"}"#,
    )
    .unwrap();
    let artifact = artifact.to_str().unwrap();
    let metadata = metadata.to_str().unwrap();
    let models = |args: &[&str]| {
        let mut all = vec!["models"];
        all.extend_from_slice(args);
        infra(BIN, Some(&moto), &all)
    };

    let run = models(&["list", "--env", "local"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains("No models in s3://linkedin-ads-local-data-123456789012/models/ yet."),
        "{}",
        run.all()
    );

    let base = ["--env", "local", "--model", "creative-scorer"];
    let register = |promote: bool| {
        let mut args = vec!["register"];
        args.extend_from_slice(&base);
        args.extend_from_slice(&["--artifact", artifact, "--metadata", metadata]);
        if promote {
            args.push("--promote");
        }
        models(&args)
    };
    let run = register(true);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("Registered creative-scorer v1"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Promoted creative-scorer v1."),
        "{}",
        run.stdout
    );
    let run = register(false);
    assert!(
        run.stdout.contains("Registered creative-scorer v2"),
        "{}",
        run.all()
    );

    let mut promote = vec!["promote"];
    promote.extend_from_slice(&base);
    promote.extend_from_slice(&["--version", "2"]);
    let run = models(&promote);
    assert_eq!(
        run.stdout.trim(),
        "Promoted creative-scorer v2 (before: v1).",
        "{}",
        run.all()
    );

    let run = models(&["list", "--env", "local"]);
    assert!(
        run.stdout
            .contains("creative-scorer: 2 version(s), promoted: v2"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("* v2 "), "{}", run.stdout);
    assert!(run.stdout.contains("auc=0.7100"), "{}", run.stdout);

    let mut rollback = vec!["rollback"];
    rollback.extend_from_slice(&base);
    let run = models(&rollback);
    assert_eq!(
        run.stdout.trim(),
        "Rolled creative-scorer back to v1.",
        "{}",
        run.all()
    );
    let latest = s3
        .get_object()
        .bucket(BUCKET)
        .key("models/creative-scorer/latest.json")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let latest: serde_json::Value = serde_json::from_slice(&latest).unwrap();
    assert_eq!(latest["version"], 1);
    let run = models(&rollback);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("no version was promoted before v1, nothing to roll back to"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_names_files_and_metadata_are_refused_before_any_aws_call() {
    // No emulator: the endpoint is a closed port, so any AWS call would fail differently.
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("model.json");
    std::fs::write(&artifact, "{}").unwrap();
    let wrong_name = dir.path().join("weights.bin");
    std::fs::write(&wrong_name, "x").unwrap();
    let metadata = dir.path().join("metadata.json");
    std::fs::write(&metadata, r#"{"metrics":{"auc":"high"}}"#).unwrap();
    let a = artifact.to_str().unwrap();
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec![
                "models",
                "register",
                "--env",
                "local",
                "--model",
                "Creative Scorer",
                "--artifact",
                a,
            ],
            "model name `Creative Scorer`: use 1 to 64 lowercase letters",
        ),
        (
            vec![
                "models",
                "register",
                "--env",
                "local",
                "--model",
                "scorer",
                "--artifact",
                wrong_name.to_str().unwrap(),
            ],
            "artifact name `weights.bin`: use model.json or model.tar.gz",
        ),
        (
            vec![
                "models",
                "register",
                "--env",
                "local",
                "--model",
                "scorer",
                "--artifact",
                a,
                "--metadata",
                metadata.to_str().unwrap(),
            ],
            "metadata.json: field `metrics.auc`",
        ),
    ];
    for (args, expected) in cases {
        let run = infra(BIN, None, &args);
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(
            !run.stderr.contains("127.0.0.1:9"),
            "no AWS call: {}",
            run.stderr
        );
    }
}
