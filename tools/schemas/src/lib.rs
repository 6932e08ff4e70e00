//! Dev tool: the files of `schemas/`, generated from the writer's Arrow schemas: the Arrow
//! schemas as JSON, BigQuery JSON schemas, and Hive / Spark SQL, Trino and Snowflake DDL. Not a
//! dependency of the binary; its drift test keeps `schemas/` equal to what it generates.
//!
//! Invariants:
//! - Every column list is read from [`Table::schema`], in file order; nothing here keeps a column
//!   list of its own. The only column named here is the partition column `date` (DATE, never
//!   null), which is not in the files (it is the `date=YYYY-MM-DD` directory). It comes last,
//!   as Hive, Trino and a BigQuery load expect, except in Snowflake, where it is an expression
//!   over the file name and comes first.
//! - The Arrow types are read once, by `column_type`, into `ColumnType`: the types the writer
//!   produces (Utf8, Boolean, Int32, Int64, Float64, Timestamp(Microsecond, "UTC"), List, Struct) and
//!   nothing more. Its match names every Arrow type, so a new Arrow type fails to compile here,
//!   and any type outside that set panics with the column's name: a writer change that needs a
//!   new mapping is caught by the tests, not by a warehouse.
//! - Output is a pure function of the schema and [`SCHEMA_VERSION`]: the same schema gives
//!   byte-identical files, and a test fails when `schemas/` differs from what is generated here
//!   (`UPDATE_SCHEMAS=1 cargo test -p attendance-schemas` rewrites them).
//!
//! Type decisions, per warehouse:
//!
//! | Arrow | BigQuery | Hive / Spark | Trino (Hive connector) | Snowflake |
//! | --- | --- | --- | --- | --- |
//! | Utf8 | STRING | STRING | varchar | VARCHAR |
//! | Boolean | BOOL | BOOLEAN | boolean | BOOLEAN |
//! | Int32 | INT64 | INT | integer | NUMBER(10,0) |
//! | Int64 | INT64 | BIGINT | bigint | NUMBER(19,0) |
//! | Float64 | FLOAT64 | DOUBLE | double | FLOAT |
//! | Timestamp(µs, UTC) | TIMESTAMP | TIMESTAMP | timestamp(6) | TIMESTAMP_NTZ(6) |
//! | `List<T>` | T, mode REPEATED | `ARRAY<T>` | `array(T)` | ARRAY |
//! | Struct | RECORD | `STRUCT<…>` | row(…) | OBJECT |
//!
//! - BigQuery: lists are written as the standard three-level Parquet LIST (`list` / `element`).
//!   With list inference (`--parquet_enable_list_inference`, or `enableListInference` in an
//!   external table's `parquetOptions`) BigQuery reads such a column as a REPEATED field of the
//!   item type, which is what the JSON schema declares; without it BigQuery sees a RECORD holding
//!   a REPEATED RECORD `list` with a field `element`, and the schema does not match. A REPEATED
//!   field cannot be NULL: a null list reads as an empty array (the writer never writes null
//!   items, which BigQuery refuses). Non-nullable columns are REQUIRED, the others NULLABLE.
//!   `date` is included, DATE REQUIRED, so a native table created from the schema matches the
//!   files plus their partition; an external table with hive partitioning takes `date` from the
//!   path instead (see `schemas/README.md`).
//! - Trino: its Hive connector cannot create `timestamp with time zone` columns (its mapping to
//!   Hive types has no such type), so timestamps are `timestamp(6)` holding the UTC wall time;
//!   the catalog needs `hive.timestamp-precision=MICROSECONDS` and `hive.parquet.time-zone=UTC`.
//! - Snowflake: an external table reads each row as one VARIANT (`VALUE`) and casts each field.
//!   Timestamps are TIMESTAMP_NTZ(6) holding the UTC wall time: a cast to TIMESTAMP_TZ of a wall
//!   time without an offset would take the session's time zone. Lists are ARRAY and struct items
//!   OBJECTs inside them; `date` is parsed out of `METADATA$FILENAME`.
//! - Nullability is declared in BigQuery only: Hive and Trino's Hive connector do not enforce NOT
//!   NULL on external tables, and Snowflake's external columns are expressions.

use arrow_schema::{DataType, Field, TimeUnit};
use serde::Serialize;

use arrow_schema::SchemaRef;
use attendance_core::event_state::EventTable;
use attendance_core::event_table::{APPROVAL_EVENTS, approval_events_schema};
use attendance_core::external::table::ExternalTable;
use attendance_core::table::{SCHEMA_VERSION, Table};

/// What the generators need of a table whose schema files are published.
pub trait Published: Copy {
    fn name(self) -> &'static str;
    fn schema(self) -> SchemaRef;
    /// Where its schema is defined, for the files' header.
    fn source(self) -> &'static str;
}

impl Published for Table {
    fn name(self) -> &'static str {
        Table::name(self)
    }
    fn schema(self) -> SchemaRef {
        Table::schema(self)
    }
    fn source(self) -> &'static str {
        "attendance_core::table::Table::schema()"
    }
}

/// The `approval_events` table of the events compaction.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalEvents;

impl Published for ApprovalEvents {
    fn name(self) -> &'static str {
        APPROVAL_EVENTS
    }
    fn schema(self) -> SchemaRef {
        approval_events_schema()
    }
    fn source(self) -> &'static str {
        "attendance_core::event_table::approval_events_schema()"
    }
}

impl Published for EventTable {
    fn name(self) -> &'static str {
        EventTable::name(self)
    }
    fn schema(self) -> SchemaRef {
        EventTable::schema(self)
    }
    fn source(self) -> &'static str {
        "attendance_core::event_state::EventTable::schema()"
    }
}

impl Published for ExternalTable {
    fn name(self) -> &'static str {
        ExternalTable::name(self)
    }
    fn schema(self) -> SchemaRef {
        ExternalTable::schema(self)
    }
    fn source(self) -> &'static str {
        "attendance_core::external::table::ExternalTable::schema()"
    }
}

/// The partition column: the `date=YYYY-MM-DD` directory, not a column of the files.
pub const PARTITION_COLUMN: &str = "date";
/// The database (Hive, Snowflake) or schema (Trino) the tables are created in.
pub const DATABASE: &str = "attendance";
/// The Trino catalog, a Hive connector, the tables are created in.
pub const TRINO_CATALOG: &str = "hive";
/// What the operator replaces with the output root in the Hive and Trino DDL.
pub const LOCATION_PLACEHOLDER: &str = "${LOCATION}";
/// The Snowflake external stage whose URL is the output root.
pub const SNOWFLAKE_STAGE: &str = "@attendance_stage";
/// How to rewrite the published files after a change of the schema or of this module.
pub const REGENERATE_COMMAND: &str = "UPDATE_SCHEMAS=1 cargo test -p attendance-schemas";

/// A column type that every warehouse here can express: what the writer produces, nothing more.
#[derive(Debug, Clone, PartialEq)]
enum ColumnType {
    String,
    Boolean,
    Int32,
    Int64,
    Float64,
    /// Microseconds since the epoch, an instant: Parquet INT64 TIMESTAMP(MICROS, adjusted to UTC).
    UtcTimestampMicros,
    /// A Parquet LIST of anything but another list.
    List(Box<ColumnType>),
    Struct(Vec<Column>),
}

/// A column of a file, or a field of a struct column.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    name: String,
    nullable: bool,
    column_type: ColumnType,
}

/// The columns of a table's files, in file order.
fn table_columns(table: impl Published) -> Vec<Column> {
    table
        .schema()
        .fields()
        .iter()
        .map(|field| column(field, table.name()))
        .collect()
}

fn column(field: &Field, parent: &str) -> Column {
    let path = format!("{parent}.{}", field.name());
    Column {
        name: field.name().clone(),
        nullable: field.is_nullable(),
        column_type: column_type(field.data_type(), &path),
    }
}

/// Reads an Arrow type, panicking on any type the writer does not produce.
fn column_type(data_type: &DataType, path: &str) -> ColumnType {
    let unsupported = |why: &str| -> ! {
        panic!(
            "attendance-schemas: column {path} has Arrow type {data_type}, which has no warehouse mapping ({why}); \
             the writer only produces Utf8, Int32, Int64, Float64, Timestamp(Microsecond, \"UTC\"), \
             List and Struct: add a mapping to tools/schemas/src/lib.rs before writing this type"
        )
    };
    match data_type {
        DataType::Utf8 => ColumnType::String,
        DataType::Boolean => ColumnType::Boolean,
        DataType::Int32 => ColumnType::Int32,
        DataType::Int64 => ColumnType::Int64,
        DataType::Float64 => ColumnType::Float64,
        DataType::Timestamp(TimeUnit::Microsecond, Some(zone))
            if matches!(zone.as_ref(), "UTC" | "+00:00") =>
        {
            ColumnType::UtcTimestampMicros
        }
        DataType::Timestamp(..) => {
            unsupported("only microsecond timestamps adjusted to UTC are mapped")
        }
        DataType::List(item) => match item.data_type() {
            DataType::List(_) => unsupported("a list of lists has no BigQuery REPEATED mapping"),
            item_type => ColumnType::List(Box::new(column_type(
                item_type,
                &format!("{path}.{}", item.name()),
            ))),
        },
        DataType::Struct(fields) => {
            ColumnType::Struct(fields.iter().map(|field| column(field, path)).collect())
        }
        DataType::Null
        | DataType::Int8
        | DataType::Int16
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Date32
        | DataType::Date64
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Duration(_)
        | DataType::Interval(_)
        | DataType::Binary
        | DataType::FixedSizeBinary(_)
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::ListView(_)
        | DataType::FixedSizeList(..)
        | DataType::LargeList(_)
        | DataType::LargeListView(_)
        | DataType::Union(..)
        | DataType::Dictionary(..)
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..)
        | DataType::Map(..)
        | DataType::RunEndEncoded(..) => unsupported("the writer does not produce it"),
    }
}

// ---------------------------------------------------------------------------------------------
// BigQuery

/// One entry of a BigQuery JSON schema (`TableFieldSchema`).
#[derive(Debug, Serialize)]
struct BigQueryField {
    name: String,
    #[serde(rename = "type")]
    field_type: &'static str,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<BigQueryField>,
}

const BIGQUERY_DATE_DESCRIPTION: &str = "Partition column: the date=YYYY-MM-DD directory of the file, not a column of the \
     Parquet files. An external table with hive partitioning takes it from the path (leave it out of the schema there).";

fn bigquery_field(column: &Column) -> BigQueryField {
    let (item_type, mode) = match &column.column_type {
        ColumnType::List(item) => (item.as_ref(), "REPEATED"),
        other if column.nullable => (other, "NULLABLE"),
        other => (other, "REQUIRED"),
    };
    let (field_type, fields) = match item_type {
        ColumnType::String => ("STRING", Vec::new()),
        ColumnType::Boolean => ("BOOL", Vec::new()),
        ColumnType::Int32 | ColumnType::Int64 => ("INT64", Vec::new()),
        ColumnType::Float64 => ("FLOAT64", Vec::new()),
        ColumnType::UtcTimestampMicros => ("TIMESTAMP", Vec::new()),
        ColumnType::Struct(columns) => ("RECORD", columns.iter().map(bigquery_field).collect()),
        ColumnType::List(_) => unreachable!("lists of lists are refused when the schema is read"),
    };
    BigQueryField {
        name: column.name.clone(),
        field_type,
        mode,
        description: None,
        fields,
    }
}

/// The BigQuery JSON schema of a table (`schemas/<table>.bigquery.json`): its columns, then
/// `date` DATE REQUIRED. Lists are REPEATED fields, as BigQuery reads them with Parquet list
/// inference on.
pub fn bigquery_json(table: impl Published) -> String {
    let mut fields: Vec<BigQueryField> = table_columns(table).iter().map(bigquery_field).collect();
    fields.push(BigQueryField {
        name: PARTITION_COLUMN.to_string(),
        field_type: "DATE",
        mode: "REQUIRED",
        description: Some(BIGQUERY_DATE_DESCRIPTION),
        fields: Vec::new(),
    });
    let mut json = serde_json::to_string_pretty(&fields).expect("a BigQuery schema serializes");
    json.push('\n');
    json
}

// ---------------------------------------------------------------------------------------------
// SQL shared parts

/// The comment every SQL file opens with: what it is, where it comes from, how to fill it in.
/// It holds no quote and no semicolon, which some CLIs take for SQL even in a comment.
fn sql_header(table: impl Published, what: &str, notes: &[String]) -> String {
    let mut lines = vec![
        format!(
            "{what}: an external table over <root>/{}/date=YYYY-MM-DD/part-NNNNN.parquet.",
            table.name()
        ),
        format!(
            "Generated by attendance-schemas from {}, schema version {SCHEMA_VERSION} \
             (attendance_core::table::SCHEMA_VERSION). Do not edit.",
            table.source()
        ),
        format!("Regenerate: {REGENERATE_COMMAND}"),
    ];
    for note in notes {
        lines.push(String::new());
        lines.extend(note.lines().map(str::to_string));
    }
    let mut header = String::new();
    for line in lines {
        if line.is_empty() {
            header.push_str("--\n");
        } else {
            header.push_str("-- ");
            header.push_str(&line);
            header.push('\n');
        }
    }
    header.push('\n');
    header
}

/// A struct field's name inside a Hive or Trino type: bare where it is a plain lower-case
/// identifier (`region_level`), quoted otherwise. Column names are always quoted instead: they
/// include `date` and `_run_id`.
fn nested_name(name: &str, quoted: fn(&str) -> String) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        quoted(name)
    }
}

/// Column definitions, one a line, indented, separated by commas.
fn column_lines(definitions: impl IntoIterator<Item = String>) -> String {
    definitions
        .into_iter()
        .map(|definition| format!("  {definition}"))
        .collect::<Vec<_>>()
        .join(",\n")
}

// ---------------------------------------------------------------------------------------------
// Hive / Spark SQL

/// A Hive / Spark identifier: always back-quoted (`_run_id` and `date` need it in Hive).
fn hive_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn hive_type(column_type: &ColumnType) -> String {
    match column_type {
        ColumnType::String => "STRING".to_string(),
        ColumnType::Boolean => "BOOLEAN".to_string(),
        ColumnType::Int32 => "INT".to_string(),
        ColumnType::Int64 => "BIGINT".to_string(),
        ColumnType::Float64 => "DOUBLE".to_string(),
        ColumnType::UtcTimestampMicros => "TIMESTAMP".to_string(),
        ColumnType::List(item) => format!("ARRAY<{}>", hive_type(item)),
        ColumnType::Struct(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|field| {
                    let name = nested_name(&field.name, hive_identifier);
                    format!("{name}: {}", hive_type(&field.column_type))
                })
                .collect();
            format!("STRUCT<{}>", fields.join(", "))
        }
    }
}

/// Hive / Spark SQL DDL of a table (`schemas/<table>.hive.sql`): `CREATE EXTERNAL TABLE` over
/// `${LOCATION}/<table>`, partitioned by `date`, then `MSCK REPAIR TABLE` to find the dates.
pub fn hive_ddl(table: impl Published) -> String {
    let name = table.name();
    let qualified = format!("{DATABASE}.{name}");
    let notes = [
        format!(
            "Placeholder: {LOCATION_PLACEHOLDER} is the output root of the job (the directory holding {name}/),\n\
             e.g. s3a://bucket/attendance or hdfs:///data/attendance. Replace it with sed, or pass\n\
             --hivevar LOCATION=<root> to hive, beeline or spark-sql, which substitute it."
        ),
        "Files whose names start with _ or . (hidden temporaries of the job) are skipped by Hive and Spark.\n\
         Timestamps: the files store instants (Parquet INT64 TIMESTAMP_MICROS adjusted to UTC), which Spark\n\
         shows in spark.sql.session.timeZone (set it to UTC to see UTC). Nullability is not declared: the\n\
         files carry it."
            .to_string(),
        format!(
            "Rerun MSCK REPAIR TABLE after each job run that adds dates. Where supported (Hive 3+, Spark 3.2+),\n\
             MSCK REPAIR TABLE {qualified} SYNC PARTITIONS also drops the dates whose directory the job removed."
        ),
    ];
    let columns = column_lines(table_columns(table).iter().map(|column| {
        format!(
            "{} {}",
            hive_identifier(&column.name),
            hive_type(&column.column_type)
        )
    }));
    format!(
        "{header}CREATE EXTERNAL TABLE IF NOT EXISTS {qualified} (\n{columns}\n)\n\
         PARTITIONED BY ({partition} DATE)\n\
         STORED AS PARQUET\n\
         LOCATION '{LOCATION_PLACEHOLDER}/{name}';\n\
         \n\
         MSCK REPAIR TABLE {qualified};\n",
        header = sql_header(
            table,
            &format!("{qualified} for Hive and Spark SQL"),
            &notes
        ),
        partition = hive_identifier(PARTITION_COLUMN),
    )
}

// ---------------------------------------------------------------------------------------------
// Trino

/// A Trino identifier: always double-quoted.
fn trino_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn trino_type(column_type: &ColumnType) -> String {
    match column_type {
        ColumnType::String => "varchar".to_string(),
        ColumnType::Boolean => "boolean".to_string(),
        ColumnType::Int32 => "integer".to_string(),
        ColumnType::Int64 => "bigint".to_string(),
        ColumnType::Float64 => "double".to_string(),
        ColumnType::UtcTimestampMicros => "timestamp(6)".to_string(),
        ColumnType::List(item) => format!("array({})", trino_type(item)),
        ColumnType::Struct(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|field| {
                    let name = nested_name(&field.name, trino_identifier);
                    format!("{name} {}", trino_type(&field.column_type))
                })
                .collect();
            format!("row({})", fields.join(", "))
        }
    }
}

/// Trino (Hive connector) DDL of a table (`schemas/<table>.trino.sql`): `CREATE TABLE` with an
/// `external_location`, `date` as its last column and partition, then
/// `system.sync_partition_metadata` to find the dates.
pub fn trino_ddl(table: impl Published) -> String {
    let name = table.name();
    let qualified = format!("{TRINO_CATALOG}.{DATABASE}.{name}");
    let notes = [
        format!(
            "Placeholder: {LOCATION_PLACEHOLDER} is the output root of the job (the location holding {name}/),\n\
             e.g. s3://bucket/attendance. Replace it with sed (the Trino CLI does not substitute variables).\n\
             The catalog is named {TRINO_CATALOG} here (a Hive connector): edit the name if yours differs."
        ),
        "Timestamps: the Hive connector cannot create timestamp with time zone columns, so they are\n\
             timestamp(6) holding the UTC wall time. The catalog needs hive.timestamp-precision=MICROSECONDS\n\
             (at the default, MILLISECONDS, reads round to milliseconds and CREATE TABLE refuses\n\
             timestamp(6): the SET SESSION below covers this script only) and hive.parquet.time-zone=UTC\n\
             (recent Trino shifts UTC-adjusted INT64 timestamps into that zone, by default the JVM zone)."
            .to_string(),
        "Files whose names start with _ or . (hidden temporaries of the job) are skipped.\n\
         Nullability is not declared: the files carry it."
            .to_string(),
        "sync_partition_metadata in FULL mode registers new date= directories and drops those the job\n\
         removed (a date left without rows loses its directory). Rerun it after each job run."
            .to_string(),
    ];
    let mut definitions: Vec<String> = table_columns(table)
        .iter()
        .map(|column| {
            format!(
                "{} {}",
                trino_identifier(&column.name),
                trino_type(&column.column_type)
            )
        })
        .collect();
    definitions.push(format!("{} date", trino_identifier(PARTITION_COLUMN)));
    format!(
        "{header}SET SESSION {TRINO_CATALOG}.timestamp_precision = 'MICROSECONDS';\n\
         \n\
         CREATE TABLE IF NOT EXISTS {qualified} (\n{columns}\n)\n\
         WITH (\n\
         \x20 external_location = '{LOCATION_PLACEHOLDER}/{name}',\n\
         \x20 format = 'PARQUET',\n\
         \x20 partitioned_by = ARRAY['{PARTITION_COLUMN}']\n\
         );\n\
         \n\
         CALL {TRINO_CATALOG}.system.sync_partition_metadata('{DATABASE}', '{name}', 'FULL');\n",
        header = sql_header(
            table,
            &format!("{qualified} for the Trino Hive connector"),
            &notes
        ),
        columns = column_lines(definitions),
    )
}

// ---------------------------------------------------------------------------------------------
// Snowflake

/// Snowflake's reserved keywords, which cannot be unquoted column names, plus `VALUE`, the
/// external table's own column.
const SNOWFLAKE_RESERVED: &[&str] = &[
    "ACCOUNT",
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "CHECK",
    "COLUMN",
    "CONNECT",
    "CONNECTION",
    "CONSTRAINT",
    "CREATE",
    "CROSS",
    "CURRENT",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "DATABASE",
    "DELETE",
    "DISTINCT",
    "DROP",
    "ELSE",
    "EXISTS",
    "FALSE",
    "FOLLOWING",
    "FOR",
    "FROM",
    "FULL",
    "GRANT",
    "GROUP",
    "GSCLUSTER",
    "HAVING",
    "ILIKE",
    "IN",
    "INCREMENT",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "ISSUE",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "MINUS",
    "NATURAL",
    "NOT",
    "NULL",
    "OF",
    "ON",
    "OR",
    "ORDER",
    "ORGANIZATION",
    "QUALIFY",
    "REGEXP",
    "REVOKE",
    "RIGHT",
    "RLIKE",
    "ROW",
    "ROWS",
    "SAMPLE",
    "SCHEMA",
    "SELECT",
    "SET",
    "SOME",
    "START",
    "TABLE",
    "TABLESAMPLE",
    "THEN",
    "TO",
    "TRIGGER",
    "TRUE",
    "TRY_CAST",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USING",
    "VALUE",
    "VALUES",
    "VIEW",
    "WHEN",
    "WHENEVER",
    "WHERE",
    "WITH",
];

/// A Snowflake column name: bare (folding to upper case, so any case queries it) where it is a
/// plain lower-case identifier and not reserved, double-quoted otherwise.
fn snowflake_identifier(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && !SNOWFLAKE_RESERVED.contains(&name.to_ascii_uppercase().as_str()) {
        name.to_string()
    } else {
        snowflake_quoted(name)
    }
}

fn snowflake_quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn snowflake_type(column_type: &ColumnType) -> &'static str {
    match column_type {
        ColumnType::String => "VARCHAR",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Int32 => "NUMBER(10,0)",
        ColumnType::Int64 => "NUMBER(19,0)",
        ColumnType::Float64 => "FLOAT",
        ColumnType::UtcTimestampMicros => "TIMESTAMP_NTZ(6)",
        ColumnType::List(_) => "ARRAY",
        ColumnType::Struct(_) => "OBJECT",
    }
}

/// The files of a table a Snowflake external table reads: part files of `date=` directories,
/// never the job's own names starting with `_` or `.`.
const SNOWFLAKE_FILE_PATTERN: &str = ".*date=[0-9]{4}-[0-9]{2}-[0-9]{2}/part-[0-9]+[.]parquet";

/// Snowflake DDL of a table (`schemas/<table>.snowflake.sql`): `CREATE EXTERNAL TABLE` over
/// `@attendance_stage/<table>/` with `"date"` parsed from the file path and every column cast
/// out of `VALUE`, then a refresh of its file list.
pub fn snowflake_ddl(table: impl Published) -> String {
    let name = table.name();
    let qualified = format!("{DATABASE}.{name}");
    let notes = [
        format!(
            "Placeholder: {SNOWFLAKE_STAGE} is an external stage whose URL is the output root of the job\n\
             (the location holding {name}/). Create it under that name or replace the name with sed."
        ),
        "PATTERN reads only date=YYYY-MM-DD/part-NNNNN.parquet, never the own files of the job (names\n\
         starting with _ or ., such as _rejects/ and hidden temporaries)."
            .to_string(),
        "The partition column date is quoted, so query it as \"date\". The other columns are unquoted: they\n\
         fold to upper case and can be queried in any case. Timestamps are TIMESTAMP_NTZ(6) holding the UTC\n\
         wall time (the files store instants adjusted to UTC). Lists are ARRAY, their struct items OBJECTs.\n\
         Nullability is not declared."
            .to_string(),
        "AUTO_REFRESH is off: rerun the ALTER EXTERNAL TABLE ... REFRESH below after each job run."
            .to_string(),
    ];
    let mut definitions = vec![format!(
        "{} DATE AS (TO_DATE(SPLIT_PART(SPLIT_PART(METADATA$FILENAME, '{PARTITION_COLUMN}=', 2), '/', 1)))",
        snowflake_quoted(PARTITION_COLUMN)
    )];
    definitions.extend(table_columns(table).iter().map(|column| {
        let column_type = snowflake_type(&column.column_type);
        format!(
            "{} {column_type} AS (VALUE:{}::{column_type})",
            snowflake_identifier(&column.name),
            snowflake_quoted(&column.name),
        )
    }));
    format!(
        "{header}CREATE EXTERNAL TABLE IF NOT EXISTS {qualified} (\n{columns}\n)\n\
         PARTITION BY ({partition})\n\
         LOCATION = {SNOWFLAKE_STAGE}/{name}/\n\
         AUTO_REFRESH = FALSE\n\
         PATTERN = '{SNOWFLAKE_FILE_PATTERN}'\n\
         FILE_FORMAT = (TYPE = PARQUET);\n\
         \n\
         ALTER EXTERNAL TABLE {qualified} REFRESH;\n",
        header = sql_header(table, &format!("{qualified} for Snowflake"), &notes),
        columns = column_lines(definitions),
        partition = snowflake_quoted(PARTITION_COLUMN),
    )
}

// ---------------------------------------------------------------------------------------------
// Published files

/// The published Arrow schema of a table as pretty JSON (`schemas/<table>.arrow.json`).
pub fn arrow_json(table: impl Published) -> String {
    let mut json = serde_json::to_string_pretty(&*table.schema()).expect("schemas serialize");
    json.push('\n');
    json
}

/// Every generated file of `schemas/` as (file name, contents): for each table, its Arrow
/// schema, its BigQuery schema and its Hive, Trino and Snowflake DDL.
pub fn published_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Table::ALL.into_iter().flat_map(files_of).collect();
    files.extend(files_of(ApprovalEvents));
    files.extend(EventTable::ALL.into_iter().flat_map(files_of));
    files.extend(ExternalTable::ALL.into_iter().flat_map(files_of));
    files
}

fn files_of(table: impl Published) -> [(String, String); 5] {
    let name = table.name();
    [
        (format!("{name}.arrow.json"), arrow_json(table)),
        (format!("{name}.bigquery.json"), bigquery_json(table)),
        (format!("{name}.hive.sql"), hive_ddl(table)),
        (format!("{name}.trino.sql"), trino_ddl(table)),
        (format!("{name}.snowflake.sql"), snowflake_ddl(table)),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn schemas_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
    }

    /// The files in `schemas/` are what this crate generates. To update them after a deliberate
    /// change of the schema (bump SCHEMA_VERSION) or of this crate: `REGENERATE_COMMAND`.
    #[test]
    fn published_schemas_match_the_writer() {
        let dir = schemas_dir();
        let files = published_files();
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        for (file_name, generated) in &files {
            let path = dir.join(file_name);
            if update {
                std::fs::write(&path, generated).unwrap();
            }
            let published = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                &published == generated,
                "{} differs from what attendance-schemas generates from the writer's schema; if the change is deliberate, bump SCHEMA_VERSION where the columns changed and run {REGENERATE_COMMAND}",
                path.display()
            );
        }
        // No file of a generated kind is left over from a table or format that no longer exists.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file_name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let generated_kind = file_name.ends_with(".arrow.json")
                || file_name.ends_with(".bigquery.json")
                || file_name.ends_with(".sql");
            assert!(
                !generated_kind || files.iter().any(|(name, _)| *name == file_name),
                "schemas/{file_name} is not generated by attendance-schemas any more; remove it"
            );
        }
    }

    fn utf8_list() -> DataType {
        DataType::List(Arc::new(Field::new("element", DataType::Utf8, true)))
    }

    fn int32_list() -> DataType {
        DataType::List(Arc::new(Field::new("element", DataType::Int32, true)))
    }

    fn region_list() -> DataType {
        let region = DataType::Struct(
            vec![
                Field::new("region_level", DataType::Utf8, true),
                Field::new("region_id", DataType::Utf8, true),
            ]
            .into(),
        );
        DataType::List(Arc::new(Field::new("element", region, true)))
    }

    /// The expected type of an Arrow type in (Hive, Trino, Snowflake), written out by hand for
    /// every type the writer produces, so the test does not re-derive what it checks.
    fn expected_sql_types(data_type: &DataType) -> (&'static str, &'static str, &'static str) {
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let utc_field = |name: &str| {
            Field::new(
                name,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            )
        };
        let struct_list = |fields: Vec<Field>| {
            DataType::List(Arc::new(Field::new(
                "element",
                DataType::Struct(fields.into()),
                true,
            )))
        };
        let local_range = struct_list(vec![
            utc_field("start_time"),
            utc_field("end_time"),
            Field::new("start_time_local", DataType::Utf8, true),
            Field::new("end_time_local", DataType::Utf8, true),
        ]);
        let work_days = struct_list(vec![
            Field::new("start_date", DataType::Utf8, true),
            Field::new("end_date", DataType::Utf8, true),
            Field::new("rule_associated", DataType::Int64, true),
            Field::new("interval_seconds", DataType::Int64, true),
        ]);
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let flag = |name: &str| Field::new(name, DataType::Boolean, true);
        let form = struct_list(vec![
            text("name"),
            text("value"),
            text("name_key"),
            text("value_key"),
        ]);
        let actions = struct_list(vec![
            text("action_type"),
            text("action_name"),
            text("action_name_key"),
            flag("is_need_reason"),
            flag("is_reason_required"),
            flag("is_need_attachment"),
        ]);
        let expectations = [
            (
                form,
                (
                    "ARRAY<STRUCT<name: STRING, value: STRING, name_key: STRING, value_key: STRING>>",
                    "array(row(name varchar, value varchar, name_key varchar, value_key varchar))",
                    "ARRAY",
                ),
            ),
            (
                actions,
                (
                    "ARRAY<STRUCT<action_type: STRING, action_name: STRING, action_name_key: STRING, is_need_reason: BOOLEAN, is_reason_required: BOOLEAN, is_need_attachment: BOOLEAN>>",
                    "array(row(action_type varchar, action_name varchar, action_name_key varchar, is_need_reason boolean, is_reason_required boolean, is_need_attachment boolean))",
                    "ARRAY",
                ),
            ),
            (DataType::Boolean, ("BOOLEAN", "boolean", "BOOLEAN")),
            (
                local_range,
                (
                    "ARRAY<STRUCT<start_time: TIMESTAMP, end_time: TIMESTAMP, start_time_local: STRING, end_time_local: STRING>>",
                    "array(row(start_time timestamp(6), end_time timestamp(6), start_time_local varchar, end_time_local varchar))",
                    "ARRAY",
                ),
            ),
            (
                work_days,
                (
                    "ARRAY<STRUCT<start_date: STRING, end_date: STRING, rule_associated: BIGINT, interval_seconds: BIGINT>>",
                    "array(row(start_date varchar, end_date varchar, rule_associated bigint, interval_seconds bigint))",
                    "ARRAY",
                ),
            ),
            (DataType::Utf8, ("STRING", "varchar", "VARCHAR")),
            (DataType::Int32, ("INT", "integer", "NUMBER(10,0)")),
            (DataType::Int64, ("BIGINT", "bigint", "NUMBER(19,0)")),
            (DataType::Float64, ("DOUBLE", "double", "FLOAT")),
            (utc, ("TIMESTAMP", "timestamp(6)", "TIMESTAMP_NTZ(6)")),
            (utf8_list(), ("ARRAY<STRING>", "array(varchar)", "ARRAY")),
            (int32_list(), ("ARRAY<INT>", "array(integer)", "ARRAY")),
            (
                region_list(),
                (
                    "ARRAY<STRUCT<region_level: STRING, region_id: STRING>>",
                    "array(row(region_level varchar, region_id varchar))",
                    "ARRAY",
                ),
            ),
        ];
        expectations
            .into_iter()
            .find(|(arrow, _)| arrow == data_type)
            .map(|(_, sql)| sql)
            .unwrap_or_else(|| panic!("no expectation for {data_type}: add one to this test"))
    }

    /// The lines of a statement's column list, in order, without their trailing commas.
    fn column_definitions<'a>(ddl: &'a str, opening: &str) -> Vec<&'a str> {
        let start = ddl.find(opening).expect("the CREATE statement") + opening.len();
        let end = start
            + ddl[start..]
                .find("\n)")
                .expect("the end of the column list");
        ddl[start..end]
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| line.trim().trim_end_matches(','))
            .collect()
    }

    #[test]
    fn every_column_is_in_every_ddl_with_its_type_and_date_is_the_partition() {
        Table::ALL.into_iter().for_each(check_every_column);
        check_every_column(ApprovalEvents);
        EventTable::ALL.into_iter().for_each(check_every_column);
        ExternalTable::ALL.into_iter().for_each(check_every_column);
    }

    fn check_every_column(table: impl Published) {
        {
            let name = table.name();
            let schema = table.schema();
            let hive = hive_ddl(table);
            let trino = trino_ddl(table);
            let snowflake = snowflake_ddl(table);
            let hive_columns = column_definitions(
                &hive,
                &format!("CREATE EXTERNAL TABLE IF NOT EXISTS attendance.{name} (\n"),
            );
            let trino_columns = column_definitions(
                &trino,
                &format!("CREATE TABLE IF NOT EXISTS hive.attendance.{name} (\n"),
            );
            let snowflake_columns = column_definitions(
                &snowflake,
                &format!("CREATE EXTERNAL TABLE IF NOT EXISTS attendance.{name} (\n"),
            );
            let fields = schema.fields();
            assert_eq!(hive_columns.len(), fields.len(), "{name}: hive");
            assert_eq!(trino_columns.len(), fields.len() + 1, "{name}: trino");
            assert_eq!(
                snowflake_columns.len(),
                fields.len() + 1,
                "{name}: snowflake"
            );
            for (i, field) in fields.iter().enumerate() {
                let column = field.name();
                let (hive_type, trino_type, snowflake_type) = expected_sql_types(field.data_type());
                assert_eq!(hive_columns[i], format!("`{column}` {hive_type}"), "{name}");
                assert_eq!(
                    trino_columns[i],
                    format!("\"{column}\" {trino_type}"),
                    "{name}"
                );
                // `date` comes first in Snowflake: it is not read from VALUE.
                // A reserved word (`value` is the external table's own VALUE) is quoted.
                let written = if SNOWFLAKE_RESERVED.contains(&column.to_uppercase().as_str()) {
                    format!("\"{column}\"")
                } else {
                    column.clone()
                };
                let bare = snowflake_columns[i + 1]
                    .strip_prefix(written.as_str())
                    .expect("a plain lower-case name is unquoted, a reserved one quoted");
                assert_eq!(
                    bare,
                    format!(" {snowflake_type} AS (VALUE:\"{column}\"::{snowflake_type})"),
                    "{name}.{column}"
                );
            }
            assert!(
                hive.contains("\n)\nPARTITIONED BY (`date` DATE)\nSTORED AS PARQUET\n"),
                "{name}"
            );
            assert!(hive.contains(&format!("LOCATION '${{LOCATION}}/{name}';\n")));
            assert!(hive.ends_with(&format!("MSCK REPAIR TABLE attendance.{name};\n")));
            assert_eq!(trino_columns.last(), Some(&"\"date\" date"), "{name}");
            assert!(trino.contains("partitioned_by = ARRAY['date']"), "{name}");
            assert!(trino.contains(&format!("external_location = '${{LOCATION}}/{name}'")));
            assert!(trino.ends_with(&format!(
                "CALL hive.system.sync_partition_metadata('attendance', '{name}', 'FULL');\n"
            )));
            assert!(
                snowflake_columns[0].starts_with("\"date\" DATE AS (TO_DATE(")
                    && snowflake_columns[0].contains("METADATA$FILENAME"),
                "{name}"
            );
            assert!(
                snowflake.contains("\n)\nPARTITION BY (\"date\")\n"),
                "{name}"
            );
            assert!(snowflake.contains(&format!("LOCATION = @attendance_stage/{name}/\n")));
        }
    }

    #[test]
    fn the_destinations_struct_is_mapped_field_by_field() {
        let trips = Table::Trips;
        assert!(
            hive_ddl(trips).contains(
                "`destinations` ARRAY<STRUCT<region_level: STRING, region_id: STRING>>,\n"
            )
        );
        assert!(
            trino_ddl(trips).contains(
                "\"destinations\" array(row(region_level varchar, region_id varchar)),\n"
            )
        );
        assert!(
            snowflake_ddl(trips)
                .contains("destinations ARRAY AS (VALUE:\"destinations\"::ARRAY),\n")
        );
        let bigquery: serde_json::Value = serde_json::from_str(&bigquery_json(trips)).unwrap();
        let destinations = bigquery
            .as_array()
            .unwrap()
            .iter()
            .find(|field| field["name"] == "destinations")
            .expect("trips has destinations");
        assert_eq!(
            *destinations,
            serde_json::json!({
                "name": "destinations",
                "type": "RECORD",
                "mode": "REPEATED",
                "fields": [
                    {"name": "region_level", "type": "STRING", "mode": "NULLABLE"},
                    {"name": "region_id", "type": "STRING", "mode": "NULLABLE"}
                ]
            })
        );
    }

    #[test]
    fn bigquery_schema_is_json_with_one_entry_per_column_then_date() {
        for table in Table::ALL {
            let name = table.name();
            let schema = table.schema();
            let parsed: serde_json::Value =
                serde_json::from_str(&bigquery_json(table)).expect("valid JSON");
            let entries = parsed.as_array().expect("a JSON array");
            assert_eq!(entries.len(), schema.fields().len() + 1, "{name}");
            for (entry, field) in entries.iter().zip(schema.fields()) {
                assert_eq!(entry["name"], field.name().as_str(), "{name}");
                let (expected_type, expected_mode) = match field.data_type() {
                    DataType::Utf8 => ("STRING", None),
                    DataType::Boolean => ("BOOL", None),
                    DataType::Int32 | DataType::Int64 => ("INT64", None),
                    DataType::Float64 => ("FLOAT64", None),
                    DataType::Timestamp(..) => ("TIMESTAMP", None),
                    DataType::List(item) => match item.data_type() {
                        DataType::Utf8 => ("STRING", Some("REPEATED")),
                        DataType::Int32 => ("INT64", Some("REPEATED")),
                        DataType::Struct(_) => ("RECORD", Some("REPEATED")),
                        other => panic!("no expectation for a list of {other}"),
                    },
                    other => panic!("no expectation for {other}"),
                };
                let expected_mode = expected_mode.unwrap_or(if field.is_nullable() {
                    "NULLABLE"
                } else {
                    "REQUIRED"
                });
                assert_eq!(entry["type"], expected_type, "{name}.{}", field.name());
                assert_eq!(entry["mode"], expected_mode, "{name}.{}", field.name());
            }
            let date = entries.last().unwrap();
            assert_eq!(date["name"], "date", "{name}");
            assert_eq!(date["type"], "DATE", "{name}");
            assert_eq!(date["mode"], "REQUIRED", "{name}");
        }
        let outs: serde_json::Value = serde_json::from_str(&bigquery_json(Table::Outs)).unwrap();
        assert_eq!(outs[0]["mode"], "REQUIRED", "user_id is not nullable");
    }

    #[test]
    fn every_sql_file_says_it_is_generated_from_which_version_and_how_to_regenerate() {
        for (file_name, contents) in published_files() {
            if !file_name.ends_with(".sql") {
                continue;
            }
            assert!(contents.starts_with("-- "), "{file_name}");
            assert!(
                contents.contains(&format!("schema version {SCHEMA_VERSION} ")),
                "{file_name}"
            );
            assert!(contents.contains(REGENERATE_COMMAND), "{file_name}");
            // Some CLIs (older beeline and spark-sql) split statements without skipping comments.
            for comment in contents.lines().filter(|line| line.starts_with("--")) {
                assert!(
                    !comment.contains(['\'', ';']),
                    "{file_name}: a quote or semicolon in the comment {comment:?}"
                );
            }
            let placeholder = if file_name.ends_with(".snowflake.sql") {
                SNOWFLAKE_STAGE
            } else {
                LOCATION_PLACEHOLDER
            };
            assert!(
                contents.contains(&format!("-- Placeholder: {placeholder} ")),
                "{file_name}"
            );
        }
        assert_eq!(
            published_files().len(),
            (Table::ALL.len() + 1 + EventTable::ALL.len() + ExternalTable::ALL.len()) * 5
        );
    }

    #[test]
    #[should_panic(
        expected = "column outs.ratio has Arrow type Float32, which has no warehouse mapping"
    )]
    fn a_type_the_writer_does_not_produce_panics_with_the_column_name() {
        column(&Field::new("ratio", DataType::Float32, true), "outs");
    }

    #[test]
    #[should_panic(expected = "only microsecond timestamps adjusted to UTC are mapped")]
    fn a_timestamp_not_in_utc_microseconds_panics() {
        let millis = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        column(&Field::new("start_time", millis, true), "outs");
    }
}
