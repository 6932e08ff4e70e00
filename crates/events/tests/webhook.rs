//! The webhook receiver over real HTTP on loopback: what lands, what is refused with which
//! status, and that concurrent and repeated deliveries land once.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use attendance_events::landing::path_of;
use attendance_events::webhook::{self, DEFAULT_PATH};
use attendance_events::{Landing, Metrics, Secrets, WebhookReceiver};
use attendance_feishu::envelope::{EncryptKey, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use attendance_lake::store::Store;
use serde_json::{Value, json};
use tokio::sync::watch;

const TOKEN: &str = "verification-token-for-tests";
const KEY: &str = "encrypt-key-for-tests";

struct Receiver {
    addr: SocketAddr,
    metrics: Metrics,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Receiver {
    async fn start(root: &Path, name: &str, key: Option<&str>) -> Receiver {
        let landing = Landing::new(Store::Local(root.to_path_buf()), name);
        let metrics = Metrics::new();
        let receiver = WebhookReceiver::new(landing, Secrets::new(TOKEN, key), metrics.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let task =
            tokio::spawn(
                async move { webhook::serve(listener, receiver, DEFAULT_PATH, stopped).await },
            );
        Receiver {
            addr,
            metrics,
            stop,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}{DEFAULT_PATH}", self.addr)
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn event(uuid: &str, event_type: &str) -> Value {
    json!({
        "ts": "1764460800.123456", "uuid": uuid, "token": TOKEN, "type": "event_callback",
        "event": {"type": event_type, "instance_code": format!("I-{uuid}"), "user_id": "u1",
                  "tenant_key": "t", "app_id": "cli_x"}
    })
}

/// A delivery as the platform makes it: encrypted and signed when `key` is given.
async fn deliver(url: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let plain = body.to_string();
    let request = match key {
        None => http.post(url).body(plain),
        Some(key) => {
            let key = EncryptKey::new(key);
            let sealed = json!({"encrypt": key.encrypt(plain.as_bytes(), rand_iv())}).to_string();
            let nonce = format!("n{}", rand_iv()[0]);
            let signature = key.signature("1764460800", &nonce, sealed.as_bytes());
            http.post(url)
                .header(TIMESTAMP_HEADER, "1764460800")
                .header(NONCE_HEADER, nonce)
                .header(SIGNATURE_HEADER, signature)
                .body(sealed)
        }
    };
    send(request).await
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn rand_iv() -> [u8; 16] {
    let mut iv = [0u8; 16];
    for (i, b) in iv.iter_mut().enumerate() {
        *b = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            >> (i % 24)) as u8;
    }
    iv
}

fn landed(root: &Path) -> Vec<Value> {
    let inbox = root.join("_events/inbox");
    let mut found = Vec::new();
    if let Ok(shards) = std::fs::read_dir(&inbox) {
        for shard in shards {
            for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                    found.push(serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap());
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn signed_encrypted_and_plain_deliveries_land_whole_without_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let sealed_root = dir.path().join("sealed");
    let plain_root = dir.path().join("plain");
    let sealed = Receiver::start(&sealed_root, "r-sealed", Some(KEY)).await;
    let plain = Receiver::start(&plain_root, "r-plain", None).await;

    let out = event("5f1c0000000000000000000000000001", "out_approval");
    assert_eq!(
        deliver(&sealed.url(), &out, Some(KEY)).await,
        (200, json!({"msg": "success"}))
    );
    let leave = event("5f1c0000000000000000000000000002", "leave_approvalV2");
    assert_eq!(deliver(&plain.url(), &leave, None).await.0, 200);
    // An event type nobody knows lands too.
    let unknown = json!({"schema":"2.0","header":{"event_id":"ev-unknown-1","event_type":"im.message.receive_v1",
        "token":TOKEN,"create_time":"1764460800000"},"event":{"x":1}});
    assert_eq!(deliver(&plain.url(), &unknown, None).await.0, 200);

    let mut stored = landed(&sealed_root);
    assert_eq!(stored.len(), 1);
    let record = stored.remove(0);
    assert_eq!(record["id"], "5f1c0000000000000000000000000001");
    assert_eq!(record["transport"], "webhook");
    assert_eq!(record["receiver"], "r-sealed");
    assert_eq!(record["event_type"], "out_approval");
    let mut expected = out.clone();
    expected.as_object_mut().unwrap().remove("token");
    assert_eq!(
        record["body"], expected,
        "the decrypted body, whole, less its token"
    );
    let text =
        std::fs::read_to_string(sealed_root.join(path_of("5f1c0000000000000000000000000001")))
            .unwrap();
    assert!(!text.contains(TOKEN) && !text.contains(KEY));

    let plain_stored = landed(&plain_root);
    let types: Vec<&str> = plain_stored
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(plain_stored.len(), 2, "{types:?}");
    assert!(types.contains(&"leave_approvalV2") && types.contains(&"im.message.receive_v1"));
    let metrics = sealed.metrics.render();
    assert!(
        metrics.contains(
            r#"attendance_events_landed_total{event_type="out_approval",transport="webhook"} 1"#
        ),
        "{metrics}"
    );
    sealed.stop().await;
    plain.stop().await;
}

#[tokio::test]
async fn every_bad_delivery_gets_its_status_and_lands_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let receiver = Receiver::start(&root, "r", Some(KEY)).await;
    let url = receiver.url();
    let http = reqwest::Client::new();
    let key = EncryptKey::new(KEY);
    let body = event("aa000000000000000000000000000001", "work_approval");
    let sealed = json!({"encrypt": key.encrypt(body.to_string().as_bytes(), [3; 16])}).to_string();
    let signed = |bytes: &str, signature: String| {
        http.post(&url)
            .header(TIMESTAMP_HEADER, "1764460800")
            .header(NONCE_HEADER, "nonce-1")
            .header(SIGNATURE_HEADER, signature)
            .body(bytes.to_owned())
    };
    let good_signature = |bytes: &str| key.signature("1764460800", "nonce-1", bytes.as_bytes());

    // A wrong signature.
    let (status, _) = send(signed(&sealed, "0".repeat(64))).await;
    assert_eq!(status, 401);
    // No signature at all.
    let (status, _) = send(http.post(&url).body(sealed.clone())).await;
    assert_eq!(status, 401);
    // A right signature, a wrong token inside.
    let mut wrong_token = body.clone();
    wrong_token["token"] = json!("not-the-token");
    let sealed_wrong =
        json!({"encrypt": key.encrypt(wrong_token.to_string().as_bytes(), [4; 16])}).to_string();
    let (status, _) = send(signed(&sealed_wrong, good_signature(&sealed_wrong))).await;
    assert_eq!(status, 401);
    // A truncated ciphertext (signed, so that only the ciphertext is at fault).
    let value = key.encrypt(body.to_string().as_bytes(), [5; 16]);
    let truncated = json!({"encrypt": &value[..value.len() - 8]}).to_string();
    let (status, _) = send(signed(&truncated, good_signature(&truncated))).await;
    assert_eq!(status, 400);
    // Bad padding: sealed under another key.
    let other = EncryptKey::new("another-key");
    let bad_padding =
        json!({"encrypt": other.encrypt(body.to_string().as_bytes(), [6; 16])}).to_string();
    let (status, _) = send(signed(&bad_padding, good_signature(&bad_padding))).await;
    assert_eq!(status, 400);
    // Not JSON.
    let (status, _) = send(signed("<xml/>", good_signature("<xml/>"))).await;
    assert_eq!(status, 400);
    // 2 MiB.
    let huge = format!(r#"{{"encrypt":"{}"}}"#, "A".repeat(2 * 1024 * 1024));
    let (status, _) = send(signed(&huge, good_signature(&huge))).await;
    assert_eq!(status, 413);
    assert!(landed(&root).is_empty(), "nothing refused may land");

    // Now the real one, then the same event re-sealed and re-signed (a replay with a new
    // signature): one object.
    let (status, _) = send(signed(&sealed, good_signature(&sealed))).await;
    assert_eq!(status, 200);
    let replay = json!({"encrypt": key.encrypt(body.to_string().as_bytes(), [9; 16])}).to_string();
    let (status, _) = send(
        http.post(&url)
            .header(TIMESTAMP_HEADER, "1764470000")
            .header(NONCE_HEADER, "nonce-2")
            .header(
                SIGNATURE_HEADER,
                key.signature("1764470000", "nonce-2", replay.as_bytes()),
            )
            .body(replay),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(landed(&root).len(), 1);
    let metrics = receiver.metrics.render();
    for (reason, count) in [
        ("bad_signature", 2),
        ("bad_token", 1),
        ("undecryptable", 2),
        ("not_json", 1),
        ("too_large", 1),
    ] {
        let line = format!(r#"attendance_events_refused_total{{reason="{reason}"}} {count}"#);
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains(r#"attendance_events_duplicates_total{transport="webhook"} 1"#));
    receiver.stop().await;
}

#[tokio::test]
async fn the_challenge_is_answered_in_both_forms() {
    let dir = tempfile::tempdir().unwrap();
    let sealed = Receiver::start(&dir.path().join("a"), "a", Some(KEY)).await;
    let plain = Receiver::start(&dir.path().join("b"), "b", None).await;
    let challenge = json!({"challenge": "ch-123", "token": TOKEN, "type": "url_verification"});
    let started = std::time::Instant::now();
    assert_eq!(
        deliver(&plain.url(), &challenge, None).await,
        (200, json!({"challenge": "ch-123"}))
    );
    // Encrypted, and unsigned as the platform sends it.
    let key = EncryptKey::new(KEY);
    let body = json!({"encrypt": key.encrypt(challenge.to_string().as_bytes(), [1; 16])});
    let (status, answer) = send(
        reqwest::Client::new()
            .post(sealed.url())
            .body(body.to_string()),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"challenge": "ch-123"})));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let wrong = json!({"challenge": "ch-123", "token": "nope", "type": "url_verification"});
    assert_eq!(deliver(&plain.url(), &wrong, None).await.0, 401);
    assert!(landed(&dir.path().join("a")).is_empty() && landed(&dir.path().join("b")).is_empty());
    sealed.stop().await;
    plain.stop().await;
}

#[tokio::test]
async fn one_event_delivered_five_times_to_two_receivers_at_once_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared");
    let a = Arc::new(Receiver::start(&root, "replica-a", Some(KEY)).await);
    let b = Arc::new(Receiver::start(&root, "replica-b", Some(KEY)).await);
    for round in 0..20 {
        let body = event(&format!("dd{round:030}"), "leave_approval");
        let deliveries = (0..5).map(|i| {
            let url = if i % 2 == 0 { a.url() } else { b.url() };
            let body = body.clone();
            async move { deliver(&url, &body, Some(KEY)).await.0 }
        });
        let statuses = futures::future::join_all(deliveries).await;
        assert_eq!(statuses, vec![200; 5]);
    }
    let stored = landed(&root);
    assert_eq!(stored.len(), 20);
    let totals = (a.metrics.totals(), b.metrics.totals());
    assert_eq!(totals.0.landed + totals.1.landed, 20);
    assert_eq!(totals.0.duplicates + totals.1.duplicates, 80);
    for r in [a, b] {
        Arc::into_inner(r).unwrap().stop().await;
    }
}

#[tokio::test]
async fn healthz_and_metrics_answer_and_a_stopping_receiver_turns_unready() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), "r", None).await;
    let base = format!("http://{}", receiver.addr);
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(
        metrics
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    receiver.stop().await;
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a_root_that_cannot_take_the_event_gets_503_and_the_retry_lands_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // `_events` is a file: nothing can be created under it.
    std::fs::write(root.join("_events"), b"in the way").unwrap();
    let receiver = Receiver::start(&root, "r", Some(KEY)).await;
    let body = event("ee000000000000000000000000000001", "out_approval");
    let (status, answer) = deliver(&receiver.url(), &body, Some(KEY)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        receiver
            .metrics
            .render()
            .contains(r#"attendance_events_refused_total{reason="store_unavailable"} 1"#)
    );
    // The platform retries once the root is back.
    std::fs::remove_file(root.join("_events")).unwrap();
    assert_eq!(deliver(&receiver.url(), &body, Some(KEY)).await.0, 200);
    assert_eq!(landed(&root).len(), 1);
    receiver.stop().await;
}

#[tokio::test]
async fn a_receiver_lands_while_a_backfill_holds_the_roots_lease() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let store = Arc::new(Store::Local(root.clone()));
    store.check().await.unwrap();
    let lease = attendance_lake::lease::Lease::acquire(
        Arc::clone(&store),
        "a-backfill",
        std::time::Duration::from_secs(120),
    )
    .await
    .unwrap();
    let receiver = Receiver::start(&root, "r", None).await;
    let started = std::time::Instant::now();
    let body = event("ff000000000000000000000000000001", "work_approval_revert");
    assert_eq!(deliver(&receiver.url(), &body, None).await.0, 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(landed(&root).len(), 1);
    assert!(!lease.is_lost(), "the receiver left the lease alone");
    lease.release().await.unwrap();
    receiver.stop().await;
}

/// An object store whose writes take `delay`: a landing that is still in flight when the stop
/// comes.
#[derive(Debug)]
struct SlowStore {
    inner: object_store::memory::InMemory,
    delay: std::time::Duration,
}

impl std::fmt::Display for SlowStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlowStore")
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for SlowStore {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        tokio::time::sleep(self.delay).await;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_stop_finishes_and_acknowledges_the_delivery_being_landed() {
    let store = Store::Remote {
        inner: Arc::new(SlowStore {
            inner: object_store::memory::InMemory::new(),
            delay: std::time::Duration::from_millis(600),
        }),
        prefix: object_store::path::Path::from("root"),
        url: "memory://root".into(),
    };
    let landing = Landing::new(store.clone(), "slow");
    let metrics = Metrics::new();
    let receiver = WebhookReceiver::new(landing, Secrets::new(TOKEN, None), metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{DEFAULT_PATH}", listener.local_addr().unwrap());
    let (stop, stopped) = watch::channel(false);
    let serving = tokio::spawn({
        let receiver = Arc::clone(&receiver);
        async move { webhook::serve(listener, receiver, DEFAULT_PATH, stopped).await }
    });
    let body = event("aa00000000000000000000000000slow", "out_approval");
    let in_flight = tokio::spawn({
        let url = url.clone();
        async move { deliver(&url, &body, None).await }
    });
    // The stop comes while the landing is under way.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.send(true).unwrap();
    let (status, answer) = in_flight.await.unwrap();
    assert_eq!((status, answer), (200, json!({"msg": "success"})));
    serving.await.unwrap().unwrap();
    let stored = attendance_lake::inbox::read_all(&store).await.unwrap();
    assert_eq!(stored.len(), 1, "acknowledged, so stored");
    // Stopped: nothing more is taken.
    assert!(
        reqwest::Client::new()
            .post(&url)
            .body("{}")
            .send()
            .await
            .is_err()
    );
}
