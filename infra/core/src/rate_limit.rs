//! Per-service rate limits: a token bucket per AWS service, applied to every HTTP attempt
//! (retries included) by wrapping the SDK's HTTP client. The service is read from the SigV4
//! credential scope of the request, so one limiter serves every client, against AWS or an
//! emulator on one endpoint. Defaults sit near AWS's documented control-plane quotas; env
//! files can raise or lower them (`[rate_limits]`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use tokio::time::Instant;

/// Services by the name env files use, their SigV4 signing name, and the default limit in
/// requests per second.
pub const SERVICES: &[(&str, &str, f64)] = &[
    // Lambda's control plane: about 15 requests/s for the function APIs.
    ("lambda", "lambda", 15.0),
    ("iam", "iam", 15.0),
    // PutMetricAlarm and DescribeAlarms: single-digit TPS quotas.
    ("cloudwatch", "monitoring", 9.0),
    // CreateLogGroup, PutRetentionPolicy, tagging: 5 TPS each.
    ("logs", "logs", 5.0),
    ("events", "events", 20.0),
    ("glue", "glue", 10.0),
    ("athena", "athena", 5.0),
    ("s3", "s3", 100.0),
    ("sns", "sns", 30.0),
    ("secretsmanager", "secretsmanager", 50.0),
    ("tagging", "tagging", 5.0),
    ("sts", "sts", 50.0),
    // DescribeStacks, DescribeStackEvents, CreateChangeSet: the engine polls, it never bursts.
    ("cloudformation", "cloudformation", 10.0),
];

/// The highest limit an env file may set (requests per second).
pub const MAX_RATE: f64 = 10_000.0;

/// Checks an env file's `[rate_limits]` entry.
pub fn validate(service: &str, rate: f64) -> Result<(), String> {
    if !SERVICES.iter().any(|(name, _, _)| *name == service) {
        return Err(format!(
            "`{service}` is not a service with a rate limit (one of {})",
            SERVICES
                .iter()
                .map(|(name, _, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !(rate > 0.0 && rate <= MAX_RATE) {
        return Err(format!(
            "{rate}: requests per second above 0, at most {MAX_RATE}"
        ));
    }
    Ok(())
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Takes one token, going into debt if none is left; returns how long to wait until the
    /// debt is paid (zero if a token was there).
    fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One token bucket per service (by signing name); a burst of one second's worth.
#[derive(Clone, Default)]
pub struct RateLimits {
    buckets: Arc<BTreeMap<String, Mutex<Bucket>>>,
    rates: BTreeMap<String, f64>,
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.rates.iter()).finish()
    }
}

impl RateLimits {
    /// The defaults, with `overrides` (env-file service name -> requests per second) applied.
    pub fn new(overrides: &BTreeMap<String, f64>) -> Result<RateLimits, String> {
        for (service, rate) in overrides {
            validate(service, *rate)?;
        }
        let now = Instant::now();
        let mut buckets = BTreeMap::new();
        let mut rates = BTreeMap::new();
        for (name, signing, default) in SERVICES {
            let rate = overrides.get(*name).copied().unwrap_or(*default);
            let burst = rate.max(1.0);
            rates.insert(name.to_string(), rate);
            buckets.insert(
                signing.to_string(),
                Mutex::new(Bucket {
                    rate,
                    burst,
                    tokens: burst,
                    last: now,
                }),
            );
        }
        Ok(RateLimits {
            buckets: Arc::new(buckets),
            rates,
        })
    }

    /// Requests per second allowed for each service (env-file names).
    pub fn rates(&self) -> &BTreeMap<String, f64> {
        &self.rates
    }

    /// Waits until a request to `signing_name` may be sent. Unknown services are not limited.
    pub async fn acquire(&self, signing_name: &str) {
        let wait = match self.buckets.get(signing_name) {
            Some(bucket) => match bucket.lock() {
                Ok(mut b) => b.take(Instant::now()),
                Err(poisoned) => poisoned.into_inner().take(Instant::now()),
            },
            None => Duration::ZERO,
        };
        tracing::trace!(
            service = signing_name,
            wait_ms = wait.as_millis() as u64,
            "rate limit"
        );
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Wraps `inner` so that every request waits for its service's bucket.
    pub fn wrap(&self, inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(LimitedClient {
            inner,
            limits: self.clone(),
        })
    }
}

/// The signing name in a SigV4 `Authorization` header's credential scope
/// (`Credential=AKID/20261126/us-east-1/lambda/aws4_request`).
pub fn signing_name(authorization: &str) -> Option<&str> {
    let scope = authorization.split("Credential=").nth(1)?;
    let scope = scope.split([',', ' ']).next()?;
    scope.split('/').nth(3)
}

#[derive(Debug)]
struct LimitedClient {
    inner: SharedHttpClient,
    limits: RateLimits,
}

impl HttpClient for LimitedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LimitedConnector {
            inner: self.inner.http_connector(settings, components),
            limits: self.limits.clone(),
        })
    }
}

#[derive(Debug)]
struct LimitedConnector {
    inner: SharedHttpConnector,
    limits: RateLimits,
}

impl HttpConnector for LimitedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let service = request
            .headers()
            .get("authorization")
            .and_then(signing_name)
            .map(str::to_string);
        let (inner, limits) = (self.inner.clone(), self.limits.clone());
        HttpConnectorFuture::new(async move {
            if let Some(service) = service {
                limits.acquire(&service).await;
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_name_is_read_from_the_credential_scope() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261126/us-east-1/monitoring/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(signing_name(header), Some("monitoring"));
        assert_eq!(signing_name("Bearer x"), None);
    }

    #[test]
    fn overrides_are_checked() {
        let bad = BTreeMap::from([("lamda".to_string(), 5.0)]);
        assert!(RateLimits::new(&bad).unwrap_err().contains("lambda"));
        let zero = BTreeMap::from([("lambda".to_string(), 0.0)]);
        assert!(RateLimits::new(&zero).is_err());
        let ok = BTreeMap::from([("cloudwatch".to_string(), 2.5)]);
        assert_eq!(RateLimits::new(&ok).unwrap().rates()["cloudwatch"], 2.5);
    }

    /// After the initial burst, requests go out at the configured rate and never faster,
    /// whatever the concurrency (real time: 150 requests at 100/s take about 0.5 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_configured_ceiling_holds_under_concurrency() {
        let rate = 100.0;
        let limits = RateLimits::new(&BTreeMap::from([("lambda".to_string(), rate)])).unwrap();
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..150)
            .map(|_| {
                let (limits, times) = (limits.clone(), Arc::clone(&times));
                tokio::spawn(async move {
                    limits.acquire("lambda").await;
                    times.lock().unwrap().push(start.elapsed().as_secs_f64());
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let mut times = times.lock().unwrap().clone();
        times.sort_by(f64::total_cmp);
        // 150 requests at 100/s with a burst of 100: the last may go at (150 - 100) / 100 s.
        let last = times[times.len() - 1];
        assert!(last >= 0.49, "{last}");
        // Token-bucket bound between any two requests: count <= burst + rate * span.
        for i in 0..times.len() {
            for j in i..times.len() {
                let count = (j - i + 1) as f64;
                assert!(count <= rate + rate * (times[j] - times[i]) + 1e-6);
            }
        }
        // Another service is not held up by Lambda's debt.
        let before = Instant::now();
        limits.acquire("s3").await;
        assert!(before.elapsed() < Duration::from_millis(5));
    }
}
