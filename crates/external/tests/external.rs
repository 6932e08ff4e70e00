//! Third-party approvals against the simulated tenant over loopback: push (check first),
//! check after a loss, the update modes, the task status pull, the rejects, and the tables
//! of `load` read back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use attendance_core::external::model::ExternalInstance;
use attendance_core::external::table::{DiffKind, ExternalTable};
use attendance_core::external::validate;
use attendance_external::check::{CheckRequest, check};
use attendance_external::load::{LoadRequest, load, start_date};
use attendance_external::pull::{PullRequest, pull};
use attendance_external::push::{PushRequest, push};
use attendance_feishu::{Client, ClientConfig, Credentials};
use attendance_lake::store::Store;
use attendance_sim::{ExternalSettings, SimConfig, SimTenant, external_documents};
use serde_json::{Value, json};

/// 2026-11-01T00:00:00Z: the documents' times end near it.
const ANCHOR_MS: i64 = 1_793_491_200_000;

struct Harness {
    tenant: SimTenant,
    client: Client,
    dir: tempfile::TempDir,
    store: Arc<Store>,
    codes: Vec<String>,
}

impl Harness {
    async fn start() -> Harness {
        let tenant = SimTenant::start(SimConfig {
            users: 5,
            rate_limit_per_sec: 0,
            external: ExternalSettings {
                rate_limit_per_min: 0,
                ..ExternalSettings::default()
            },
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let config = tenant.config();
        let mut client_config = ClientConfig::new(
            tenant.base_url(),
            Credentials {
                app_id: config.app_id.clone(),
                app_secret: config.app_secret.clone(),
            },
        );
        client_config.rate_limit_per_sec = 5000;
        client_config.external_window = (0, Duration::ZERO);
        let client = Client::new(client_config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let store = Arc::new(Store::open(out.to_str().unwrap()).unwrap());
        let codes = tenant.external_approval_codes();
        Harness {
            tenant,
            client,
            dir,
            store,
            codes,
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn documents(&self, count: usize) -> Vec<Value> {
        external_documents(11, count, &self.codes, ANCHOR_MS)
    }

    /// Writes `docs` one a line to `name` in the work directory.
    fn write(&self, name: &str, docs: &[Value]) -> String {
        let path = self.dir.path().join(name);
        let text: String = docs.iter().map(|d| format!("{d}\n")).collect();
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    async fn push(&self, source: &str, force: bool) -> attendance_external::push::PushSummary {
        let request = PushRequest {
            source: source.to_owned(),
            run_id: format!("push-{}", rand_id()),
            force,
            concurrency: 16,
        };
        push(&self.client, Arc::clone(&self.store), &request)
            .await
            .unwrap()
    }

    async fn check(&self, source: &str) -> attendance_external::check::CheckSummary {
        let request = CheckRequest {
            source: source.to_owned(),
            run_id: format!("check-{}", rand_id()),
            lease_ttl: Duration::from_secs(30),
            concurrency: 8,
        };
        check(&self.client, Arc::clone(&self.store), &request)
            .await
            .unwrap()
    }
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{:04}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn valid(docs: &[Value]) -> Vec<ExternalInstance> {
    let mut all: Vec<ExternalInstance> = docs.iter().map(|d| validate(d).unwrap()).collect();
    all.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    all
}

/// Every batch of every part file under `<root>/<table>/`, with its partition date.
fn read_table(root: &Path, table: &str) -> Vec<(String, RecordBatch)> {
    let mut found = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root.join(table)) else {
        return found;
    };
    let mut dirs: Vec<PathBuf> = dirs.map(|d| d.unwrap().path()).collect();
    dirs.sort();
    for partition in dirs {
        let date = partition
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("date=")
            .to_owned();
        for file in std::fs::read_dir(&partition).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "parquet") {
                let (batches, _) =
                    attendance_lake::writer::decode(std::fs::read(&file).unwrap()).unwrap();
                found.extend(batches.into_iter().map(|b| (date.clone(), b)));
            }
        }
    }
    found
}

fn text(batch: &RecordBatch, column: &str, row: usize) -> Option<String> {
    let c = batch.column_by_name(column).unwrap().as_string::<i32>();
    c.is_valid(row).then(|| c.value(row).to_owned())
}

fn micros(batch: &RecordBatch, column: &str, row: usize) -> Option<i64> {
    let c = batch
        .column_by_name(column)
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>();
    c.is_valid(row).then(|| c.value(row))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_sends_what_the_check_reports_missing_or_stale_and_nothing_twice() {
    let h = Harness::start().await;
    let mut docs = h.documents(2000);
    let source = h.write("all.ndjson", &docs);
    let first = h.push(&source, false).await;
    assert_eq!(
        (first.intake.valid, first.sent, first.up_to_date),
        (2000, 2000, 0)
    );
    assert_eq!(first.check_requests, 20, "100 instances a check request");
    assert!(!first.is_partial());
    assert_eq!(h.tenant.external_instances(), valid(&docs));

    h.tenant.reset_stats();
    let second = h.push(&source, false).await;
    assert_eq!((second.sent, second.up_to_date), (0, 2000));
    assert!(h.tenant.stats().external_instances_received.is_empty());

    let mut edited = BTreeSet::new();
    for i in (0..2000).step_by(200) {
        let doc = &mut docs[i];
        let newer = attendance_core::external::MsTime::read(&doc["update_time"])
            .unwrap()
            .0
            + 60_000;
        doc["update_time"] = json!(newer.to_string());
        doc["status"] = json!("APPROVED");
        edited.insert(doc["instance_id"].as_str().unwrap().to_owned());
    }
    let source = h.write("edited.ndjson", &docs);
    h.tenant.reset_stats();
    let third = h.push(&source, false).await;
    assert_eq!((third.sent, third.up_to_date), (10, 1990));
    let received: BTreeSet<String> = h
        .tenant
        .stats()
        .external_instances_received
        .into_iter()
        .collect();
    assert_eq!(received, edited);
    assert_eq!(h.tenant.external_instances(), valid(&docs));
    // The manifest lists every instance's outcome.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(h.out().join(format!("_runs/{}.json", third.run_id))).unwrap(),
    )
    .unwrap();
    let outcomes = manifest["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2000);
    assert_eq!(
        outcomes.iter().filter(|o| o["outcome"] == "sent").count(),
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_rides_out_try_again_later_answers_and_sends_everything_once() {
    let h = Harness::start().await;
    let docs = h.documents(150);
    // One in ten creates and checks answers 1395001 "try again later" and changes nothing
    // (five attempts a request: a request fails only if all five draw it, 1 in 100,000).
    h.tenant.set_external_try_later(0.1);
    let pushed = h.push(&h.write("all.ndjson", &docs), false).await;
    assert_eq!((pushed.sent, pushed.failed, pushed.refused), (150, 0, 0));
    assert!(
        h.client.stats().retries > 0,
        "1395001 is retried with backoff"
    );
    let errors = h.tenant.stats().errors_by_code;
    assert!(errors.get(&1395001).copied().unwrap_or(0) > 0, "{errors:?}");
    assert_eq!(h.tenant.external_instances(), valid(&docs));
    // Each instance was taken once: a 1395001 answer changed nothing, so none is sent twice
    // over.
    let accepted = h.tenant.stats().external_instances_received.len() as u64
        - errors.get(&1395001).copied().unwrap_or(0);
    assert!(accepted >= 150, "{accepted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_the_platform_refuses_is_not_retried_and_the_others_go_on() {
    let h = Harness::start().await;
    let mut docs = h.documents(30);
    // Valid as a document, but no third-party approval of this app has the code: 1390001.
    docs[4]["approval_code"] = json!("NOT-A-DEFINED-APPROVAL");
    let refused_id = docs[4]["instance_id"].as_str().unwrap().to_owned();
    let pushed = h.push(&h.write("all.ndjson", &docs), true).await;
    assert_eq!((pushed.sent, pushed.refused, pushed.failed), (29, 1, 0));
    assert!(pushed.is_partial());
    let received = h.tenant.stats().external_instances_received;
    assert_eq!(
        received.iter().filter(|id| **id == refused_id).count(),
        1,
        "not retried"
    );
    let outcome = pushed
        .outcomes
        .iter()
        .find(|o| o.instance_id.as_deref() == Some(refused_id.as_str()))
        .unwrap();
    assert!(
        outcome.reason.as_deref().unwrap().contains("1390001"),
        "{outcome:?}"
    );
    assert_eq!(h.tenant.external_instances().len(), 29);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_copies_of_an_instance_the_newest_is_kept_wherever_it_is() {
    let h = Harness::start().await;
    let docs = h.documents(3);
    let time = attendance_core::external::MsTime::read(&docs[1]["update_time"])
        .unwrap()
        .0;
    let mut newer = docs[1].clone();
    newer["update_time"] = json!((time + 1000).to_string());
    newer["status"] = json!("CANCELED");
    // The newer copy first, an older one after it (an export sorted by something else).
    let source = h.write(
        "copies.ndjson",
        &[
            docs[0].clone(),
            newer.clone(),
            docs[2].clone(),
            docs[1].clone(),
        ],
    );
    let pushed = h.push(&source, true).await;
    assert_eq!((pushed.sent, pushed.intake.rejected), (3, 1));
    let rejected = &pushed.intake.rejects[0];
    assert_eq!(rejected.position, attendance_external::Position::Line(4));
    assert!(
        rejected.problems[0].reason.contains("the copy at line 2"),
        "{:?}",
        rejected.problems
    );
    let stored = h
        .tenant
        .external_instance(docs[1]["instance_id"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored, validate(&newer).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_stopped_by_refused_credentials_still_writes_its_manifest() {
    let h = Harness::start().await;
    let docs = h.documents(30);
    let mut config = ClientConfig::new(
        h.tenant.base_url(),
        Credentials {
            app_id: h.tenant.config().app_id.clone(),
            app_secret: "not-the-secret".into(),
        },
    );
    config.max_attempts = 1;
    let client = Client::new(config).unwrap();
    let request = PushRequest {
        source: h.write("all.ndjson", &docs),
        run_id: "push-refused".into(),
        force: false,
        concurrency: 4,
    };
    let error = push(&client, Arc::clone(&h.store), &request)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no further request was sent"),
        "{error}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(h.out().join("_runs/push-refused.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["not_sent"], 30);
    assert!(
        manifest["stopped"].as_str().unwrap().contains("10014"),
        "{manifest}"
    );
    let outcomes = manifest["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 30);
    assert!(outcomes.iter().all(|o| o["outcome"] == "not_sent"));
    assert!(!manifest.to_string().contains("not-the-secret"));
    assert!(h.tenant.external_instances().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_update_changes_nothing_and_the_next_check_reports_it() {
    let h = Harness::start().await;
    let docs = h.documents(20);
    h.push(&h.write("all.ndjson", &docs), false).await;
    let stored = h.tenant.external_instances();

    let mut older = docs[3].clone();
    older["update_mode"] = json!("UPDATE");
    let time = attendance_core::external::MsTime::read(&older["update_time"])
        .unwrap()
        .0;
    older["update_time"] = json!((time - 60_000).to_string());
    older["status"] = json!("REJECTED");
    let source = h.write("older.ndjson", &[older.clone()]);
    let pushed = h.push(&source, true).await;
    assert_eq!(
        pushed.sent, 1,
        "the platform answers 0 and skips it silently"
    );
    assert_eq!(h.tenant.external_instances(), stored, "nothing changed");

    // A push that checks first does not send it again: the platform would skip it again.
    let again = h.push(&source, false).await;
    assert_eq!((again.sent, again.platform_newer), (0, 1));

    let checked = h.check(&source).await;
    assert_eq!(checked.diffs.len(), 1, "{:?}", checked.diffs);
    let diff = &checked.diffs[0];
    assert_eq!(diff.kind, DiffKind::StaleInstance);
    assert_eq!(diff.ours.unwrap().0, time - 60_000);
    assert_eq!(diff.platform.unwrap().0, time);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replace_without_a_task_removes_it() {
    let h = Harness::start().await;
    let docs = h.documents(40);
    h.push(&h.write("all.ndjson", &docs), false).await;
    let mut doc = docs
        .iter()
        .find(|d| d["task_list"].as_array().is_some_and(|t| t.len() >= 2))
        .expect("the data set has multi-task flows")
        .clone();
    let id = doc["instance_id"].as_str().unwrap().to_owned();
    let removed = doc["task_list"].as_array_mut().unwrap().pop().unwrap();
    doc["update_mode"] = json!("REPLACE");
    let time = attendance_core::external::MsTime::read(&doc["update_time"])
        .unwrap()
        .0;
    doc["update_time"] = json!((time + 1).to_string());
    let pushed = h.push(&h.write("one.ndjson", &[doc.clone()]), false).await;
    assert_eq!(pushed.sent, 1);
    let stored = h.tenant.external_instance(&id).unwrap();
    assert!(
        stored
            .tasks()
            .iter()
            .all(|t| t.task_id != removed["task_id"].as_str().unwrap()),
        "the task absent from a REPLACE is gone"
    );
    assert_eq!(stored, validate(&doc).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_after_a_loss_reports_exactly_the_lost_instances_and_tasks() {
    let h = Harness::start().await;
    let docs = h.documents(300);
    let source = h.write("all.ndjson", &docs);
    h.push(&source, false).await;
    let clean = h.check(&source).await;
    assert!(clean.diffs.is_empty(), "{:?}", clean.diffs);

    let all = valid(&docs);
    let multi: Vec<&ExternalInstance> = all.iter().filter(|i| i.tasks().len() >= 3).collect();
    let lost_instances = [
        &all[5].instance_id,
        &all[77].instance_id,
        &all[150].instance_id,
    ];
    let lost_tasks = [
        (
            multi[0].instance_id.as_str(),
            multi[0].tasks()[0].task_id.as_str(),
        ),
        (
            multi[1].instance_id.as_str(),
            multi[1].tasks()[0].task_id.as_str(),
        ),
        (
            multi[1].instance_id.as_str(),
            multi[1].tasks()[2].task_id.as_str(),
        ),
    ];
    let ids: Vec<&str> = lost_instances.iter().map(|s| s.as_str()).collect();
    h.tenant.external_lose(&ids, &lost_tasks);

    let checked = h.check(&source).await;
    let found: BTreeSet<(String, Option<String>, DiffKind)> = checked
        .diffs
        .iter()
        .map(|d| (d.instance_id.clone(), d.task_id.clone(), d.kind))
        .collect();
    let mut expected: BTreeSet<(String, Option<String>, DiffKind)> = ids
        .iter()
        .map(|i| (i.to_string(), None, DiffKind::MissingInstance))
        .collect();
    expected.extend(
        lost_tasks
            .iter()
            .map(|(i, t)| (i.to_string(), Some(t.to_string()), DiffKind::MissingTask)),
    );
    assert_eq!(found, expected);

    // The table holds the same differences.
    let table = read_table(&h.out(), "external_diffs");
    let rows: BTreeSet<(String, Option<String>, String)> = table
        .iter()
        .flat_map(|(_, b)| {
            (0..b.num_rows()).map(move |r| {
                (
                    text(b, "instance_id", r).unwrap(),
                    text(b, "task_id", r),
                    text(b, "kind", r).unwrap(),
                )
            })
        })
        .collect();
    let expected_rows: BTreeSet<(String, Option<String>, String)> = expected
        .into_iter()
        .map(|(i, t, k)| (i, t, k.as_str().to_owned()))
        .collect();
    assert_eq!(rows, expected_rows);

    // A push sends the lost ones back; the next check finds nothing, and replaces the day's
    // differences with none.
    let repaired = h.push(&source, false).await;
    assert_eq!(repaired.sent, 5);
    let after = h.check(&source).await;
    assert!(after.diffs.is_empty(), "{:?}", after.diffs);
    assert!(read_table(&h.out(), "external_diffs").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_over_more_than_twenty_codes_and_several_pages_equals_the_platform() {
    let h = Harness::start().await;
    assert!(h.codes.len() > 20);
    let docs = h.documents(1200);
    h.push(&h.write("all.ndjson", &docs), false).await;
    h.tenant.reset_stats();
    let request = PullRequest {
        approval_codes: h.codes.clone(),
        status: None,
        user_ids: Vec::new(),
        run_id: "pull-1".into(),
        lease_ttl: Duration::from_secs(30),
    };
    let summary = pull(&h.client, Arc::clone(&h.store), &request)
        .await
        .unwrap();
    assert_eq!(summary.instances, 1200);
    assert!(
        h.tenant.stats().external_task_list_calls >= 3,
        "two batches of codes (20 and 4), the first over two pages of 500: {:?}",
        h.tenant.stats().external_task_list_calls
    );
    let mut expected = BTreeMap::new();
    for instance in h.tenant.external_instances() {
        if instance.tasks().is_empty() {
            expected.insert(
                (instance.instance_id.clone(), None),
                (instance.status.clone(), None, None),
            );
        }
        for task in instance.tasks() {
            expected.insert(
                (instance.instance_id.clone(), Some(task.task_id.clone())),
                (
                    instance.status.clone(),
                    Some(task.status.clone()),
                    Some(task.update_time.0 * 1000),
                ),
            );
        }
    }
    let mut found = BTreeMap::new();
    for (_, b) in read_table(&h.out(), "external_task_status") {
        for r in 0..b.num_rows() {
            found.insert(
                (text(&b, "instance_id", r).unwrap(), text(&b, "task_id", r)),
                (
                    text(&b, "instance_status", r).unwrap(),
                    text(&b, "task_status", r),
                    micros(&b, "task_update_time", r),
                ),
            );
        }
    }
    assert_eq!(found, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_instance_is_rejected_with_its_reason_and_never_sent() {
    let h = Harness::start().await;
    let base = h.documents(1).remove(0);
    let variant = |id: &str, edit: &dyn Fn(&mut Value)| {
        let mut doc = base.clone();
        doc["instance_id"] = json!(id);
        if let Some(tasks) = doc["task_list"].as_array_mut() {
            for (i, t) in tasks.iter_mut().enumerate() {
                t["task_id"] = json!(format!("{id}-t{i}"));
            }
        }
        if let Some(ccs) = doc["cc_list"].as_array_mut() {
            for (i, c) in ccs.iter_mut().enumerate() {
                c["cc_id"] = json!(format!("{id}-c{i}"));
            }
        }
        edit(&mut doc);
        doc
    };
    let task = json!({"task_id": "x", "user_id": "u", "links": {"pc_link": "p"}, "status": "PENDING",
        "create_time": "1790000000000", "end_time": "0", "update_time": "1790000000000"});
    let cc = json!({"cc_id": "x", "user_id": "u", "links": {"pc_link": "p"}, "read_status": "READ",
        "create_time": "1790000000000", "update_time": "1790000000000"});
    let cases: Vec<(Value, &str)> = vec![
        (
            variant("bad-1", &|d| {
                d.as_object_mut().unwrap().remove("approval_code");
            }),
            "approval_code: is required",
        ),
        (
            variant("bad-2", &|d| d["status"] = json!("DONE")),
            "status: \"DONE\" is not one of",
        ),
        (
            variant("bad-3", &|d| {
                let mut t = task.clone();
                t.as_object_mut().unwrap().remove("update_time");
                t["task_id"] = json!("bad-3-t");
                d["task_list"] = json!([t]);
            }),
            "task_list[0].update_time: is required",
        ),
        (
            variant(
                "bad-4",
                &|d| d["cc_list"] = json!([{"cc_id": "bad-4-c", "user_id": "u", "links": {"pc_link": "p"}, "read_status": "SEEN", "create_time": "1790000000000", "update_time": "1790000000000"}]),
            ),
            "cc_list[0].read_status",
        ),
        (
            variant("bad-5", &|d| d["display_method"] = json!("POPUP")),
            "display_method",
        ),
        (
            variant("bad-6", &|d| d["update_mode"] = json!("MERGE")),
            "update_mode",
        ),
        (
            variant("bad-7", &|d| d["start_time"] = json!("2026-11-01")),
            "start_time: must be a millisecond epoch",
        ),
        (
            variant("bad-8", &|d| {
                d.as_object_mut().unwrap().remove("end_time");
            }),
            "end_time: is required",
        ),
        (
            variant("bad-9", &|d| d["title"] = json!("@i18n@nowhere")),
            "title: uses \"@i18n@nowhere\"",
        ),
        (
            variant("bad-10", &|d| {
                d["i18n_resources"][0]["is_default"] = json!(false)
            }),
            "exactly one must",
        ),
        (
            variant("bad-11", &|d| {
                let mut second = d["i18n_resources"][0].clone();
                second["locale"] = json!("ko-KR");
                d["i18n_resources"].as_array_mut().unwrap().push(second);
            }),
            "2 locales have is_default",
        ),
        (
            variant("bad-12", &|d| {
                d["task_list"] = Value::Array(
                    (0..301)
                        .map(|i| {
                            let mut t = task.clone();
                            t["task_id"] = json!(format!("b12-{i}"));
                            t["update_time"] = json!("1790000000000");
                            t
                        })
                        .collect(),
                )
            }),
            "at most 300",
        ),
        (
            variant("bad-13", &|d| {
                d["cc_list"] = Value::Array(
                    (0..201)
                        .map(|i| {
                            let mut c = cc.clone();
                            c["cc_id"] = json!(format!("b13-{i}"));
                            c
                        })
                        .collect(),
                )
            }),
            "at most 200",
        ),
        (
            variant(
                "bad-14",
                &|d| d["cc_list"] = json!([{"cc_id": "bad-14-t0", "user_id": "u", "links": {"pc_link": "p"}, "read_status": "READ", "create_time": "1790000000000", "update_time": "1790000000000"}]),
            ),
            "is used twice",
        ),
        (
            variant("bad-15", &|d| {
                let o = d.as_object_mut().unwrap();
                o.remove("user_id");
                o.remove("open_id");
            }),
            "needs a user_id or an open_id",
        ),
        (
            variant(
                "bad-16",
                &|d| d["task_list"] = json!([{"task_id": "bad-16-t", "links": {"pc_link": "p"}, "status": "PENDING", "create_time": "1790000000000", "end_time": "0", "update_time": "1790000000000"}]),
            ),
            "the approver needs a user_id",
        ),
        (
            variant("bad-17", &|d| d["links"] = json!({"pc_link": ""})),
            "needs pc_link or mobile_link",
        ),
        (
            variant("bad-18", &|d| {
                d["i18n_resources"][0]["locale"] = json!("klingon")
            }),
            "locale",
        ),
        (
            variant("bad-20", &|d| {
                d["task_list"][0]["status"] = json!("FORWARDED")
            }),
            "task_list[0].status: \"FORWARDED\" is not one of",
        ),
        (
            variant("bad-21", &|d| {
                d["task_list"][0]["display_method"] = json!("TRUSTEESHIP")
            }),
            "task_list[0].display_method",
        ),
        (
            variant("bad-22", &|d| {
                d["task_list"][0]["action_configs"] = json!([{"action_type": "ASK_MORE"}])
            }),
            "action_configs[0].action_name: is required",
        ),
        (
            variant("bad-23", &|d| d["user_name"] = json!("@i18n@nobody")),
            "user_name: uses \"@i18n@nobody\"",
        ),
        (
            variant("bad-24", &|d| {
                d["department_name"] = json!("@i18n@nowhere-dept")
            }),
            "department_name: uses",
        ),
        (
            variant("bad-25", &|d| {
                d["form"] = json!([{"name": "Days", "value": "@i18n@no-value"}])
            }),
            "form[0].value: uses",
        ),
        (
            variant(
                "bad-26",
                &|d| {
                    d["task_list"][0]["action_configs"] =
                        json!([{"action_type": "ASK_MORE", "action_name": "@i18n@no-action"}])
                },
            ),
            "action_configs[0].action_name: uses",
        ),
        (
            variant("bad-27", &|d| d["start_time"] = json!("0")),
            "start_time: must be a millisecond epoch after 1970, not 0",
        ),
        (
            variant("bad-28", &|d| d["update_time"] = json!(1_790_000_000)),
            "update_time: 1790000000 is before 1973 as milliseconds: seconds were given",
        ),
        (
            variant("bad-29", &|d| d["extra"] = json!("{not json")),
            "extra: must be JSON text",
        ),
        (
            variant("bad-30", &|d| {
                d["task_list"][0]["generate_type"] = json!("")
            }),
            "task_list[0].generate_type",
        ),
    ];
    let with_token = variant("bad-19", &|d| {
        d["status"] = json!("NOPE");
        d["trusteeship_url_token"] = json!("tok-secret-123");
    });
    let cases: Vec<(Value, &str)> = cases
        .into_iter()
        .chain([(with_token, "status: \"NOPE\"")])
        .collect();
    let good = variant("good-1", &|_| {});
    let mut lines: Vec<String> = cases.iter().map(|(d, _)| d.to_string()).collect();
    lines.push("{not json".into());
    lines.push(good.to_string());
    lines.push(good.to_string());
    let path = h.dir.path().join("mixed.ndjson");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let summary = h.push(path.to_str().unwrap(), true).await;
    assert_eq!(summary.sent, 1);
    assert_eq!(
        summary.intake.rejected,
        cases.len() + 2,
        "every variant, the bad line, the second copy"
    );
    assert!(summary.is_partial());
    for (doc, reason) in &cases {
        let id = doc["instance_id"].as_str().unwrap();
        let rejected = summary
            .intake
            .rejects
            .iter()
            .find(|r| r.instance_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} was not rejected"));
        assert!(
            rejected
                .problems
                .iter()
                .any(|p| p.to_string().contains(reason)),
            "{id}: {reason:?} not in {:?}",
            rejected.problems
        );
    }
    let received = h.tenant.stats().external_instances_received;
    assert_eq!(
        received,
        vec!["good-1".to_owned()],
        "nothing invalid reached the platform"
    );
    let rejects_file = h.out().join(summary.intake.rejects_file.as_ref().unwrap());
    let kept = std::fs::read_to_string(rejects_file).unwrap();
    assert_eq!(kept.lines().count(), cases.len() + 2);
    assert!(
        kept.contains(&format!("\"line\":{}", cases.len() + 1)),
        "the bad line is named by its number"
    );
    assert!(
        !kept.contains("tok-secret-123"),
        "the trusteeship token is not kept aside"
    );
    assert!(kept.contains("<redacted>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_lands_the_documents_with_texts_resolved_and_times_in_utc() {
    let h = Harness::start().await;
    let docs = h.documents(400);
    // The same documents as a JSON array: the form is told by the first byte.
    let source = h.dir.path().join("all.json");
    std::fs::write(&source, serde_json::to_vec(&docs).unwrap()).unwrap();
    let request = LoadRequest {
        source: source.display().to_string(),
        time_zone: chrono_tz::Asia::Shanghai,
        run_id: "load-1".into(),
        lease_ttl: Duration::from_secs(30),
        spill_dir: h.dir.path().to_path_buf(),
        full: false,
    };
    let summary = load(Arc::clone(&h.store), &request).await.unwrap();
    assert_eq!((summary.intake.valid, summary.intake.rejected), (400, 0));
    let instances = valid(&docs);

    let table = read_table(&h.out(), "external_instances");
    let mut rows = BTreeMap::new();
    for (date, b) in &table {
        for r in 0..b.num_rows() {
            rows.insert(
                text(b, "instance_id", r).unwrap(),
                (date.clone(), b.clone(), r),
            );
        }
    }
    assert_eq!(rows.len(), 400);
    let mut locales_seen = BTreeSet::new();
    for instance in &instances {
        let (date, b, r) = &rows[&instance.instance_id];
        let r = *r;
        assert_eq!(
            date,
            &start_date(instance, chrono_tz::Asia::Shanghai).to_string()
        );
        assert_eq!(
            micros(b, "start_time", r),
            Some(instance.start_time.0 * 1000)
        );
        assert_eq!(
            micros(b, "update_time", r),
            Some(instance.update_time.0 * 1000)
        );
        assert_eq!(
            micros(b, "end_time", r),
            instance.end_time.instant().map(|ms| ms * 1000)
        );
        let title = instance.title.as_deref();
        assert_eq!(
            text(b, "title", r).as_deref(),
            title.map(|t| instance.resolve(t))
        );
        if let Some(t) = title.filter(|t| t.starts_with("@i18n@")) {
            assert_eq!(text(b, "title_key", r).as_deref(), Some(t));
            assert_ne!(
                text(b, "title", r).as_deref(),
                Some(t),
                "the key is resolved"
            );
        }
        assert_eq!(
            text(b, "approval_code", r).as_deref(),
            Some(instance.approval_code.as_str())
        );
        locales_seen.extend(instance.i18n_resources.iter().map(|l| l.locale.clone()));
    }
    assert!(locales_seen.len() >= 2, "several locales: {locales_seen:?}");
    let count = |table: &str| -> usize {
        read_table(&h.out(), table)
            .iter()
            .map(|(_, b)| b.num_rows())
            .sum()
    };
    let tasks: usize = instances.iter().map(|i| i.tasks().len()).sum();
    let ccs: usize = instances.iter().map(|i| i.ccs().len()).sum();
    let texts: usize = instances
        .iter()
        .flat_map(|i| &i.i18n_resources)
        .map(|r| r.texts.len())
        .sum();
    assert_eq!(count("external_instance_tasks"), tasks);
    assert_eq!(count("external_instance_ccs"), ccs);
    assert_eq!(count("external_i18n"), texts);
    assert!(ccs > 0 && tasks > 400);
    // A task row: its status and times as sent.
    let task_rows = read_table(&h.out(), "external_instance_tasks");
    let transferred = task_rows.iter().any(|(_, b)| {
        (0..b.num_rows()).any(|r| text(b, "status", r).as_deref() == Some("TRANSFERRED"))
    });
    assert!(transferred, "the data set has transfers");
    // Every task, cc and text as the source has it: texts resolved, times in UTC, each in the
    // partition of its instance.
    type TaskRow = (
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        String,
    );
    let mut expected_tasks: BTreeMap<(String, String), TaskRow> = BTreeMap::new();
    let mut expected_ccs = BTreeMap::new();
    let mut expected_texts = BTreeSet::new();
    for i in &instances {
        let date = start_date(i, chrono_tz::Asia::Shanghai).to_string();
        for t in i.tasks() {
            expected_tasks.insert(
                (i.instance_id.clone(), t.task_id.clone()),
                (
                    t.status.clone(),
                    t.title.as_deref().map(|x| i.resolve(x).to_owned()),
                    Some(t.create_time.0 * 1000),
                    t.end_time.instant().map(|ms| ms * 1000),
                    t.user_id.clone(),
                    date.clone(),
                ),
            );
        }
        for c in i.ccs() {
            expected_ccs.insert(
                (i.instance_id.clone(), c.cc_id.clone()),
                (
                    c.read_status.clone(),
                    Some(c.update_time.0 * 1000),
                    date.clone(),
                ),
            );
        }
        for r in &i.i18n_resources {
            for t in &r.texts {
                expected_texts.insert((
                    i.instance_id.clone(),
                    r.locale.clone(),
                    r.is_default,
                    t.key.clone(),
                    t.value.clone(),
                ));
            }
        }
    }
    let mut found_tasks = BTreeMap::new();
    for (date, b) in &task_rows {
        for r in 0..b.num_rows() {
            found_tasks.insert(
                (
                    text(b, "instance_id", r).unwrap(),
                    text(b, "task_id", r).unwrap(),
                ),
                (
                    text(b, "status", r).unwrap(),
                    text(b, "title", r),
                    micros(b, "create_time", r),
                    micros(b, "end_time", r),
                    text(b, "user_id", r),
                    date.clone(),
                ),
            );
        }
    }
    assert_eq!(found_tasks, expected_tasks);
    let mut found_ccs = BTreeMap::new();
    for (date, b) in read_table(&h.out(), "external_instance_ccs") {
        for r in 0..b.num_rows() {
            found_ccs.insert(
                (
                    text(&b, "instance_id", r).unwrap(),
                    text(&b, "cc_id", r).unwrap(),
                ),
                (
                    text(&b, "read_status", r).unwrap(),
                    micros(&b, "update_time", r),
                    date.clone(),
                ),
            );
        }
    }
    assert_eq!(found_ccs, expected_ccs);
    let mut found_texts = BTreeSet::new();
    for (_, b) in read_table(&h.out(), "external_i18n") {
        let default = b.column_by_name("is_default").unwrap().as_boolean().clone();
        for r in 0..b.num_rows() {
            found_texts.insert((
                text(&b, "instance_id", r).unwrap(),
                text(&b, "locale", r).unwrap(),
                default.value(r),
                text(&b, "key", r).unwrap(),
                text(&b, "value", r).unwrap(),
            ));
        }
    }
    assert_eq!(found_texts, expected_texts);

    // A rerun of the same source writes the same files.
    let snapshot = files(&h.out());
    let again = LoadRequest {
        run_id: "load-2".into(),
        ..request.clone()
    };
    load(Arc::clone(&h.store), &again).await.unwrap();
    assert_eq!(files(&h.out()), snapshot);

    let ids_in = |table: &str| -> BTreeMap<String, Vec<String>> {
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (date, b) in read_table(&h.out(), table) {
            for r in 0..b.num_rows() {
                found
                    .entry(text(&b, "instance_id", r).unwrap())
                    .or_default()
                    .push(date.clone());
            }
        }
        found
    };

    // A daily export of what changed: one instance whose start moved to another date, and one
    // new. Upserted: the moved one leaves no row behind, the 399 others stay as they were.
    let mut moved = docs[10].clone();
    let moved_id = moved["instance_id"].as_str().unwrap().to_owned();
    let start = attendance_core::external::MsTime::read(&moved["start_time"])
        .unwrap()
        .0;
    moved["start_time"] = json!((start - 40 * 86_400_000).to_string());
    let mut new = docs[11].clone();
    new["instance_id"] = json!("hr-new-1");
    for (i, t) in new["task_list"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        t["task_id"] = json!(format!("hr-new-1-t{i}"));
    }
    if let Some(ccs) = new["cc_list"].as_array_mut() {
        for (i, c) in ccs.iter_mut().enumerate() {
            c["cc_id"] = json!(format!("hr-new-1-c{i}"));
        }
    }
    let changes = h.write("changes.ndjson", &[moved.clone(), new]);
    load(
        Arc::clone(&h.store),
        &LoadRequest {
            source: changes,
            run_id: "load-3".into(),
            ..request.clone()
        },
    )
    .await
    .unwrap();
    let moved_date = start_date(&validate(&moved).unwrap(), chrono_tz::Asia::Shanghai).to_string();
    for table in [
        "external_instances",
        "external_instance_tasks",
        "external_i18n",
    ] {
        let found = ids_in(table);
        let dates: BTreeSet<&String> = found[&moved_id].iter().collect();
        assert_eq!(
            dates,
            BTreeSet::from([&moved_date]),
            "{table}: one date, the new one"
        );
    }
    let after = ids_in("external_instances");
    assert_eq!(after.len(), 401);
    assert!(after.values().all(|d| d.len() == 1), "no instance twice");

    // With --full, a source of one approval code is the whole truth for it: that code's
    // instances it lacks are deleted, the other codes' rows stay.
    let code = instances[0].approval_code.clone();
    let mut of_code: Vec<Value> = docs
        .iter()
        .filter(|d| d["approval_code"] == json!(code))
        .cloned()
        .collect();
    let dropped = of_code.remove(0);
    let of_code_count = of_code.len();
    load(
        Arc::clone(&h.store),
        &LoadRequest {
            source: h.write("of-code.ndjson", &of_code),
            run_id: "load-4".into(),
            full: true,
            ..request.clone()
        },
    )
    .await
    .unwrap();
    let after = ids_in("external_instances");
    assert!(!after.contains_key(dropped["instance_id"].as_str().unwrap()));
    let of_code_after = instances
        .iter()
        .filter(|i| i.approval_code == code && after.contains_key(&i.instance_id))
        .count();
    assert_eq!(of_code_after, of_code_count);
    assert_eq!(after.len(), 400, "401 less the dropped one");
    let tasks = ids_in("external_instance_tasks");
    assert!(!tasks.contains_key(dropped["instance_id"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_keeps_the_newest_copy_of_an_instance_even_when_it_moved_dates() {
    let h = Harness::start().await;
    let docs = h.documents(2);
    let old = docs[0].clone();
    let mut new = old.clone();
    let time = attendance_core::external::MsTime::read(&old["update_time"])
        .unwrap()
        .0;
    let start = attendance_core::external::MsTime::read(&old["start_time"])
        .unwrap()
        .0;
    new["update_time"] = json!((time + 1000).to_string());
    new["start_time"] = json!((start - 40 * 86_400_000).to_string());
    new["status"] = json!("CANCELED");
    let source = h.write("copies.ndjson", &[old, docs[1].clone(), new.clone()]);
    let request = LoadRequest {
        source,
        time_zone: chrono_tz::Asia::Shanghai,
        run_id: "load-copies".into(),
        lease_ttl: Duration::from_secs(30),
        spill_dir: h.dir.path().to_path_buf(),
        full: false,
    };
    let summary = load(Arc::clone(&h.store), &request).await.unwrap();
    assert_eq!((summary.intake.valid, summary.intake.rejected), (2, 1));
    let rejected = &summary.intake.rejects[0];
    assert_eq!(rejected.position, attendance_external::Position::Line(1));
    assert_eq!(rejected.document["instance_id"], new["instance_id"]);
    let mut rows = Vec::new();
    for (date, b) in read_table(&h.out(), "external_instances") {
        for r in 0..b.num_rows() {
            rows.push((
                text(&b, "instance_id", r).unwrap(),
                text(&b, "status", r).unwrap(),
                date.clone(),
            ));
        }
    }
    let id = new["instance_id"].as_str().unwrap();
    let of_id: Vec<_> = rows.iter().filter(|(i, _, _)| i == id).collect();
    let new_date = start_date(&validate(&new).unwrap(), chrono_tz::Asia::Shanghai).to_string();
    assert_eq!(
        of_id,
        vec![&(id.to_owned(), "CANCELED".to_owned(), new_date)]
    );
    assert_eq!(rows.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_load_waits_for_the_first_but_a_check_does_not() {
    let h = Harness::start().await;
    let docs = h.documents(20);
    let source = h.write("all.ndjson", &docs);
    h.push(&source, false).await;
    let held = attendance_lake::lease::Lease::acquire_at(
        Arc::clone(&h.store),
        attendance_external::lease_of(ExternalTable::Instances),
        "another-load",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let request = LoadRequest {
        source: source.clone(),
        time_zone: chrono_tz::Asia::Shanghai,
        run_id: "load-blocked".into(),
        lease_ttl: Duration::from_secs(30),
        spill_dir: h.dir.path().to_path_buf(),
        full: false,
    };
    let error = load(Arc::clone(&h.store), &request).await.unwrap_err();
    assert!(
        matches!(
            error,
            attendance_external::ExternalError::Lease(
                attendance_lake::lease::LeaseError::Held { .. }
            )
        ),
        "{error}"
    );
    assert!(error.to_string().contains("another-load"), "{error}");
    assert!(read_table(&h.out(), "external_instances").is_empty());
    // The check writes another table, under another lease.
    let checked = h.check(&source).await;
    assert!(checked.diffs.is_empty());
    held.release().await.unwrap();
    load(Arc::clone(&h.store), &request).await.unwrap();
    assert_eq!(
        read_table(&h.out(), "external_instances")
            .iter()
            .map(|(_, b)| b.num_rows())
            .sum::<usize>(),
        20
    );
}

/// Every Parquet file under `root`, relative path and bytes.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.insert(
                    path.strip_prefix(root).unwrap().display().to_string(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    found
}
