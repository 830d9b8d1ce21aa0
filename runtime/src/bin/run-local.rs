//! `run-local <handler> [--event FILE]`: runs one handler once outside Lambda, with the same
//! configuration (environment variables) the stack sets on the deployed function, and prints
//! its result as JSON. The AWS endpoint and credentials come from the SDK's standard
//! configuration, so `AWS_ENDPOINT_URL` points it at a local emulator.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use runtime::events::RotationEvent;
use runtime::rotation::Step;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Handler {
    Collector,
    Processor,
    Optimizer,
    CopyGenerator,
    TokenRotation,
}

#[derive(Debug, Parser)]
#[command(
    name = "run-local",
    about = "Run one pipeline handler once, outside Lambda"
)]
struct Args {
    handler: Handler,
    /// The event to run it with (JSON), as Lambda would deliver it.
    #[arg(long)]
    event: Option<PathBuf>,
}

async fn run(args: Args) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let event: Option<serde_json::Value> = match &args.event {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not JSON: {e}", path.display()))?,
            )
        }
        None => None,
    };
    match args.handler {
        Handler::TokenRotation => {
            let event = event.ok_or("token-rotation needs --event (a rotation step)")?;
            let event: RotationEvent = serde_json::from_value(event)
                .map_err(|e| format!("not a Secrets Manager rotation event: {e}"))?;
            let step: Step = event.step.parse()?;
            let rotator = runtime::rotation::from_env().await?;
            let outcome = rotator
                .handle(step, &event.secret_id, &event.client_request_token)
                .await?;
            Ok(serde_json::json!({ "step": event.step, "outcome": outcome }))
        }
        Handler::Collector => {
            if let Some(event) = event {
                runtime::events::CollectorTrigger::parse(event)?;
            }
            let collector = runtime::collector::Collector::from_env().await?;
            Ok(serde_json::to_value(collector.run().await?)?)
        }
        Handler::Processor => {
            if let Some(event) = event {
                serde_json::from_value::<runtime::events::ScheduledEvent>(event)
                    .map_err(|e| format!("not an EventBridge scheduled event: {e}"))?;
            }
            let processor = runtime::processor::Processor::from_env().await?;
            Ok(serde_json::to_value(processor.run().await?)?)
        }
        Handler::CopyGenerator => {
            if let Some(event) = event {
                serde_json::from_value::<runtime::events::ScheduledEvent>(event)
                    .map_err(|e| format!("not an EventBridge scheduled event: {e}"))?;
            }
            let generator = runtime::copy_generator::CopyGenerator::from_env().await?;
            Ok(serde_json::to_value(generator.run().await?)?)
        }
        Handler::Optimizer => {
            if let Some(event) = event {
                serde_json::from_value::<runtime::events::ScheduledEvent>(event)
                    .map_err(|e| format!("not an EventBridge scheduled event: {e}"))?;
            }
            let optimizer = runtime::optimizer::Optimizer::from_env().await?;
            Ok(serde_json::to_value(optimizer.run().await?)?)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    runtime::init_tracing();
    match run(Args::parse()).await {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
