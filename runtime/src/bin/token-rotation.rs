//! The token-rotation handler, invoked by Secrets Manager for each rotation step of the
//! LinkedIn OAuth secret: see `runtime::rotation`. A failed step fails the invocation, which
//! Secrets Manager reports as `RotationFailed` (the stack alerts on it).

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent};
use runtime::events::RotationEvent;
use runtime::rotation::{Rotator, Step};
use serde_json::{Value, json};

async fn handle(rotator: &Rotator, event: LambdaEvent<RotationEvent>) -> Result<Value, Error> {
    let (event, context) = event.into_parts();
    let step: Step = event.step.parse()?;
    tracing::info!(request_id = %context.request_id, step = %event.step, secret = %event.secret_id, "rotation step");
    match rotator
        .handle(step, &event.secret_id, &event.client_request_token)
        .await
    {
        Ok(outcome) => {
            tracing::info!(step = %event.step, ?outcome, "rotation step done");
            Ok(json!({ "step": event.step, "outcome": outcome }))
        }
        Err(e) => {
            tracing::error!(step = %event.step, error = %e, "rotation step failed");
            Err(e.into())
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let rotator = Arc::new(runtime::rotation::from_env().await?);
    runtime::serve(move |event| {
        let rotator = Arc::clone(&rotator);
        async move { handle(&rotator, event).await }
    })
    .await
}
