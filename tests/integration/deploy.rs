//! Deployment material in jobs/: the Kubernetes manifests parsed as YAML and checked against
//! what the job and Kubernetes need, and the ConfigMap's copy of jobs/nightly.toml.

/// A path in the repository.
fn path(relative: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// Every YAML document of every `.yaml` / `.yml` file in jobs/k8s/, with its file name.
fn documents() -> Vec<(String, yaml_rust2::Yaml)> {
    let dir = path("jobs/k8s");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "jobs/k8s/ should hold the CronJob, ConfigMap, Secret example and backfill Job: {files:?}"
    );
    let mut documents = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        let parsed = yaml_rust2::YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
        let mut count = 0;
        for document in parsed {
            // An empty document (a stray `---`) is nothing for kubectl either.
            if document.is_null() {
                continue;
            }
            count += 1;
            documents.push((name.clone(), document));
        }
        assert!(count > 0, "{name} holds no YAML document");
    }
    documents
}

/// The one document of this kind (and name, when given); panics when there is none or several.
fn find<'a>(
    documents: &'a [(String, yaml_rust2::Yaml)],
    kind: &str,
    name: Option<&str>,
) -> &'a yaml_rust2::Yaml {
    let found: Vec<&yaml_rust2::Yaml> = documents
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["kind"].as_str() == Some(kind))
        .filter(|d| name.is_none_or(|n| d["metadata"]["name"].as_str() == Some(n)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind} {} in jobs/k8s/",
        name.unwrap_or("")
    );
    found[0]
}

/// A string field, or a panic naming it.
fn str<'a>(value: &'a yaml_rust2::Yaml, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, found {value:?}"))
}

/// A sequence field, or a panic naming it.
fn vec<'a>(value: &'a yaml_rust2::Yaml, what: &str) -> &'a [yaml_rust2::Yaml] {
    value
        .as_vec()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("{what} should be a list, found {value:?}"))
}

/// A Kubernetes quantity in base units (cores, bytes): `250m`, `1`, `0.5`, `256Mi`, `1Gi`, `1G`.
fn quantity(value: &yaml_rust2::Yaml, what: &str) -> f64 {
    let text = match value {
        yaml_rust2::Yaml::Integer(i) => i.to_string(),
        yaml_rust2::Yaml::Real(r) => r.clone(),
        yaml_rust2::Yaml::String(s) => s.clone(),
        other => panic!("{what} should be a quantity, found {other:?}"),
    };
    let units: [(&str, f64); 9] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("m", 0.001),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, factor) = units
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text.as_str(), 1.0));
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("{what}: '{text}' is not a quantity"));
    assert!(number > 0.0, "{what}: '{text}' should be positive");
    number * factor
}

/// The (name, key) pairs the example Secrets define.
fn secret_keys(documents: &[(String, yaml_rust2::Yaml)]) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    for (_, document) in documents {
        if document["kind"].as_str() != Some("Secret") {
            continue;
        }
        let name = str(&document["metadata"]["name"], "Secret metadata.name");
        for field in ["stringData", "data"] {
            if let Some(map) = document[field].as_hash() {
                for key in map.keys() {
                    keys.push((name.to_string(), str(key, "Secret key").to_string()));
                }
            }
        }
    }
    keys
}

/// Checks what every pod of the job needs, and returns its one container's args.
///
/// Restart policy, a locked-down security context, requests and limits, credentials from Secrets
/// only (no literal secret in `env`), FEISHU_APP_ID from a secretKeyRef and FEISHU_APP_SECRET_FILE
/// pointing into a mounted Secret, and `--config` pointing at a file of a mounted ConfigMap that
/// jobs/k8s/ defines.
fn check_pod(
    documents: &[(String, yaml_rust2::Yaml)],
    pod: &yaml_rust2::Yaml,
    what: &str,
) -> Vec<String> {
    assert_eq!(
        pod["restartPolicy"].as_str(),
        Some("Never"),
        "{what}: restartPolicy must be Never (the Job retries; podFailurePolicy needs it)"
    );
    let containers = vec(&pod["containers"], &format!("{what}: containers"));
    assert_eq!(containers.len(), 1, "{what}: one container");
    let container = &containers[0];
    let cname = str(&container["name"], &format!("{what}: container name"));
    let what = format!("{what}, container {cname}");

    // Non-root and locked down.
    let run_as_non_root = container["securityContext"]["runAsNonRoot"]
        .as_bool()
        .or(pod["securityContext"]["runAsNonRoot"].as_bool());
    assert_eq!(run_as_non_root, Some(true), "{what}: runAsNonRoot");
    let security = &container["securityContext"];
    assert_eq!(
        security["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "{what}: read-only root"
    );
    assert_eq!(
        security["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{what}: allowPrivilegeEscalation"
    );
    let dropped = vec(
        &security["capabilities"]["drop"],
        &format!("{what}: capabilities"),
    );
    assert!(
        dropped.iter().any(|c| c.as_str() == Some("ALL")),
        "{what}: capabilities.drop should be [ALL]"
    );
    let seccomp = container["securityContext"]["seccompProfile"]["type"]
        .as_str()
        .or(pod["securityContext"]["seccompProfile"]["type"].as_str());
    assert_eq!(seccomp, Some("RuntimeDefault"), "{what}: seccomp profile");

    // Requests and limits for CPU and memory, requests within limits.
    for resource in ["cpu", "memory"] {
        let request = quantity(
            &container["resources"]["requests"][resource],
            &format!("{what}: requests.{resource}"),
        );
        let limit = quantity(
            &container["resources"]["limits"][resource],
            &format!("{what}: limits.{resource}"),
        );
        assert!(
            request <= limit,
            "{what}: {resource} request above its limit"
        );
    }

    // Volumes and where they are mounted.
    let volumes = vec(&pod["volumes"], &format!("{what}: volumes"));
    let volume = |name: &str| -> &yaml_rust2::Yaml {
        volumes
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{what}: volume '{name}' is mounted but not defined"))
    };
    let mounts = vec(&container["volumeMounts"], &format!("{what}: volumeMounts"));
    // The mounted volume holding an absolute file path, and the path inside it.
    let mounted = |file: &str| -> (&yaml_rust2::Yaml, String) {
        assert!(
            file.starts_with('/'),
            "{what}: '{file}' should be an absolute path"
        );
        mounts
            .iter()
            .find_map(|m| {
                let dir = str(&m["mountPath"], "mountPath").trim_end_matches('/');
                let inside = file.strip_prefix(dir)?.strip_prefix('/')?;
                Some((volume(str(&m["name"], "mount name")), inside.to_string()))
            })
            .unwrap_or_else(|| panic!("{what}: nothing is mounted where '{file}' is"))
    };
    // The key of a ConfigMap or Secret volume that appears as `inside`.
    let key_of = |source: &yaml_rust2::Yaml, inside: &str| -> String {
        match source["items"].as_vec() {
            Some(items) => items
                .iter()
                .find(|i| i["path"].as_str() == Some(inside))
                .map(|i| str(&i["key"], "item key").to_string())
                .unwrap_or_else(|| panic!("{what}: no item of the volume is '{inside}'")),
            None => inside.to_string(),
        }
    };

    // Credentials: only from Secrets that secret.example.yaml shows.
    let secret_keys = secret_keys(documents);
    let env = vec(&container["env"], &format!("{what}: env"));
    let env_var = |name: &str| env.iter().find(|e| e["name"].as_str() == Some(name));
    for var in env {
        let name = str(&var["name"], "env name");
        let upper = name.to_ascii_uppercase();
        let sensitive = ["SECRET", "PASSWORD", "TOKEN", "KEY", "CREDENTIAL"]
            .iter()
            .any(|w| upper.contains(w));
        if sensitive && !upper.ends_with("_FILE") {
            assert!(
                var["value"].is_badvalue() && !var["valueFrom"].is_badvalue(),
                "{what}: env {name} must come from a Secret (valueFrom), never a literal value"
            );
        }
        let reference = &var["valueFrom"]["secretKeyRef"];
        if reference.as_hash().is_some() {
            let pair = (
                str(&reference["name"], "secretKeyRef name").to_string(),
                str(&reference["key"], "secretKeyRef key").to_string(),
            );
            assert!(
                reference["optional"].as_bool() == Some(true) || secret_keys.contains(&pair),
                "{what}: env {name} refers to {pair:?}, which secret.example.yaml does not show"
            );
        }
    }
    let app_id =
        env_var("FEISHU_APP_ID").unwrap_or_else(|| panic!("{what}: FEISHU_APP_ID is not set"));
    assert!(
        app_id["valueFrom"]["secretKeyRef"].as_hash().is_some(),
        "{what}: FEISHU_APP_ID must come from a secretKeyRef"
    );
    assert!(
        env_var("FEISHU_APP_SECRET").is_none(),
        "{what}: the app secret is read from a file (FEISHU_APP_SECRET_FILE), not from env"
    );
    let secret_file = env_var("FEISHU_APP_SECRET_FILE")
        .map(|v| str(&v["value"], "FEISHU_APP_SECRET_FILE"))
        .unwrap_or_else(|| panic!("{what}: FEISHU_APP_SECRET_FILE is not set"));
    let (secret_volume, inside) = mounted(secret_file);
    let secret_name = str(
        &secret_volume["secret"]["secretName"],
        &format!("{what}: the volume at {secret_file} should be a Secret; secretName"),
    );
    let pair = (
        secret_name.to_string(),
        key_of(&secret_volume["secret"], &inside),
    );
    assert!(
        secret_keys.contains(&pair),
        "{what}: {secret_file} is {pair:?}, which secret.example.yaml does not show"
    );

    // `--config FILE`: a file of a mounted ConfigMap defined in jobs/k8s/.
    let args: Vec<String> = vec(&container["args"], &format!("{what}: args"))
        .iter()
        .map(|a| str(a, "arg").to_string())
        .collect();
    let config = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("{what}: args should have --config FILE: {args:?}"));
    let (config_volume, inside) = mounted(config);
    let map_name = str(
        &config_volume["configMap"]["name"],
        &format!("{what}: the volume at {config} should be a ConfigMap; name"),
    );
    let key = key_of(&config_volume["configMap"], &inside);
    let map = find(documents, "ConfigMap", Some(map_name));
    assert!(
        map["data"][key.as_str()].as_str().is_some(),
        "{what}: ConfigMap {map_name} has no key '{key}' for --config {config}"
    );
    args
}

#[test]
fn every_k8s_manifest_parses_and_names_its_kind() {
    let documents = documents();
    let mut seen = std::collections::BTreeSet::new();
    for (file, document) in &documents {
        let api = str(&document["apiVersion"], &format!("{file}: apiVersion"));
        let kind = str(&document["kind"], &format!("{file}: kind"));
        let name = str(
            &document["metadata"]["name"],
            &format!("{file}: metadata.name"),
        );
        assert!(
            !api.is_empty() && !kind.is_empty() && !name.is_empty(),
            "{file}"
        );
        assert!(
            seen.insert((kind.to_string(), name.to_string())),
            "{file}: {kind} {name} twice"
        );
    }
    for kind in ["CronJob", "ConfigMap", "Secret", "Job"] {
        assert!(
            seen.iter().any(|(k, _)| k == kind),
            "no {kind} in jobs/k8s/"
        );
    }
}

#[test]
fn cronjob_runs_sync_nightly_one_at_a_time() {
    let documents = documents();
    let cron = find(&documents, "CronJob", None);
    assert_eq!(
        cron["apiVersion"].as_str(),
        Some("batch/v1"),
        "CronJob apiVersion"
    );
    let spec = &cron["spec"];

    let schedule = str(&spec["schedule"], "schedule");
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    assert_eq!(
        fields.len(),
        5,
        "schedule '{schedule}' should be 5 cron fields"
    );
    for field in &fields {
        assert!(
            field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "*/,-".contains(c)),
            "schedule field '{field}' (time zones go in spec.timeZone, not in the schedule)"
        );
    }
    // "Today" of the job and the schedule's zone agree (a line check, not a TOML parse).
    let zone = str(&spec["timeZone"], "timeZone");
    let nightly = read("jobs/nightly.toml");
    assert!(
        nightly
            .lines()
            .any(|l| l.trim() == format!("time_zone = \"{zone}\"")),
        "jobs/nightly.toml should set time_zone = \"{zone}\", the CronJob's timeZone"
    );
    assert_eq!(
        spec["concurrencyPolicy"].as_str(),
        Some("Forbid"),
        "CronJob concurrencyPolicy: never two runs at once"
    );
    assert!(
        spec["startingDeadlineSeconds"]
            .as_i64()
            .is_some_and(|s| s >= 10),
        "CronJob startingDeadlineSeconds (at least 10: the controller checks every 10 s)"
    );

    let job = &spec["jobTemplate"]["spec"];
    assert!(
        job["backoffLimit"].as_i64().is_some_and(|b| b >= 0),
        "backoffLimit"
    );
    assert!(
        job["activeDeadlineSeconds"].as_i64().is_some_and(|s| s > 0),
        "CronJob activeDeadlineSeconds"
    );
    // A usage / configuration error or a held lease (exit 2) is not retried.
    if let Some(rules) = job["podFailurePolicy"]["rules"].as_vec() {
        let fails_on_2 = rules.iter().any(|r| {
            r["action"].as_str() == Some("FailJob")
                && r["onExitCodes"]["operator"].as_str() == Some("In")
                && r["onExitCodes"]["values"]
                    .as_vec()
                    .is_some_and(|v| v.iter().any(|c| c.as_i64() == Some(2)))
        });
        assert!(
            fails_on_2,
            "podFailurePolicy should fail the Job on exit code 2"
        );
        for rule in rules {
            if let Some(codes) = rule["onExitCodes"]["values"].as_vec() {
                let codes: Vec<i64> = codes.iter().filter_map(yaml_rust2::Yaml::as_i64).collect();
                assert!(
                    codes.windows(2).all(|w| w[0] < w[1]),
                    "exit codes ordered: {codes:?}"
                );
                assert!(
                    !codes.contains(&0),
                    "exit code 0 in a podFailurePolicy rule"
                );
            }
        }
    }

    let args = check_pod(&documents, &job["template"]["spec"], "CronJob");
    assert_eq!(args.first().map(String::as_str), Some("sync"), "{args:?}");
}

#[test]
fn configmap_holds_jobs_nightly_toml_byte_for_byte() {
    let documents = documents();
    let map = find(&documents, "ConfigMap", Some("attendance-sync-config"));
    let in_map = str(&map["data"]["nightly.toml"], "data.nightly.toml");
    let file = read("jobs/nightly.toml");
    if in_map != file {
        let line = in_map
            .lines()
            .zip(file.lines())
            .position(|(a, b)| a != b)
            .map_or(in_map.lines().count().min(file.lines().count()), |i| i);
        panic!(
            "jobs/k8s/configmap.yaml's nightly.toml differs from jobs/nightly.toml at line {}: \
             copy jobs/nightly.toml into it, indented four spaces",
            line + 1
        );
    }
}

#[test]
fn backfill_job_runs_backfill_over_a_range_with_the_cronjobs_image() {
    let documents = documents();
    let job = find(&documents, "Job", None);
    assert_eq!(
        job["apiVersion"].as_str(),
        Some("batch/v1"),
        "Job apiVersion"
    );
    assert!(
        job["spec"]["backoffLimit"].as_i64().is_some(),
        "backoffLimit"
    );
    let pod = &job["spec"]["template"]["spec"];
    let args = check_pod(&documents, pod, "backfill Job");
    assert_eq!(
        args.first().map(String::as_str),
        Some("backfill"),
        "{args:?}"
    );
    let date = |flag: &str| -> String {
        let value = args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .unwrap_or_else(|| panic!("backfill Job: args should have {flag} DATE: {args:?}"));
        let b = value.as_bytes();
        assert!(
            b.len() == 10
                && b[4] == b'-'
                && b[7] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit()),
            "backfill Job: {flag} '{value}' should be YYYY-MM-DD"
        );
        value.clone()
    };
    assert!(
        date("--from") <= date("--to"),
        "backfill Job: --from after --to"
    );

    let cron = find(&documents, "CronJob", None);
    let image = |pod: &yaml_rust2::Yaml| pod["containers"][0]["image"].as_str().map(str::to_string);
    assert_eq!(
        image(pod),
        image(&cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        "the backfill Job should use the CronJob's image"
    );
}

#[test]
fn example_secrets_hold_placeholders_only() {
    let text = read("jobs/k8s/secret.example.yaml");
    let documents = yaml_rust2::YamlLoader::load_from_str(&text).expect("secret.example.yaml");
    let secrets: Vec<&yaml_rust2::Yaml> = documents
        .iter()
        .filter(|d| d["kind"].as_str() == Some("Secret"))
        .collect();
    assert!(!secrets.is_empty(), "secret.example.yaml holds no Secret");
    for secret in secrets {
        let name = str(&secret["metadata"]["name"], "metadata.name");
        assert!(
            secret["data"].is_badvalue(),
            "{name}: use stringData with visible placeholders, not base64 `data`"
        );
        let values = secret["stringData"]
            .as_hash()
            .unwrap_or_else(|| panic!("{name}: stringData"));
        for (key, value) in values {
            let value = str(value, "stringData value");
            assert!(
                value.starts_with("REPLACE_ME"),
                "{name}.{key:?}: example values must be REPLACE_ME placeholders, found '{value}'"
            );
        }
    }
}
