//! CloudWatch metric alarms: on one metric, or on a metric-math expression over several.
//!
//! Read: DescribeAlarms with up to 100 names per call (the API's maximum), then tags per
//! existing alarm. Statistics, comparisons, periods and missing-data treatment are checked
//! before any call (the emulator accepts values AWS rejects). PutMetricAlarm is an upsert, so
//! every change is made in place.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricAlarm, MetricDataQuery, MetricStat as CwStat,
    Statistic, Tag,
};
use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget, TagDelta, tag_fields};
use crate::aws::{Aws, AwsError, NotFound, OrMissing, failed};
use crate::model::{Address, Kind, KindSpec, Ref, Spec, Target};

pub const REPLACE_FIELDS: &[&str] = &[];

/// DescribeAlarms answers for at most this many names per call.
pub const DESCRIBE_BATCH: usize = 100;

/// The statistics CloudWatch computes by name; percentiles (`p99`, `p99.9`) are the other
/// kind it accepts here (sent as an extended statistic).
pub const STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

pub const COMPARISONS: &[&str] = &[
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
];

pub const TREAT_MISSING_DATA: &[&str] = &["breaching", "notBreaching", "ignore", "missing"];

/// One metric and how to aggregate it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricStat {
    pub namespace: String,
    pub metric: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// One of [`STATISTICS`] or a percentile such as `p95`.
    pub statistic: String,
    pub period_seconds: i32,
}

impl MetricStat {
    pub fn new(namespace: &str, metric: &str, statistic: &str, period_seconds: i32) -> MetricStat {
        MetricStat {
            namespace: namespace.into(),
            metric: metric.into(),
            dimensions: BTreeMap::new(),
            statistic: statistic.into(),
            period_seconds,
        }
    }

    pub fn dimension(mut self, name: &str, value: &str) -> MetricStat {
        self.dimensions.insert(name.into(), value.into());
        self
    }

    fn canonical(&self) -> Value {
        json!({
            "namespace": self.namespace,
            "metric": self.metric,
            "dimensions": self.dimensions,
            "statistic": self.statistic,
            "period_seconds": self.period_seconds,
        })
    }
}

/// What an alarm watches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AlarmMetric {
    Single(MetricStat),
    /// `expression` over `metrics` (by id); the alarm compares the expression's result.
    Math {
        expression: String,
        #[serde(default)]
        label: String,
        metrics: BTreeMap<String, MetricStat>,
    },
}

/// The id of the expression query in a math alarm.
const EXPRESSION_ID: &str = "expression";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlarmSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub metric: AlarmMetric,
    /// One of [`COMPARISONS`].
    pub comparison: String,
    pub threshold: f64,
    pub evaluation_periods: i32,
    /// `None`: every evaluated period must breach.
    pub datapoints_to_alarm: Option<i32>,
    /// One of [`TREAT_MISSING_DATA`].
    pub treat_missing_data: String,
    #[serde(default)]
    pub alarm_actions: BTreeSet<String>,
    #[serde(default)]
    pub ok_actions: BTreeSet<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub references: BTreeSet<Address>,
}

impl AlarmSpec {
    /// An alarm on `metric` with one evaluation period, where missing data is not breaching
    /// (a quiet pipeline is not a failing one).
    pub fn new(name: String, metric: AlarmMetric, comparison: &str, threshold: f64) -> AlarmSpec {
        AlarmSpec {
            name,
            description: String::new(),
            metric,
            comparison: comparison.into(),
            threshold,
            evaluation_periods: 1,
            datapoints_to_alarm: None,
            treat_missing_data: "notBreaching".into(),
            alarm_actions: BTreeSet::new(),
            ok_actions: BTreeSet::new(),
            tags: BTreeMap::new(),
            references: BTreeSet::new(),
        }
    }

    pub fn description(mut self, description: impl Into<String>) -> AlarmSpec {
        self.description = description.into();
        self
    }

    /// Notifies `target` (a topic of the stack) when the alarm fires and when it recovers.
    pub fn notify<K>(mut self, target: &Ref<K>) -> AlarmSpec {
        self.alarm_actions.insert(target.arn.clone());
        self.ok_actions.insert(target.arn.clone());
        self.references.insert(target.address.clone());
        self
    }

    /// Records that the alarm watches `resource` of the stack (an edge, for ordering).
    pub fn watches<K>(mut self, resource: &Ref<K>) -> AlarmSpec {
        self.references.insert(resource.address.clone());
        self
    }
}

impl KindSpec for AlarmSpec {
    const KIND: Kind = Kind::Alarm;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn arn(&self, target: &Target) -> String {
        arn(target, &self.name)
    }
    fn into_spec(self) -> Spec {
        Spec::Alarm(self)
    }
    fn import_as(&mut self, name: String) {
        self.name = name;
    }
}

pub fn arn(target: &Target, name: &str) -> String {
    format!(
        "arn:aws:cloudwatch:{}:{}:alarm:{}",
        target.region, target.account_id, name
    )
}

/// A percentile statistic: `p` and a number from 0 to 100 (at most two decimals).
fn is_percentile(statistic: &str) -> bool {
    statistic
        .strip_prefix('p')
        .filter(|n| {
            !n.is_empty()
                && n.split_once('.').is_none_or(|(_, d)| d.len() <= 2)
                && n.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .and_then(|n| n.parse::<f64>().ok())
        .is_some_and(|n| (0.0..=100.0).contains(&n))
}

pub fn validate_statistic(statistic: &str) -> Result<(), String> {
    if STATISTICS.contains(&statistic) || is_percentile(statistic) {
        Ok(())
    } else {
        Err(format!(
            "unknown statistic `{statistic}` (one of {}, or a percentile such as p95)",
            STATISTICS.join(", ")
        ))
    }
}

pub fn validate_comparison(comparison: &str) -> Result<(), String> {
    if COMPARISONS.contains(&comparison) {
        Ok(())
    } else {
        Err(format!(
            "unknown comparison `{comparison}` (one of {})",
            COMPARISONS.join(", ")
        ))
    }
}

/// Every metric this engine alarms on is a count, duration, amount or ratio: a negative
/// threshold is a mistake, not a configuration.
pub fn validate_threshold(threshold: f64) -> Result<(), String> {
    if !threshold.is_finite() {
        Err("the threshold is not a finite number".into())
    } else if threshold < 0.0 {
        Err(format!("{threshold}: a threshold is not negative"))
    } else {
        Ok(())
    }
}

/// 10, 30 or a multiple of 60 seconds (10 and 30 only for high-resolution metrics).
pub fn validate_period(period: i32) -> Result<(), String> {
    if period == 10 || period == 30 || (period >= 60 && period % 60 == 0) {
        Ok(())
    } else {
        Err(format!(
            "{period} s: a period is 10, 30 or a multiple of 60 seconds"
        ))
    }
}

pub fn validate_treat_missing_data(value: &str) -> Result<(), String> {
    if TREAT_MISSING_DATA.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}`: one of {}",
            TREAT_MISSING_DATA.join(", ")
        ))
    }
}

fn validate_stat(stat: &MetricStat, field: &str, problems: &mut Vec<Invalid>) {
    if stat.namespace.is_empty() || stat.namespace.len() > 255 {
        problems.push(Invalid::new(
            format!("{field}.namespace"),
            "a namespace is 1 to 255 characters",
        ));
    }
    if stat.metric.is_empty() || stat.metric.len() > 255 {
        problems.push(Invalid::new(
            format!("{field}.metric"),
            "a metric name is 1 to 255 characters",
        ));
    }
    if stat.dimensions.len() > 30 {
        problems.push(Invalid::new(
            format!("{field}.dimensions"),
            "at most 30 dimensions",
        ));
    }
    for (name, value) in &stat.dimensions {
        if name.is_empty() || name.len() > 255 || value.is_empty() || value.len() > 1024 {
            problems.push(Invalid::new(
                format!("{field}.dimensions.{name}"),
                "dimension names are 1 to 255 characters, values 1 to 1024",
            ));
        }
    }
    if let Err(message) = validate_statistic(&stat.statistic) {
        problems.push(Invalid::new(format!("{field}.statistic"), message));
    }
    if let Err(message) = validate_period(stat.period_seconds) {
        problems.push(Invalid::new(format!("{field}.period_seconds"), message));
    }
}

pub fn validate(spec: &AlarmSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    if spec.name.is_empty()
        || spec.name.len() > 255
        || !spec
            .name
            .chars()
            .all(|c| c.is_ascii() && !c.is_ascii_control())
    {
        problems.push(Invalid::new(
            "name",
            format!(
                "`{}`: alarm names are 1 to 255 printable ASCII characters",
                spec.name
            ),
        ));
    }
    if spec.description.chars().count() > 1024 {
        problems.push(Invalid::new("description", "at most 1024 characters"));
    }
    let period = match &spec.metric {
        AlarmMetric::Single(stat) => {
            validate_stat(stat, "metric", &mut problems);
            stat.period_seconds
        }
        AlarmMetric::Math {
            expression,
            metrics,
            ..
        } => {
            if expression.trim().is_empty() {
                problems.push(Invalid::new(
                    "metric.expression",
                    "an expression is required",
                ));
            }
            if metrics.is_empty() || metrics.len() > 10 {
                problems.push(Invalid::new(
                    "metric.metrics",
                    "a math alarm reads 1 to 10 metrics",
                ));
            }
            for (id, stat) in metrics {
                let field = format!("metric.metrics.{id}");
                let id_ok = id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && id != EXPRESSION_ID;
                if !id_ok {
                    problems.push(Invalid::new(
                        &field,
                        "metric ids start with a lowercase letter and hold letters, digits and _",
                    ));
                }
                if !expression_mentions(expression, id) {
                    problems.push(Invalid::new(
                        &field,
                        format!("`{id}` is not used by the expression"),
                    ));
                }
                validate_stat(stat, &field, &mut problems);
            }
            let periods: BTreeSet<i32> = metrics.values().map(|m| m.period_seconds).collect();
            if periods.len() > 1 {
                problems.push(Invalid::new(
                    "metric.metrics",
                    "the metrics of one math alarm share one period",
                ));
            }
            periods.into_iter().next().unwrap_or(60)
        }
    };
    if let Err(message) = validate_comparison(&spec.comparison) {
        problems.push(Invalid::new("comparison", message));
    }
    if let Err(message) = validate_threshold(spec.threshold) {
        problems.push(Invalid::new("threshold", message));
    }
    if spec.evaluation_periods < 1 {
        problems.push(Invalid::new("evaluation_periods", "at least 1"));
    } else if i64::from(spec.evaluation_periods) * i64::from(period) > 7 * 86_400 {
        problems.push(Invalid::new(
            "evaluation_periods",
            "evaluation periods times the period exceed CloudWatch's seven days",
        ));
    }
    if let Some(n) = spec.datapoints_to_alarm
        && !(1..=spec.evaluation_periods).contains(&n)
    {
        problems.push(Invalid::new(
            "datapoints_to_alarm",
            format!("{n}: 1 to evaluation_periods"),
        ));
    }
    if let Err(message) = validate_treat_missing_data(&spec.treat_missing_data) {
        problems.push(Invalid::new("treat_missing_data", message));
    }
    for (field, actions) in [
        ("alarm_actions", &spec.alarm_actions),
        ("ok_actions", &spec.ok_actions),
    ] {
        if actions.len() > 5 {
            problems.push(Invalid::new(field, "at most 5 actions"));
        }
        for action in actions {
            if !action.starts_with("arn:") {
                problems.push(Invalid::new(field, format!("`{action}` is not an ARN")));
            }
        }
    }
    problems
}

/// Whether `id` appears in `expression` as a whole word.
fn expression_mentions(expression: &str, id: &str) -> bool {
    expression
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| word == id)
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// `AWS::CloudWatch::Alarm`: one metric, or a metric-math expression over several.
pub fn cloudformation(spec: &AlarmSpec) -> crate::cloudformation::CfnResource {
    let dimension_list = |dimensions: &BTreeMap<String, String>| -> Vec<Value> {
        dimensions
            .iter()
            .map(|(name, value)| json!({"Name": name, "Value": value}))
            .collect()
    };
    let mut properties = json!({
        "AlarmName": spec.name,
        "AlarmDescription": crate::cloudformation::non_empty(&spec.description),
        "ComparisonOperator": spec.comparison,
        "Threshold": spec.threshold,
        "EvaluationPeriods": spec.evaluation_periods,
        "DatapointsToAlarm": spec.datapoints_to_alarm,
        "TreatMissingData": spec.treat_missing_data,
        "AlarmActions": (!spec.alarm_actions.is_empty()).then_some(&spec.alarm_actions),
        "OKActions": (!spec.ok_actions.is_empty()).then_some(&spec.ok_actions),
        "Tags": crate::cloudformation::tag_list(&spec.tags),
    });
    let metric = match &spec.metric {
        AlarmMetric::Single(stat) => {
            let standard = STATISTICS.contains(&stat.statistic.as_str());
            json!({
                "Namespace": stat.namespace,
                "MetricName": stat.metric,
                "Dimensions": (!stat.dimensions.is_empty()).then(|| dimension_list(&stat.dimensions)),
                "Period": stat.period_seconds,
                "Statistic": standard.then_some(&stat.statistic),
                "ExtendedStatistic": (!standard).then_some(&stat.statistic),
            })
        }
        AlarmMetric::Math {
            expression,
            label,
            metrics,
        } => {
            let mut queries: Vec<Value> = metrics
                .iter()
                .map(|(id, stat)| {
                    json!({
                        "Id": id,
                        "MetricStat": {
                            "Metric": {
                                "Namespace": stat.namespace,
                                "MetricName": stat.metric,
                                "Dimensions": (!stat.dimensions.is_empty())
                                    .then(|| dimension_list(&stat.dimensions)),
                            },
                            "Period": stat.period_seconds,
                            "Stat": stat.statistic,
                        },
                        "ReturnData": false,
                    })
                })
                .collect();
            queries.push(json!({
                "Id": EXPRESSION_ID,
                "Expression": expression,
                "Label": crate::cloudformation::non_empty(label),
                "ReturnData": true,
            }));
            json!({"Metrics": queries})
        }
    };
    if let (Value::Object(all), Value::Object(metric)) = (&mut properties, metric) {
        all.extend(metric);
    }
    crate::cloudformation::CfnResource::main("AWS::CloudWatch::Alarm", properties)
}

pub fn fields(spec: &AlarmSpec) -> Fields {
    let mut fields = Fields::new();
    fields.insert(
        "description".into(),
        Value::String(spec.description.clone()),
    );
    match &spec.metric {
        AlarmMetric::Single(stat) => {
            fields.insert("metric".into(), stat.canonical());
        }
        AlarmMetric::Math {
            expression,
            label,
            metrics,
        } => {
            fields.insert("expression".into(), Value::String(expression.clone()));
            fields.insert("expression_label".into(), Value::String(label.clone()));
            for (id, stat) in metrics {
                fields.insert(format!("metrics.{id}"), stat.canonical());
            }
        }
    }
    fields.insert("comparison".into(), Value::String(spec.comparison.clone()));
    fields.insert("threshold".into(), number(spec.threshold));
    fields.insert(
        "evaluation_periods".into(),
        Value::from(spec.evaluation_periods),
    );
    fields.insert(
        "datapoints_to_alarm".into(),
        Value::from(spec.datapoints_to_alarm.unwrap_or(spec.evaluation_periods)),
    );
    fields.insert(
        "treat_missing_data".into(),
        Value::String(spec.treat_missing_data.clone()),
    );
    fields.insert("alarm_actions".into(), json!(spec.alarm_actions));
    fields.insert("ok_actions".into(), json!(spec.ok_actions));
    tag_fields(&spec.tags, &mut fields);
    fields
}

pub async fn read(
    aws: &Aws,
    target: &Target,
    targets: &[ReadTarget],
    tag_index: &super::tag_index::TagIndex,
) -> Result<LiveMap, AwsError> {
    let mut live = LiveMap::new();
    let mut found: BTreeMap<String, AlarmSpec> = BTreeMap::new();
    let names: Vec<String> = targets.iter().map(|t| t.physical_id.clone()).collect();
    for chunk in names.chunks(DESCRIBE_BATCH) {
        // The emulator ignores MaxRecords; real AWS pages, so follow NextToken.
        let mut token: Option<String> = None;
        loop {
            let page = aws
                .cloudwatch
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                .max_records(DESCRIBE_BATCH as i32)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(failed("DescribeAlarms"))?;
            for alarm in page.metric_alarms() {
                if let Some(spec) = from_live(alarm) {
                    found.insert(spec.name.clone(), spec);
                }
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
    }
    for t in targets {
        live.insert(t.address.clone(), None);
    }
    let existing: Vec<(Address, AlarmSpec)> = targets
        .iter()
        .filter_map(|t| {
            found
                .get(&t.physical_id)
                .map(|s| (t.address.clone(), s.clone()))
        })
        .collect();
    let specs: Vec<(Address, AlarmSpec)> = stream::iter(existing)
        .map(|(address, mut spec)| async move {
            if let Some(tags) = tag_index.get(&arn(target, &spec.name)) {
                spec.tags = tags.clone();
                return Ok::<_, AwsError>((address, spec));
            }
            let tags = aws
                .cloudwatch
                .list_tags_for_resource()
                .resource_arn(arn(target, &spec.name))
                .send()
                .await
                .map_err(failed("ListTagsForResource"))?;
            spec.tags = tags
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            Ok::<_, AwsError>((address, spec))
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    for (address, spec) in specs {
        live.insert(address, Some(Spec::Alarm(spec)));
    }
    Ok(live)
}

fn stat_from_live(metric: Option<&Metric>, stat: &str, period: Option<i32>) -> MetricStat {
    MetricStat {
        namespace: metric
            .and_then(Metric::namespace)
            .unwrap_or_default()
            .to_string(),
        metric: metric
            .and_then(Metric::metric_name)
            .unwrap_or_default()
            .to_string(),
        dimensions: metric
            .map(Metric::dimensions)
            .unwrap_or_default()
            .iter()
            .filter_map(|d| Some((d.name()?.to_string(), d.value()?.to_string())))
            .collect(),
        statistic: stat.to_string(),
        period_seconds: period.unwrap_or_default(),
    }
}

fn from_live(alarm: &MetricAlarm) -> Option<AlarmSpec> {
    let name = alarm.alarm_name()?.to_string();
    // The emulator answers `Metrics: []` for a single-metric alarm and `Dimensions: []` for
    // a math alarm: the presence of queries is what tells them apart.
    let metric = if alarm.metrics().is_empty() {
        let statistic = alarm
            .statistic()
            .map(|s| s.as_str().to_string())
            .or_else(|| alarm.extended_statistic().map(str::to_string))
            .unwrap_or_default();
        let metric = Metric::builder()
            .set_namespace(alarm.namespace().map(str::to_string))
            .set_metric_name(alarm.metric_name().map(str::to_string))
            .set_dimensions(Some(alarm.dimensions().to_vec()))
            .build();
        AlarmMetric::Single(stat_from_live(Some(&metric), &statistic, alarm.period()))
    } else {
        let mut expression = String::new();
        let mut label = String::new();
        let mut metrics = BTreeMap::new();
        for query in alarm.metrics() {
            match (query.expression(), query.metric_stat()) {
                (Some(e), _) => {
                    expression = e.to_string();
                    label = query.label().unwrap_or_default().to_string();
                }
                (None, Some(stat)) => {
                    metrics.insert(
                        query.id().unwrap_or_default().to_string(),
                        stat_from_live(
                            stat.metric(),
                            stat.stat().unwrap_or_default(),
                            stat.period(),
                        ),
                    );
                }
                (None, None) => {}
            }
        }
        AlarmMetric::Math {
            expression,
            label,
            metrics,
        }
    };
    Some(AlarmSpec {
        name,
        description: alarm.alarm_description().unwrap_or_default().to_string(),
        metric,
        comparison: alarm
            .comparison_operator()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        threshold: alarm.threshold().unwrap_or_default(),
        evaluation_periods: alarm.evaluation_periods().unwrap_or_default(),
        datapoints_to_alarm: alarm.datapoints_to_alarm(),
        treat_missing_data: alarm.treat_missing_data().unwrap_or("missing").to_string(),
        alarm_actions: alarm.alarm_actions().iter().cloned().collect(),
        ok_actions: alarm.ok_actions().iter().cloned().collect(),
        tags: BTreeMap::new(),
        references: BTreeSet::new(),
    })
}

fn cw_metric(stat: &MetricStat) -> Metric {
    Metric::builder()
        .namespace(&stat.namespace)
        .metric_name(&stat.metric)
        .set_dimensions(Some(dimensions(&stat.dimensions)))
        .build()
}

fn dimensions(dimensions: &BTreeMap<String, String>) -> Vec<Dimension> {
    dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect()
}

fn cw_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// PutMetricAlarm: creates or replaces the whole alarm definition (and, on create, its tags).
async fn put(aws: &Aws, spec: &AlarmSpec, with_tags: bool) -> Result<(), OpError> {
    let mut request = aws
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&spec.name)
        .alarm_description(&spec.description)
        .actions_enabled(true)
        .set_alarm_actions(Some(spec.alarm_actions.iter().cloned().collect()))
        .set_ok_actions(Some(spec.ok_actions.iter().cloned().collect()))
        .comparison_operator(ComparisonOperator::from(spec.comparison.as_str()))
        .threshold(spec.threshold)
        .evaluation_periods(spec.evaluation_periods)
        .set_datapoints_to_alarm(spec.datapoints_to_alarm)
        .treat_missing_data(&spec.treat_missing_data);
    match &spec.metric {
        AlarmMetric::Single(stat) => {
            request = request
                .namespace(&stat.namespace)
                .metric_name(&stat.metric)
                .set_dimensions(Some(dimensions(&stat.dimensions)))
                .period(stat.period_seconds);
            request = if STATISTICS.contains(&stat.statistic.as_str()) {
                request.statistic(Statistic::from(stat.statistic.as_str()))
            } else {
                request.extended_statistic(&stat.statistic)
            };
        }
        AlarmMetric::Math {
            expression,
            label,
            metrics,
        } => {
            for (id, stat) in metrics {
                request = request.metrics(
                    MetricDataQuery::builder()
                        .id(id)
                        .metric_stat(
                            CwStat::builder()
                                .metric(cw_metric(stat))
                                .period(stat.period_seconds)
                                .stat(&stat.statistic)
                                .build(),
                        )
                        .return_data(false)
                        .build(),
                );
            }
            let mut query = MetricDataQuery::builder()
                .id(EXPRESSION_ID)
                .expression(expression)
                .return_data(true);
            if !label.is_empty() {
                query = query.label(label);
            }
            request = request.metrics(query.build());
        }
    }
    if with_tags {
        request = request.set_tags(Some(cw_tags(&spec.tags)));
    }
    request.send().await.map_err(failed("PutMetricAlarm"))?;
    Ok(())
}

pub async fn create(aws: &Aws, spec: &AlarmSpec) -> Result<(), OpError> {
    put(aws, spec, true).await
}

pub async fn update(
    aws: &Aws,
    target: &Target,
    desired: &AlarmSpec,
    live: &AlarmSpec,
) -> Result<(), OpError> {
    let mut desired_definition = fields(desired);
    let mut live_definition = fields(live);
    desired_definition.retain(|k, _| !k.starts_with("tags."));
    live_definition.retain(|k, _| !k.starts_with("tags."));
    if desired_definition != live_definition {
        put(aws, desired, false).await?;
    }
    let delta = TagDelta::between(&desired.tags, &live.tags);
    let alarm_arn = arn(target, &desired.name);
    if !delta.set.is_empty() {
        aws.cloudwatch
            .tag_resource()
            .resource_arn(&alarm_arn)
            .set_tags(Some(cw_tags(&delta.set)))
            .send()
            .await
            .map_err(failed("TagResource"))?;
    }
    if !delta.remove.is_empty() {
        aws.cloudwatch
            .untag_resource()
            .resource_arn(&alarm_arn)
            .set_tag_keys(Some(delta.remove.into_iter().collect()))
            .send()
            .await
            .map_err(failed("UntagResource"))?;
    }
    Ok(())
}

pub async fn delete(aws: &Aws, name: &str) -> Result<(), OpError> {
    aws.cloudwatch
        .delete_alarms()
        .alarm_names(name)
        .send()
        .await
        .map_err(failed("DeleteAlarms"))
        // aws-behaviors.md, aws_cloudwatch_metric_alarm: DeleteAlarms ignores
        // `ResourceNotFoundException` (wire code `ResourceNotFound`).
        .or_missing(NotFound::codes(&[
            "ResourceNotFound",
            "ResourceNotFoundException",
        ]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm() -> AlarmSpec {
        AlarmSpec::new(
            "a".into(),
            AlarmMetric::Single(MetricStat::new("AWS/Lambda", "Errors", "Sum", 300)),
            "GreaterThanThreshold",
            0.0,
        )
    }

    fn fields_of(problems: Vec<Invalid>) -> Vec<String> {
        problems.into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_well_formed_alarm_is_valid() {
        assert!(validate(&alarm()).is_empty());
    }

    #[test]
    fn negative_threshold_unknown_statistic_and_comparison_are_named() {
        let mut a = alarm();
        a.threshold = -1.0;
        a.comparison = "GreaterThan".into();
        if let AlarmMetric::Single(stat) = &mut a.metric {
            stat.statistic = "Median".into();
        }
        assert_eq!(
            fields_of(validate(&a)),
            ["metric.statistic", "comparison", "threshold"]
        );
    }

    #[test]
    fn percentiles_are_statistics() {
        for ok in ["p99", "p99.9", "p0", "p100", "p50.25"] {
            assert!(validate_statistic(ok).is_ok(), "{ok}");
        }
        for bad in ["p", "p101", "p9x", "median", "P99", "p99.999"] {
            assert!(validate_statistic(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn math_metrics_must_be_used_and_share_a_period() {
        let mut metrics = BTreeMap::new();
        metrics.insert(
            "clicks".to_string(),
            MetricStat::new("LinkedInAds", "Clicks", "Sum", 3600),
        );
        metrics.insert(
            "impressions".to_string(),
            MetricStat::new("LinkedInAds", "Impressions", "Sum", 300),
        );
        metrics.insert(
            "spend".to_string(),
            MetricStat::new("LinkedInAds", "DailySpend", "Sum", 3600),
        );
        let mut a = alarm();
        a.metric = AlarmMetric::Math {
            expression: "IF(impressions > 1000, clicks / impressions)".into(),
            label: String::new(),
            metrics,
        };
        assert_eq!(
            fields_of(validate(&a)),
            ["metric.metrics.spend", "metric.metrics"]
        );
    }

    #[test]
    fn periods_follow_cloudwatch_rules() {
        assert!(validate_period(60).is_ok());
        assert!(validate_period(21_600).is_ok());
        assert!(validate_period(10).is_ok());
        assert!(validate_period(45).is_err());
        assert!(validate_period(0).is_err());
    }
}
