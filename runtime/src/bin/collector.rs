//! The collector handler, triggered by its EventBridge schedule or by a person through its
//! Function URL: one collection run (`runtime::collector`). A failed run fails the
//! invocation, which the collector's errors alarm reports.

use std::sync::Arc;

use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlResponse;
use lambda_runtime::{Error, LambdaEvent};
use runtime::collector::Collector;
use runtime::events::CollectorTrigger;
use serde_json::Value;

async fn handle(collector: &Collector, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (event, context) = event.into_parts();
    let trigger = CollectorTrigger::parse(event)?;
    tracing::info!(request_id = %context.request_id, by_url = matches!(trigger, CollectorTrigger::FunctionUrl(_)), "collection run");
    let summary = collector.run().await.inspect_err(|e| {
        tracing::error!(error = %e, "collection run failed");
    })?;
    tracing::info!(run_id = %summary.run_id, rows = summary.analytics_rows, creatives = summary.creatives, "collection run done");
    let body = serde_json::to_value(&summary)?;
    match trigger {
        CollectorTrigger::Schedule(_) => Ok(body),
        CollectorTrigger::FunctionUrl(_) => {
            let mut response = LambdaFunctionUrlResponse::default();
            response.status_code = 200;
            response.body = Some(body.to_string());
            Ok(serde_json::to_value(response)?)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let collector = Arc::new(Collector::from_env().await?);
    runtime::serve(move |event| {
        let collector = Arc::clone(&collector);
        async move { handle(&collector, event).await }
    })
    .await
}
