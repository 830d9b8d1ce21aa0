//! The token-rotation handler, invoked by Secrets Manager for each rotation step of the
//! LinkedIn OAuth secret. It deserializes and logs the step; the rotation protocol itself is
//! specified in the runtime issues.

use lambda_runtime::{Error, LambdaEvent};
use runtime::events::RotationEvent;
use serde_json::{Value, json};

async fn handle(event: LambdaEvent<RotationEvent>) -> Result<Value, Error> {
    let (event, context) = event.into_parts();
    tracing::info!(
        request_id = %context.request_id,
        step = %event.step,
        secret_id = %event.secret_id,
        "token-rotation invoked"
    );
    Ok(json!({ "handler": "token-rotation", "step": event.step }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::serve(handle).await
}
