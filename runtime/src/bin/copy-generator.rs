//! The copy-generator handler, triggered by its EventBridge schedule. It deserializes and logs the
//! event; its pipeline behaviour is specified in the runtime issues.

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::serve(|event| runtime::log_scheduled("copy-generator", event)).await
}
