//! What AWS settles on its own, waited out within bounds: a role that IAM has not propagated
//! yet, a Lambda function still `Pending` or updating, a name still being deleted, a
//! concurrent modification, a conditional write in conflict. Each kind names the errors that
//! mean "not yet" for each of its calls (a [`Transient`] classifier, citing
//! `aws-behaviors.md`); [`retry`] repeats the call while the error is one of those, backing off
//! from half a second to five (the Terraform AWS provider's helpers back off the same way),
//! logs every wait with the time waited so far, and gives up once the bound of
//! [`Patience`] is spent, naming what it waited for and the last AWS error. Every other error
//! fails at once.

use std::future::Future;
use std::time::Duration;

use crate::aws::AwsError;

/// How long the engine waits for AWS to settle. Env files set it (`[timeouts]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patience {
    /// For errors that propagation or a conflicting operation in progress causes.
    pub propagation: Duration,
    /// For a resource to become ready (a Lambda function `Active`, its update `Successful`).
    pub ready: Duration,
}

impl Patience {
    /// The Terraform AWS provider's bounds: two minutes for propagation (IAM, Glue, Secrets
    /// Manager, SNS, Logs), five for a function to become ready.
    pub const DEFAULT: Patience = Patience {
        propagation: Duration::from_secs(120),
        ready: Duration::from_secs(300),
    };
}

impl Default for Patience {
    fn default() -> Self {
        Patience::DEFAULT
    }
}

/// Says why an error is worth waiting out (e.g. "IAM propagation: role not yet assumable by
/// Lambda"), or `None` when it is not.
pub type Transient = fn(&AwsError) -> Option<&'static str>;

/// A call that kept failing with a transient error until its bound ran out.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{error} (still failing after waiting {waited:.0?} for {reason}; the bound is {bound:.0?}, set by [timeouts] in the env file)"
)]
pub struct GaveUp {
    pub reason: &'static str,
    pub waited: Duration,
    pub bound: Duration,
    pub error: Box<AwsError>,
}

/// The first wait, and the most a wait grows to.
const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(5);

/// Runs `call` until it succeeds, fails with an error `transient` does not recognise, or
/// `bound` is spent (then one last attempt, as the provider's helpers make). `resource` names
/// what the call is about in the log.
pub async fn retry<T, F, Fut>(
    resource: &str,
    bound: Duration,
    transient: Transient,
    mut call: F,
) -> Result<T, RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        let error = match call().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let Some(reason) = transient(&error) else {
            return Err(RetryError::Aws(error));
        };
        let waited = started.elapsed();
        // A zero bound asks for no waiting at all: the error is AWS's own.
        if bound.is_zero() {
            return Err(RetryError::Aws(error));
        }
        if waited >= bound {
            return Err(RetryError::GaveUp(GaveUp {
                reason,
                waited,
                bound,
                error: Box::new(error),
            }));
        }
        let pause = jitter(delay).min(bound.saturating_sub(waited).max(Duration::from_millis(100)));
        tracing::info!(
            target: "infra::wait",
            "{resource}: {}: {reason}; retrying in {:.1}s (waited {:.1}s of at most {:.0?})",
            error.operation,
            pause.as_secs_f64(),
            waited.as_secs_f64(),
            bound,
        );
        tokio::time::sleep(pause).await;
        delay = (delay.mul_f64(1.5)).min(MAX_DELAY);
    }
}

/// Polls `check` until it says ready (`Ok(true)`), or `bound` is spent. `what` says what is
/// awaited, for the log and the error.
pub async fn wait_until<F, Fut>(
    resource: &str,
    what: &'static str,
    bound: Duration,
    mut check: F,
) -> Result<(), WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Readiness, AwsError>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = FIRST_DELAY;
    loop {
        let state = match check().await.map_err(WaitError::Aws)? {
            Readiness::Ready => return Ok(()),
            Readiness::Failed(reason) => {
                return Err(WaitError::Failed { what, reason });
            }
            Readiness::NotYet(state) => state,
        };
        let waited = started.elapsed();
        if waited >= bound {
            return Err(WaitError::TimedOut {
                what,
                waited,
                state,
            });
        }
        tracing::info!(
            target: "infra::wait",
            "{resource}: waiting until {what} ({state}); checking again in {:.1}s (waited {:.1}s of at most {:.0?})",
            delay.as_secs_f64(),
            waited.as_secs_f64(),
            bound,
        );
        tokio::time::sleep(delay).await;
        delay = (delay.mul_f64(1.5)).min(MAX_DELAY);
    }
}

/// What a readiness check saw.
#[derive(Debug, Clone)]
pub enum Readiness {
    Ready,
    /// Not ready yet; the state seen, for the log.
    NotYet(String),
    /// It will never be ready (e.g. a function in state `Failed`), with AWS's reason.
    Failed(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RetryError {
    #[error(transparent)]
    Aws(AwsError),
    #[error(transparent)]
    GaveUp(GaveUp),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Aws(AwsError),
    #[error(
        "gave up waiting until {what} after {waited:.0?} (last seen: {state}); the bound is set by [timeouts] in the env file"
    )]
    TimedOut {
        what: &'static str,
        waited: Duration,
        state: String,
    },
    #[error("never {what}: {reason}")]
    Failed { what: &'static str, reason: String },
}

impl RetryError {
    /// The AWS error that ended the retries.
    pub fn aws(&self) -> &AwsError {
        match self {
            RetryError::Aws(e) => e,
            RetryError::GaveUp(g) => &g.error,
        }
    }
}

/// Spreads waits of concurrent retries apart: between 75% and 125% of `delay`.
fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    delay.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn err(code: &str) -> AwsError {
        AwsError {
            operation: "Op".into(),
            code: code.into(),
            message: "m".into(),
            http_status: Some(400),
        }
    }

    fn not_yet(e: &AwsError) -> Option<&'static str> {
        e.is("NotYet").then_some("settling")
    }

    #[tokio::test]
    async fn retries_until_success_and_stops_at_other_errors() {
        let calls = AtomicU32::new(0);
        let out = retry("r", Duration::from_secs(60), not_yet, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err(err("NotYet")) } else { Ok(n) } }
        })
        .await;
        assert_eq!(out.unwrap(), 2);

        let calls = AtomicU32::new(0);
        let out: Result<(), _> = retry("r", Duration::from_secs(60), not_yet, || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(err("Other")) }
        })
        .await;
        assert!(matches!(out, Err(RetryError::Aws(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no retry of other errors");
    }

    #[tokio::test]
    async fn gives_up_once_the_bound_is_spent() {
        let started = tokio::time::Instant::now();
        let out: Result<(), _> = retry("r", Duration::from_secs(2), not_yet, || async {
            Err(err("NotYet"))
        })
        .await;
        let waited = started.elapsed();
        match out {
            Err(RetryError::GaveUp(g)) => {
                assert_eq!(g.reason, "settling");
                assert!(g.to_string().contains("still failing after waiting"), "{g}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }
}
