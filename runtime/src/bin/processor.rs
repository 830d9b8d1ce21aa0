//! The processor handler, triggered by its EventBridge schedule. It deserializes and logs the
//! event; its pipeline behaviour is specified in the runtime issues.

use lambda_runtime::{Error, LambdaEvent};
use runtime::events::ScheduledEvent;
use serde_json::{Value, json};

async fn handle(event: LambdaEvent<ScheduledEvent>) -> Result<Value, Error> {
    let (event, context) = event.into_parts();
    tracing::info!(
        request_id = %context.request_id,
        detail_type = %event.detail_type,
        source = %event.source,
        time = ?event.time,
        "processor invoked"
    );
    Ok(json!({ "handler": "processor", "status": "accepted" }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::serve(handle).await
}
