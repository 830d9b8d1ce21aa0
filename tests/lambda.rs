//! End-to-end tests of the Lambda layer: packages built by the engine, functions, schedules,
//! invoke permissions and the collector's Function URL, against a private moto server.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use stacks::linkedin_ads::FUNCTIONS as HANDLERS;
use testkit::{Moto, infra, workspace_root};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const SCHEDULED: [(&str, &str); 4] = [
    ("collector", "rate(6 hours)"),
    ("processor", "cron(30 0/6 * * ? *)"),
    ("optimizer", "cron(0 7 * * ? *)"),
    ("copy-generator", "cron(0 8 * * ? *)"),
];

fn zip_path(handler: &str) -> PathBuf {
    workspace_root()
        .join("target/lambda")
        .join(format!("{handler}.zip"))
}

fn code_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

fn apply(moto: &Moto) {
    let run = infra(
        BIN,
        Some(moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(run.code, 0, "apply failed: {}", run.all());
}

/// The newest `GLIBC_x.y` a binary needs, from `objdump -T`.
fn newest_glibc(binary: &[u8]) -> (u32, u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootstrap");
    std::fs::write(&path, binary).unwrap();
    let out = std::process::Command::new("objdump")
        .arg("-T")
        .arg(&path)
        .output()
        .expect("objdump");
    assert!(
        out.status.success(),
        "objdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            Some((parts.next()?, parts.next().unwrap_or(0)))
        })
        .max()
        .expect("a dynamically linked binary names glibc versions")
}

#[tokio::test(flavor = "multi_thread")]
async fn functions_schedules_permissions_and_url_then_a_no_op_plan_builds_nothing() {
    let moto = Moto::start();
    apply(&moto);
    let cfg = moto.sdk_config().await;
    let lambda = aws_sdk_lambda::Client::new(&cfg);
    let events = aws_sdk_eventbridge::Client::new(&cfg);

    for handler in HANDLERS {
        // The package: one entry, `bootstrap`, mode 0755, linked against glibc 2.34 at most.
        let bytes = std::fs::read(zip_path(handler)).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())).unwrap();
        assert_eq!(archive.len(), 1, "{handler}");
        let mut entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name(), "bootstrap");
        assert_eq!(
            entry.unix_mode().map(|m| m & 0o777),
            Some(0o755),
            "{handler}"
        );
        let mut binary = Vec::new();
        entry.read_to_end(&mut binary).unwrap();
        assert!(
            newest_glibc(&binary) <= (2, 34),
            "{handler} needs glibc {:?}",
            newest_glibc(&binary)
        );

        // The function runs exactly that package.
        let name = format!("linkedin-ads-local-{handler}");
        let f = lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .unwrap();
        let config = f.configuration().unwrap();
        assert_eq!(
            config.code_sha256(),
            Some(code_sha256(&bytes).as_str()),
            "{handler}"
        );
        assert_eq!(
            config.runtime().map(|r| r.as_str()),
            Some("provided.al2023")
        );
        assert_eq!(config.handler(), Some("bootstrap"));
        assert_eq!(config.architectures()[0].as_str(), "x86_64");
        assert_eq!(
            config.role(),
            Some(format!("arn:aws:iam::123456789012:role/{name}").as_str())
        );
        let vars = config.environment().and_then(|e| e.variables()).unwrap();
        assert_eq!(vars["DATA_BUCKET"], "linkedin-ads-local-data-123456789012");
        assert_eq!(
            f.tags().unwrap()["infra:address"],
            format!("lambda.{handler}")
        );
    }
    let rotation = lambda
        .get_function()
        .function_name("linkedin-ads-local-token-rotation")
        .send()
        .await
        .unwrap();
    assert_eq!(
        rotation
            .concurrency()
            .and_then(|c| c.reserved_concurrent_executions()),
        Some(1)
    );

    // Schedules: the env file's expressions, each targeting its function with a detail.
    for (handler, expression) in SCHEDULED {
        let name = format!("linkedin-ads-local-{handler}");
        let rule = events.describe_rule().name(&name).send().await.unwrap();
        assert_eq!(rule.schedule_expression(), Some(expression), "{handler}");
        assert_eq!(rule.state().map(|s| s.as_str()), Some("ENABLED"));
        let targets = events
            .list_targets_by_rule()
            .rule(&name)
            .send()
            .await
            .unwrap();
        let target = &targets.targets()[0];
        assert_eq!(
            target.arn(),
            format!("arn:aws:lambda:us-east-1:123456789012:function:{name}")
        );
        let template = target.input_transformer().unwrap().input_template();
        assert!(
            template.contains(&format!("\"job\":\"{handler}\"")),
            "{template}"
        );
        assert!(
            template.contains("\"detail-type\":<detailType>"),
            "a real EventBridge event: {template}"
        );

        // EventBridge may invoke the function, from this rule only.
        let policy = lambda
            .get_policy()
            .function_name(&name)
            .send()
            .await
            .unwrap();
        let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
        let statement = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == "eventbridge-schedule")
            .unwrap();
        assert_eq!(statement["Principal"]["Service"], "events.amazonaws.com");
        assert_eq!(
            statement["Condition"]["ArnLike"]["AWS:SourceArn"],
            rule.arn().unwrap()
        );
    }

    // Secrets Manager may invoke the rotation function, for this account only.
    let policy = lambda
        .get_policy()
        .function_name("linkedin-ads-local-token-rotation")
        .send()
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statement = &policy["Statement"][0];
    assert_eq!(
        statement["Principal"]["Service"],
        "secretsmanager.amazonaws.com"
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["AWS:SourceAccount"],
        "123456789012"
    );

    // The collector's Function URL needs signed requests.
    let url = lambda
        .get_function_url_config()
        .function_name("linkedin-ads-local-collector")
        .send()
        .await
        .unwrap();
    assert_eq!(url.auth_type().as_str(), "AWS_IAM");

    // A no-op plan neither builds nor uploads.
    let mtimes: BTreeMap<&str, std::time::SystemTime> = HANDLERS
        .iter()
        .map(|h| {
            (
                *h,
                std::fs::metadata(zip_path(h)).unwrap().modified().unwrap(),
            )
        })
        .collect();
    let plan = infra(
        BIN,
        Some(&moto),
        &["--stats", "plan", "--env", "local", "--detailed-exitcode"],
    );
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(
        !plan.stderr.contains("Packaging"),
        "no rebuild: {}",
        plan.all()
    );
    assert!(
        !plan.stderr.contains("UpdateFunctionCode"),
        "no upload: {}",
        plan.all()
    );
    for h in HANDLERS {
        assert_eq!(
            std::fs::metadata(zip_path(h)).unwrap().modified().unwrap(),
            mtimes[h],
            "{h}.zip rewritten"
        );
    }

    // Memory changed out of band is drift, named by function and field; apply restores it.
    lambda
        .update_function_configuration()
        .function_name("linkedin-ads-local-processor")
        .memory_size(2048)
        .send()
        .await
        .unwrap();
    let drift = infra(
        BIN,
        Some(&moto),
        &["drift", "--env", "local", "--format", "json"],
    );
    assert_eq!(drift.code, 2, "{}", drift.all());
    let report: Value = serde_json::from_str(&drift.stdout).unwrap();
    let drifted = report["resources"].as_array().unwrap();
    assert_eq!(drifted.len(), 1, "{report}");
    assert_eq!(drifted[0]["address"], "lambda.processor");
    assert_eq!(drifted[0]["fields"][0]["field"], "memory_mb");
    assert_eq!(drifted[0]["fields"][0]["live"], 2048);
    apply(&moto);
    assert_eq!(
        infra(BIN, Some(&moto), &["drift", "--env", "local"]).code,
        0
    );
}

#[test]
fn schedules_are_disabled_where_the_env_says_so() {
    let envs = testkit::envs_copy();
    let path = envs.path().join("local.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("enabled = true", "enabled = false");
    std::fs::write(&path, text).unwrap();
    let moto = Moto::start();
    let envs_dir = envs.path().to_str().unwrap();
    let root = workspace_root();
    let workspace = root.to_str().unwrap();
    let plan = infra(
        BIN,
        Some(&moto),
        &[
            "--envs-dir",
            envs_dir,
            "--workspace",
            workspace,
            "plan",
            "--env",
            "local",
            "--format",
            "json",
        ],
    );
    assert_eq!(plan.code, 0, "{}", plan.all());
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let field = |rule: &Value, name: &str| -> Option<Value> {
        rule["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == name)
            .map(|f| f["after"].clone())
    };
    let rules: Vec<&Value> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "rule")
        .collect();
    let (schedules, alerts): (Vec<&Value>, Vec<&Value>) = rules
        .into_iter()
        .partition(|r| field(r, "schedule_expression").is_some());
    assert_eq!(schedules.len(), 4);
    for rule in schedules {
        assert_eq!(field(rule, "state").unwrap(), "DISABLED", "{rule}");
    }
    // Failure alerts (crawler, rotation) are not schedules: they stay on.
    assert_eq!(alerts.len(), 2);
    for rule in alerts {
        assert_eq!(field(rule, "state").unwrap(), "ENABLED", "{rule}");
    }
}
