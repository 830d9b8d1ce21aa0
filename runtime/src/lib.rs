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
use std::pin::Pin;
use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde::de::DeserializeOwned;
use serde_json::Value;

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

/// A future made, and so compiled, in this library.
///
/// The body of an `async fn` is compiled in the crate that polls it, not in the one that
/// defines it: awaited in a handler binary, a handler's whole run (every SDK and HTTP call
/// under it) was compiled again in each binary, and again in each after an edit to a crate
/// they all link (about 7 s of CPU for the collector's binary alone, at the `lambda` profile,
/// against 2 s now). Turning the future into a `dyn Future` here compiles its body here, once;
/// a binary only polls the box. The handlers' entry points (`from_env`, `run`, the runtime
/// loop) return one.
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One invocation's answer, boxed so that every handler has the same type.
type Answer = Boxed<'static, Result<Value, Error>>;

/// Runs `handler` in the Lambda runtime loop, its event parsed from JSON as `E`.
///
/// The loop (the Runtime API client and its HTTP stack) is generic over the handler's type;
/// this wrapper hands it one boxed type ([`run_boxed`]), so the loop compiles once, in this
/// library, instead of once more in every handler binary: an edit to a crate every handler
/// links rebuilds five binaries, and each is now little more than its own `handle`.
pub async fn serve<E, F, Fut>(handler: F) -> Result<(), Error>
where
    E: DeserializeOwned + Send + 'static,
    F: Fn(LambdaEvent<E>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Error>> + Send + 'static,
{
    let handler = Arc::new(handler);
    run_boxed(Box::new(move |event: LambdaEvent<Value>| -> Answer {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let (payload, context) = event.into_parts();
            let payload: E = serde_json::from_value(payload)?;
            handler(LambdaEvent::new(payload, context)).await
        })
    }))
    .await
}

/// The runtime loop for a boxed handler: not generic, and boxed as [`Boxed`] is (without
/// `Send`, which the loop's future is not and its one caller does not need), so compiled here
/// only.
fn run_boxed(
    handler: Box<dyn Fn(LambdaEvent<Value>) -> Answer + Send + Sync>,
) -> Pin<Box<dyn Future<Output = Result<(), Error>>>> {
    Box::pin(async move {
        init_tracing();
        lambda_runtime::run(service_fn(handler)).await
    })
}
