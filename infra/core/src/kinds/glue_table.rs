//! Glue Data Catalog tables: external tables over S3 (columns, partition keys, SerDe,
//! location, parameters such as partition projection) and Athena views, stored as Athena
//! stores them (`VIRTUAL_VIEW`, `/* Presto View: <base64 JSON> */`, see [`crate::sql`]).
//!
//! Read: GetTables once per database (paged) answers every table in it. Everything updates in
//! place (UpdateTable). The physical id is `<database>.<table>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use aws_sdk_glue::types::{Column, SerDeInfo, StorageDescriptor, TableInput};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Fields, Invalid, LiveMap, OpError, ReadTarget};
use crate::aws::{Aws, AwsError, OrMissing, failed};
use crate::cloudformation::{CfnResource, Context, non_empty};
use crate::model::{Address, GlueDatabaseSpec, Kind, KindSpec, Ref, Spec, Target};
use crate::sql::{ViewColumn, decode_presto_view, presto_view_text};

pub const REPLACE_FIELDS: &[&str] = &["table_type"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlueTableSpec {
    pub database: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub columns: Vec<TableColumn>,
    #[serde(default)]
    pub partition_keys: Vec<TableColumn>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// External tables: where and how the data is stored.
    pub storage: Option<Storage>,
    /// Views: the query, from its SQL file.
    pub view: Option<View>,
    #[serde(default)]
    pub references: BTreeSet<Address>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableColumn {
    pub name: String,
    /// Hive type, e.g. `bigint`, `string`, `double`.
    pub hive_type: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    pub location: String,
    pub input_format: String,
    pub output_format: String,
    pub serde_library: String,
    #[serde(default)]
    pub serde_parameters: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The query Athena runs (the SQL file without its leading comments).
    pub sql: String,
    /// The SQL file it came from, for messages.
    #[serde(default)]
    pub source: PathBuf,
    /// The rest of the Presto view definition (catalog, schema, columns, owner).
    pub definition: Value,
}

impl TableColumn {
    pub fn new(name: &str, hive_type: &str) -> TableColumn {
        TableColumn {
            name: name.into(),
            hive_type: hive_type.into(),
        }
    }
}

/// The Presto type of a Hive type, for view definitions.
fn presto_type(hive: &str) -> String {
    match hive {
        "string" => "varchar".into(),
        "int" => "integer".into(),
        "float" => "real".into(),
        other => other.into(),
    }
}

impl GlueTableSpec {
    /// An external table of NDJSON objects under `location`, partitioned by `partition_keys`.
    pub fn json_lines(
        database: &Ref<GlueDatabaseSpec>,
        name: &str,
        description: &str,
        columns: Vec<TableColumn>,
        partition_keys: Vec<TableColumn>,
        location: String,
    ) -> GlueTableSpec {
        let storage = Storage {
            location,
            input_format: "org.apache.hadoop.mapred.TextInputFormat".into(),
            output_format: "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat".into(),
            serde_library: "org.apache.hive.hcatalog.data.JsonSerDe".into(),
            serde_parameters: BTreeMap::from([("ignore.malformed.json".into(), "true".into())]),
        };
        Self::external(
            database,
            name,
            description,
            columns,
            partition_keys,
            "json",
            storage,
        )
    }

    /// An external table of Parquet objects under `location`, partitioned by `partition_keys`.
    pub fn parquet(
        database: &Ref<GlueDatabaseSpec>,
        name: &str,
        description: &str,
        columns: Vec<TableColumn>,
        partition_keys: Vec<TableColumn>,
        location: String,
    ) -> GlueTableSpec {
        let storage = Storage {
            location,
            input_format: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat".into(),
            output_format: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat".into(),
            serde_library: "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe".into(),
            serde_parameters: BTreeMap::new(),
        };
        Self::external(
            database,
            name,
            description,
            columns,
            partition_keys,
            "parquet",
            storage,
        )
    }

    /// An external table in `database` stored as `storage`, of Glue `classification`.
    fn external(
        database: &Ref<GlueDatabaseSpec>,
        name: &str,
        description: &str,
        columns: Vec<TableColumn>,
        partition_keys: Vec<TableColumn>,
        classification: &str,
        storage: Storage,
    ) -> GlueTableSpec {
        GlueTableSpec {
            database: database.name.clone(),
            name: name.into(),
            description: description.into(),
            columns,
            partition_keys,
            parameters: BTreeMap::from([
                ("EXTERNAL".into(), "TRUE".into()),
                ("classification".into(), classification.into()),
            ]),
            storage: Some(storage),
            view: None,
            references: BTreeSet::from([database.address.clone()]),
        }
    }

    /// An Athena view running `sql` (from `source`) with the declared output `columns`.
    pub fn view(
        database: &Ref<GlueDatabaseSpec>,
        name: &str,
        description: &str,
        sql: String,
        source: PathBuf,
        columns: Vec<TableColumn>,
    ) -> GlueTableSpec {
        let definition = view_definition(&database.name, &columns);
        GlueTableSpec {
            database: database.name.clone(),
            name: name.into(),
            description: description.into(),
            columns,
            partition_keys: Vec::new(),
            parameters: BTreeMap::from([
                ("presto_view".into(), "true".into()),
                ("comment".into(), "Presto View".into()),
            ]),
            storage: None,
            view: Some(View {
                sql,
                source,
                definition,
            }),
            references: BTreeSet::from([database.address.clone()]),
        }
    }

    /// Partition projection on a date partition `key` (`yyyy-MM-dd`, from `start` to now),
    /// with data under `template`: new days need no partition registration.
    pub fn project_dates(mut self, key: &str, start: &str, template: String) -> GlueTableSpec {
        for (k, v) in [
            ("projection.enabled".to_string(), "true".to_string()),
            (format!("projection.{key}.type"), "date".into()),
            (format!("projection.{key}.format"), "yyyy-MM-dd".into()),
            (format!("projection.{key}.range"), format!("{start},NOW")),
            (format!("projection.{key}.interval"), "1".into()),
            (format!("projection.{key}.interval.unit"), "DAYS".into()),
            ("storage.location.template".to_string(), template),
        ] {
            self.parameters.insert(k, v);
        }
        self
    }

    pub fn depends_on(mut self, address: &Address) -> GlueTableSpec {
        self.references.insert(address.clone());
        self
    }

    fn table_type(&self) -> &'static str {
        if self.view.is_some() {
            "VIRTUAL_VIEW"
        } else {
            "EXTERNAL_TABLE"
        }
    }
}

/// The Presto view definition without its SQL: compared as a field of its own.
fn view_definition(database: &str, columns: &[TableColumn]) -> Value {
    json!({
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": columns.iter().map(|c| json!({ "name": c.name, "type": presto_type(&c.hive_type) })).collect::<Vec<_>>(),
        "owner": "infra",
        "runAsInvoker": false,
    })
}

impl KindSpec for GlueTableSpec {
    const KIND: Kind = Kind::GlueTable;
    fn physical_name(&self) -> &str {
        &self.name
    }
    fn physical_id(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }
    fn arn(&self, target: &Target) -> String {
        format!(
            "arn:aws:glue:{}:{}:table/{}/{}",
            target.region, target.account_id, self.database, self.name
        )
    }
    fn into_spec(self) -> Spec {
        Spec::GlueTable(self)
    }
}

pub fn validate(spec: &GlueTableSpec) -> Vec<Invalid> {
    let mut problems = Vec::new();
    if let Err(message) = super::glue_database::validate_name(&spec.name) {
        problems.push(Invalid::new("name", message));
    }
    if spec.columns.is_empty() {
        problems.push(Invalid::new("columns", "a table has at least one column"));
    }
    let mut names = BTreeSet::new();
    for c in spec.columns.iter().chain(&spec.partition_keys) {
        if super::glue_database::validate_name(&c.name).is_err() {
            problems.push(Invalid::new(
                format!("columns.{}", c.name),
                "column names are lowercase a-z 0-9 _",
            ));
        }
        if !names.insert(&c.name) {
            problems.push(Invalid::new(
                format!("columns.{}", c.name),
                "duplicate column",
            ));
        }
    }
    match (&spec.storage, &spec.view) {
        (Some(storage), None) => {
            if !storage.location.starts_with("s3://") {
                problems.push(Invalid::new("storage.location", "an s3:// location"));
            }
        }
        (None, Some(view)) => {
            if view.sql.trim().is_empty() {
                problems.push(Invalid::new(
                    "view.sql",
                    format!("{} has no query", view.source.display()),
                ));
            }
            if !spec.partition_keys.is_empty() {
                problems.push(Invalid::new(
                    "partition_keys",
                    "views have no partition keys",
                ));
            }
        }
        _ => problems.push(Invalid::new(
            "storage",
            "a table has storage or is a view, not both",
        )),
    }
    problems
}

fn column_lines(columns: &[TableColumn]) -> Value {
    Value::Array(
        columns
            .iter()
            .map(|c| Value::String(format!("{} {}", c.name, c.hive_type)))
            .collect(),
    )
}

/// `AWS::Glue::Table`: an external table, or a view stored as Athena stores views.
pub fn cloudformation(spec: &GlueTableSpec, cx: &Context) -> CfnResource {
    let columns = |cols: &[TableColumn]| -> Vec<Value> {
        cols.iter()
            .map(|c| json!({"Name": c.name, "Type": c.hive_type}))
            .collect()
    };
    let storage = spec.storage.as_ref();
    let view_text = spec
        .view
        .as_ref()
        .map(|view| view_original_text(spec, view));
    CfnResource::main(
        "AWS::Glue::Table",
        json!({
            "CatalogId": cx.target.account_id,
            "DatabaseName": spec.database,
            "TableInput": {
                "Name": spec.name,
                "Description": non_empty(&spec.description),
                "TableType": spec.table_type(),
                "Parameters": (!spec.parameters.is_empty()).then_some(&spec.parameters),
                "PartitionKeys": (!spec.partition_keys.is_empty())
                    .then(|| columns(&spec.partition_keys)),
                "StorageDescriptor": {
                    "Columns": columns(&spec.columns),
                    "Location": storage.map(|s| &s.location),
                    "InputFormat": storage.map(|s| &s.input_format),
                    "OutputFormat": storage.map(|s| &s.output_format),
                    "SerdeInfo": storage.map(|s| json!({
                        "SerializationLibrary": s.serde_library,
                        "Parameters": (!s.serde_parameters.is_empty()).then_some(&s.serde_parameters),
                    })),
                },
                "ViewOriginalText": view_text,
                "ViewExpandedText": spec.view.as_ref().map(|_| "/* Presto View */"),
            },
        }),
    )
}

pub fn fields(spec: &GlueTableSpec) -> Fields {
    let mut fields = Fields::new();
    fields.insert("table_type".into(), Value::String(spec.table_type().into()));
    fields.insert(
        "description".into(),
        Value::String(spec.description.clone()),
    );
    fields.insert("columns".into(), column_lines(&spec.columns));
    fields.insert("partition_keys".into(), column_lines(&spec.partition_keys));
    for (k, v) in &spec.parameters {
        fields.insert(format!("parameters.{k}"), Value::String(v.clone()));
    }
    if let Some(storage) = &spec.storage {
        fields.insert(
            "storage.location".into(),
            Value::String(storage.location.clone()),
        );
        fields.insert(
            "storage.input_format".into(),
            Value::String(storage.input_format.clone()),
        );
        fields.insert(
            "storage.output_format".into(),
            Value::String(storage.output_format.clone()),
        );
        fields.insert(
            "storage.serde_library".into(),
            Value::String(storage.serde_library.clone()),
        );
        fields.insert(
            "storage.serde_parameters".into(),
            json!(storage.serde_parameters),
        );
    }
    if let Some(view) = &spec.view {
        // The SQL on its own, so that a change shows as a diff of the query.
        fields.insert("view.sql".into(), Value::String(view.sql.clone()));
        fields.insert("view.definition".into(), view.definition.clone());
    }
    fields
}

pub async fn read(aws: &Aws, targets: &[ReadTarget]) -> Result<LiveMap, AwsError> {
    let mut live = LiveMap::new();
    let mut databases: BTreeMap<&str, Vec<&ReadTarget>> = BTreeMap::new();
    for t in targets {
        let database = t
            .physical_id
            .split_once('.')
            .map(|(d, _)| d)
            .unwrap_or_default();
        databases.entry(database).or_default().push(t);
        live.insert(t.address.clone(), None);
    }
    for (database, ts) in databases {
        let tables = list_tables(aws, database).await?;
        for t in ts {
            let name = t
                .physical_id
                .split_once('.')
                .map(|(_, n)| n)
                .unwrap_or_default();
            if let Some(table) = tables.get(name) {
                live.insert(
                    t.address.clone(),
                    Some(Spec::GlueTable(from_aws(database, table))),
                );
            }
        }
    }
    Ok(live)
}

async fn list_tables(
    aws: &Aws,
    database: &str,
) -> Result<BTreeMap<String, aws_sdk_glue::types::Table>, AwsError> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .glue
            .get_tables()
            .database_name(database)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(failed("GetTables"))
            // The database is gone (aws-behaviors.md, aws_glue_catalog_table: Not found).
            .or_missing(super::glue_database::NOT_FOUND)?;
        let Some(page) = page else { return Ok(out) };
        for table in page.table_list() {
            out.insert(table.name().to_string(), table.clone());
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

fn columns_from(columns: &[Column]) -> Vec<TableColumn> {
    columns
        .iter()
        .map(|c| TableColumn::new(c.name(), c.r#type().unwrap_or_default()))
        .collect()
}

fn from_aws(database: &str, table: &aws_sdk_glue::types::Table) -> GlueTableSpec {
    let sd = table.storage_descriptor();
    let is_view = table.table_type() == Some("VIRTUAL_VIEW");
    let view = is_view.then(|| {
        let text = table.view_original_text().unwrap_or_default();
        match decode_presto_view(text) {
            Some(mut definition) => {
                let sql = definition
                    .as_object_mut()
                    .and_then(|o| o.remove("originalSql"))
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                View {
                    sql,
                    source: PathBuf::new(),
                    definition,
                }
            }
            // Not an Athena view of ours: show its text as the SQL so the difference is visible.
            None => View {
                sql: text.to_string(),
                source: PathBuf::new(),
                definition: Value::Null,
            },
        }
    });
    let storage = (!is_view).then(|| Storage {
        location: sd
            .and_then(|s| s.location())
            .unwrap_or_default()
            .to_string(),
        input_format: sd
            .and_then(|s| s.input_format())
            .unwrap_or_default()
            .to_string(),
        output_format: sd
            .and_then(|s| s.output_format())
            .unwrap_or_default()
            .to_string(),
        serde_library: sd
            .and_then(|s| s.serde_info())
            .and_then(|i| i.serialization_library())
            .unwrap_or_default()
            .to_string(),
        serde_parameters: sd
            .and_then(|s| s.serde_info())
            .and_then(|i| i.parameters())
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    });
    GlueTableSpec {
        database: database.to_string(),
        name: table.name().to_string(),
        description: table.description().unwrap_or_default().to_string(),
        columns: sd.map(|s| columns_from(s.columns())).unwrap_or_default(),
        partition_keys: columns_from(table.partition_keys()),
        parameters: table
            .parameters()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        storage,
        view,
        references: BTreeSet::new(),
    }
}

fn glue_columns(columns: &[TableColumn]) -> Result<Vec<Column>, OpError> {
    columns
        .iter()
        .map(|c| {
            Column::builder()
                .name(&c.name)
                .r#type(&c.hive_type)
                .build()
                .map_err(OpError::from)
        })
        .collect()
}

fn table_input(spec: &GlueTableSpec) -> Result<TableInput, OpError> {
    let mut sd = StorageDescriptor::builder().set_columns(Some(glue_columns(&spec.columns)?));
    if let Some(storage) = &spec.storage {
        sd = sd
            .location(&storage.location)
            .input_format(&storage.input_format)
            .output_format(&storage.output_format)
            .serde_info(
                SerDeInfo::builder()
                    .serialization_library(&storage.serde_library)
                    .set_parameters(Some(storage.serde_parameters.clone().into_iter().collect()))
                    .build(),
            );
    }
    let mut input = TableInput::builder()
        .name(&spec.name)
        .description(&spec.description)
        .table_type(spec.table_type())
        .set_parameters(Some(spec.parameters.clone().into_iter().collect()))
        .storage_descriptor(sd.build())
        .set_partition_keys(Some(glue_columns(&spec.partition_keys)?));
    if let Some(view) = &spec.view {
        input = input
            .view_original_text(view_original_text(spec, view))
            .view_expanded_text("/* Presto View */");
    }
    Ok(input.build()?)
}

/// A view's text as Athena stores it (`/* Presto View: <base64 JSON> */`).
fn view_original_text(spec: &GlueTableSpec, view: &View) -> String {
    let columns: Vec<ViewColumn> = spec
        .columns
        .iter()
        .map(|c| ViewColumn {
            name: c.name.clone(),
            hive_type: c.hive_type.clone(),
            presto_type: presto_type(&c.hive_type),
        })
        .collect();
    presto_view_text(&view.sql, &spec.database, &columns)
}

pub async fn create(aws: &Aws, spec: &GlueTableSpec) -> Result<(), OpError> {
    let created = aws
        .glue
        .create_table()
        .database_name(&spec.database)
        .table_input(table_input(spec)?)
        .send()
        .await
        .map_err(failed("CreateTable"));
    match created {
        Ok(_) => Ok(()),
        Err(e) if e.is("AlreadyExistsException") => update(aws, spec).await,
        Err(e) => Err(e.into()),
    }
}

pub async fn update(aws: &Aws, spec: &GlueTableSpec) -> Result<(), OpError> {
    aws.glue
        .update_table()
        .database_name(&spec.database)
        .table_input(table_input(spec)?)
        .send()
        .await
        .map_err(failed("UpdateTable"))?;
    Ok(())
}

pub async fn delete(aws: &Aws, physical_id: &str) -> Result<(), OpError> {
    let Some((database, name)) = physical_id.split_once('.') else {
        return Err(OpError::Refused(format!(
            "`{physical_id}` is not <database>.<table>"
        )));
    };
    aws.glue
        .delete_table()
        .database_name(database)
        .name(name)
        .send()
        .await
        .map_err(failed("DeleteTable"))
        .or_missing(super::glue_database::NOT_FOUND)?;
    Ok(())
}
