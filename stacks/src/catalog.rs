//! The data catalog of the stack: the Glue database, the tables over the bucket's datasets
//! (`datasets`: the collector's NDJSON and the processor's Parquet; partition projection on
//! `dt`, so new days need no registration) and the Athena views
//! from `assets/athena/views/*.sql`, each checked (syntax, tables read, output columns) before
//! any AWS call.

use std::collections::BTreeSet;

use infra_core::model::{
    BucketSpec, CrawlerSpec, GlueDatabaseSpec, GlueTableSpec, NamedQuery, PolicyDocument, Ref,
    RoleSpec, Stack, Statement, TableColumn, WorkgroupSpec,
};

use datasets::{DAILY_AGGREGATES, Dataset, Format, RAW_ANALYTICS, RAW_CREATIVES, WEEKLY_SUMMARIES};

use crate::env::Env;

/// Tables the crawler creates carry this prefix, so that it can never overwrite the tables
/// the engine manages (`raw_analytics`, `raw_creatives`, the views).
pub const CRAWLED_TABLE_PREFIX: &str = "crawled_";

/// The datasets the crawler watches: the collector's raw NDJSON.
pub const CRAWLED: [Dataset; 2] = [RAW_ANALYTICS, RAW_CREATIVES];

/// The log group every Glue crawler of the account and region writes to (one stream per
/// crawler), created by Glue on the first crawl.
pub const CRAWLER_LOG_GROUP: &str = "/aws-glue/crawlers";
use infra_core::sql::{self, SqlError, SqlFile};

/// Raw rows start being collected on this day; projection covers it through today.
const PROJECTION_START: &str = "2024-01-01";

/// Metrics of a window: the totals and the ratios derived from them.
const WINDOW: &[(&str, &str)] = &[
    ("impressions", "bigint"),
    ("clicks", "bigint"),
    ("spend_usd", "double"),
    ("conversions", "bigint"),
    ("ctr", "double"),
    ("cpc_usd", "double"),
    ("cpm_usd", "double"),
    ("conversion_rate", "double"),
];

/// The declared output columns of each view; the SQL must produce exactly these.
fn view_columns(view: &str) -> Option<Vec<TableColumn>> {
    let c = |(n, t): &(&str, &str)| TableColumn::new(n, t);
    match view {
        "creative_performance" => {
            let mut columns: Vec<TableColumn> = [
                ("creative_id", "string"),
                ("campaign_id", "string"),
                ("account_id", "string"),
                ("status", "string"),
                ("headline", "string"),
                ("description", "string"),
                ("call_to_action", "string"),
                ("landing_page", "string"),
                ("image_url", "string"),
            ]
            .iter()
            .map(c)
            .collect();
            for suffix in ["", "_7d", "_30d"] {
                columns.extend(
                    WINDOW
                        .iter()
                        .map(|(n, t)| TableColumn::new(&format!("{n}{suffix}"), t)),
                );
            }
            Some(columns)
        }
        "daily_summary" => {
            let mut columns: Vec<TableColumn> = [("date", "string"), ("campaign_id", "string")]
                .iter()
                .map(c)
                .collect();
            columns.extend(WINDOW.iter().map(c));
            columns.push(TableColumn::new("active_creatives", "bigint"));
            Some(columns)
        }
        _ => None,
    }
}

/// The catalog database's name: `<project>_<env>` (Athena wants lowercase and `_`).
pub fn database_name(stack: &Stack) -> String {
    format!("{}_{}", stack.target.project, stack.target.env).replace('-', "_")
}

/// Adds the database, the dataset tables, the views, the crawler and the Athena workgroup;
/// returns the crawler, whose failures the monitoring watches.
pub fn add(
    stack: &mut Stack,
    env: &Env,
    data: &Ref<BucketSpec>,
    crawler_role: &Ref<RoleSpec>,
    views: &[SqlFile],
    queries: &[SqlFile],
) -> Result<Ref<CrawlerSpec>, Vec<SqlError>> {
    let database = stack.add(
        "catalog",
        GlueDatabaseSpec {
            name: database_name(stack),
            description: format!("LinkedIn Ads data of {}", stack.target.env),
            tags: Default::default(),
        },
    );
    let columns = |dataset: &Dataset| {
        dataset
            .columns
            .iter()
            .map(|(n, t)| TableColumn::new(n, t))
            .collect::<Vec<_>>()
    };
    let mut tables = Vec::new();
    for dataset in [
        RAW_ANALYTICS,
        RAW_CREATIVES,
        DAILY_AGGREGATES,
        WEEKLY_SUMMARIES,
    ] {
        let location = format!("s3://{}/{}/", data.name, dataset.prefix);
        let (keys, template) = if dataset.daily_partitions {
            (
                vec![TableColumn::new("dt", "string")],
                Some(format!("{location}dt=${{dt}}/")),
            )
        } else {
            (Vec::new(), None)
        };
        let constructor = match dataset.format {
            Format::JsonLines => GlueTableSpec::json_lines,
            Format::Parquet => GlueTableSpec::parquet,
        };
        let mut spec = constructor(
            &database,
            dataset.table,
            dataset.description,
            columns(&dataset),
            keys,
            location,
        );
        if let Some(template) = template {
            spec = spec.project_dates("dt", PROJECTION_START, template);
        }
        tables.push(stack.add(dataset.table, spec.depends_on(&data.address)));
    }
    // The crawler watches the raw prefixes for schema changes it only logs, and keeps its
    // tables apart from the engine's by their prefix.
    let mut crawler = CrawlerSpec::new_folders_only(
        stack.target.name("raw"),
        crawler_role,
        &database,
        CRAWLED
            .iter()
            .map(|d| format!("s3://{}/{}/", data.name, d.prefix))
            .collect(),
        CRAWLED_TABLE_PREFIX,
    );
    crawler.description = "Schema discovery over the raw LinkedIn data (logs changes only)".into();
    crawler.schedule = Some(env.schedules.crawler.get_ref().clone());
    let crawler = stack.add("raw", crawler);
    let mut workgroup = WorkgroupSpec {
        name: stack.target.name("analytics"),
        description: "LinkedIn Ads analytics queries".into(),
        output_location: format!("s3://{}/athena-results/", data.name),
        result_encryption: "SSE_S3".into(),
        enforce_configuration: true,
        bytes_scanned_cutoff: Some(*env.thresholds.athena_bytes_scanned_cutoff.get_ref()),
        publish_metrics: true,
        named_queries: Default::default(),
        tags: Default::default(),
        references: [data.address.clone()].into(),
    };
    let known: BTreeSet<String> = [
        RAW_ANALYTICS,
        RAW_CREATIVES,
        DAILY_AGGREGATES,
        WEEKLY_SUMMARIES,
    ]
    .map(|d| d.table.to_string())
    .into();
    let mut problems = Vec::new();
    for view in views {
        match view_table(&database, view, &known) {
            Ok(spec) => {
                let spec = tables.iter().fold(spec, |s, t| s.depends_on(&t.address));
                stack.add(&view.name, spec);
            }
            Err(e) => problems.push(e),
        }
    }
    // Named queries may read the dataset tables and the views.
    let mut readable = known.clone();
    readable.extend(views.iter().map(|v| v.name.clone()));
    let database_name = database.name.clone();
    for query in queries {
        let query = with_thresholds(query, env);
        match sql::check(&query, &readable) {
            Ok(_) => {
                let description = query
                    .text
                    .lines()
                    .take_while(|l| l.trim_start().starts_with("--"))
                    .map(|l| l.trim_start().trim_start_matches("--").trim())
                    .collect::<Vec<_>>()
                    .join(" ");
                workgroup.named_queries.insert(
                    query.name.clone(),
                    NamedQuery {
                        database: database_name.clone(),
                        description: description.chars().take(1024).collect(),
                        sql: query.query(),
                        id: None,
                    },
                );
            }
            Err(e) => problems.push(e),
        }
    }
    stack.add("analytics", workgroup);
    if problems.is_empty() {
        Ok(crawler)
    } else {
        Err(problems)
    }
}

/// The crawler's role: what a Glue crawler needs and no more (instead of the AWS-managed
/// `AWSGlueServiceRole`, which grants `glue:*` on `*`: the crawler could rewrite or delete the
/// engine's own tables). It reads the database and creates and updates only its own
/// `crawled_` tables and their partitions (its schema change policy logs, so nothing is
/// deleted); it lists and reads only the raw prefixes it crawls; it writes to the crawlers'
/// log group; and, with a customer managed key on the bucket, decrypts through S3.
/// A Glue call on a table is checked against the catalog, the database and the table ARNs,
/// so each statement names the three; `GetTables` returns only the tables granted.
pub fn crawler_role(stack: &Stack, data: &Ref<BucketSpec>, data_key: Option<&str>) -> RoleSpec {
    let t = &stack.target;
    let glue = |resource: &str| format!("arn:aws:glue:{}:{}:{resource}", t.region, t.account_id);
    let database = database_name(stack);
    let catalog = glue("catalog");
    let database_arn = glue(&format!("database/{database}"));
    let tables = glue(&format!("table/{database}/{CRAWLED_TABLE_PREFIX}*"));
    let logs = format!(
        "arn:aws:logs:{}:{}:log-group:{CRAWLER_LOG_GROUP}",
        t.region, t.account_id
    );
    let mut read = Statement::allow(["s3:GetObject"]).sid("ReadCrawledData");
    for dataset in CRAWLED {
        read = read.on_ref(data, &format!("/{}/*", dataset.prefix));
    }
    let listed: Vec<String> = CRAWLED
        .iter()
        .flat_map(|d| [d.prefix.to_string(), format!("{}/*", d.prefix)])
        .collect();
    let mut statements = vec![
        Statement::allow(["glue:GetDatabase"])
            .sid("ReadDatabase")
            .on(catalog.clone())
            .on(database_arn.clone()),
        Statement::allow([
            "glue:GetTable",
            "glue:GetTables",
            "glue:CreateTable",
            "glue:UpdateTable",
            "glue:GetPartition",
            "glue:GetPartitions",
            "glue:BatchGetPartition",
            "glue:CreatePartition",
            "glue:BatchCreatePartition",
            "glue:UpdatePartition",
            "glue:BatchUpdatePartition",
        ])
        .sid("WriteCrawledTables")
        .on(catalog)
        .on(database_arn)
        .on(tables),
        read,
        Statement::allow(["s3:ListBucket"])
            .sid("ListCrawledData")
            .on_ref(data, "")
            .condition("StringLike", "s3:prefix", listed),
        // What the AWS-managed policy grants a crawler on every bucket, here on this one.
        Statement::allow(["s3:GetBucketLocation", "s3:GetBucketAcl"])
            .sid("LocateBucket")
            .on_ref(data, ""),
        Statement::allow([
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ])
        .sid("WriteCrawlerLogs")
        .on(logs.clone())
        .on(format!("{logs}:*")),
    ];
    if let Some(key) = data_key {
        statements.push(crate::linkedin_ads::data_key_statement(stack, key, false));
    }
    RoleSpec::for_service(
        t.name("glue-crawler"),
        "glue.amazonaws.com",
        "Glue crawler over the raw LinkedIn data",
    )
    .inline("crawl-raw", PolicyDocument::new(statements))
}

/// Fills `{{min_ctr}}` and `{{min_impressions}}` from the env's alarm thresholds, so a
/// query and the alarm it explains use the same numbers.
fn with_thresholds(query: &SqlFile, env: &Env) -> SqlFile {
    let text = query
        .text
        .replace("{{min_ctr}}", &env.thresholds.min_ctr.get_ref().to_string())
        .replace(
            "{{min_impressions}}",
            &env.thresholds.min_impressions_for_ctr.get_ref().to_string(),
        );
    SqlFile {
        text,
        ..query.clone()
    }
}

fn view_table(
    database: &Ref<GlueDatabaseSpec>,
    view: &SqlFile,
    known: &BTreeSet<String>,
) -> Result<GlueTableSpec, SqlError> {
    sql::check(view, known)?;
    let declared = view_columns(&view.name).ok_or_else(|| SqlError {
        path: view.path.clone(),
        line: None,
        message: format!(
            "no columns are declared for view `{}` (stacks/src/catalog.rs)",
            view.name
        ),
    })?;
    let produced = sql::output_columns(view)?;
    let names: Vec<String> = declared.iter().map(|c| c.name.clone()).collect();
    if produced != names {
        return Err(SqlError {
            path: view.path.clone(),
            line: None,
            message: format!(
                "the query outputs columns ({}) other than those declared for the view ({})",
                produced.join(", "),
                names.join(", ")
            ),
        });
    }
    Ok(GlueTableSpec::view(
        database,
        &view.name,
        &format!(
            "Athena view from {}",
            view.path
                .file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default()
        ),
        view.query(),
        view.path.clone(),
        declared,
    ))
}
