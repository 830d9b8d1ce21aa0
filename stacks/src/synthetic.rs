//! A synthetic stack of any size, for benchmarks and scale tests: `units` copies of one
//! scheduled Lambda job laid out like the LinkedIn Ads pipeline's (role, log group, function,
//! schedule rule, invoke permission, three alarms, two Glue tables), with one Glue database
//! per ten jobs. Every kind it uses is a real kind with its real reads and writes; only the
//! proportions are chosen (alarms 30%, roles, functions, log groups, rules and permissions
//! 10% each, tables about 20%, close to the LinkedIn Ads stack's own mix).
//! [`scheduled_functions`] keeps only the first five of a job's kinds: the CloudFormation
//! engine's test stack, of types moto's CloudFormation creates.

use infra_core::kinds::alarm::{AlarmMetric, AlarmSpec, MetricStat};
use infra_core::kinds::glue_database::GlueDatabaseSpec;
use infra_core::kinds::glue_table::{GlueTableSpec, TableColumn};
use infra_core::kinds::lambda::LambdaSpec;
use infra_core::kinds::log_group::LogGroupSpec;
use infra_core::kinds::permission::PermissionSpec;
use infra_core::kinds::role::RoleSpec;
use infra_core::kinds::rule::RuleSpec;
use infra_core::model::{PolicyDocument, Ref, Stack, Statement, Target};
use infra_core::package::Artifact;

/// Jobs sharing one Glue database.
const JOBS_PER_DATABASE: usize = 10;

/// A stack of exactly `n` resources; the last job is cut short where `n` ends (resources are
/// added before anything that refers to them, so no reference is left dangling).
/// `artifact` is the code every function runs.
pub fn synthetic(target: Target, n: usize, artifact: &Artifact) -> Stack {
    let mut stack = Stack::new(target);
    let mut job = 0;
    while stack.resources.len() < n {
        let database = stack.add(
            &format!("db{:03}", job / JOBS_PER_DATABASE),
            GlueDatabaseSpec {
                name: format!(
                    "{}_db{:03}",
                    stack.target.name("bench").replace('-', "_"),
                    job / JOBS_PER_DATABASE
                ),
                description: "Synthetic benchmark tables".into(),
                tags: Default::default(),
            },
        );
        for _ in 0..JOBS_PER_DATABASE {
            add_job(&mut stack, job, &database, artifact);
            job += 1;
        }
    }
    stack.resources.truncate(n);
    stack
}

/// `jobs` scheduled functions and nothing else (log group, role, function, schedule rule and
/// invoke permission each): the kinds every CloudFormation implementation has, moto's
/// included, for testing the CloudFormation engine end to end.
pub fn scheduled_functions(target: Target, jobs: usize, artifact: &Artifact) -> Stack {
    let mut stack = Stack::new(target);
    for job in 0..jobs {
        add_scheduled_function(&mut stack, job, artifact);
    }
    stack
}

/// One job's ten resources.
fn add_job(stack: &mut Stack, job: usize, database: &Ref<GlueDatabaseSpec>, artifact: &Artifact) {
    let name = format!("job{job:04}");
    let t = stack.target.clone();
    let lambda = add_scheduled_function(stack, job, artifact);
    for (alarm, metric, statistic, threshold) in [
        ("errors", "Errors", "Sum", 0.0),
        ("throttles", "Throttles", "Sum", 0.0),
        ("duration", "Duration", "Maximum", 50_000.0),
    ] {
        let alarm_name = format!("{name}-{alarm}");
        stack.add(
            &alarm_name,
            AlarmSpec::new(
                t.name(&alarm_name),
                AlarmMetric::Single(
                    MetricStat::new("AWS/Lambda", metric, statistic, 300)
                        .dimension("FunctionName", &lambda.name),
                ),
                "GreaterThanThreshold",
                threshold,
            )
            .description(format!("{name}: {metric} {statistic} above {threshold}"))
            .watches(&lambda),
        );
    }
    for table in ["events", "daily"] {
        let table_name = format!("{name}_{table}");
        stack.add(
            &table_name,
            GlueTableSpec::json_lines(
                database,
                &table_name,
                "Synthetic benchmark table",
                vec![
                    TableColumn::new("id", "string"),
                    TableColumn::new("value", "double"),
                ],
                vec![TableColumn::new("dt", "string")],
                format!("s3://{}-data/{name}/{table}/", t.name("bench")),
            ),
        );
    }
}

/// A job's log group, role, function, schedule rule and invoke permission; returns the function.
fn add_scheduled_function(stack: &mut Stack, job: usize, artifact: &Artifact) -> Ref<LambdaSpec> {
    let name = format!("job{job:04}");
    let t = stack.target.clone();
    let log_group = stack.add(
        &name,
        LogGroupSpec {
            name: format!("/aws/lambda/{}", t.name(&name)),
            retention_days: Some(30),
            tags: Default::default(),
        },
    );
    let role = stack.add(
        &name,
        RoleSpec::for_service(
            t.name(&name),
            "lambda.amazonaws.com",
            &format!("Execution role of {name}"),
        )
        .inline(
            "logs",
            PolicyDocument::new(vec![
                Statement::allow(["logs:CreateLogStream", "logs:PutLogEvents"])
                    .sid("WriteOwnLogs")
                    .on_ref(&log_group, ":*"),
            ]),
        ),
    );
    let mut spec = LambdaSpec::rust(t.name(&name), &role, artifact);
    spec.description = format!("Synthetic job {job}");
    spec.environment.insert("JOB".into(), name.clone());
    let lambda = stack.add(&name, spec);
    stack.depend(&lambda, &log_group);
    let rule = stack.add(
        &name,
        RuleSpec::schedule(
            t.name(&name),
            &format!("cron({} {} * * ? *)", job % 60, job / 60 % 24),
            false,
            &format!("Runs {name}"),
        )
        .target(&name, &lambda, None),
    );
    stack.add(
        &name,
        PermissionSpec::invoke_from(&lambda, "schedule", "events.amazonaws.com", &rule),
    );
    lambda
}
