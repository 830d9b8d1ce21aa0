//! Writes rows of a Parquet dataset (`datasets::Dataset`) as one Parquet file that Athena
//! reads: the schema comes from the dataset's columns (Athena type to Parquet type), every
//! column is optional (null where a value is unknown), one row group, Snappy compression.
//!
//! A row type says how to read each column ([`Columns::accessor`]); the accessor is looked up
//! once per column, not once per cell, so a million rows cost a million calls per column.

use std::sync::Arc;

use datasets::{Dataset, Format};
use parquet::basic::{Compression, LogicalType, Repetition, Type as Physical};
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

/// One value of a row; `None` is written as null.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    Str(Option<&'a str>),
    Int(Option<i64>),
    Double(Option<f64>),
    Bool(Option<bool>),
}

/// How a row type yields the value of each column of its dataset.
pub trait Columns: Sized {
    /// The reader of `column`, or `None` when the row type has no such column.
    fn accessor(column: &str) -> Option<fn(&Self) -> Cell<'_>>;
}

#[derive(Debug, thiserror::Error)]
pub enum ColumnarError {
    #[error("{table}: not a Parquet dataset")]
    NotParquet { table: &'static str },
    #[error("{table}.{column}: the row type has no value for this column")]
    NoAccessor {
        table: &'static str,
        column: &'static str,
    },
    #[error("{table}.{column}: Athena type `{athena_type}` has no Parquet mapping here")]
    UnsupportedType {
        table: &'static str,
        column: &'static str,
        athena_type: &'static str,
    },
    #[error("{table}.{column}: the row gave a {given} where the column holds {athena_type}")]
    TypeMismatch {
        table: &'static str,
        column: &'static str,
        athena_type: &'static str,
        given: &'static str,
    },
    #[error("{table}: writing Parquet: {source}")]
    Parquet {
        table: &'static str,
        source: parquet::errors::ParquetError,
    },
}

fn physical(athena_type: &str) -> Option<(Physical, Option<LogicalType>)> {
    match athena_type {
        "string" => Some((Physical::BYTE_ARRAY, Some(LogicalType::String))),
        "bigint" => Some((Physical::INT64, None)),
        "double" => Some((Physical::DOUBLE, None)),
        "boolean" => Some((Physical::BOOLEAN, None)),
        _ => None,
    }
}

/// The Parquet schema of `dataset`: its columns in order, all optional.
pub fn schema(dataset: &Dataset) -> Result<Type, ColumnarError> {
    let parquet_error = |source| ColumnarError::Parquet {
        table: dataset.table,
        source,
    };
    let mut fields = Vec::with_capacity(dataset.columns.len());
    for (column, athena_type) in dataset.columns {
        let (physical, logical) = physical(athena_type).ok_or(ColumnarError::UnsupportedType {
            table: dataset.table,
            column,
            athena_type,
        })?;
        let field = Type::primitive_type_builder(column, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(logical)
            .build()
            .map_err(parquet_error)?;
        fields.push(Arc::new(field));
    }
    Type::group_type_builder("schema")
        .with_fields(fields)
        .build()
        .map_err(parquet_error)
}

/// The Parquet file of `rows` in `dataset`'s schema.
pub fn write<R: Columns>(dataset: &Dataset, rows: &[R]) -> Result<Vec<u8>, ColumnarError> {
    if dataset.format != Format::Parquet {
        return Err(ColumnarError::NotParquet {
            table: dataset.table,
        });
    }
    let parquet_error = |source| ColumnarError::Parquet {
        table: dataset.table,
        source,
    };
    let accessors = dataset
        .columns
        .iter()
        .map(|(column, _)| {
            R::accessor(column).ok_or(ColumnarError::NoAccessor {
                table: dataset.table,
                column,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by("linkedin-ads processor".into())
        .build();
    let mut writer =
        SerializedFileWriter::new(Vec::new(), Arc::new(schema(dataset)?), Arc::new(properties))
            .map_err(parquet_error)?;
    let mut group = writer.next_row_group().map_err(parquet_error)?;
    let mut index = 0;
    while let Some(mut column) = group.next_column().map_err(parquet_error)? {
        let (name, athena_type) = dataset.columns[index];
        let accessor = accessors[index];
        index += 1;
        let mismatch = |given| ColumnarError::TypeMismatch {
            table: dataset.table,
            column: name,
            athena_type,
            given,
        };
        let mut levels = Vec::with_capacity(rows.len());
        match athena_type {
            "string" => {
                let mut values = Vec::with_capacity(rows.len());
                for row in rows {
                    match accessor(row) {
                        Cell::Str(v) => push(&mut values, &mut levels, v.map(ByteArray::from)),
                        other => return Err(mismatch(kind(other))),
                    }
                }
                column
                    .typed::<parquet::data_type::ByteArrayType>()
                    .write_batch(&values, Some(&levels), None)
            }
            "bigint" => {
                let mut values = Vec::with_capacity(rows.len());
                for row in rows {
                    match accessor(row) {
                        Cell::Int(v) => push(&mut values, &mut levels, v),
                        other => return Err(mismatch(kind(other))),
                    }
                }
                column.typed::<parquet::data_type::Int64Type>().write_batch(
                    &values,
                    Some(&levels),
                    None,
                )
            }
            "double" => {
                let mut values = Vec::with_capacity(rows.len());
                for row in rows {
                    match accessor(row) {
                        Cell::Double(v) => push(&mut values, &mut levels, v),
                        other => return Err(mismatch(kind(other))),
                    }
                }
                column
                    .typed::<parquet::data_type::DoubleType>()
                    .write_batch(&values, Some(&levels), None)
            }
            _ => {
                let mut values = Vec::with_capacity(rows.len());
                for row in rows {
                    match accessor(row) {
                        Cell::Bool(v) => push(&mut values, &mut levels, v),
                        other => return Err(mismatch(kind(other))),
                    }
                }
                column.typed::<parquet::data_type::BoolType>().write_batch(
                    &values,
                    Some(&levels),
                    None,
                )
            }
        }
        .map_err(parquet_error)?;
        column.close().map_err(parquet_error)?;
    }
    group.close().map_err(parquet_error)?;
    writer.into_inner().map_err(parquet_error)
}

/// Appends a value (definition level 1) or a null (level 0, no value).
fn push<T>(values: &mut Vec<T>, levels: &mut Vec<i16>, value: Option<T>) {
    match value {
        Some(v) => {
            values.push(v);
            levels.push(1);
        }
        None => levels.push(0),
    }
}

fn kind(cell: Cell<'_>) -> &'static str {
    match cell {
        Cell::Str(_) => "string",
        Cell::Int(_) => "bigint",
        Cell::Double(_) => "double",
        Cell::Bool(_) => "boolean",
    }
}

/// The rows of a Parquet file as JSON objects (column name to value, null for nulls): how
/// tests and `run-local` read the processor's output back.
pub fn read_json(file: Vec<u8>) -> Result<Vec<serde_json::Value>, parquet::errors::ParquetError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(bytes::Bytes::from(file))?;
    reader
        .get_row_iter(None)?
        .map(|row| row.map(|r| r.to_json_value()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: Dataset = Dataset {
        table: "pairs",
        prefix: "test/pairs",
        format: Format::Parquet,
        daily_partitions: false,
        columns: &[
            ("name", "string"),
            ("count", "bigint"),
            ("ratio", "double"),
            ("flag", "boolean"),
        ],
        description: "test",
    };

    struct Pair {
        name: Option<String>,
        count: i64,
        ratio: Option<f64>,
        flag: bool,
    }

    impl Columns for Pair {
        fn accessor(column: &str) -> Option<fn(&Self) -> Cell<'_>> {
            Some(match column {
                "name" => |p| Cell::Str(p.name.as_deref()),
                "count" => |p| Cell::Int(Some(p.count)),
                "ratio" => |p| Cell::Double(p.ratio),
                "flag" => |p| Cell::Bool(Some(p.flag)),
                _ => return None,
            })
        }
    }

    #[test]
    fn rows_round_trip_with_nulls() {
        let rows = [
            Pair {
                name: Some("a".into()),
                count: 3,
                ratio: Some(0.25),
                flag: true,
            },
            Pair {
                name: None,
                count: -1,
                ratio: None,
                flag: false,
            },
        ];
        let file = write(&PAIRS, &rows).unwrap();
        assert_eq!(&file[..4], b"PAR1");
        let back = read_json(file).unwrap();
        assert_eq!(
            back,
            [
                serde_json::json!({"name": "a", "count": 3, "ratio": 0.25, "flag": true}),
                serde_json::json!({"name": null, "count": -1, "ratio": null, "flag": false}),
            ]
        );
        assert!(
            read_json(write::<Pair>(&PAIRS, &[]).unwrap())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_missing_accessor_or_a_wrong_type_is_named() {
        struct Half;
        impl Columns for Half {
            fn accessor(column: &str) -> Option<fn(&Self) -> Cell<'_>> {
                match column {
                    "name" => Some(|_| Cell::Int(Some(1))),
                    _ => None,
                }
            }
        }
        let err = write(&PAIRS, &[Half]).unwrap_err().to_string();
        assert_eq!(
            err,
            "pairs.count: the row type has no value for this column"
        );
        let one = Dataset {
            columns: &[("name", "string")],
            ..PAIRS
        };
        let err = write(&one, &[Half]).unwrap_err().to_string();
        assert_eq!(
            err,
            "pairs.name: the row gave a bigint where the column holds string"
        );
    }
}
