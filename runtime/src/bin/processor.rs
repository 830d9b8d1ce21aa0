//! The processor handler, triggered by its EventBridge schedule: one processing run
//! (`runtime::processor`). A failed run fails the invocation, which the processor's errors
//! alarm reports.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent};
use runtime::events::ScheduledEvent;
use runtime::processor::Processor;

async fn handle(
    processor: &Processor,
    event: LambdaEvent<ScheduledEvent>,
) -> Result<serde_json::Value, Error> {
    tracing::info!(request_id = %event.context.request_id, time = ?event.payload.time, "processing run");
    let summary = processor.run().await.inspect_err(|e| {
        tracing::error!(error = %e, "processing run failed");
    })?;
    tracing::info!(
        days = summary.days,
        rows = summary.rows_kept,
        malformed = summary.malformed_rows,
        creatives = summary.creatives,
        "processing run done"
    );
    Ok(serde_json::to_value(&summary)?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let processor = Arc::new(Processor::from_env().await?);
    runtime::serve(move |event| {
        let processor = Arc::clone(&processor);
        async move { handle(&processor, event).await }
    })
    .await
}
