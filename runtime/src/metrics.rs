//! The handlers' custom CloudWatch metrics: one PutMetricData per run, every datum with the
//! `Environment` dimension the stack's alarms and dashboard select on.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

#[derive(Debug, thiserror::Error)]
#[error("PutMetricData {namespace}: {message}")]
pub struct MetricsError {
    pub namespace: String,
    pub message: String,
}

/// Where a handler's metrics go.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub client: aws_sdk_cloudwatch::Client,
    pub namespace: String,
    pub environment: String,
}

impl Metrics {
    /// Sends `(name, value, unit)` data in one call.
    pub async fn put(&self, data: &[(&str, f64, StandardUnit)]) -> Result<(), MetricsError> {
        let dimension = Dimension::builder()
            .name("Environment")
            .value(&self.environment)
            .build();
        let data = data
            .iter()
            .map(|(name, value, unit)| {
                MetricDatum::builder()
                    .metric_name(*name)
                    .dimensions(dimension.clone())
                    .value(*value)
                    .unit(unit.clone())
                    .build()
            })
            .collect();
        self.client
            .put_metric_data()
            .namespace(&self.namespace)
            .set_metric_data(Some(data))
            .send()
            .await
            .map_err(|e| MetricsError {
                namespace: self.namespace.clone(),
                message: aws_smithy_types::error::display::DisplayErrorContext(&e).to_string(),
            })?;
        Ok(())
    }
}
