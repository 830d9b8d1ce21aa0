//! AWS clients: one SDK configuration for every service, standard retries with backoff and
//! jitter, path-style S3 for emulators, and the call counter every request passes through.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_types::region::Region;

use crate::rate_limit::RateLimits;

/// Counts AWS operations per (service, operation), and how many were in flight at once at
/// most. Cloned handles share one table.
#[derive(Clone, Debug, Default)]
pub struct CallCounter {
    calls: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    in_flight: Arc<AtomicUsize>,
    peak_in_flight: Arc<AtomicUsize>,
}

impl CallCounter {
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Calls per (service, operation), sorted.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        match self.calls.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Clears the counts; the peak starts again from what is in flight now.
    pub fn reset(&self) {
        if let Ok(mut guard) = self.calls.lock() {
            guard.clear();
        }
        self.peak_in_flight
            .store(self.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The most operations (each with its retries) in flight at once since the last reset.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Human summary: total, then per service and operation.
    pub fn report(&self) -> String {
        let snapshot = self.snapshot();
        let total: u64 = snapshot.values().sum();
        let mut out = format!("AWS calls: {total}\n");
        for ((service, operation), n) in &snapshot {
            out.push_str(&format!("  {service:<22} {operation:<40} {n}\n"));
        }
        out
    }

    fn record(&self, service: &str, operation: &str) {
        let mut guard = match self.calls.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard
            .entry((service.to_string(), operation.to_string()))
            .or_default() += 1;
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "infra-call-counter"
    }

    // Client interceptors see `read_before_execution` before the operation's metadata is in
    // the config bag; serialization happens once per operation, before any retry.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            self.record(metadata.service(), metadata.name());
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        Ok(())
    }

    // Runs once per operation however it ended (success, error or retries used up).
    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Saturating: an operation that failed before serialization was never counted in.
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        Ok(())
    }
}

/// The SDK clients the engine uses, all built from one configuration.
#[derive(Clone, Debug)]
pub struct Aws {
    pub s3: aws_sdk_s3::Client,
    pub iam: aws_sdk_iam::Client,
    pub sns: aws_sdk_sns::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub glue: aws_sdk_glue::Client,
    pub athena: aws_sdk_athena::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub secretsmanager: aws_sdk_secretsmanager::Client,
    pub tagging: aws_sdk_resourcegroupstagging::Client,
    pub sts: aws_sdk_sts::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub calls: CallCounter,
    pub region: String,
    /// The endpoint every client talks to when it is not AWS's own (an emulator, a proxy).
    pub endpoint: Option<String>,
    /// How long kinds wait for AWS to settle (propagation, readiness).
    pub patience: crate::eventual::Patience,
}

/// How many times the SDK tries one call (first try included) on throttling, 5xx and
/// transient network errors, with exponential backoff and full jitter between tries.
pub const MAX_ATTEMPTS: u32 = 6;

impl Aws {
    /// Loads the standard SDK configuration (credentials chain, `AWS_ENDPOINT_URL`, ...) for
    /// `region`, with the default per-service rate limits.
    pub async fn connect(region: &str) -> Aws {
        let limits = RateLimits::new(&Default::default()).unwrap_or_default();
        Self::connect_limited(region, &limits).await
    }

    /// As [`Aws::connect`], every request (retries included) waiting for its service's token
    /// bucket in `limits`.
    pub async fn connect_limited(region: &str, limits: &RateLimits) -> Aws {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        // What the SDK would build by default, made here so the rate limiter can wrap it.
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_https();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(std::time::Duration::from_millis(200)),
            )
            .http_client(limits.wrap(https))
            .load()
            .await;
        Self::from_sdk_config(&sdk, region)
    }

    pub fn from_sdk_config(sdk: &aws_types::SdkConfig, region: &str) -> Aws {
        let calls = CallCounter::default();
        // No client-side retry quota: the SDK's default token bucket refuses retries once many
        // calls have failed, so a long apply meeting throttling fails with the quota spent
        // rather than waiting AWS out (Terraform AWS provider users met this as "failed to get
        // rate limit token, retry quota exceeded", terraform-provider-aws#34669). The engine's
        // own per-service rate limits keep the pace instead.
        let retries = aws_smithy_runtime::client::retries::RetryPartition::custom("infra")
            .token_bucket(aws_smithy_runtime::client::retries::TokenBucket::unlimited())
            .build();
        // Emulators and custom endpoints do not serve virtual-hosted bucket names.
        let custom_endpoint = sdk.endpoint_url().is_some();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(custom_endpoint)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let iam = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let sns = aws_sdk_sns::Client::from_conf(
            aws_sdk_sns::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let logs = aws_sdk_cloudwatchlogs::Client::from_conf(
            aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let lambda = aws_sdk_lambda::Client::from_conf(
            aws_sdk_lambda::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let events = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let glue = aws_sdk_glue::Client::from_conf(
            aws_sdk_glue::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let athena = aws_sdk_athena::Client::from_conf(
            aws_sdk_athena::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(
            aws_sdk_cloudwatch::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let secretsmanager = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let tagging = aws_sdk_resourcegroupstagging::Client::from_conf(
            aws_sdk_resourcegroupstagging::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        let cloudformation = aws_sdk_cloudformation::Client::from_conf(
            aws_sdk_cloudformation::config::Builder::from(sdk)
                .interceptor(calls.clone())
                .retry_partition(retries.clone())
                .build(),
        );
        Aws {
            sts,
            cloudformation,
            cloudwatch,
            secretsmanager,
            tagging,
            glue,
            athena,
            s3,
            iam,
            sns,
            logs,
            lambda,
            events,
            calls,
            region: region.to_string(),
            endpoint: sdk.endpoint_url().map(str::to_string),
            patience: crate::eventual::Patience::default(),
        }
    }
}

/// An AWS call that failed, with the operation, the service's error code and message.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{operation}: {code}: {message}")]
pub struct AwsError {
    pub operation: String,
    pub code: String,
    pub message: String,
    pub http_status: Option<u16>,
}

impl AwsError {
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// Whether the code is `code` and the message contains `words`.
    pub fn says(&self, code: &str, words: &str) -> bool {
        self.code == code && self.message.contains(words)
    }
}

/// How one AWS call says "there is no such resource": its error codes, and, where not-found
/// shares a code with other errors (Athena's `InvalidRequestException`), the words that tell
/// them apart. Each kind declares one per call it reads or deletes with, citing
/// `aws-behaviors.md`; nothing is taken as missing by HTTP status alone. Codes are the wire
/// codes the SDK reports (`ProvideErrorMetadata::code`), which moto and AWS share.
#[derive(Clone, Copy, Debug)]
pub struct NotFound {
    codes: &'static [&'static str],
    messages: &'static [&'static str],
}

impl NotFound {
    /// Any of `codes` means missing.
    pub const fn codes(codes: &'static [&'static str]) -> NotFound {
        NotFound {
            codes,
            messages: &[],
        }
    }

    /// One of `codes` with a message containing one of `messages` means missing.
    pub const fn saying(
        codes: &'static [&'static str],
        messages: &'static [&'static str],
    ) -> NotFound {
        NotFound { codes, messages }
    }

    pub fn matches(&self, error: &AwsError) -> bool {
        self.codes.contains(&error.code.as_str())
            && (self.messages.is_empty() || self.messages.iter().any(|m| error.message.contains(m)))
    }
}

/// Converts any SDK error into an [`AwsError`] naming `operation`.
pub fn aws_error<E, R>(operation: &str, err: aws_sdk_s3::error::SdkError<E, R>) -> AwsError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    use aws_sdk_s3::error::SdkError;
    let http_status = match &err {
        SdkError::ServiceError(service) => service.raw().http_status(),
        SdkError::ResponseError(response) => response.raw().http_status(),
        _ => None,
    };
    let error = match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            AwsError {
                operation: operation.to_string(),
                code: inner
                    .code()
                    .map(str::to_string)
                    .or_else(|| http_status.map(|s| format!("HTTP {s}")))
                    .unwrap_or_else(|| "Unknown".to_string()),
                message: inner.message().unwrap_or("").to_string(),
                http_status,
            }
        }
        other => AwsError {
            operation: operation.to_string(),
            code: match &other {
                SdkError::TimeoutError(_) => "Timeout".to_string(),
                SdkError::DispatchFailure(_) => "DispatchFailure".to_string(),
                SdkError::ResponseError(_) => "ResponseError".to_string(),
                SdkError::ConstructionFailure(_) => "ConstructionFailure".to_string(),
                _ => "Unknown".to_string(),
            },
            message: match &other {
                // One line a person reads: where, and the innermost causes (not the
                // connector's debug dump).
                SdkError::DispatchFailure(_) => {
                    let at = std::env::var("AWS_ENDPOINT_URL")
                        .map(|url| format!(" at {url} (AWS_ENDPOINT_URL)"))
                        .unwrap_or_default();
                    format!("cannot reach AWS{at}: {}", causes(&other))
                }
                SdkError::TimeoutError(_) => format!("no answer in time: {}", causes(&other)),
                _ => aws_smithy_types::error::display::DisplayErrorContext(&other).to_string(),
            },
            http_status,
        },
    };
    error.with_retry_note()
}

/// The chain of an error's causes, each once, by their own messages.
fn causes(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    // The innermost two say what happened ("tcp connect error", "Connection refused").
    let start = parts.len().saturating_sub(2);
    parts[start..].join(": ")
}

/// Error codes the SDK's standard retry strategy treats as throttling.
fn retry_note() -> String {
    format!(" (still failing after {MAX_ATTEMPTS} attempts with backoff)")
}

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
];

impl AwsError {
    /// Whether the SDK retried this error before giving up (throttling, 5xx, network).
    pub fn is_transient(&self) -> bool {
        self.http_status.is_some_and(|s| s >= 500)
            || THROTTLING_CODES.contains(&self.code.as_str())
            || matches!(self.code.as_str(), "DispatchFailure" | "Timeout")
    }

    /// Says that retries were used up, so a reader knows it was not a first-try failure.
    fn with_retry_note(mut self) -> AwsError {
        if self.is_transient() {
            if self.message.is_empty() {
                self.message = "no message from the service".into();
            }
            self.message = format!("{}{}", self.message, retry_note());
        }
        self
    }

    /// For a call whose retries were turned off (a classifier forbade them): the note that
    /// [`AwsError::with_retry_note`] added would not be true.
    pub fn sent_once(mut self) -> AwsError {
        if let Some(message) = self.message.strip_suffix(&retry_note()) {
            self.message = message.to_string();
        }
        self
    }
}

/// Reading or deleting something that may not exist: the call's not-found becomes `None`.
pub trait OrMissing<T> {
    fn or_missing(self, not_found: NotFound) -> Result<Option<T>, AwsError>;
}

impl<T> OrMissing<T> for Result<T, AwsError> {
    fn or_missing(self, not_found: NotFound) -> Result<Option<T>, AwsError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(e) if not_found.matches(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The HTTP status of a raw response, whatever its concrete type.
pub trait HttpStatus {
    fn http_status(&self) -> Option<u16>;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn http_status(&self) -> Option<u16> {
        Some(self.status().as_u16())
    }
}

/// `result.map_err(failed("Operation"))`: converts an SDK error naming the operation.
pub fn failed<E, R>(
    operation: &'static str,
) -> impl FnOnce(aws_sdk_s3::error::SdkError<E, R>) -> AwsError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + HttpStatus,
{
    move |err| aws_error(operation, err)
}
