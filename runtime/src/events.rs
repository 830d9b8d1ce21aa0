//! The events the handlers are invoked with, deserialized into their real types from
//! `aws_lambda_events`.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use aws_lambda_events::secretsmanager::SecretsManagerSecretRotationEvent;
use serde_json::Value;

/// An EventBridge scheduled event (`detail-type: Scheduled Event`) or a rule target input.
pub type ScheduledEvent = EventBridgeEvent<Value>;

/// A Secrets Manager rotation step.
pub type RotationEvent = SecretsManagerSecretRotationEvent;

/// What can invoke the collector: its schedule, or a person through its Function URL.
#[derive(Debug, Clone)]
pub enum CollectorTrigger {
    Schedule(Box<ScheduledEvent>),
    FunctionUrl(Box<LambdaFunctionUrlRequest>),
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not a {expected} event: {source}")]
    Shape {
        expected: &'static str,
        source: serde_json::Error,
    },
    #[error("neither a scheduled event nor a Function URL request (keys: {0})")]
    Unknown(String),
}

impl CollectorTrigger {
    /// Tells the two shapes apart by their own keys (a Function URL request carries
    /// `requestContext`, an EventBridge event `detail-type`) rather than by trial.
    pub fn parse(event: Value) -> Result<CollectorTrigger, EventError> {
        if event.get("requestContext").is_some() {
            return serde_json::from_value(event)
                .map(|r| CollectorTrigger::FunctionUrl(Box::new(r)))
                .map_err(|source| EventError::Shape {
                    expected: "Function URL",
                    source,
                });
        }
        if event.get("detail-type").is_some() {
            return serde_json::from_value(event)
                .map(|e| CollectorTrigger::Schedule(Box::new(e)))
                .map_err(|source| EventError::Shape {
                    expected: "EventBridge",
                    source,
                });
        }
        let keys = event
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        Err(EventError::Unknown(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../assets/samples/events/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn scheduled_event_parses() {
        let event: ScheduledEvent = serde_json::from_value(fixture("scheduled.json")).unwrap();
        assert_eq!(event.detail_type, "Scheduled Event");
        assert_eq!(event.source, "aws.events");
    }

    #[test]
    fn collector_tells_its_triggers_apart() {
        assert!(matches!(
            CollectorTrigger::parse(fixture("scheduled.json")).unwrap(),
            CollectorTrigger::Schedule(_)
        ));
        match CollectorTrigger::parse(fixture("function-url.json")).unwrap() {
            CollectorTrigger::FunctionUrl(r) => assert_eq!(r.raw_path.as_deref(), Some("/collect")),
            other => panic!("{other:?}"),
        }
        assert!(CollectorTrigger::parse(serde_json::json!({"hello": 1})).is_err());
    }

    #[test]
    fn rotation_event_parses() {
        let event: RotationEvent = serde_json::from_value(fixture("rotation.json")).unwrap();
        assert_eq!(event.step, "createSecret");
        assert!(event.secret_id.contains("linkedin-oauth"));
    }
}
