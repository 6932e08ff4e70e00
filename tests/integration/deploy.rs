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
        files.len() >= 6,
        "jobs/k8s/ should hold the CronJob, ConfigMap, Secret example, backfill Job and the two \
         event receivers: {files:?}"
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

/// The volume mounted where the absolute path `file` is in `container` of `pod`, and the path
/// of `file` inside it.
fn mounted<'a>(
    pod: &'a yaml_rust2::Yaml,
    container: &yaml_rust2::Yaml,
    file: &str,
    what: &str,
) -> (&'a yaml_rust2::Yaml, String) {
    assert!(
        file.starts_with('/'),
        "{what}: '{file}' should be an absolute path"
    );
    let volumes = vec(&pod["volumes"], &format!("{what}: volumes"));
    let mounts = vec(&container["volumeMounts"], &format!("{what}: volumeMounts"));
    mounts
        .iter()
        .find_map(|m| {
            let dir = str(&m["mountPath"], "mountPath").trim_end_matches('/');
            let inside = file.strip_prefix(dir)?.strip_prefix('/')?;
            let name = str(&m["name"], "mount name");
            let volume = volumes
                .iter()
                .find(|v| v["name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("{what}: volume '{name}' is mounted but not defined"));
            Some((volume, inside.to_string()))
        })
        .unwrap_or_else(|| panic!("{what}: nothing is mounted where '{file}' is"))
}

/// The key of a ConfigMap or Secret volume source that appears as the file `inside`.
fn key_of(source: &yaml_rust2::Yaml, inside: &str, what: &str) -> String {
    match source["items"].as_vec() {
        Some(items) => items
            .iter()
            .find(|i| i["path"].as_str() == Some(inside))
            .map(|i| str(&i["key"], "item key").to_string())
            .unwrap_or_else(|| panic!("{what}: no item of the volume is '{inside}'")),
        None => inside.to_string(),
    }
}

/// The (Secret, key) whose file is the absolute path `file` in `container` of `pod`.
fn secret_file(
    pod: &yaml_rust2::Yaml,
    container: &yaml_rust2::Yaml,
    file: &str,
    what: &str,
) -> (String, String) {
    let (volume, inside) = mounted(pod, container, file, what);
    let name = str(
        &volume["secret"]["secretName"],
        &format!("{what}: the volume at {file} should be a Secret; secretName"),
    );
    (name.to_string(), key_of(&volume["secret"], &inside, what))
}

/// The container's one env entry of this name.
fn env_var<'a>(container: &'a yaml_rust2::Yaml, name: &str) -> Option<&'a yaml_rust2::Yaml> {
    container["env"]
        .as_vec()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
}

/// The container's args as strings.
fn args_of(container: &yaml_rust2::Yaml, what: &str) -> Vec<String> {
    vec(&container["args"], &format!("{what}: args"))
        .iter()
        .map(|a| str(a, "arg").to_string())
        .collect()
}

/// The value after `flag` in `args` (or of `flag=value`).
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(flag)?.strip_prefix('=')
        }
    })
}

/// Checks what every pod in jobs/k8s/ needs, and returns its one container.
///
/// A locked-down security context, requests and limits, the ServiceAccount defined in jobs/k8s/,
/// credentials from Secrets only (no literal secret in `env`, every secretKeyRef in the example
/// Secrets), secrets read from files (no FEISHU_APP_SECRET, FEISHU_VERIFICATION_TOKEN or
/// FEISHU_ENCRYPT_KEY variable), and every `*_FILE` variable pointing at a key of a mounted Secret
/// that the example Secrets show.
fn check_container<'a>(
    documents: &[(String, yaml_rust2::Yaml)],
    pod: &'a yaml_rust2::Yaml,
    what: &str,
) -> &'a yaml_rust2::Yaml {
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
    assert_eq!(
        pod["automountServiceAccountToken"].as_bool(),
        Some(false),
        "{what}: nothing here calls the Kubernetes API; do not mount its token"
    );
    if let Some(account) = pod["serviceAccountName"].as_str() {
        find(documents, "ServiceAccount", Some(account));
    }

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

    // Credentials: only from Secrets that secret.example.yaml shows.
    let secret_keys = secret_keys(documents);
    let env = vec(&container["env"], &format!("{what}: env"));
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
        if sensitive && upper.ends_with("_FILE") {
            let file = str(&var["value"], &format!("{what}: env {name}"));
            let pair = secret_file(pod, container, file, &what);
            assert!(
                secret_keys.contains(&pair),
                "{what}: {name} = {file} is {pair:?}, which secret.example.yaml does not show"
            );
        }
    }
    for var in [
        "FEISHU_APP_SECRET",
        "FEISHU_VERIFICATION_TOKEN",
        "FEISHU_ENCRYPT_KEY",
    ] {
        assert!(
            env_var(container, var).is_none(),
            "{what}: secrets are read from files ({var}_FILE), not from {var}"
        );
    }
    container
}

/// The (Secret, key) pairs of the app id (FEISHU_APP_ID from a secretKeyRef) and of the app
/// secret (the file FEISHU_APP_SECRET_FILE names, of a mounted Secret).
fn app_credentials(
    pod: &yaml_rust2::Yaml,
    container: &yaml_rust2::Yaml,
    what: &str,
) -> ((String, String), (String, String)) {
    let app_id = env_var(container, "FEISHU_APP_ID")
        .unwrap_or_else(|| panic!("{what}: FEISHU_APP_ID is not set"));
    let reference = &app_id["valueFrom"]["secretKeyRef"];
    assert!(
        reference.as_hash().is_some(),
        "{what}: FEISHU_APP_ID must come from a secretKeyRef"
    );
    let app_id = (
        str(&reference["name"], "secretKeyRef name").to_string(),
        str(&reference["key"], "secretKeyRef key").to_string(),
    );
    let file = env_var(container, "FEISHU_APP_SECRET_FILE")
        .map(|v| str(&v["value"], "FEISHU_APP_SECRET_FILE"))
        .unwrap_or_else(|| panic!("{what}: FEISHU_APP_SECRET_FILE is not set"));
    (app_id, secret_file(pod, container, file, what))
}

/// Checks what every pod of the job needs, and returns its one container's args.
///
/// [`check_container`], restart policy Never, the app's credentials, and `--config` pointing at
/// a file of a mounted ConfigMap that jobs/k8s/ defines.
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
    let container = check_container(documents, pod, what);
    app_credentials(pod, container, what);

    // `--config FILE`: a file of a mounted ConfigMap defined in jobs/k8s/.
    let args = args_of(container, what);
    let config = flag_value(&args, "--config")
        .unwrap_or_else(|| panic!("{what}: args should have --config FILE: {args:?}"));
    let (text, map_name, key) = config_file(documents, pod, container, config, what);
    assert!(
        text.is_some(),
        "{what}: ConfigMap {map_name} has no key '{key}' for --config {config}"
    );
    args
}

/// The text of the mounted ConfigMap file `file` (None when the ConfigMap has no such key), the
/// ConfigMap's name and the key.
fn config_file<'a>(
    documents: &'a [(String, yaml_rust2::Yaml)],
    pod: &yaml_rust2::Yaml,
    container: &yaml_rust2::Yaml,
    file: &str,
    what: &str,
) -> (Option<&'a str>, String, String) {
    let (volume, inside) = mounted(pod, container, file, what);
    let map_name = str(
        &volume["configMap"]["name"],
        &format!("{what}: the volume at {file} should be a ConfigMap; name"),
    );
    let key = key_of(&volume["configMap"], &inside, what);
    let map = find(documents, "ConfigMap", Some(map_name));
    (
        map["data"][key.as_str()].as_str(),
        map_name.to_string(),
        key,
    )
}

/// The nightly CronJob's pod spec.
fn cron_pod(documents: &[(String, yaml_rust2::Yaml)]) -> &yaml_rust2::Yaml {
    &find(documents, "CronJob", None)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
}

/// The CronJob's output root: `out = "..."` in the job file its --config names.
fn cron_out(documents: &[(String, yaml_rust2::Yaml)]) -> String {
    let pod = cron_pod(documents);
    let container = &pod["containers"][0];
    let args = args_of(container, "CronJob");
    let config = flag_value(&args, "--config").expect("CronJob --config");
    let (text, map_name, key) = config_file(documents, pod, container, config, "CronJob");
    let text = text.unwrap_or_else(|| panic!("ConfigMap {map_name} has no key {key}"));
    let outs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("out"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"'))
        .collect();
    assert_eq!(
        outs.len(),
        1,
        "{map_name}/{key} should set `out` once: {outs:?}"
    );
    outs[0].to_string()
}

/// The port of `host:port`.
fn port_of_address(address: &str, what: &str) -> i64 {
    address
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{what}: '{address}' should be HOST:PORT"))
}

/// The container port a probe, Service or annotation names: a number, or a port's name.
fn container_port(container: &yaml_rust2::Yaml, port: &yaml_rust2::Yaml, what: &str) -> i64 {
    let ports = vec(&container["ports"], &format!("{what}: ports"));
    if let Some(number) = port.as_i64() {
        return number;
    }
    let name = str(port, &format!("{what}: port"));
    if let Ok(number) = name.parse() {
        return number;
    }
    ports
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("{what}: no container port is named '{name}'"))
}

/// Whether a `matchLabels` (or a Service's selector) selects a pod with these labels.
fn selects(selector: &yaml_rust2::Yaml, labels: &yaml_rust2::Yaml, what: &str) -> bool {
    let selector = selector
        .as_hash()
        .unwrap_or_else(|| panic!("{what}: selector should be a map, found {selector:?}"));
    assert!(!selector.is_empty(), "{what}: an empty selector");
    selector
        .iter()
        .all(|(key, value)| labels[str(key, "label")].as_str() == value.as_str())
}

/// The labels of every pod template in jobs/k8s/: CronJobs, Jobs, Deployments.
fn pod_templates(documents: &[(String, yaml_rust2::Yaml)]) -> Vec<(String, &yaml_rust2::Yaml)> {
    let mut templates = Vec::new();
    for (_, d) in documents {
        let kind = d["kind"].as_str().unwrap_or("");
        let template = match kind {
            "CronJob" => &d["spec"]["jobTemplate"]["spec"]["template"],
            "Job" | "Deployment" => &d["spec"]["template"],
            _ => continue,
        };
        let name = d["metadata"]["name"].as_str().unwrap_or("");
        templates.push((format!("{kind} {name}"), &template["metadata"]["labels"]));
    }
    templates
}

/// Checks that `probe` is an HTTP GET of /healthz on `port`.
fn check_health_probe(container: &yaml_rust2::Yaml, probe: &str, port: i64, what: &str) {
    let get = &container[probe]["httpGet"];
    assert!(
        get.as_hash().is_some(),
        "{what}: {probe} should be an httpGet"
    );
    assert_eq!(
        get["path"].as_str(),
        Some("/healthz"),
        "{what}: {probe} path"
    );
    assert_eq!(
        container_port(container, &get["port"], &format!("{what}: {probe}")),
        port,
        "{what}: {probe} should probe the port the receiver listens on"
    );
}

/// Checks a receiver Deployment: apps/v1, a selector that matches its own pods and no other pod
/// template in jobs/k8s/, restarts always, the pod checks of [`check_container`], the CronJob's
/// image, no preStop hook (the binary drains on SIGTERM) and time to drain, and Prometheus
/// annotations for `port`'s /metrics. Returns the pod spec, its container and its args.
fn check_deployment<'a>(
    documents: &'a [(String, yaml_rust2::Yaml)],
    name: &str,
) -> (&'a yaml_rust2::Yaml, &'a yaml_rust2::Yaml, Vec<String>) {
    let deployment = find(documents, "Deployment", Some(name));
    let what = format!("Deployment {name}");
    assert_eq!(
        deployment["apiVersion"].as_str(),
        Some("apps/v1"),
        "{what}: apiVersion"
    );
    let template = &deployment["spec"]["template"];
    let selector = &deployment["spec"]["selector"]["matchLabels"];
    for (other, labels) in pod_templates(documents) {
        let own = other == format!("Deployment {name}");
        assert_eq!(
            selects(selector, labels, &what),
            own,
            "{what}: its selector should select its own pods and nothing else ({other})"
        );
    }
    let pod = &template["spec"];
    assert!(
        pod["restartPolicy"].as_str().is_none_or(|p| p == "Always"),
        "{what}: a Deployment's pods restart Always"
    );
    let container = check_container(documents, pod, &what);
    assert_eq!(
        container["image"].as_str(),
        cron_pod(documents)["containers"][0]["image"].as_str(),
        "{what}: the CronJob's image"
    );
    assert!(
        container["lifecycle"]["preStop"].is_badvalue(),
        "{what}: no preStop hook: the receiver drains on SIGTERM"
    );
    assert!(
        pod["terminationGracePeriodSeconds"]
            .as_i64()
            .is_some_and(|s| s >= 10),
        "{what}: terminationGracePeriodSeconds >= 10, time to drain"
    );
    let args = args_of(container, &what);
    (pod, container, args)
}

/// Checks the Prometheus scrape annotations of a Deployment's pod template: /metrics on `port`.
fn check_scrape_annotations(documents: &[(String, yaml_rust2::Yaml)], name: &str, port: i64) {
    let annotations =
        &find(documents, "Deployment", Some(name))["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/scrape"].as_str(),
        Some("true"),
        "Deployment {name}: prometheus.io/scrape (a quoted \"true\")"
    );
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str()),
        "Deployment {name}: prometheus.io/port (quoted) should be the metrics port"
    );
    assert_eq!(
        annotations["prometheus.io/path"].as_str(),
        Some("/metrics"),
        "Deployment {name}: prometheus.io/path"
    );
}

/// Checks `args` against the real binary: they start with the subcommand path, and every flag
/// is one that `attendance-sync <subcommand> --help` lists, with a value when it takes one (one
/// of its possible values when it lists them). Every `*_FILE` variable of `container` is one
/// the subcommand reads (`[env: NAME=]` in its help).
fn check_args_with_binary(container: &yaml_rust2::Yaml, args: &[String], command: &[&str]) {
    assert!(
        args.len() > command.len() && args[..command.len()] == *command,
        "args should start with {command:?}: {args:?}"
    );
    let output = std::process::Command::new(crate::util::BIN)
        .args(command)
        .arg("--help")
        .output()
        .expect("run attendance-sync --help");
    assert!(output.status.success(), "{command:?} --help failed");
    let help = String::from_utf8(output.stdout).expect("help is UTF-8");
    // `--flag <VALUE>   text [possible values: a, b]` lines, by flag.
    let options: Vec<(&str, &str)> = help
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("--") || l.starts_with('-'))
        .filter_map(|l| {
            // `-h, --help`: the long form.
            let l = match l.strip_prefix('-') {
                Some(short) if !short.starts_with('-') => short.split_once(", ")?.1,
                _ => l,
            };
            let flag = l.split_whitespace().next()?;
            Some((flag, l))
        })
        .collect();
    let mut rest = args[command.len()..].iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        assert!(
            flag.starts_with("--"),
            "{command:?}: '{arg}' is not a flag (no positional arguments)"
        );
        let line = options
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, l)| *l)
            .unwrap_or_else(|| panic!("{command:?} --help does not list {flag}:\n{help}"));
        let takes_value = line[flag.len()..].trim_start().starts_with('<');
        if !takes_value {
            assert!(inline.is_none(), "{command:?}: {flag} takes no value");
            continue;
        }
        let value = inline
            .or_else(|| rest.next().cloned())
            .unwrap_or_else(|| panic!("{command:?}: {flag} needs a value"));
        assert!(
            !value.starts_with("--"),
            "{command:?}: {flag} needs a value, found {value}"
        );
        if let Some((_, possible)) = line.split_once("[possible values: ") {
            let possible: Vec<&str> = possible
                .trim_end_matches(']')
                .split(", ")
                .map(str::trim)
                .collect();
            assert!(
                possible.contains(&value.as_str()),
                "{command:?}: {flag} {value} is not one of {possible:?}"
            );
        }
    }
    for var in container["env"].as_vec().into_iter().flatten() {
        let name = str(&var["name"], "env name");
        if name.ends_with("_FILE") {
            assert!(
                help.contains(&format!("[env: {name}=")),
                "{command:?} does not read {name} (not in its --help)"
            );
        }
    }
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
    for kind in [
        "CronJob",
        "ConfigMap",
        "Secret",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ] {
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

#[test]
fn webhook_receiver_serves_on_its_port_behind_a_service_and_a_budget() {
    let documents = documents();
    let name = "attendance-events-webhook";
    let what = format!("Deployment {name}");
    let deployment = find(&documents, "Deployment", Some(name));
    assert_eq!(
        deployment["spec"]["replicas"].as_i64(),
        Some(2),
        "{what}: two replicas (safe on one root: each event lands once)"
    );
    let (pod, container, args) = check_deployment(&documents, name);
    check_args_with_binary(container, &args, &["events", "serve"]);
    check_receiver_root_and_logs(&documents, &what, &args);

    // It listens on its containerPort, and is probed there.
    let listen = flag_value(&args, "--listen")
        .unwrap_or_else(|| panic!("{what}: args should have --listen ADDR: {args:?}"));
    let port = port_of_address(listen, &what);
    let ports = vec(&container["ports"], &format!("{what}: ports"));
    assert!(
        ports.iter().any(
            |p| p["containerPort"].as_i64() == Some(port) && p["name"].as_str() == Some("http")
        ),
        "{what}: a containerPort {port} named http, the --listen port"
    );
    check_health_probe(container, "readinessProbe", port, &what);
    check_health_probe(container, "livenessProbe", port, &what);
    // /healthz answers 503 while draining: the liveness probe must outlast a drain.
    let liveness = &container["livenessProbe"];
    let period = liveness["periodSeconds"].as_i64().unwrap_or(10);
    let failures = liveness["failureThreshold"].as_i64().unwrap_or(3);
    assert!(
        failures >= 2 && period * failures >= 10,
        "{what}: liveness should tolerate a drain's 503s ({failures} x {period} s)"
    );
    check_scrape_annotations(&documents, name, port);

    // The token and the key: files of the Secret attendance-events-webhook.
    for (var, key) in [
        ("FEISHU_VERIFICATION_TOKEN_FILE", "verification-token"),
        ("FEISHU_ENCRYPT_KEY_FILE", "encrypt-key"),
    ] {
        let file = env_var(container, var)
            .map(|v| str(&v["value"], var))
            .unwrap_or_else(|| panic!("{what}: {var} is not set"));
        assert_eq!(
            secret_file(pod, container, file, &what),
            (name.to_string(), key.to_string()),
            "{what}: {var} should be the file of {name}'s key {key}"
        );
    }
    for var in ["FEISHU_APP_ID", "FEISHU_APP_SECRET_FILE"] {
        assert!(
            env_var(container, var).is_none(),
            "{what}: the webhook needs no app credentials ({var})"
        );
    }

    // The Service sends port 80 to the listening port of exactly these pods.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let service = find(&documents, "Service", Some(name));
    assert!(
        service["spec"]["type"]
            .as_str()
            .is_none_or(|t| t == "ClusterIP"),
        "Service {name}: ClusterIP (an Ingress or Gateway exposes it)"
    );
    let selector = &service["spec"]["selector"];
    for (other, other_labels) in pod_templates(&documents) {
        assert_eq!(
            selects(selector, other_labels, "Service"),
            other == what,
            "Service {name} should select the webhook's pods and nothing else ({other})"
        );
    }
    assert!(selects(selector, labels, "Service"));
    let service_ports = vec(&service["spec"]["ports"], "Service ports");
    assert_eq!(service_ports.len(), 1, "Service {name}: one port");
    assert_eq!(
        service_ports[0]["port"].as_i64(),
        Some(80),
        "Service {name}: port 80"
    );
    assert_eq!(
        container_port(
            container,
            &service_ports[0]["targetPort"],
            "Service targetPort"
        ),
        port,
        "Service {name}: targetPort should be the --listen port"
    );

    // The budget keeps one of the two up through voluntary disruptions.
    let budget = find(&documents, "PodDisruptionBudget", Some(name));
    assert_eq!(
        budget["apiVersion"].as_str(),
        Some("policy/v1"),
        "PodDisruptionBudget apiVersion"
    );
    assert_eq!(
        budget["spec"]["minAvailable"].as_i64(),
        Some(1),
        "PodDisruptionBudget {name}: minAvailable 1"
    );
    assert!(
        budget["spec"]["maxUnavailable"].is_badvalue(),
        "PodDisruptionBudget {name}: minAvailable and maxUnavailable exclude each other"
    );
    let selector = &budget["spec"]["selector"]["matchLabels"];
    for (other, other_labels) in pod_templates(&documents) {
        assert_eq!(
            selects(selector, other_labels, "PodDisruptionBudget"),
            other == what,
            "PodDisruptionBudget {name} should select the webhook's pods and nothing else ({other})"
        );
    }
}

#[test]
fn long_connection_receiver_uses_the_cronjobs_credentials_and_root() {
    let documents = documents();
    let name = "attendance-events-connect";
    let what = format!("Deployment {name}");
    let deployment = find(&documents, "Deployment", Some(name));
    let replicas = deployment["spec"]["replicas"].as_i64();
    assert!(
        matches!(replicas, Some(1 | 2)),
        "{what}: 1 or 2 replicas (at most 50 connections per app; one random one gets each \
         event), found {replicas:?}"
    );
    let (pod, container, args) = check_deployment(&documents, name);
    check_args_with_binary(container, &args, &["events", "connect"]);
    check_receiver_root_and_logs(&documents, &what, &args);

    // The app's id and secret from the same Secret keys as the CronJob.
    let cron = cron_pod(&documents);
    assert_eq!(
        app_credentials(pod, container, &what),
        app_credentials(cron, &cron["containers"][0], "CronJob"),
        "{what}: the app credentials should come from the CronJob's Secret keys"
    );

    // /healthz and /metrics on the --metrics-listen port.
    let listen = flag_value(&args, "--metrics-listen")
        .unwrap_or_else(|| panic!("{what}: args should have --metrics-listen ADDR: {args:?}"));
    let port = port_of_address(listen, &what);
    let ports = vec(&container["ports"], &format!("{what}: ports"));
    assert!(
        ports
            .iter()
            .any(|p| p["containerPort"].as_i64() == Some(port)),
        "{what}: a containerPort {port}, the --metrics-listen port"
    );
    check_health_probe(container, "livenessProbe", port, &what);
    check_scrape_annotations(&documents, name, port);

    // Nothing connects to it: no Service selects its pods.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (_, document) in &documents {
        if document["kind"].as_str() == Some("Service") {
            assert!(
                !selects(&document["spec"]["selector"], labels, "Service"),
                "{what}: no Service should select the long connection's pods"
            );
        }
    }
}

/// A receiver writes to the CronJob's root and logs JSON.
fn check_receiver_root_and_logs(
    documents: &[(String, yaml_rust2::Yaml)],
    what: &str,
    args: &[String],
) {
    assert_eq!(
        flag_value(args, "--out"),
        Some(cron_out(documents).as_str()),
        "{what}: --out should be the CronJob's output root"
    );
    assert_eq!(
        flag_value(args, "--log-format"),
        Some("json"),
        "{what}: JSON logs"
    );
}

#[test]
fn the_dockerfile_copies_every_workspace_members_manifest_before_the_dependency_build() {
    // Cargo must load every member's manifest to build the stub layer: a member missing there
    // breaks `docker build` (no Docker daemon here to try it).
    let dockerfile = read("jobs/Dockerfile");
    let stubs = dockerfile
        .lines()
        .find(|l| l.starts_with("RUN for crate in "))
        .expect("the stub loop");
    for parent in ["crates", "tools"] {
        for entry in std::fs::read_dir(path(parent)).unwrap() {
            let dir = entry.unwrap().path();
            if !dir.join("Cargo.toml").exists() {
                continue;
            }
            let member = format!("{parent}/{}", dir.file_name().unwrap().to_string_lossy());
            assert!(
                dockerfile.contains(&format!("COPY {member}/Cargo.toml {member}/\n")),
                "jobs/Dockerfile does not copy {member}/Cargo.toml"
            );
            assert!(
                stubs.split(' ').any(|w| w.trim_end_matches(';') == member),
                "jobs/Dockerfile gives {member} no stub crate root"
            );
        }
    }
}
