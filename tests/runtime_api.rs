//! Every packaged handler as Lambda runs it: the `bootstrap` from its zip, under a local Lambda
//! Runtime API (`testkit::lambda_runtime`), with the environment the deployed function has
//! (read back after `infra apply`), fed the payloads AWS delivers: the EventBridge event the
//! rule's input transformer builds, a Function URL request (payload format 2.0), a Secrets
//! Manager rotation request. A malformed payload gets an error report through the Runtime
//! API, and the bootstrap goes on serving (Lambda would otherwise restart it in a loop).

use std::collections::BTreeMap;
use std::time::Duration;

use infra_core::package::Packager;
use serde_json::{Value, json};
use testkit::fake_http::{FakeServer, Reply};
use testkit::lambda_runtime::{Bootstrap, Outcome, RuntimeApi, input_transformer};
use testkit::{Moto, infra, workspace_root};

const BIN: &str = env!("CARGO_BIN_EXE_infra");
const PREFIX: &str = "linkedin-ads-local-";
const ROTATION_TOKEN: &str = "00000000-0000-4000-8000-00000000abcd";
const WAIT: Duration = Duration::from_secs(120);

/// The payloads of one handler: what its real trigger sends, and one it cannot take.
struct Case {
    handler: &'static str,
    valid: Vec<Value>,
    malformed: Value,
}

/// The event EventBridge builds for `rule`'s target `function`: a scheduled event passed
/// through the target's input transformer, as stored live.
async fn scheduled_payload(events: &aws_sdk_eventbridge::Client, function_arn: &str) -> Value {
    let rules = events
        .list_rules()
        .name_prefix(PREFIX)
        .send()
        .await
        .expect("ListRules");
    for rule in rules.rules() {
        let name = rule.name().unwrap_or_default();
        let targets = events
            .list_targets_by_rule()
            .rule(name)
            .send()
            .await
            .expect("ListTargetsByRule");
        for target in targets.targets() {
            if target.arn() != function_arn {
                continue;
            }
            let transformer = target
                .input_transformer()
                .unwrap_or_else(|| panic!("the target of {name} has no input transformer"));
            let paths: BTreeMap<String, String> = transformer
                .input_paths_map()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            let event = json!({
                "version": "0",
                "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": "2026-12-01T06:00:00Z",
                "region": "us-east-1",
                "resources": [rule.arn().unwrap_or_default()],
                "detail": {},
            });
            return input_transformer(&event, &paths, transformer.input_template())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    panic!("no rule targets {function_arn}");
}

/// A Function URL request, payload format 2.0, as Lambda documents it.
fn function_url_request() -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/collect",
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.lambda-url.us-east-1.on.aws"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "authorizer": {"iam": {"accessKey": "AKIA", "accountId": "123456789012", "callerId": "AIDA", "userArn": "arn:aws:iam::123456789012:user/analyst", "userId": "AIDA"}},
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {"method": "POST", "path": "/collect", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "curl/8"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:06:00:00 +0000",
            "timeEpoch": 1796104800000_i64,
        },
        "body": "{}",
        "isBase64Encoded": false,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_packaged_bootstrap_answers_its_real_trigger_payload() {
    let moto = Moto::start();
    let apply = infra(
        BIN,
        Some(&moto),
        &["apply", "--env", "local", "--auto-approve"],
    );
    assert_eq!(apply.code, 0, "{}", apply.all());
    let sdk = moto.sdk_config().await;
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);

    // The values the handlers read, written as `infra secret set` would.
    let oauth_secret = format!("{PREFIX}linkedin-oauth");
    secrets
        .put_secret_value()
        .secret_id(&oauth_secret)
        .secret_string(
            json!({
                "client_id": "client-1", "client_secret": "client-secret-1",
                "access_token": "access-1", "refresh_token": "refresh-1",
                "access_token_expires_at": "2027-01-01T00:00:00Z",
                "refresh_token_expires_at": "2027-06-01T00:00:00Z",
            })
            .to_string(),
        )
        .send()
        .await
        .expect("PutSecretValue linkedin-oauth");
    secrets
        .put_secret_value()
        .secret_id(format!("{PREFIX}anthropic-api-key"))
        .secret_string("sk-test-key")
        .send()
        .await
        .expect("PutSecretValue anthropic-api-key");
    // Secrets Manager starts a rotation: a version staged AWSPENDING, then createSecret.
    let rotation_function = format!("{PREFIX}token-rotation");
    let rotation_arn = lambda
        .get_function_configuration()
        .function_name(&rotation_function)
        .send()
        .await
        .expect("the rotation function")
        .function_arn()
        .unwrap_or_default()
        .to_string();
    let rotated = secrets
        .rotate_secret()
        .secret_id(&oauth_secret)
        .rotation_lambda_arn(&rotation_arn)
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(60)
                .build(),
        )
        .client_request_token(ROTATION_TOKEN)
        .send()
        .await
        .expect("RotateSecret");
    let secret_arn = rotated.arn().unwrap_or_default().to_string();

    // LinkedIn's APIs answer empty accounts; the Anthropic API must not be called at all.
    let empty = Reply::json(200, json!({"elements": [], "metadata": {}}));
    let linkedin = FakeServer::start(vec![empty; 200]);
    let grant = Reply::json(
        200,
        json!({"access_token": "access-2", "expires_in": 5_184_000, "refresh_token": "refresh-2", "refresh_token_expires_in": 15_552_000}),
    );
    let oauth = FakeServer::start(vec![grant]);
    let anthropic = FakeServer::start(Vec::new());

    let cases = [
        Case {
            handler: "collector",
            valid: vec![
                scheduled_payload(
                    &events,
                    &format!("arn:aws:lambda:us-east-1:123456789012:function:{PREFIX}collector"),
                )
                .await,
                function_url_request(),
            ],
            malformed: json!({"hello": "not an event"}),
        },
        Case {
            handler: "processor",
            valid: vec![
                scheduled_payload(
                    &events,
                    &format!("arn:aws:lambda:us-east-1:123456789012:function:{PREFIX}processor"),
                )
                .await,
            ],
            malformed: json!("not an event"),
        },
        Case {
            handler: "optimizer",
            valid: vec![
                scheduled_payload(
                    &events,
                    &format!("arn:aws:lambda:us-east-1:123456789012:function:{PREFIX}optimizer"),
                )
                .await,
            ],
            malformed: json!([1, 2, 3]),
        },
        Case {
            handler: "copy-generator",
            valid: vec![
                scheduled_payload(
                    &events,
                    &format!(
                        "arn:aws:lambda:us-east-1:123456789012:function:{PREFIX}copy-generator"
                    ),
                )
                .await,
            ],
            malformed: json!(42),
        },
        Case {
            handler: "token-rotation",
            valid: vec![json!({
                "Step": "createSecret",
                "SecretId": secret_arn,
                "ClientRequestToken": ROTATION_TOKEN,
                "RotationToken": "e3b0c442-98fc-1c14-9afb-f4c8996fb924",
            })],
            malformed: json!({"Step": "createSecret"}),
        },
    ];

    let packager = Packager::new(&workspace_root());
    for case in cases {
        let name = format!("{PREFIX}{}", case.handler);
        let config = lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let mut environment: BTreeMap<String, String> = config
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        // Where AWS and the external APIs are, here.
        environment.insert("AWS_ENDPOINT_URL".into(), moto.moto_endpoint());
        environment.insert(
            "LINKEDIN_API_BASE_URL".into(),
            format!("{}/rest", linkedin.url),
        );
        environment.insert(
            "LINKEDIN_OAUTH_BASE_URL".into(),
            format!("{}/oauth/v2", oauth.url),
        );
        environment.insert("ANTHROPIC_BASE_URL".into(), anthropic.url.clone());
        let api = RuntimeApi::start(config.function_arn().unwrap_or_default());
        let mut bootstrap = Bootstrap::start(
            &packager.zip_path(case.handler),
            &api,
            &name,
            config.memory_size().unwrap_or(128),
            &environment,
        );
        let ask = |event: &Value| {
            let id = api.invoke(event);
            api.outcome(&id, WAIT)
        };

        let first = &case.valid[0];
        match ask(first) {
            Some(Outcome::Response(body)) => check_response(case.handler, &body),
            other => panic!(
                "{}: no response to its trigger's payload {first}: {other:?}\n--- bootstrap log\n{}",
                case.handler,
                bootstrap.log()
            ),
        }
        match ask(&case.malformed) {
            Some(Outcome::Error { error_type, body }) => {
                assert!(!error_type.is_empty(), "{}: {body}", case.handler);
                assert!(
                    body["errorType"].as_str().is_some_and(|t| !t.is_empty())
                        && body["errorMessage"].as_str().is_some_and(|m| !m.is_empty()),
                    "{}: the error report lacks errorType / errorMessage: {body}",
                    case.handler
                );
            }
            other => panic!(
                "{}: a malformed payload got {other:?}, not an error report\n--- bootstrap log\n{}",
                case.handler,
                bootstrap.log()
            ),
        }
        assert!(
            bootstrap.running(),
            "{}: the bootstrap exited after a malformed payload\n{}",
            case.handler,
            bootstrap.log()
        );
        assert_eq!(api.init_error(), None, "{}", case.handler);
        // Still serving: the real payloads again (a repeated rotation step is a no-op).
        for event in &case.valid {
            match ask(event) {
                Some(Outcome::Response(body)) => check_response(case.handler, &body),
                other => panic!(
                    "{}: no response to {event} after a malformed one: {other:?}\n{}",
                    case.handler,
                    bootstrap.log()
                ),
            }
        }
        assert!(
            api.polls() >= 3,
            "{}: asked for {} invocations",
            case.handler,
            api.polls()
        );
    }

    assert!(
        anthropic.requests().is_empty(),
        "no creative needs new copy"
    );
    let refresh = oauth.requests();
    assert_eq!(refresh.len(), 1, "one token refresh: {refresh:?}");
    assert_eq!(refresh[0].path, "/oauth/v2/accessToken");
    let pending = secrets
        .get_secret_value()
        .secret_id(&oauth_secret)
        .version_stage("AWSPENDING")
        .send()
        .await
        .expect("the pending version");
    let pending: Value = serde_json::from_str(pending.secret_string().unwrap_or("{}")).unwrap();
    assert_eq!(pending["access_token"], "access-2");
}

/// What each handler answers, in the shape its trigger expects back.
fn check_response(handler: &str, body: &Value) {
    match handler {
        // A Function URL gets an HTTP response; a schedule, the run's summary.
        "collector" if body.get("statusCode").is_some() => {
            assert_eq!(body["statusCode"], 200, "{body}");
            let summary: Value = serde_json::from_str(body["body"].as_str().unwrap_or("null"))
                .unwrap_or(Value::Null);
            assert!(summary["run_id"].is_string(), "{body}");
        }
        "collector" => assert!(body["run_id"].is_string(), "{body}"),
        "token-rotation" => {
            assert_eq!(body["step"], "createSecret", "{body}");
            assert!(!body["outcome"].is_null(), "{body}");
        }
        _ => assert!(body.is_object(), "{handler}: {body}"),
    }
}
