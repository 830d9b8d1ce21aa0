//! The token-rotation handler against moto (Secrets Manager) and a fake LinkedIn OAuth server
//! that records the exact requests: all four steps, a repeated step, throttling, an
//! `invalid_grant` and an expired refresh token.

use std::io::Write as _;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use runtime::linkedin::oauth::{OAuthClient, OAuthError};
use runtime::retry::Backoff;
use runtime::rotation::{Outcome, RotationError, Rotator, Step};
use serde_json::{Value, json};
use testkit::Moto;
use testkit::fake_http::{FakeServer, Reply};

const SECRET: &str = "linkedin-ads-local-linkedin-oauth";
const TOKEN: &str = "00000000-0000-4000-8000-000000000001";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()
}

fn initial() -> Value {
    json!({
        "client_id": "client-1",
        "client_secret": "client-secret-1",
        "access_token": "access-old",
        "refresh_token": "refresh-old",
        "access_token_expires_at": "2026-11-30T00:00:00Z",
        "refresh_token_expires_at": "2027-06-01T00:00:00Z",
    })
}

fn fast() -> Backoff {
    Backoff {
        attempts: 3,
        base: Duration::from_millis(10),
        max: Duration::from_millis(20),
    }
}

/// A secret holding `value` whose rotation Secrets Manager has just started: `TOKEN` is a
/// version staged AWSPENDING without a value, as Secrets Manager leaves it before createSecret.
async fn rotation_started(moto: &Moto, value: &Value) -> aws_sdk_secretsmanager::Client {
    let sdk = moto.sdk_config().await;
    let iam = aws_sdk_iam::Client::new(&sdk);
    let role = iam
        .create_role()
        .role_name("rotation")
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("bootstrap", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(b"not run: the emulator has no Docker")
        .unwrap();
    let zip = zip.finish().unwrap().into_inner();
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let function = lambda
        .create_function()
        .function_name("token-rotation")
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role.role().unwrap().arn())
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(zip.into())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    sm.create_secret()
        .name(SECRET)
        .secret_string(value.to_string())
        .send()
        .await
        .unwrap();
    sm.rotate_secret()
        .secret_id(SECRET)
        .rotation_lambda_arn(function.function_arn().unwrap())
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(60)
                .build(),
        )
        .client_request_token(TOKEN)
        .send()
        .await
        .unwrap();
    sm
}

fn rotator(sm: aws_sdk_secretsmanager::Client, oauth: &FakeServer) -> Rotator {
    Rotator {
        secrets: sm,
        oauth: OAuthClient::new(&oauth.url).with_backoff(fast()),
        clock: now,
    }
}

async fn stage_value(sm: &aws_sdk_secretsmanager::Client, stage: &str) -> Value {
    let out = sm
        .get_secret_value()
        .secret_id(SECRET)
        .version_stage(stage)
        .send()
        .await
        .unwrap();
    serde_json::from_str(out.secret_string().unwrap()).unwrap()
}

fn grant() -> Reply {
    Reply::json(
        200,
        json!({
            "access_token": "access-new",
            "expires_in": 5_184_000,
            "refresh_token": "refresh-new",
            "refresh_token_expires_in": 31_536_000,
        }),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn all_four_steps_refresh_test_and_promote_the_token_idempotently() {
    let moto = Moto::start();
    let sm = rotation_started(&moto, &initial()).await;
    let oauth = FakeServer::start(vec![
        grant(),
        Reply::json(
            200,
            json!({"active": true, "status": "active", "expires_at": 1_769_904_000}),
        ),
    ]);
    let r = rotator(sm.clone(), &oauth);

    assert_eq!(
        r.handle(Step::CreateSecret, SECRET, TOKEN).await.unwrap(),
        Outcome::Created
    );
    // Secrets Manager retries steps: a second createSecret changes nothing and calls nobody.
    assert_eq!(
        r.handle(Step::CreateSecret, SECRET, TOKEN).await.unwrap(),
        Outcome::AlreadyCreated
    );
    assert_eq!(
        r.handle(Step::SetSecret, SECRET, TOKEN).await.unwrap(),
        Outcome::NothingToSet
    );
    assert_eq!(
        r.handle(Step::TestSecret, SECRET, TOKEN).await.unwrap(),
        Outcome::Tested
    );
    // Until finishSecret, the current value is the old one.
    assert_eq!(stage_value(&sm, "AWSCURRENT").await, initial());
    assert_eq!(
        r.handle(Step::FinishSecret, SECRET, TOKEN).await.unwrap(),
        Outcome::Finished
    );
    assert_eq!(
        r.handle(Step::FinishSecret, SECRET, TOKEN).await.unwrap(),
        Outcome::AlreadyCurrent
    );

    let current = stage_value(&sm, "AWSCURRENT").await;
    assert_eq!(
        current,
        json!({
            "client_id": "client-1",
            "client_secret": "client-secret-1",
            "access_token": "access-new",
            "refresh_token": "refresh-new",
            // 60 and 365 days after the (fixed) rotation time.
            "access_token_expires_at": "2027-01-25T00:00:00Z",
            "refresh_token_expires_at": "2027-11-26T00:00:00Z",
        })
    );
    assert_eq!(stage_value(&sm, "AWSPREVIOUS").await, initial());

    let requests = oauth.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let refresh = &requests[0];
    assert_eq!(
        (refresh.method.as_str(), refresh.path.as_str()),
        ("POST", "/accessToken")
    );
    assert_eq!(
        refresh.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        refresh.body,
        "grant_type=refresh_token&refresh_token=refresh-old&client_id=client-1&client_secret=client-secret-1"
    );
    let introspect = &requests[1];
    assert_eq!(introspect.path, "/introspectToken");
    assert_eq!(
        introspect.body,
        "client_id=client-1&client_secret=client-secret-1&token=access-new"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_is_retried_and_a_missing_new_refresh_token_keeps_the_old_one() {
    let moto = Moto::start();
    let sm = rotation_started(&moto, &initial()).await;
    let oauth = FakeServer::start(vec![
        Reply::json(429, json!({"message": "Too many requests"})),
        Reply::json(
            200,
            json!({"access_token": "access-new", "expires_in": 5_184_000}),
        ),
    ]);
    let r = rotator(sm.clone(), &oauth);
    assert_eq!(
        r.handle(Step::CreateSecret, SECRET, TOKEN).await.unwrap(),
        Outcome::Created
    );
    assert_eq!(oauth.requests().len(), 2);
    let pending = sm
        .get_secret_value()
        .secret_id(SECRET)
        .version_id(TOKEN)
        .version_stage("AWSPENDING")
        .send()
        .await
        .unwrap();
    let pending: Value = serde_json::from_str(pending.secret_string().unwrap()).unwrap();
    assert_eq!(pending["refresh_token"], "refresh-old");
    assert_eq!(pending["refresh_token_expires_at"], "2027-06-01T00:00:00Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_grant_fails_loudly_and_leaves_the_current_value_alone() {
    let moto = Moto::start();
    let sm = rotation_started(&moto, &initial()).await;
    let oauth = FakeServer::start(vec![Reply::json(
        400,
        json!({"error": "invalid_grant",
               "error_description": "The provided authorization grant or refresh token is invalid, expired or revoked"}),
    )]);
    let r = rotator(sm.clone(), &oauth);
    let err = r
        .handle(Step::CreateSecret, SECRET, TOKEN)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RotationError::OAuth(OAuthError::InvalidGrant(_))),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("re-authorize"), "{message}");
    for secret in ["refresh-old", "client-secret-1", "access-old"] {
        assert!(!message.contains(secret), "{message}");
    }
    assert_eq!(oauth.requests().len(), 1, "invalid_grant is never retried");
    assert_eq!(stage_value(&sm, "AWSCURRENT").await, initial());
    // The rotation cannot be finished with nothing pending.
    assert!(r.handle(Step::TestSecret, SECRET, TOKEN).await.is_err());
    assert_eq!(stage_value(&sm, "AWSCURRENT").await, initial());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_refresh_token_fails_before_calling_linkedin() {
    let moto = Moto::start();
    let mut value = initial();
    value["refresh_token_expires_at"] = json!("2026-11-01T00:00:00Z");
    let sm = rotation_started(&moto, &value).await;
    let oauth = FakeServer::start(vec![]);
    let err = rotator(sm.clone(), &oauth)
        .handle(Step::CreateSecret, SECRET, TOKEN)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RotationError::RefreshTokenExpired(_)),
        "{err}"
    );
    assert!(oauth.requests().is_empty());
    assert_eq!(stage_value(&sm, "AWSCURRENT").await, value);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_local_drives_a_step_with_the_functions_configuration() {
    let moto = Moto::start();
    let sm = rotation_started(&moto, &initial()).await;
    let oauth = FakeServer::start(vec![grant()]);
    let event = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        event.path(),
        json!({"Step": "createSecret", "SecretId": SECRET, "ClientRequestToken": TOKEN})
            .to_string(),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_run-local"))
        .args(["token-rotation", "--event", event.path().to_str().unwrap()])
        .envs(moto.env_vars())
        .env("LINKEDIN_OAUTH_BASE_URL", &oauth.url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        result,
        json!({"step": "createSecret", "outcome": "created"})
    );
    assert_eq!(oauth.requests()[0].path, "/accessToken");
    let pending = sm
        .get_secret_value()
        .secret_id(SECRET)
        .version_id(TOKEN)
        .version_stage("AWSPENDING")
        .send()
        .await
        .unwrap();
    assert!(pending.secret_string().unwrap().contains("access-new"));
}
