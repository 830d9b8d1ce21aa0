//! CloudFormation as the second engine's input: every env's template, as `infra synth
//! --format cloudformation` writes it, is deterministic, holds every resource of the stack as
//! its CloudFormation types with no secret value, and passes `cfn-lint` (pinned in
//! requirements-dev.txt) with nothing to report.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use testkit::{infra, workspace_root};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const ENVS: [&str; 4] = ["local", "dev", "staging", "prod"];

fn synth(env: &str, out: &Path) -> Value {
    let out_arg = out.to_str().unwrap();
    let run = infra(
        BIN,
        None,
        &[
            "synth",
            "--env",
            env,
            "--format",
            "cloudformation",
            "--out",
            out_arg,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap()
}

#[test]
fn every_env_synthesizes_a_template_cfn_lint_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let mut types = BTreeSet::new();
    let mut files = Vec::new();
    for env in ENVS {
        let path = dir.path().join(format!("{env}.json"));
        let template = synth(env, &path);
        // The same sources give the same bytes.
        let again = dir.path().join(format!("{env}-again.json"));
        synth(env, &again);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap(),
            "{env}: two runs wrote different templates"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for word in ["SecretString", "GenerateSecretString"] {
            assert!(!text.contains(word), "{env}: the template holds {word}");
        }
        assert_eq!(template.get("Parameters"), None, "{env}: no parameters");
        let resources = template["Resources"].as_object().unwrap();
        for (id, resource) in resources {
            assert!(
                id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{env}: logical id {id}"
            );
            types.insert(resource["Type"].as_str().unwrap().to_string());
            let Some(tags) = resource["Properties"]["Tags"].as_array() else {
                continue;
            };
            let keys: Vec<&str> = tags.iter().filter_map(|t| t["Key"].as_str()).collect();
            for key in ["managed-by", "infra:stack", "infra:env", "infra:address"] {
                assert!(keys.contains(&key), "{env}: {id} lacks the tag {key}");
            }
        }
        // Lambda code is in the assets bucket under the hash of its zip.
        let collector = &resources["LambdaCollector"]["Properties"]["Code"];
        assert_eq!(
            collector["S3Bucket"],
            template["Metadata"]["infra"]["account_id"]
                .as_str()
                .map(|account| format!(
                    "infra-assets-{account}-{}",
                    template["Metadata"]["infra"]["region"].as_str().unwrap()
                ))
                .unwrap()
        );
        let key = collector["S3Key"].as_str().unwrap();
        assert!(
            key.starts_with("lambda/collector/") && key.len() == "lambda/collector/".len() + 64 + 4,
            "{key}"
        );
        // Dependencies follow the stack's graph; protection is kept by CloudFormation too.
        assert_eq!(
            resources["LambdaCollector"]["DependsOn"],
            serde_json::json!(["LogGroupCollector", "RoleCollector"])
        );
        if env == "prod" {
            assert_eq!(resources["BucketData"]["DeletionPolicy"], "Retain");
        }
        files.push(path);
    }
    let expected = [
        "AWS::Athena::NamedQuery",
        "AWS::Athena::WorkGroup",
        "AWS::CloudWatch::Alarm",
        "AWS::CloudWatch::Dashboard",
        "AWS::Events::Rule",
        "AWS::Glue::Crawler",
        "AWS::Glue::Database",
        "AWS::Glue::Table",
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::Lambda::Permission",
        "AWS::Lambda::Url",
        "AWS::Logs::LogGroup",
        "AWS::S3::Bucket",
        "AWS::SNS::Subscription",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::SecretsManager::RotationSchedule",
        "AWS::SecretsManager::Secret",
    ];
    assert_eq!(
        types.iter().map(String::as_str).collect::<Vec<_>>(),
        expected
    );

    // cfn-lint, with the checks of .cfnlintrc (each exception explained there).
    let lint = Command::new(workspace_root().join(".venv/bin/cfn-lint"))
        .current_dir(workspace_root())
        .args(&files)
        .output()
        .expect("run .venv/bin/cfn-lint (make venv installs it)");
    assert!(
        lint.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
}
