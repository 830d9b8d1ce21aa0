//! Shared pieces of the pipeline's Lambda handlers: the events they are triggered by, and
//! start-up (structured logs, the Lambda runtime loop). Each handler is its own binary under
//! `src/bin/`, packaged by the engine as the `bootstrap` of its own zip.

pub mod anthropic;
pub mod collector;
pub mod columnar;
pub mod config;
pub mod copy_generator;
pub mod credentials;
pub mod decisions;
pub mod events;
pub mod features;
pub mod linkedin;
pub mod metrics;
pub mod optimizer;
pub mod processed;
pub mod processor;
pub mod retry;
pub mod rotation;
pub mod sample;
pub mod storage;
pub mod trainer;
pub mod training;

use std::future::Future;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Starts JSON logs (CloudWatch parses them) at `RUST_LOG` or info.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time() // CloudWatch timestamps every line.
        // Lambda sends stderr to CloudWatch as well; `run-local` keeps stdout for its result.
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `handler` in the Lambda runtime loop.
pub async fn serve<E, R, F, Fut>(handler: F) -> Result<(), Error>
where
    E: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(LambdaEvent<E>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Error>> + Send + 'static,
{
    init_tracing();
    lambda_runtime::run(service_fn(handler)).await
}
