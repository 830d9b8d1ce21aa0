//! Monitoring of the pipeline: CloudWatch alarms for every component, EventBridge rules that
//! turn crawler and rotation failures into alerts, and one dashboard generated from the
//! stack's own functions and alarms. Every alarm and rule notifies the alerts topic.
//!
//! The handlers emit their metrics under [`METRICS_NAMESPACE`] with one dimension,
//! [`ENVIRONMENT_DIMENSION`], whose value the stack passes to each function as
//! `METRICS_ENVIRONMENT`; the alarms and the dashboard read exactly that.

use std::collections::BTreeMap;

use infra_core::model::{
    Address, AlarmMetric, AlarmSpec, CrawlerSpec, DashboardSpec, Kind, LambdaSpec, MetricStat, Ref,
    Resource, RuleSpec, SecretSpec, Spec, Stack, TopicSpec,
};
use serde_json::{Value, json};

use crate::env::Env;

/// The custom CloudWatch namespace the handlers emit into.
pub const METRICS_NAMESPACE: &str = "LinkedInAds";

/// The one dimension of every custom metric: which environment emitted it.
pub const ENVIRONMENT_DIMENSION: &str = "Environment";

/// The metrics the optimizer emits, in dashboard order: the actions carried out on LinkedIn,
/// then those a dry run decided and did not send (kept apart, so a dry-run env shows no
/// action that never happened), then the scorer's accuracy.
pub const OPTIMIZER_METRICS: [&str; 6] = [
    "CreativesPaused",
    "CreativesScaled",
    "BidsAdjusted",
    "OptimizationActions",
    DRY_RUN_ACTIONS,
    PREDICTION_ACCURACY,
];

const DRY_RUN_ACTIONS: &str = "DryRunActions";
const PREDICTION_ACCURACY: &str = "PredictionAccuracy";

/// The collector's metrics are compared per collection run (every six hours).
const COLLECTION_PERIOD: i32 = 6 * 3600;
const FIVE_MINUTES: i32 = 300;

/// The value of [`ENVIRONMENT_DIMENSION`] for this stack.
pub fn metrics_environment(stack: &Stack) -> String {
    stack.target.env.clone()
}

fn custom_metric(stack: &Stack, metric: &str, statistic: &str, period: i32) -> MetricStat {
    MetricStat::new(METRICS_NAMESPACE, metric, statistic, period)
        .dimension(ENVIRONMENT_DIMENSION, &metrics_environment(stack))
}

/// What the monitoring watches: the stack's functions (short name -> function) and more.
pub struct Watched<'a> {
    pub functions: &'a [(&'static str, Ref<LambdaSpec>)],
    pub crawler: &'a Ref<CrawlerSpec>,
    pub rotated_secret: &'a Ref<SecretSpec>,
    pub alerts: &'a Ref<TopicSpec>,
}

/// Adds every alarm, the failure rules and the dashboard.
pub fn add(stack: &mut Stack, env: &Env, watched: &Watched<'_>) {
    let alerts = watched.alerts;
    let t = &env.thresholds;
    for (function, lambda) in watched.functions {
        let timeout_ms = env.functions.get(function).map_or(3_000.0, |f| {
            f64::from(*f.timeout_seconds.get_ref()) * 1000.0
        });
        let share = *t.lambda_duration_share.get_ref();
        let lambda_metric = |metric: &str, statistic: &str| {
            AlarmMetric::Single(
                MetricStat::new("AWS/Lambda", metric, statistic, FIVE_MINUTES)
                    .dimension("FunctionName", &lambda.name),
            )
        };
        stack.add(
            &format!("{function}-errors"),
            AlarmSpec::new(
                stack.target.name(&format!("{function}-errors")),
                lambda_metric("Errors", "Sum"),
                "GreaterThanThreshold",
                0.0,
            )
            .description(format!("The {function} function failed"))
            .notify(alerts)
            .watches(lambda),
        );
        stack.add(
            &format!("{function}-duration"),
            AlarmSpec::new(
                stack.target.name(&format!("{function}-duration")),
                lambda_metric("Duration", "Maximum"),
                "GreaterThanThreshold",
                (timeout_ms * share).round(),
            )
            .description(format!(
                "The {function} function ran longer than {:.0}% of its timeout",
                share * 100.0
            ))
            .notify(alerts)
            .watches(lambda),
        );
    }

    let collector = watched
        .functions
        .iter()
        .find(|(name, _)| *name == "collector")
        .map(|(_, r)| r);
    let spend = AlarmSpec::new(
        stack.target.name("collector-high-spend"),
        AlarmMetric::Single(custom_metric(
            stack,
            "DailySpend",
            "Maximum",
            COLLECTION_PERIOD,
        )),
        "GreaterThanThreshold",
        *t.daily_spend_usd.get_ref(),
    )
    .description(format!(
        "Daily LinkedIn Ads spend above {} USD",
        t.daily_spend_usd.get_ref()
    ))
    .notify(alerts);
    let min_impressions = *t.min_impressions_for_ctr.get_ref();
    let low_ctr = AlarmSpec::new(
        stack.target.name("collector-low-ctr"),
        AlarmMetric::Math {
            // No value (so not breaching) until there are enough impressions to judge.
            expression: format!("IF(impressions > {min_impressions}, clicks / impressions)"),
            label: "CTR".into(),
            metrics: BTreeMap::from([
                (
                    "clicks".to_string(),
                    custom_metric(stack, "Clicks", "Sum", COLLECTION_PERIOD),
                ),
                (
                    "impressions".to_string(),
                    custom_metric(stack, "Impressions", "Sum", COLLECTION_PERIOD),
                ),
            ]),
        },
        "LessThanThreshold",
        *t.min_ctr.get_ref(),
    )
    .description(format!(
        "Click-through rate below {} over more than {min_impressions} impressions",
        t.min_ctr.get_ref()
    ))
    .notify(alerts);
    let (spend, low_ctr) = match collector {
        Some(c) => (spend.watches(c), low_ctr.watches(c)),
        None => (spend, low_ctr),
    };
    stack.add("collector-high-spend", spend);
    stack.add("collector-low-ctr", low_ctr);

    let sm = &env.sagemaker;
    for endpoint in &sm.endpoints {
        let endpoint = endpoint.get_ref();
        let metric = |name: &str, statistic: &str| {
            AlarmMetric::Single(
                MetricStat::new("AWS/SageMaker", name, statistic, FIVE_MINUTES)
                    .dimension("EndpointName", endpoint)
                    .dimension("VariantName", "AllTraffic"),
            )
        };
        let short = format!("sagemaker-{endpoint}-5xx-errors");
        stack.add(
            &short,
            AlarmSpec::new(
                stack.target.name(&short),
                metric("Invocation5XXErrors", "Sum"),
                "GreaterThanThreshold",
                *sm.max_5xx_errors.get_ref(),
            )
            .description(format!("SageMaker endpoint {endpoint} answers 5xx errors"))
            .notify(alerts),
        );
        let short = format!("sagemaker-{endpoint}-model-latency");
        stack.add(
            &short,
            AlarmSpec::new(
                stack.target.name(&short),
                // ModelLatency is reported in microseconds.
                metric("ModelLatency", "Average"),
                "GreaterThanThreshold",
                *sm.max_model_latency_ms.get_ref() * 1000.0,
            )
            .description(format!(
                "SageMaker endpoint {endpoint}: model latency above {} ms",
                sm.max_model_latency_ms.get_ref()
            ))
            .notify(alerts),
        );
    }

    for custom in &env.alarms {
        let name = custom.name.get_ref();
        let mut stat = MetricStat::new(
            custom.namespace.get_ref(),
            custom.metric.get_ref(),
            custom.statistic.get_ref(),
            custom.period_seconds(),
        );
        stat.dimensions = custom.dimensions.clone();
        let mut alarm = AlarmSpec::new(
            stack.target.name(name),
            AlarmMetric::Single(stat),
            custom.comparison.get_ref(),
            *custom.threshold.get_ref(),
        )
        .description(custom.description.clone())
        .notify(alerts);
        alarm.evaluation_periods = custom.evaluation_periods();
        alarm.treat_missing_data = custom.treat_missing_data();
        stack.add(name, alarm);
    }

    failure_rules(stack, watched);
    let dashboard = dashboard(stack, env);
    stack.add("pipeline", dashboard);
}

/// Crawler and rotation failures are events, not metrics: EventBridge rules send them to
/// the alerts topic.
fn failure_rules(stack: &mut Stack, watched: &Watched<'_>) {
    let crawler = json!({
        "source": ["aws.glue"],
        "detail-type": ["Glue Crawler State Change"],
        "detail": { "crawlerName": [watched.crawler.name], "state": ["Failed"] },
    });
    let rule = RuleSpec::pattern(
        stack.target.name("crawler-failed"),
        crawler,
        "Alerts when the raw-data crawler fails",
    )
    .target("alerts", watched.alerts, None);
    let rule = stack.add("crawler-failed", rule);
    stack.depend(&rule, watched.crawler);

    // Secrets Manager reports a failed rotation through CloudTrail; the ARN's last six
    // characters are random, so match its prefix.
    let secret = &watched.rotated_secret;
    let arn_prefix = secret.arn.trim_end_matches('?');
    let rotation = json!({
        "source": ["aws.secretsmanager"],
        "detail-type": ["AWS Service Event via CloudTrail"],
        "detail": {
            "eventSource": ["secretsmanager.amazonaws.com"],
            "eventName": ["RotationFailed", "RotationAbandoned"],
            "additionalEventData": { "SecretId": [{ "prefix": arn_prefix }] },
        },
    });
    let rule = RuleSpec::pattern(
        stack.target.name("secret-rotation-failed"),
        rotation,
        &format!("Alerts when rotating {} fails", secret.name),
    )
    .target("alerts", watched.alerts, None);
    let rule = stack.add("secret-rotation-failed", rule);
    stack.depend(&rule, secret);
}

/// Widget grid: CloudWatch dashboards are 24 units wide.
struct Grid {
    widgets: Vec<Value>,
    x: i64,
    y: i64,
}

impl Grid {
    const WIDTH: i64 = 8;
    const HEIGHT: i64 = 6;

    fn text(&mut self, markdown: &str) {
        self.newline();
        self.widgets.push(json!({
            "type": "text", "x": 0, "y": self.y, "width": 24, "height": 1,
            "properties": { "markdown": markdown },
        }));
        self.y += 1;
    }

    fn metric(&mut self, properties: Value) {
        if self.x + Self::WIDTH > 24 {
            self.newline();
        }
        self.widgets.push(json!({
            "type": "metric", "x": self.x, "y": self.y,
            "width": Self::WIDTH, "height": Self::HEIGHT, "properties": properties,
        }));
        self.x += Self::WIDTH;
    }

    fn newline(&mut self) {
        if self.x > 0 {
            self.x = 0;
            self.y += Self::HEIGHT;
        }
    }
}

/// The dashboard, derived from the stack: a row per function (invocations, errors, duration
/// with its alarm threshold), the collector's business metrics, the optimizer's actions.
fn dashboard(stack: &Stack, env: &Env) -> DashboardSpec {
    let region = stack.target.region.clone();
    let environment = metrics_environment(stack);
    let mut grid = Grid {
        widgets: Vec::new(),
        x: 0,
        y: 0,
    };
    // By address: an imported alarm keeps a name of its own.
    let alarm_threshold = |name: &str| match stack.get(&Address::new(Kind::Alarm, name)) {
        Some(Resource {
            spec: Spec::Alarm(a),
            ..
        }) => Some(a.threshold),
        _ => None,
    };
    grid.text(&format!(
        "# LinkedIn Ads pipeline: {}\nFunctions, collection and optimization. Alerts go to `{}`.",
        env.name(),
        stack.name_of(Kind::Topic, "alerts", stack.target.name("alerts"))
    ));
    let functions: Vec<(&str, &LambdaSpec)> = stack
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Lambda(l) => Some((r.address.name.as_str(), l)),
            _ => None,
        })
        .collect();
    for (address_name, function) in functions {
        let name = &function.name;
        let lambda = |metric: &str| json!(["AWS/Lambda", metric, "FunctionName", name]);
        grid.newline();
        grid.metric(json!({
            "title": format!("{name}: invocations"), "region": region, "view": "timeSeries",
            "stat": "Sum", "period": FIVE_MINUTES, "metrics": [lambda("Invocations")],
        }));
        let mut errors = json!({
            "title": format!("{name}: errors"), "region": region, "view": "timeSeries",
            "stat": "Sum", "period": FIVE_MINUTES, "metrics": [lambda("Errors")],
        });
        if let Some(threshold) = alarm_threshold(&format!("{address_name}-errors")) {
            errors["annotations"] =
                json!({ "horizontal": [{ "label": "alarm", "value": threshold }] });
        }
        grid.metric(errors);
        let mut duration = json!({
            "title": format!("{name}: duration (ms)"), "region": region, "view": "timeSeries",
            "period": FIVE_MINUTES,
            "metrics": [
                ["AWS/Lambda", "Duration", "FunctionName", name, { "stat": "Average" }],
                ["AWS/Lambda", "Duration", "FunctionName", name, { "stat": "Maximum" }],
            ],
        });
        if let Some(threshold) = alarm_threshold(&format!("{address_name}-duration")) {
            duration["annotations"] =
                json!({ "horizontal": [{ "label": "alarm", "value": threshold }] });
        }
        grid.metric(duration);
    }

    grid.text("## Collection");
    let custom = |metric: &str, extra: Value| {
        let mut row = json!([
            METRICS_NAMESPACE,
            metric,
            ENVIRONMENT_DIMENSION,
            environment
        ]);
        if !extra.is_null()
            && let Some(items) = row.as_array_mut()
        {
            items.push(extra);
        }
        row
    };
    let mut spend = json!({
        "title": "Daily spend (USD)", "region": region, "view": "timeSeries",
        "stat": "Maximum", "period": COLLECTION_PERIOD, "metrics": [custom("DailySpend", Value::Null)],
    });
    if let Some(threshold) = alarm_threshold("collector-high-spend") {
        spend["annotations"] = json!({ "horizontal": [{ "label": "alarm", "value": threshold }] });
    }
    grid.metric(spend);
    grid.metric(json!({
        "title": "Impressions and clicks", "region": region, "view": "timeSeries",
        "stat": "Sum", "period": COLLECTION_PERIOD,
        "metrics": [custom("Impressions", Value::Null), custom("Clicks", json!({ "yAxis": "right" }))],
    }));
    let mut ctr = json!({
        "title": "Click-through rate", "region": region, "view": "timeSeries",
        "stat": "Sum", "period": COLLECTION_PERIOD,
        "metrics": [
            [{ "expression": "clicks / impressions", "label": "CTR", "id": "ctr" }],
            custom("Clicks", json!({ "id": "clicks", "visible": false })),
            custom("Impressions", json!({ "id": "impressions", "visible": false })),
        ],
    });
    if let Some(threshold) = alarm_threshold("collector-low-ctr") {
        ctr["annotations"] = json!({ "horizontal": [{ "label": "alarm", "value": threshold }] });
    }
    grid.metric(ctr);

    grid.text("## Optimization");
    let rows = |metrics: &[&str]| {
        metrics
            .iter()
            .map(|m| custom(m, Value::Null))
            .collect::<Vec<_>>()
    };
    let sent: Vec<&str> = OPTIMIZER_METRICS
        .iter()
        .copied()
        .filter(|m| ![DRY_RUN_ACTIONS, PREDICTION_ACCURACY].contains(m))
        .collect();
    grid.metric(json!({
        "title": "Optimizer actions (sent to LinkedIn)", "region": region, "view": "timeSeries",
        "stat": "Sum", "period": 86_400, "metrics": rows(&sent),
    }));
    grid.metric(json!({
        "title": "Dry-run actions (decided, not sent)", "region": region, "view": "timeSeries",
        "stat": "Sum", "period": 86_400, "metrics": rows(&[DRY_RUN_ACTIONS]),
    }));
    grid.metric(json!({
        "title": "Prediction accuracy", "region": region, "view": "timeSeries",
        "stat": "Average", "period": 86_400, "metrics": rows(&[PREDICTION_ACCURACY]),
        "yAxis": { "left": { "min": 0, "max": 1 } },
    }));

    DashboardSpec {
        name: stack.target.name("pipeline"),
        body: json!({ "widgets": grid.widgets }),
    }
}
