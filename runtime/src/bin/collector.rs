//! The collector handler, triggered by its EventBridge schedule or by a person through its
//! Function URL. It deserializes and logs the event; its pipeline behaviour is specified in
//! the runtime issues.

use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlResponse;
use lambda_runtime::{Error, LambdaEvent};
use runtime::events::CollectorTrigger;
use serde_json::{Value, json};

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (event, context) = event.into_parts();
    match CollectorTrigger::parse(event)? {
        CollectorTrigger::Schedule(event) => {
            tracing::info!(request_id = %context.request_id, detail_type = %event.detail_type, time = ?event.time, "collector invoked by schedule");
            Ok(json!({ "handler": "collector", "status": "accepted" }))
        }
        CollectorTrigger::FunctionUrl(request) => {
            tracing::info!(
                request_id = %context.request_id,
                method = ?request.request_context.http.method,
                path = ?request.raw_path,
                "collector invoked through its Function URL"
            );
            let mut response = LambdaFunctionUrlResponse::default();
            response.status_code = 202;
            response.body =
                Some(json!({ "handler": "collector", "status": "accepted" }).to_string());
            Ok(serde_json::to_value(response)?)
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::serve(handle).await
}
