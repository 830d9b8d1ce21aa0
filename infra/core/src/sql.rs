//! SQL files for Athena views and named queries (`assets/athena/{views,queries}/*.sql`):
//! parsed before any AWS call, the tables they read checked against the stack, and views
//! encoded the way Athena stores them in the Glue catalog. Errors name the file and line.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Value, json};
use sqlparser::ast::{Expr, Query, SelectItem, SetExpr, Statement, visit_relations};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

/// One `.sql` file: its name (the file stem) and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlFile {
    pub path: PathBuf,
    pub name: String,
    pub text: String,
}

impl SqlFile {
    /// The query without the leading comment lines that describe it: what Athena stores.
    pub fn query(&self) -> String {
        let lines: Vec<&str> = self
            .text
            .lines()
            .skip_while(|l| l.trim_start().starts_with("--") || l.trim().is_empty())
            .collect();
        lines
            .join("\n")
            .trim()
            .trim_end_matches(';')
            .trim_end()
            .to_string()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct SqlError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

/// Every `*.sql` file of `dir`, by name.
pub fn load_dir(dir: &Path) -> Result<Vec<SqlFile>, SqlError> {
    let error = |message: String| SqlError {
        path: dir.to_path_buf(),
        line: None,
        message,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| error(format!("cannot read: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| error(e.to_string()))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| SqlError {
            path: path.clone(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push(SqlFile { path, name, text });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Parses `file` as one SELECT and returns the tables it reads (CTE names excluded). Fails,
/// naming file and line, on a syntax error, on anything but a single query, and on a table
/// not in `known`.
pub fn check(file: &SqlFile, known: &BTreeSet<String>) -> Result<BTreeSet<String>, SqlError> {
    let error = |line: Option<usize>, message: String| SqlError {
        path: file.path.clone(),
        line,
        message,
    };
    let statements = Parser::parse_sql(&GenericDialect {}, &file.text).map_err(|e| {
        let message = e.to_string();
        // An error at the end of the text has no position: it is on the last line.
        let last_line = file.text.trim_end().lines().count();
        let line = line_of(&message).or_else(|| message.contains("EOF").then_some(last_line));
        error(line, message)
    })?;
    let [Statement::Query(query)] = statements.as_slice() else {
        return Err(error(
            None,
            format!(
                "expected exactly one SELECT query, found {} statements",
                statements.len()
            ),
        ));
    };
    let mut ctes = BTreeSet::new();
    cte_names(query, &mut ctes);
    let mut tables = BTreeSet::new();
    let _ = visit_relations(&statements, |name| {
        if let Some(last) = name.0.last() {
            let table = last
                .to_string()
                .trim_matches('"')
                .trim_matches('`')
                .to_lowercase();
            if !ctes.contains(&table) {
                tables.insert(table);
            }
        }
        ControlFlow::<()>::Continue(())
    });
    for table in &tables {
        if !known.contains(table) {
            let line = file
                .text
                .lines()
                .position(|l| l.to_lowercase().contains(table.as_str()))
                .map(|i| i + 1);
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            return Err(error(
                line,
                format!(
                    "reads `{table}`, which the stack does not declare (declared: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(tables)
}

/// The names of the columns the file's query outputs (aliases, or the column a bare
/// reference names), in order.
pub fn output_columns(file: &SqlFile) -> Result<Vec<String>, SqlError> {
    let error = |message: String| SqlError {
        path: file.path.clone(),
        line: None,
        message,
    };
    let statements =
        Parser::parse_sql(&GenericDialect {}, &file.text).map_err(|e| error(e.to_string()))?;
    let Some(Statement::Query(query)) = statements.first() else {
        return Err(error("expected a SELECT query".into()));
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return Err(error("expected a plain SELECT at the top level".into()));
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Ok(alias.value.to_lowercase()),
            SelectItem::UnnamedExpr(Expr::Identifier(ident)) => Ok(ident.value.to_lowercase()),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => Ok(parts
                .last()
                .map(|p| p.value.to_lowercase())
                .unwrap_or_default()),
            other => Err(error(format!(
                "name the output column `{other}` with AS, so its name is declared"
            ))),
        })
        .collect()
}

fn cte_names(query: &Query, out: &mut BTreeSet<String>) {
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            out.insert(cte.alias.name.value.to_lowercase());
            cte_names(&cte.query, out);
        }
    }
    if let SetExpr::Query(inner) = query.body.as_ref() {
        cte_names(inner, out);
    }
}

/// `... at Line: 12, Column: 5` -> 12.
fn line_of(message: &str) -> Option<usize> {
    let rest = &message[message.find("Line: ")? + "Line: ".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A view column: name, Hive type (Glue), Presto type (the view definition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewColumn {
    pub name: String,
    pub hive_type: String,
    pub presto_type: String,
}

/// `ViewOriginalText` of an Athena view: `/* Presto View: <base64 JSON> */`.
pub fn presto_view_text(query: &str, database: &str, columns: &[ViewColumn]) -> String {
    let definition = json!({
        "originalSql": query,
        "catalog": "awsdatacatalog",
        "schema": database,
        "columns": columns.iter().map(|c| json!({ "name": c.name, "type": c.presto_type })).collect::<Vec<_>>(),
        "owner": "infra",
        "runAsInvoker": false,
    });
    format!(
        "/* Presto View: {} */",
        base64::engine::general_purpose::STANDARD.encode(definition.to_string())
    )
}

/// The JSON inside a `/* Presto View: ... */` text; `None` for anything else.
pub fn decode_presto_view(text: &str) -> Option<Value> {
    let encoded = text
        .trim()
        .strip_prefix("/* Presto View: ")?
        .strip_suffix(" */")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SqlFile {
        SqlFile {
            path: "views/v.sql".into(),
            name: "v".into(),
            text: text.into(),
        }
    }

    fn known() -> BTreeSet<String> {
        ["raw_analytics", "raw_creatives"].map(String::from).into()
    }

    #[test]
    fn tables_are_found_and_ctes_are_not_tables() {
        let sql = "-- doc\nWITH latest AS (SELECT * FROM raw_analytics)\nSELECT l.x, c.y FROM latest l JOIN raw_creatives c ON c.id = l.id";
        let tables = check(&file(sql), &known()).unwrap();
        assert_eq!(
            tables,
            BTreeSet::from(["raw_analytics".to_string(), "raw_creatives".to_string()])
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = check(
            &file("-- doc\nSELECT a,\nFROM raw_analytics WHERE"),
            &known(),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.to_string().starts_with("views/v.sql:3: "), "{err}");
    }

    #[test]
    fn an_unknown_table_names_its_line() {
        let err = check(
            &file("SELECT *\nFROM raw_analytics a\nJOIN raw_clicks c ON a.id = c.id"),
            &known(),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.message.contains("raw_clicks"), "{err}");
    }

    #[test]
    fn only_a_single_select_is_accepted() {
        assert!(check(&file("DROP TABLE raw_analytics"), &known()).is_err());
        assert!(check(&file("SELECT 1; SELECT 2"), &known()).is_err());
    }

    #[test]
    fn the_query_drops_leading_comments_and_the_final_semicolon() {
        assert_eq!(
            file("-- a view\n-- more\n\nSELECT 1\nFROM t;\n").query(),
            "SELECT 1\nFROM t"
        );
    }

    #[test]
    fn presto_view_text_round_trips() {
        let columns = [ViewColumn {
            name: "ctr".into(),
            hive_type: "double".into(),
            presto_type: "double".into(),
        }];
        let text = presto_view_text("SELECT 1 AS ctr", "db", &columns);
        let decoded = decode_presto_view(&text).unwrap();
        assert_eq!(decoded["originalSql"], "SELECT 1 AS ctr");
        assert_eq!(decoded["columns"][0]["type"], "double");
    }

    #[test]
    fn the_committed_views_and_queries_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/athena");
        let mut with_views = known();
        for view in load_dir(&root.join("views")).unwrap() {
            let tables = check(&view, &known()).unwrap_or_else(|e| panic!("{e}"));
            assert!(tables.contains("raw_analytics"), "{}", view.name);
            with_views.insert(view.name.clone());
        }
        for mut query in load_dir(&root.join("queries")).unwrap() {
            // Threshold placeholders are filled by the stack from the env file.
            query.text = query
                .text
                .replace("{{min_ctr}}", "0.004")
                .replace("{{min_impressions}}", "1000");
            check(&query, &with_views).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
