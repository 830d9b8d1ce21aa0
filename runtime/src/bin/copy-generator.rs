//! The copy-generator handler, triggered by its EventBridge schedule: one run of
//! `runtime::copy_generator` (drafts for review; nothing is published). A failed run fails
//! the invocation, which the copy generator's errors alarm reports.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent};
use runtime::copy_generator::CopyGenerator;
use runtime::events::ScheduledEvent;

async fn handle(
    generator: &CopyGenerator,
    event: LambdaEvent<ScheduledEvent>,
) -> Result<serde_json::Value, Error> {
    tracing::info!(request_id = %event.context.request_id, time = ?event.payload.time, "copy generation run");
    let summary = generator.run().await.inspect_err(|e| {
        tracing::error!(error = %e, "copy generation run failed");
    })?;
    tracing::info!(
        creatives = summary.creatives.len(),
        copies = summary.copies_generated,
        failed = summary.failed.len(),
        "copy generation run done"
    );
    Ok(serde_json::to_value(&summary)?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let generator = Arc::new(CopyGenerator::from_env().await?);
    runtime::serve(move |event| {
        let generator = Arc::clone(&generator);
        async move { handle(&generator, event).await }
    })
    .await
}
