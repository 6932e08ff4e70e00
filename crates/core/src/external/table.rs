//! The tables of third-party approvals: the instance documents as `external_instances`,
//! `external_instance_tasks`, `external_instance_ccs` and `external_i18n`; the check's
//! `external_diffs`; the task status snapshot `external_task_status`. Their schemas and row
//! builders.
//!
//! Invariants:
//! - Every instant is µs UTC (`Timestamp(Microsecond, "UTC")`) read from the millisecond epoch
//!   sent; a `"0"` end time is null (not ended), never 1970.
//! - Texts that are i18n keys are resolved in the instance's default locale; the key is kept
//!   beside the text (`…_key`), null when the source gave plain text.
//! - The four document tables carry `instance_id` and `approval_code` on every row, so that a
//!   partition's rows of some approval codes can be replaced without the others.
//! - Rows come out in the order the builder is given them; the caller sorts (see
//!   [`ExternalTable::sort_key`]) so that the same source makes the same files.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    ArrayBuilder, BooleanBuilder, Int32Builder, ListBuilder, StringBuilder, StructBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use super::model::{ExternalInstance, MsTime, is_i18n_key};
use crate::table::Values;

/// The tables of third-party approvals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExternalTable {
    Instances,
    Tasks,
    Ccs,
    I18n,
    Diffs,
    TaskStatus,
}

impl ExternalTable {
    pub const ALL: [ExternalTable; 6] = [
        ExternalTable::Instances,
        ExternalTable::Tasks,
        ExternalTable::Ccs,
        ExternalTable::I18n,
        ExternalTable::Diffs,
        ExternalTable::TaskStatus,
    ];
    /// The tables `external load` writes from the instance documents.
    pub const DOCUMENTS: [ExternalTable; 4] = [
        ExternalTable::Instances,
        ExternalTable::Tasks,
        ExternalTable::Ccs,
        ExternalTable::I18n,
    ];

    /// The table's name, also its directory under the output root.
    pub fn name(self) -> &'static str {
        match self {
            ExternalTable::Instances => "external_instances",
            ExternalTable::Tasks => "external_instance_tasks",
            ExternalTable::Ccs => "external_instance_ccs",
            ExternalTable::I18n => "external_i18n",
            ExternalTable::Diffs => "external_diffs",
            ExternalTable::TaskStatus => "external_task_status",
        }
    }

    /// The Arrow schema of the table's files.
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 6]> = OnceLock::new();
        let all =
            SCHEMAS.get_or_init(|| ExternalTable::ALL.map(|t| Arc::new(Schema::new(t.fields()))));
        Arc::clone(&all[self as usize])
    }

    /// The columns that order a partition's rows (unique together).
    pub fn sort_key(self) -> &'static [&'static str] {
        match self {
            ExternalTable::Instances => &["approval_code", "instance_id"],
            ExternalTable::Tasks => &["approval_code", "instance_id", "task_id"],
            ExternalTable::Ccs => &["approval_code", "instance_id", "cc_id"],
            ExternalTable::I18n => &["approval_code", "instance_id", "locale", "key"],
            ExternalTable::Diffs => &["instance_id", "task_id"],
            ExternalTable::TaskStatus => &["approval_code", "instance_id", "task_id"],
        }
    }

    /// What the values of top-level column `column` look like (see [`Values`]).
    pub fn values_of(self, column: &str) -> Values {
        match column {
            "instance_id" | "task_id" | "cc_id" | "extra" | "form" | "action_configs"
            | "action_context" | "pc_link" | "mobile_link" | "value" => Values::Unique,
            "title" | "user_name" | "department_name" | "node_name" => Values::RepeatedText,
            _ => Values::Repeated,
        }
    }

    fn fields(self) -> Vec<Field> {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        let id = |name: &str| Field::new(name, DataType::Utf8, false);
        let time = |name: &str| Field::new(name, utc(), true);
        let flag = |name: &str| Field::new(name, DataType::Boolean, true);
        let list = |name: &str, fields: Fields| {
            Field::new(
                name,
                DataType::List(Arc::new(Field::new(
                    "element",
                    DataType::Struct(fields),
                    true,
                ))),
                true,
            )
        };
        match self {
            ExternalTable::Instances => vec![
                id("instance_id"),
                id("approval_code"),
                id("status"),
                text("title"),
                text("title_key"),
                text("user_id"),
                text("open_id"),
                text("user_name"),
                text("user_name_key"),
                text("department_id"),
                text("department_name"),
                text("department_name_key"),
                time("start_time"),
                time("end_time"),
                time("update_time"),
                text("pc_link"),
                text("mobile_link"),
                text("display_method"),
                id("update_mode"),
                text("extra"),
                list("form", form_fields()),
                Field::new("tasks", DataType::Int32, false),
                Field::new("ccs", DataType::Int32, false),
                id("default_locale"),
                id("time_zone"),
            ],
            ExternalTable::Tasks => vec![
                id("instance_id"),
                id("approval_code"),
                id("task_id"),
                text("user_id"),
                text("open_id"),
                text("title"),
                text("title_key"),
                id("status"),
                time("create_time"),
                time("end_time"),
                time("update_time"),
                text("node_id"),
                text("node_name"),
                text("pc_link"),
                text("mobile_link"),
                text("display_method"),
                text("generate_type"),
                flag("exclude_statistics"),
                text("action_context"),
                list("action_configs", action_fields()),
                text("extra"),
            ],
            ExternalTable::Ccs => vec![
                id("instance_id"),
                id("approval_code"),
                id("cc_id"),
                text("user_id"),
                text("open_id"),
                text("title"),
                text("title_key"),
                id("read_status"),
                time("create_time"),
                time("update_time"),
                text("pc_link"),
                text("mobile_link"),
                text("display_method"),
                text("extra"),
            ],
            ExternalTable::I18n => vec![
                id("instance_id"),
                id("approval_code"),
                id("locale"),
                Field::new("is_default", DataType::Boolean, false),
                id("key"),
                Field::new("value", DataType::Utf8, false),
            ],
            ExternalTable::Diffs => vec![
                id("instance_id"),
                text("task_id"),
                text("approval_code"),
                id("kind"),
                time("our_update_time"),
                time("platform_update_time"),
                Field::new("checked_at", utc(), false),
            ],
            ExternalTable::TaskStatus => vec![
                id("instance_id"),
                text("approval_id"),
                id("approval_code"),
                text("instance_status"),
                time("instance_update_time"),
                text("task_id"),
                text("task_status"),
                time("task_update_time"),
                Field::new("snapshot_at", utc(), false),
            ],
        }
    }
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn form_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("name_key", DataType::Utf8, true),
        Field::new("value_key", DataType::Utf8, true),
    ])
}

fn action_fields() -> Fields {
    Fields::from(vec![
        Field::new("action_type", DataType::Utf8, true),
        Field::new("action_name", DataType::Utf8, true),
        Field::new("action_name_key", DataType::Utf8, true),
        Field::new("is_need_reason", DataType::Boolean, true),
        Field::new("is_reason_required", DataType::Boolean, true),
        Field::new("is_need_attachment", DataType::Boolean, true),
    ])
}

/// A difference the check found between the source and the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// The platform does not have the instance.
    MissingInstance,
    /// The platform's instance has another update_time.
    StaleInstance,
    /// The platform's instance lacks the task.
    MissingTask,
    /// The platform's task has another update_time.
    StaleTask,
}

impl DiffKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::MissingInstance => "missing_instance",
            DiffKind::StaleInstance => "stale_instance",
            DiffKind::MissingTask => "missing_task",
            DiffKind::StaleTask => "stale_task",
        }
    }
}

/// One row of `external_diffs`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diff {
    pub instance_id: String,
    pub task_id: Option<String>,
    pub approval_code: Option<String>,
    pub kind: DiffKind,
    /// The source's update_time.
    pub ours: Option<MsTime>,
    /// The platform's, `None` when it has nothing.
    pub platform: Option<MsTime>,
}

/// One row of `external_task_status`: a task as the platform lists it, or an instance without
/// tasks (task columns null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatusRow {
    pub instance_id: String,
    pub approval_id: Option<String>,
    pub approval_code: String,
    pub instance_status: Option<String>,
    pub instance_update_time: Option<MsTime>,
    pub task_id: Option<String>,
    pub task_status: Option<String>,
    pub task_update_time: Option<MsTime>,
}

/// Builds one table's batch, a row at a time, a column after the other in schema order.
pub struct Rows {
    table: ExternalTable,
    columns: Vec<Box<dyn ArrayBuilder>>,
    /// The column the next value goes to.
    next: usize,
    rows: usize,
}

impl Rows {
    pub fn new(table: ExternalTable) -> Rows {
        let columns = table
            .schema()
            .fields()
            .iter()
            .map(|f| builder_for(f.data_type()))
            .collect();
        Rows {
            table,
            columns,
            next: 0,
            rows: 0,
        }
    }

    pub fn table(&self) -> ExternalTable {
        self.table
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn column<T: ArrayBuilder>(&mut self) -> &mut T {
        let i = self.next;
        self.next += 1;
        self.columns[i]
            .as_any_mut()
            .downcast_mut::<T>()
            .unwrap_or_else(|| panic!("column {i} of {} has another type", self.table.name()))
    }

    fn text(&mut self, value: Option<&str>) {
        self.column::<StringBuilder>().append_option(value);
    }

    /// A time as µs; `0` and (from the platform's answers, which are not validated) a time
    /// past what µs can hold are null.
    fn time(&mut self, value: Option<MsTime>) {
        self.column::<TimestampMicrosecondBuilder>().append_option(
            value
                .and_then(MsTime::instant)
                .and_then(|ms| ms.checked_mul(1000)),
        );
    }

    fn flag(&mut self, value: Option<bool>) {
        self.column::<BooleanBuilder>().append_option(value);
    }

    fn count(&mut self, value: usize) {
        self.column::<Int32Builder>()
            .append_value(i32::try_from(value).unwrap_or(i32::MAX));
    }

    /// A resolved text and its key (null when `text` is plain).
    fn resolved(&mut self, instance: &ExternalInstance, text: Option<&str>) {
        self.text(text.map(|t| instance.resolve(t)));
        self.text(text.filter(|t| is_i18n_key(t)));
    }

    fn end_row(&mut self) {
        assert_eq!(
            self.next,
            self.columns.len(),
            "a row of {} fills every column",
            self.table.name()
        );
        self.next = 0;
        self.rows += 1;
    }

    /// The batch of the rows so far; the builder starts over.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = self.columns.iter_mut().map(|b| b.finish()).collect();
        self.rows = 0;
        RecordBatch::try_new(self.table.schema(), columns)
            .expect("the columns are built in the schema's order and types")
    }

    /// The rows of `instance` in this builder's table (one of [`ExternalTable::DOCUMENTS`]),
    /// its local times read in `time_zone`.
    pub fn add_instance(&mut self, instance: &ExternalInstance, time_zone: &str) {
        match self.table {
            ExternalTable::Instances => self.instance_row(instance, time_zone),
            ExternalTable::Tasks => {
                for task in instance.tasks() {
                    self.text(Some(&instance.instance_id));
                    self.text(Some(&instance.approval_code));
                    self.text(Some(&task.task_id));
                    self.text(task.user_id.as_deref());
                    self.text(task.open_id.as_deref());
                    self.resolved(instance, task.title.as_deref());
                    self.text(Some(&task.status));
                    self.time(Some(task.create_time));
                    self.time(Some(task.end_time));
                    self.time(Some(task.update_time));
                    self.text(task.node_id.as_deref());
                    self.text(task.node_name.as_deref());
                    self.text(task.links.pc_link.as_deref());
                    self.text(task.links.mobile_link.as_deref());
                    self.text(task.display_method.as_deref());
                    self.text(task.generate_type.as_deref());
                    self.flag(task.exclude_statistics);
                    self.text(task.action_context.as_deref());
                    let list = self.column::<ListBuilder<StructBuilder>>();
                    for action in task.action_configs.as_deref().unwrap_or_default() {
                        let item = list.values();
                        let name = action.action_name.as_deref();
                        field::<StringBuilder>(item, 0).append_value(&action.action_type);
                        field::<StringBuilder>(item, 1)
                            .append_option(name.map(|n| instance.resolve(n)));
                        field::<StringBuilder>(item, 2)
                            .append_option(name.filter(|n| is_i18n_key(n)));
                        field::<BooleanBuilder>(item, 3).append_option(action.is_need_reason);
                        field::<BooleanBuilder>(item, 4).append_option(action.is_reason_required);
                        field::<BooleanBuilder>(item, 5).append_option(action.is_need_attachment);
                        item.append(true);
                    }
                    list.append(task.action_configs.is_some());
                    self.text(task.extra.as_deref());
                    self.end_row();
                }
            }
            ExternalTable::Ccs => {
                for cc in instance.ccs() {
                    self.text(Some(&instance.instance_id));
                    self.text(Some(&instance.approval_code));
                    self.text(Some(&cc.cc_id));
                    self.text(cc.user_id.as_deref());
                    self.text(cc.open_id.as_deref());
                    self.resolved(instance, cc.title.as_deref());
                    self.text(Some(&cc.read_status));
                    self.time(Some(cc.create_time));
                    self.time(Some(cc.update_time));
                    self.text(cc.links.pc_link.as_deref());
                    self.text(cc.links.mobile_link.as_deref());
                    self.text(cc.display_method.as_deref());
                    self.text(cc.extra.as_deref());
                    self.end_row();
                }
            }
            ExternalTable::I18n => {
                for resource in &instance.i18n_resources {
                    for text in &resource.texts {
                        self.text(Some(&instance.instance_id));
                        self.text(Some(&instance.approval_code));
                        self.text(Some(&resource.locale));
                        self.flag(Some(resource.is_default));
                        self.text(Some(&text.key));
                        self.text(Some(&text.value));
                        self.end_row();
                    }
                }
            }
            ExternalTable::Diffs | ExternalTable::TaskStatus => {
                panic!("{} is not built from instance documents", self.table.name())
            }
        }
    }

    fn instance_row(&mut self, instance: &ExternalInstance, time_zone: &str) {
        self.text(Some(&instance.instance_id));
        self.text(Some(&instance.approval_code));
        self.text(Some(&instance.status));
        self.resolved(instance, instance.title.as_deref());
        self.text(instance.user_id.as_deref());
        self.text(instance.open_id.as_deref());
        self.resolved(instance, instance.user_name.as_deref());
        self.text(instance.department_id.as_deref());
        self.resolved(instance, instance.department_name.as_deref());
        self.time(Some(instance.start_time));
        self.time(Some(instance.end_time));
        self.time(Some(instance.update_time));
        self.text(instance.links.pc_link.as_deref());
        self.text(instance.links.mobile_link.as_deref());
        self.text(instance.display_method.as_deref());
        self.text(Some(instance.update_mode()));
        self.text(instance.extra.as_deref());
        let list = self.column::<ListBuilder<StructBuilder>>();
        for form in instance.form.as_deref().unwrap_or_default() {
            let item = list.values();
            let (name, value) = (form.name.as_deref(), form.value.as_deref());
            field::<StringBuilder>(item, 0).append_option(name.map(|n| instance.resolve(n)));
            field::<StringBuilder>(item, 1).append_option(value.map(|v| instance.resolve(v)));
            field::<StringBuilder>(item, 2).append_option(name.filter(|n| is_i18n_key(n)));
            field::<StringBuilder>(item, 3).append_option(value.filter(|v| is_i18n_key(v)));
            item.append(true);
        }
        list.append(instance.form.is_some());
        self.count(instance.tasks().len());
        self.count(instance.ccs().len());
        self.text(Some(
            instance
                .default_resource()
                .map_or("", |r| r.locale.as_str()),
        ));
        self.text(Some(time_zone));
        self.end_row();
    }

    /// One row of `external_diffs`, found by a check at `checked_at_ms`.
    pub fn add_diff(&mut self, diff: &Diff, checked_at_ms: i64) {
        assert_eq!(self.table, ExternalTable::Diffs);
        self.text(Some(&diff.instance_id));
        self.text(diff.task_id.as_deref());
        self.text(diff.approval_code.as_deref());
        self.text(Some(diff.kind.as_str()));
        self.time(diff.ours);
        self.time(diff.platform);
        self.time(Some(MsTime(checked_at_ms)));
        self.end_row();
    }

    /// One row of `external_task_status`, listed at `snapshot_at_ms`.
    pub fn add_task_status(&mut self, row: &TaskStatusRow, snapshot_at_ms: i64) {
        assert_eq!(self.table, ExternalTable::TaskStatus);
        self.text(Some(&row.instance_id));
        self.text(row.approval_id.as_deref());
        self.text(Some(&row.approval_code));
        self.text(row.instance_status.as_deref());
        self.time(row.instance_update_time);
        self.text(row.task_id.as_deref());
        self.text(row.task_status.as_deref());
        self.time(row.task_update_time);
        self.time(Some(MsTime(snapshot_at_ms)));
        self.end_row();
    }
}

fn builder_for(data_type: &DataType) -> Box<dyn ArrayBuilder> {
    match data_type {
        DataType::Utf8 => Box::new(StringBuilder::new()),
        DataType::Boolean => Box::new(BooleanBuilder::new()),
        DataType::Int32 => Box::new(Int32Builder::new()),
        DataType::Timestamp(..) => {
            Box::new(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
        }
        DataType::List(item) => {
            let DataType::Struct(fields) = item.data_type() else {
                unreachable!("lists here hold structs")
            };
            let builders = fields.iter().map(|f| builder_for(f.data_type())).collect();
            Box::new(
                ListBuilder::new(StructBuilder::new(fields.clone(), builders))
                    .with_field(Arc::clone(item)),
            )
        }
        other => unreachable!("no column of type {other} here"),
    }
}

fn field<T: ArrayBuilder>(item: &mut StructBuilder, i: usize) -> &mut T {
    item.field_builder::<T>(i)
        .expect("struct fields are built with their types")
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMicrosecondType;
    use serde_json::json;

    use super::*;
    use crate::external::validate;

    #[test]
    fn an_instance_makes_its_rows_with_keys_resolved_and_times_in_utc() {
        let instance = validate(&json!({
            "approval_code": "AC", "instance_id": "i1", "status": "APPROVED",
            "links": {"pc_link": "p"}, "title": "@i18n@t", "user_id": "u1", "user_name": "Li",
            "form": [{"name": "@i18n@n", "value": "2"}],
            "start_time": "1767225600000", "end_time": "0", "update_time": "1767225600123",
            "task_list": [{"task_id": "t1", "user_id": "u2", "links": {"pc_link": "p"},
                "status": "APPROVED", "create_time": "1767225600000", "end_time": "1767229200000",
                "update_time": "1767229200000", "action_configs": [{"action_type": "X", "action_name": "@i18n@x"}]}],
            "i18n_resources": [
                {"locale": "zh-CN", "is_default": true, "texts": [
                    {"key": "@i18n@t", "value": "请假"}, {"key": "@i18n@n", "value": "天数"},
                    {"key": "@i18n@x", "value": "加签"}]},
                {"locale": "en-US", "is_default": false, "texts": [{"key": "@i18n@t", "value": "Leave"}]}]
        }))
        .unwrap();
        let batch = |table| {
            let mut rows = Rows::new(table);
            rows.add_instance(&instance, "Asia/Shanghai");
            rows.finish()
        };
        let instances = batch(ExternalTable::Instances);
        assert_eq!(instances.num_rows(), 1);
        let text = |b: &RecordBatch, c: &str| {
            let col = b.column_by_name(c).unwrap().as_string::<i32>();
            col.is_valid(0).then(|| col.value(0).to_owned())
        };
        assert_eq!(text(&instances, "title").as_deref(), Some("请假"));
        assert_eq!(text(&instances, "title_key").as_deref(), Some("@i18n@t"));
        assert_eq!(text(&instances, "user_name").as_deref(), Some("Li"));
        assert_eq!(text(&instances, "user_name_key"), None);
        assert_eq!(text(&instances, "update_mode").as_deref(), Some("REPLACE"));
        let times = |c: &str| {
            instances
                .column_by_name(c)
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
        };
        assert_eq!(times("update_time").value(0), 1_767_225_600_123_000);
        assert!(times("end_time").is_null(0), "\"0\" is not ended, not 1970");
        let form = instances
            .column_by_name("form")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        let form = form.as_struct();
        assert_eq!(form.column(0).as_string::<i32>().value(0), "天数");
        assert_eq!(form.column(1).as_string::<i32>().value(0), "2");
        assert!(form.column(3).is_null(0));
        let tasks = batch(ExternalTable::Tasks);
        assert_eq!(tasks.num_rows(), 1);
        let actions = tasks
            .column_by_name("action_configs")
            .unwrap()
            .as_list::<i32>()
            .value(0);
        assert_eq!(
            actions.as_struct().column(1).as_string::<i32>().value(0),
            "加签"
        );
        assert_eq!(batch(ExternalTable::Ccs).num_rows(), 0);
        assert_eq!(batch(ExternalTable::I18n).num_rows(), 4);
    }
}
