//! The optimizer handler, triggered by its EventBridge schedule: one run of
//! `runtime::optimizer` (decisions written to the bucket; LinkedIn changed only when
//! `OPTIMIZER_DRY_RUN` is `false`). A failed run fails the invocation, which the optimizer's
//! errors alarm reports.

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent};
use runtime::events::ScheduledEvent;
use runtime::optimizer::Optimizer;

async fn handle(
    optimizer: &Optimizer,
    event: LambdaEvent<ScheduledEvent>,
) -> Result<serde_json::Value, Error> {
    tracing::info!(request_id = %event.context.request_id, time = ?event.payload.time, dry_run = optimizer.config.dry_run, "optimization run");
    let summary = optimizer.run().await.inspect_err(|e| {
        tracing::error!(error = %e, "optimization run failed");
    })?;
    tracing::info!(scorer = %summary.scorer, paused = summary.creatives_paused, scaled = summary.campaigns_scaled, bids = summary.bids_adjusted, skipped = summary.skipped, failed = summary.failed, "optimization run done");
    Ok(serde_json::to_value(&summary)?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let optimizer = Arc::new(Optimizer::from_env().await?);
    runtime::serve(move |event| {
        let optimizer = Arc::clone(&optimizer);
        async move { handle(&optimizer, event).await }
    })
    .await
}
