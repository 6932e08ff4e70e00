//! `events serve` and `events connect` as processes: a day of the simulated tenant's events over
//! each transport, duplicates and replicas, `kill -9` under load, an object-store root, SIGTERM,
//! and the refusals that must stop a receiver instead of making it spin.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attendance_feishu::frame::{AUTH_EXCEED_CONN_LIMIT, ConnectionConfig};
use attendance_sim::{
    EventSettings, HandshakeRefusal, LongConnectionSettings, SimConfig, SimEvent,
};
use chrono::Days;
use serde_json::Value;

use crate::storage::{S3_SECRET, S3Server};
use crate::util::*;

const ENCRYPT_KEY: &str = "encrypt-key-never-logged";

/// A receiver process and the first line it printed (where it listens).
struct Receiver {
    child: Child,
    first_line: String,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Receiver {
    fn spawn(args: &[&str], env: &[(&str, String)]) -> Receiver {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("FEISHU_APP_ID")
            .env_remove("FEISHU_APP_SECRET")
            .env_remove("FEISHU_BASE_URL")
            .env_remove("FEISHU_VERIFICATION_TOKEN")
            .env_remove("FEISHU_ENCRYPT_KEY")
            .env("ATTENDANCE_SYNC_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).unwrap();
        assert!(!first_line.is_empty(), "the receiver exited at once");
        Receiver {
            child,
            first_line: first_line.trim().to_string(),
            stdout,
        }
    }

    fn serve(out: &str, listen: &str, env: &[(&str, String)]) -> Receiver {
        Receiver::spawn(&["events", "serve", "--listen", listen, "--out", out], env)
    }

    /// The URL printed on the first line ("listening on URL" / "metrics on URL").
    fn url(&self) -> String {
        self.first_line.rsplit(' ').next().unwrap().to_string()
    }

    fn port(&self) -> u16 {
        let url = self.url();
        let host = url.trim_start_matches("http://").split('/').next().unwrap();
        host.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// SIGTERM, then the exit code, the rest of stdout and stderr.
    fn terminate(self) -> (i32, String, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        self.finish()
    }

    fn finish(mut self) -> (i32, String, String) {
        let status = wait_at_most(&mut self.child, Duration::from_secs(20));
        let mut out = String::new();
        self.stdout.read_to_string(&mut out).unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, format!("{}\n{out}", self.first_line), err)
    }
}

fn wait_at_most(child: &mut Child, limit: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("the process did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn receiver_env(tenant: &Tenant) -> Vec<(&'static str, String)> {
    let events = &tenant.sim().config().events;
    let mut env = vec![(
        "FEISHU_VERIFICATION_TOKEN",
        events.verification_token.clone(),
    )];
    if let Some(key) = &events.encrypt_key {
        env.push(("FEISHU_ENCRYPT_KEY", key.clone()));
    }
    env
}

/// Every landed record under a local root.
fn landed(root: &Path) -> Vec<Value> {
    let mut found = Vec::new();
    let Ok(shards) = std::fs::read_dir(root.join("_events/inbox")) else {
        return found;
    };
    for shard in shards {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                found.push(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap());
            }
        }
    }
    found
}

fn landed_count(root: &Path) -> usize {
    let Ok(shards) = std::fs::read_dir(root.join("_events/inbox")) else {
        return 0;
    };
    shards
        .map(|s| {
            std::fs::read_dir(s.unwrap().path())
                .map(|files| {
                    files
                        .filter(|f| {
                            !f.as_ref()
                                .unwrap()
                                .file_name()
                                .to_string_lossy()
                                .starts_with('.')
                        })
                        .count()
                })
                .unwrap_or(0)
        })
        .sum()
}

fn ids(events: &[SimEvent]) -> BTreeSet<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

fn tenant_with(users: usize, events: EventSettings) -> Tenant {
    Tenant::start(SimConfig {
        users,
        rate_limit_per_sec: 0,
        events,
        ..SimConfig::default()
    })
}

fn events_of(tenant: &Tenant, days: u64) -> Vec<SimEvent> {
    let to = today();
    tenant.sim().approval_events(to - Days::new(days - 1), to)
}

#[test]
fn a_receiver_needs_its_verification_token_and_a_sane_path() {
    let ws = Workspace::new();
    let out = ws.out();
    let run = run_bin(
        &[
            "events",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr().contains("FEISHU_VERIFICATION_TOKEN"),
        "{}",
        run.stderr()
    );
    let run = run_bin(
        &[
            "events",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--out",
            out.to_str().unwrap(),
            "--path",
            "webhook",
        ],
        &[("FEISHU_VERIFICATION_TOKEN", "t")],
    );
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("--path 'webhook'"),
        "{}",
        run.stderr()
    );
    for path in ["/hook/:id", "/hook/{id}", "/metrics"] {
        let run = run_bin(
            &[
                "events",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--out",
                out.to_str().unwrap(),
                "--path",
                path,
            ],
            &[("FEISHU_VERIFICATION_TOKEN", "t")],
        );
        assert_eq!(run.code(), 2, "{path}: {}", run.stderr());
    }
    let missing = ws.dir.path().join("no-such-file");
    let run = run_bin(
        &[
            "events",
            "serve",
            "--out",
            out.to_str().unwrap(),
            "--verification-token-file",
            missing.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("--verification-token-file"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_month_of_events_pushed_encrypted_with_duplicates_lands_each_once_and_stops_on_sigterm() {
    let tenant = tenant_with(
        40,
        EventSettings {
            encrypt_key: Some(ENCRYPT_KEY.into()),
            duplicate_share: 0.3,
            reorder: true,
            time_scale: 1000.0,
            ..EventSettings::default()
        },
    );
    let events = events_of(&tenant, 30);
    assert!(events.len() > 100, "{} events", events.len());
    let ws = Workspace::new();
    let out = ws.out();
    let receiver = Receiver::serve(out.to_str().unwrap(), "127.0.0.1:0", &receiver_env(&tenant));
    let report = tenant
        .rt
        .block_on(tenant.sim().push_webhook(&receiver.url(), events.clone()));
    assert!(report.gave_up.is_empty(), "{report:?}");
    assert_eq!(
        report.acked.iter().cloned().collect::<BTreeSet<_>>(),
        ids(&events)
    );
    assert!(
        report.attempts > events.len() as u64,
        "duplicates were sent"
    );

    let (code, stdout, stderr) = receiver.terminate();
    assert_eq!(code, 0, "{stderr}");
    let duplicates = report.attempts - events.len() as u64;
    assert!(
        stdout.contains(&format!(
            "stopped: {} events landed, {duplicates} duplicate deliveries, 0 refused",
            events.len()
        )),
        "{stdout}"
    );
    let stored = landed(&out);
    assert_eq!(stored.len(), events.len());
    for event in &events {
        let record = stored
            .iter()
            .find(|r| r["id"] == event.id.as_str())
            .unwrap_or_else(|| panic!("{} not landed", event.id));
        assert_eq!(record["event_type"], event.event_type.as_str());
        assert_eq!(record["body"]["event"], event.body["event"]);
        assert_eq!(record["transport"], "webhook");
    }
    // Leaves come twice (v1 and V2) with one instance code.
    let leave_codes: Vec<&str> = stored
        .iter()
        .filter(|r| r["event_type"] == "leave_approvalV2")
        .map(|r| r["body"]["event"]["instance_code"].as_str().unwrap())
        .collect();
    assert!(!leave_codes.is_empty());
    for code in leave_codes {
        assert!(
            stored.iter().any(|r| r["event_type"] == "leave_approval"
                && r["body"]["event"]["instance_code"] == code)
        );
    }
    // No secret anywhere.
    let token = &tenant.sim().config().events.verification_token;
    for text in [&stdout, &stderr] {
        assert!(!text.contains(ENCRYPT_KEY) && !text.contains(token.as_str()));
    }
    for record in &stored {
        let text = record.to_string();
        assert!(!text.contains(ENCRYPT_KEY) && !text.contains(token.as_str()));
    }
}

#[test]
fn a_receiver_killed_under_load_loses_no_acknowledged_event() {
    let tenant = tenant_with(
        150,
        EventSettings {
            concurrency: 16,
            // Retries after 30 ms, 600 ms, 7.2 s, 43 s.
            time_scale: 500.0,
            ..EventSettings::default()
        },
    );
    let events = events_of(&tenant, 60);
    assert!(events.len() > 1500, "{} events", events.len());
    let ws = Workspace::new();
    let out = ws.out();
    let env = receiver_env(&tenant);
    let first = Receiver::serve(out.to_str().unwrap(), "127.0.0.1:0", &env);
    let url = first.url();
    let listen = format!("127.0.0.1:{}", first.port());
    let (report, landed_at_kill, second) = std::thread::scope(|scope| {
        let pushing = scope.spawn(|| {
            tenant
                .rt
                .block_on(tenant.sim().push_webhook(&url, events.clone()))
        });
        let started = Instant::now();
        while landed_count(&out) < 300 {
            assert!(started.elapsed() < Duration::from_secs(60), "no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut first = first;
        first.child.kill().unwrap(); // SIGKILL: no drain, no cleanup
        first.child.wait().unwrap();
        let landed_at_kill = landed_count(&out);
        let second = Receiver::serve(out.to_str().unwrap(), &listen, &env);
        (pushing.join().unwrap(), landed_at_kill, second)
    });
    assert!(
        landed_at_kill < events.len(),
        "the receiver finished before it was killed: the test proves nothing"
    );
    assert!(report.gave_up.is_empty(), "{:?}", report.gave_up);
    let stored: BTreeSet<String> = landed(&out)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    // Every delivery the platform saw acknowledged is stored, whichever process acked it.
    for id in &report.acked {
        assert!(
            stored.contains(id),
            "{id} was acknowledged but is not stored"
        );
    }
    assert_eq!(stored, ids(&events), "each event once, nothing else");
    assert!(
        report.answers.get(&0).copied().unwrap_or(0) > 0,
        "some deliveries met the dead receiver: {:?}",
        report.answers
    );
    let (code, _, stderr) = second.terminate();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn two_replicas_on_an_object_store_root_land_each_event_once() {
    let tenant = tenant_with(
        20,
        EventSettings {
            encrypt_key: Some(ENCRYPT_KEY.into()),
            reorder: true,
            ..EventSettings::default()
        },
    );
    let events = events_of(&tenant, 20);
    assert!(events.len() > 30, "{} events", events.len());
    let s3 = S3Server::start(&["lake"]);
    let mut env: Vec<(&str, String)> = s3.env();
    env.extend(receiver_env(&tenant));
    let url = "s3://lake/attendance";
    let a = Receiver::serve(url, "127.0.0.1:0", &env);
    let b = Receiver::serve(url, "127.0.0.1:0", &env);
    // Both replicas get every event at the same time.
    let (report_a, report_b) = std::thread::scope(|scope| {
        let to_a = scope.spawn(|| {
            tenant
                .rt
                .block_on(tenant.sim().push_webhook(&a.url(), events.clone()))
        });
        let to_b = scope.spawn(|| {
            tenant
                .rt
                .block_on(tenant.sim().push_webhook(&b.url(), events.clone()))
        });
        (to_a.join().unwrap(), to_b.join().unwrap())
    });
    assert!(report_a.gave_up.is_empty() && report_b.gave_up.is_empty());
    let files: Vec<String> = s3
        .list(url)
        .into_iter()
        .filter(|f| f.starts_with("_events/inbox/"))
        .collect();
    assert_eq!(files.len(), events.len(), "{files:?}");
    let landed_by = |stdout: &str| -> usize {
        let line = stdout.lines().find(|l| l.starts_with("stopped:")).unwrap();
        line.split(' ').nth(1).unwrap().parse().unwrap()
    };
    let (code_a, out_a, err_a) = a.terminate();
    let (code_b, out_b, err_b) = b.terminate();
    assert_eq!((code_a, code_b), (0, 0), "{err_a}\n{err_b}");
    assert_eq!(landed_by(&out_a) + landed_by(&out_b), events.len());
    for text in [&out_a, &err_a, &out_b, &err_b] {
        assert!(!text.contains(S3_SECRET) && !text.contains(ENCRYPT_KEY));
    }
}

fn quick_reconnects() -> ConnectionConfig {
    ConnectionConfig {
        reconnect_count: -1,
        reconnect_interval: 1,
        reconnect_nonce: 1,
        ping_interval: 1,
    }
}

fn connect(tenant: &Tenant, out: &str) -> Receiver {
    let url = tenant.url();
    let mut env: Vec<(&str, String)> = creds()
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    env.push(("FEISHU_BASE_URL", url));
    Receiver::spawn(
        &[
            "events",
            "connect",
            "--out",
            out,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &env,
    )
}

#[test]
fn the_long_connection_lands_fragmented_events_across_server_side_closes() {
    let tenant = tenant_with(
        30,
        EventSettings {
            long_connection: LongConnectionSettings {
                config: quick_reconnects(),
                fragment_size: Some(300),
                close_after_frames: Some(60),
                repush_after: Duration::from_secs(1),
                ..LongConnectionSettings::default()
            },
            ..EventSettings::default()
        },
    );
    let events = events_of(&tenant, 20);
    assert!(events.len() > 60, "{} events", events.len());
    let ws = Workspace::new();
    let out = ws.out();
    let receiver = connect(&tenant, out.to_str().unwrap());
    assert!(
        receiver.first_line.starts_with("metrics on "),
        "{}",
        receiver.first_line
    );
    tenant.sim().push_long_connection(events.clone());
    let all: Vec<String> = ids(&events).into_iter().collect();
    let acked = tenant.rt.block_on(
        tenant
            .sim()
            .wait_long_connection_acked(&all, Duration::from_secs(60)),
    );
    let stats = tenant.sim().long_connection_stats();
    assert!(acked, "{stats:?}");
    assert!(
        stats.closed_by_server >= 1 && stats.connections >= 2,
        "{stats:?}"
    );
    assert!(
        stats.frames_sent > events.len() as u64,
        "fragments were sent: {stats:?}"
    );
    assert!(stats.pings >= 1, "{stats:?}");

    let metrics = fetch(&receiver.url());
    assert!(
        metrics.contains("attendance_events_landed_total{event_type=\"leave_approval\",transport=\"long_connection\"}"),
        "{metrics}"
    );
    let (code, stdout, stderr) = receiver.terminate();
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("{} events landed", events.len())),
        "{stdout}"
    );
    let stored = landed(&out);
    assert_eq!(
        stored
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>(),
        ids(&events)
    );
    for record in &stored {
        assert_eq!(record["transport"], "long_connection");
    }
    assert!(!stderr.contains(&tenant.sim().config().app_secret));
}

/// GET over plain TCP (the test needs no HTTP client for one request).
fn fetch(url: &str) -> String {
    use std::io::Write;
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_refused_handshake_stops_the_long_connection_with_exit_2_instead_of_spinning() {
    for (refusal, expected) in [
        (
            HandshakeRefusal {
                status: 403,
                auth_errcode: None,
            },
            "Handshake-Status 403",
        ),
        (
            HandshakeRefusal {
                status: 514,
                auth_errcode: Some(AUTH_EXCEED_CONN_LIMIT),
            },
            "Handshake-Autherrcode 1000040350",
        ),
    ] {
        let tenant = tenant_with(
            5,
            EventSettings {
                long_connection: LongConnectionSettings {
                    config: quick_reconnects(),
                    refuse_handshake: Some(refusal),
                    ..LongConnectionSettings::default()
                },
                ..EventSettings::default()
            },
        );
        let ws = Workspace::new();
        let started = Instant::now();
        let receiver = connect(&tenant, ws.out().to_str().unwrap());
        let (code, _, stderr) = receiver.finish();
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let stats = tenant.sim().long_connection_stats();
        assert_eq!(
            (stats.endpoint_calls, stats.handshakes_refused),
            (1, 1),
            "{stats:?}"
        );
    }
}

#[test]
fn events_compact_writes_approval_events_and_one_compactor_runs_at_a_time() {
    let tenant = tenant_with(10, EventSettings::default());
    let events = events_of(&tenant, 10);
    assert!(!events.is_empty());
    let ws = Workspace::new();
    let out = ws.out();
    let landing =
        attendance_events::Landing::new(attendance_lake::store::Store::Local(out.clone()), "test");
    for event in &events {
        tenant
            .rt
            .block_on(landing.land(event.body.clone(), attendance_events::Transport::Webhook))
            .unwrap();
    }
    let compact = || run_bin(&["events", "compact", "--out", out.to_str().unwrap()], &[]);
    let run = compact();
    run.assert_ok();
    // Each landed once, by one receiver: as many deliveries in the journals as events.
    assert!(
        run.stdout()
            .contains(&format!("compacted {} deliveries (from ", events.len()))
            && run.stdout().contains(&format!(
                "and 0 inbox objects no journal held): {} new rows of approval_events",
                events.len()
            )),
        "{}",
        run.stdout()
    );
    assert!(out.join("approval_events").is_dir());
    let again = compact();
    again.assert_ok();
    assert!(
        again.stdout().contains(": 0 new rows"),
        "{}",
        again.stdout()
    );
    // A backfill's lease on the root does not hold the compaction up (they write different
    // files); another compactor's lease does: exit 2, naming it.
    let store = std::sync::Arc::new(attendance_lake::store::Store::Local(out.clone()));
    let backfill = tenant
        .rt
        .block_on(attendance_lake::lease::Lease::acquire(
            std::sync::Arc::clone(&store),
            "a-backfill",
            Duration::from_secs(60),
        ))
        .unwrap();
    compact().assert_ok();
    tenant.rt.block_on(backfill.release()).unwrap();
    let lease = tenant
        .rt
        .block_on(attendance_lake::lease::Lease::acquire_at(
            store,
            attendance_events::compact::COMPACT_LEASE_PATH,
            "another-compactor",
            Duration::from_secs(60),
        ))
        .unwrap();
    let held = compact();
    assert_eq!(held.code(), 2, "{}", held.stderr());
    assert!(
        held.stderr().contains("another-compactor"),
        "{}",
        held.stderr()
    );
    tenant.rt.block_on(lease.release()).unwrap();
}

#[test]
fn a_receiver_with_compact_every_compacts_what_lands_and_refuses_a_bad_interval() {
    let tenant = tenant_with(10, EventSettings::default());
    let events = events_of(&tenant, 5);
    let ws = Workspace::new();
    let out = ws.out();
    let out_arg = out.to_str().unwrap();
    let env = receiver_env(&tenant);
    let serve_every = |every: &str| -> Vec<String> {
        [
            "events",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--out",
            out_arg,
            "--compact-every",
            every,
        ]
        .map(String::from)
        .to_vec()
    };
    let args = serve_every("5 minutes");
    let bad = run_bin(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(bad.stderr().contains("--compact-every"), "{}", bad.stderr());
    assert!(bad.stderr().contains("30s, 5m or 1h"), "{}", bad.stderr());

    let args = serve_every("1s");
    let receiver = Receiver::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>(), &env);
    // Events landed by any receiver on the root are compacted by this one's next round.
    let landing =
        attendance_events::Landing::new(attendance_lake::store::Store::Local(out.clone()), "other");
    for event in &events {
        tenant
            .rt
            .block_on(landing.land(event.body.clone(), attendance_events::Transport::Webhook))
            .unwrap();
    }
    let rows = |dir: &str| -> usize {
        let Ok(partitions) = std::fs::read_dir(out.join(dir)) else {
            return 0;
        };
        partitions
            .flat_map(|p| std::fs::read_dir(p.unwrap().path()).unwrap())
            .map(|f| f.unwrap().path())
            .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
            .map(|f| {
                let (batches, _) =
                    attendance_lake::writer::decode(std::fs::read(f).unwrap()).unwrap();
                batches.iter().map(|b| b.num_rows()).sum::<usize>()
            })
            .sum()
    };
    let started = Instant::now();
    while rows("approval_events") < events.len() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not compacted within 20 s: {} of {} rows",
            rows("approval_events"),
            events.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(rows("approval_events"), events.len());
    assert!(rows("out_events") + rows("leave_events") + rows("overtime_events") > 0);
    let (code, _, stderr) = receiver.terminate();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("compacted the landed events"), "{stderr}");
}
