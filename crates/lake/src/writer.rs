//! The Parquet files of the tables: one [`TableWriter`] per table encodes them, with writer
//! properties built once; [`decode`] reads one back.
//!
//! Invariants of every file written:
//! - It is written under its table's own schema ([`Table::schema`]), whatever metadata the
//!   batch's schema carries (rows decoded from an old file carry that file's).
//! - zstd (level 1) on the columns where it pays ([`Values`]), dictionaries where values repeat,
//!   page statistics except on JSON documents ([`Values::Document`]), one row group per 128 Ki
//!   rows, and the schema version, table and employee type in the key-value metadata.
//! - At most [`MAX_ROWS_PER_FILE`] rows: the caller cuts a larger day into parts.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use attendance_core::plan::EmployeeType;
use attendance_core::table::{
    EMPLOYEE_TYPE_KEY, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TABLE_KEY, Table, Values,
};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderBuilder, ParquetRecordBatchReaderBuilder};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// A day with more rows than this is split into several part files.
pub const MAX_ROWS_PER_FILE: usize = 1_000_000;
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Encodes the files of one table, for an output root of one employee type.
#[derive(Debug, Clone)]
pub struct TableWriter {
    table: Table,
    inner: ParquetWriter,
}

impl TableWriter {
    pub fn new(table: Table, employee_type: EmployeeType) -> TableWriter {
        TableWriter {
            table,
            inner: ParquetWriter::new(
                table.name(),
                table.schema(),
                |column| table.values_of(column),
                Some(employee_type),
            ),
        }
    }

    pub fn table(&self) -> Table {
        self.table
    }

    /// One batch of the table as a Parquet file in memory.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<u8>, ParquetError> {
        self.inner.encode(batch)
    }
}

/// Encodes files of any one schema with the pull tables' conventions (the writer of the
/// event tables, and of the pull tables through [`TableWriter`]).
#[derive(Debug, Clone)]
pub struct ParquetWriter {
    schema: SchemaRef,
    properties: WriterProperties,
}

impl ParquetWriter {
    /// A writer of table `name` whose columns are stored as `values_of` says; the employee
    /// type goes into the metadata when the table's ids depend on it.
    pub fn new(
        name: &str,
        schema: SchemaRef,
        values_of: impl Fn(&str) -> Values,
        employee_type: Option<EmployeeType>,
    ) -> ParquetWriter {
        // Level 1, not 3: a partition's column chunks are a few kilobytes, where level 3's larger
        // match tables find nothing more. On the 1,000,000-row bench corpus level 1 wrote 3.4%
        // fewer bytes (63.9 against 66.1 MB) and the replay ran 3.6% fewer instructions.
        let zstd = Compression::ZSTD(ZstdLevel::try_new(1).expect("1 is a zstd level"));
        let mut metadata = vec![
            KeyValue::new(SCHEMA_VERSION_KEY.to_string(), SCHEMA_VERSION.to_string()),
            KeyValue::new(TABLE_KEY.to_string(), name.to_string()),
        ];
        if let Some(employee_type) = employee_type {
            metadata.push(KeyValue::new(
                EMPLOYEE_TYPE_KEY.to_string(),
                employee_type.as_str().to_string(),
            ));
        }
        let mut props = WriterProperties::builder()
            .set_compression(Compression::UNCOMPRESSED)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_key_value_metadata(Some(metadata))
            .set_created_by(concat!("attendance-sync ", env!("CARGO_PKG_VERSION")).to_string());
        // Fewer compressed columns also means fewer zstd contexts: the `parquet` crate creates a
        // compressor and a decompressor per compressed column chunk, and creating them was 6.3%
        // of a small-file replay's CPU samples before this layout (BENCHMARKS.md).
        for (path, values) in leaf_columns(&schema, &values_of) {
            props = match values {
                Values::Repeated => props,
                Values::RepeatedText => props.set_column_compression(path.clone(), zstd),
                Values::Unique => props
                    .set_column_compression(path.clone(), zstd)
                    .set_column_dictionary_enabled(path.clone(), false),
                Values::Document => props
                    .set_column_compression(path.clone(), zstd)
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_statistics_enabled(path.clone(), EnabledStatistics::None),
            };
        }
        ParquetWriter {
            schema,
            properties: props.build(),
        }
    }

    /// One batch as a Parquet file in memory, under this writer's schema.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<u8>, ParquetError> {
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec())?;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut writer =
            ArrowWriter::try_new(&mut buf, batch.schema(), Some(self.properties.clone()))?;
        writer.write(&batch)?;
        writer.close()?;
        Ok(buf)
    }
}

/// Every leaf column of `schema`'s Parquet form with what its top-level column holds.
fn leaf_columns(
    schema: &SchemaRef,
    values_of: &dyn Fn(&str) -> Values,
) -> Vec<(ColumnPath, Values)> {
    let parquet = ArrowSchemaConverter::new()
        .convert(schema)
        .expect("the tables' schemas convert to Parquet (a writer test checks)");
    parquet
        .columns()
        .iter()
        .map(|c| {
            let path = c.path().clone();
            let values = values_of(&path.parts()[0]);
            (path, values)
        })
        .collect()
}

/// Decodes a Parquet file: its batches and the employee type it was written with.
pub fn decode(bytes: Vec<u8>) -> Result<(Vec<RecordBatch>, Option<String>), ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))?;
    let employee_type = employee_type_of(&builder);
    let batches = builder.build()?.collect::<Result<Vec<_>, _>>()?;
    Ok((batches, employee_type))
}

/// The employee type a file was written with, read from its footer alone.
pub fn employee_type_in(bytes: Vec<u8>) -> Result<Option<String>, ParquetError> {
    ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).map(|b| employee_type_of(&b))
}

/// The Arrow schema of a file, from its footer.
pub fn schema_in(bytes: Vec<u8>) -> Result<arrow_schema::SchemaRef, ParquetError> {
    ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).map(|b| Arc::clone(b.schema()))
}

/// The employee type a file was written with, from its key-value metadata.
fn employee_type_of<T>(builder: &ArrowReaderBuilder<T>) -> Option<String> {
    builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == EMPLOYEE_TYPE_KEY))
        .and_then(|k| k.value.clone())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_file_is_written_under_the_tables_schema_whatever_the_batch_carries() {
        // Rows decoded from an existing file carry its key-value metadata in their schema.
        let decoded =
            Table::Outs
                .schema()
                .as_ref()
                .clone()
                .with_metadata(std::collections::HashMap::from([(
                    "from".to_string(),
                    "an old file".to_string(),
                )]));
        let batch = RecordBatch::new_empty(Arc::new(decoded));
        let writer = TableWriter::new(Table::Outs, EmployeeType::EmployeeId);
        let bytes = writer.encode(&batch).unwrap();
        let read = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.clone())).unwrap();
        let schema = read.schema();
        assert_eq!(schema.fields(), Table::Outs.schema().fields());
        assert!(!schema.metadata().contains_key("from"), "{schema:?}");
        assert_eq!(
            schema.metadata().get(TABLE_KEY).map(String::as_str),
            Some("outs")
        );
        assert_eq!(
            employee_type_in(bytes).unwrap().as_deref(),
            Some("employee_id")
        );
    }

    #[test]
    fn every_tables_schema_converts_and_each_leaf_gets_its_columns_storage() {
        for table in Table::ALL {
            let leaves = leaf_columns(&table.schema(), &|c| table.values_of(c));
            let top: HashSet<&str> = leaves.iter().map(|(p, _)| p.parts()[0].as_str()).collect();
            let schema = table.schema();
            let fields: HashSet<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(top, fields, "{table:?}");
            assert!(
                leaves
                    .iter()
                    .all(|(p, v)| *v == table.values_of(&p.parts()[0]))
            );
        }
        let trips = leaf_columns(&Table::Trips.schema(), &|c| Table::Trips.values_of(c));
        let region = trips
            .iter()
            .find(|(p, _)| p.string() == "destinations.list.element.region_id");
        assert_eq!(region.map(|(_, v)| *v), Some(Values::Repeated));
    }
}
