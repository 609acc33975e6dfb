//! The deployment files in `deploy/`, checked with the tools that can check them on this machine
//! (no container engine or cluster runs here):
//! - `docker-compose config -q` parses the compose file, which holds the whole mesh;
//! - `systemd-analyze verify` accepts each unit (run on a copy whose ExecStart points at the binaries
//!   this build made, since verify insists the binary exists), with nothing to warn about;
//! - `promtool check config` accepts the Prometheus config, which scrapes every node;
//! - every JSON under deploy/grafana is a dashboard with panels whose queries name documented
//!   metrics (docs/metrics.md, when it exists), and the provisioning points Grafana at them;
//! - the Kubernetes manifests parse, with the kinds the design needs;
//! - every TOML config in deploy/ (and the ConfigMap's) is accepted by `agora config show`;
//! - the compose init script really sets up a mesh's wallets, ledger and bootstrap identity.
//!
//! Tool paths come from `scripts/setup-tools --print`; a missing tool fails the test and says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

/// The path of a tool from `scripts/setup-tools --print` (`NAME=PATH` lines).
fn tool(name: &str) -> PathBuf {
    let out = Command::new(repo().join("scripts/setup-tools"))
        .arg("--print")
        .output()
        .unwrap_or_else(|e| panic!("scripts/setup-tools --print: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!("scripts/setup-tools --print names no {name}: run scripts/setup-tools")
        });
    assert!(
        path.exists(),
        "{name} ({}) is missing: run scripts/setup-tools",
        path.display()
    );
    path
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path, ext));
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every document of a multi-document YAML file.
fn yaml_documents(path: &Path) -> Vec<serde_norway::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| {
            serde_norway::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_str<'a>(v: &'a serde_norway::Value, path: &[&str]) -> Option<&'a str> {
    let mut v = v;
    for key in path {
        v = v.get(*key)?;
    }
    v.as_str()
}

#[test]
fn the_compose_file_parses_and_holds_the_whole_mesh() {
    let compose = deploy().join("compose.yaml");
    let out = Command::new(tool("DOCKER_COMPOSE"))
        .arg("-f")
        .arg(&compose)
        .args(["config", "-q"])
        .output()
        .unwrap();
    ok(&out, "docker-compose config -q");

    // What it resolves to: every service the design asks for, and Grafana fed by the dashboards.
    let out = Command::new(tool("DOCKER_COMPOSE"))
        .arg("-f")
        .arg(&compose)
        .arg("config")
        .output()
        .unwrap();
    let resolved: serde_norway::Value = serde_norway::from_str(&ok(&out, "config")).unwrap();
    let services = resolved["services"].as_mapping().unwrap();
    let names: BTreeSet<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for want in [
        "init",
        "bootstrap",
        "ledger",
        "miner1",
        "miner2",
        "miner3",
        "validator",
        "gateway",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(want), "no service {want} in {names:?}");
    }
    let command = |name: &str| -> String {
        serde_norway::to_string(&resolved["services"][name]["command"]).unwrap()
    };
    for miner in ["miner1", "miner2", "miner3"] {
        assert!(
            command(miner).contains("serve"),
            "{miner}: {}",
            command(miner)
        );
    }
    assert!(command("validator").contains("validate"));
    assert!(command("gateway").contains("gateway"));
    assert!(command("ledger").contains("run"));
    let grafana = serde_norway::to_string(&resolved["services"]["grafana"]["volumes"]).unwrap();
    assert!(grafana.contains("grafana/dashboards"), "{grafana}");
    assert!(grafana.contains("grafana/provisioning"), "{grafana}");
}

#[test]
fn the_systemd_units_verify_with_nothing_to_warn_about() {
    let systemd_analyze = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze is missing ({e}): run scripts/setup-tools"));
    ok(&systemd_analyze, "systemd-analyze --version");
    let agora = PathBuf::from(env!("CARGO_BIN_EXE_agora"));
    let bootstrap = common::bootstrap_binary();
    let units = files_under(&deploy().join("systemd"), "service");
    let names: Vec<String> = units
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "agora-bootstrap.service",
        "agora-serve.service",
        "agora-validate.service",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    let tmp = tempfile::tempdir().unwrap();
    for unit in &units {
        let text = std::fs::read_to_string(unit).unwrap();
        let name = unit.file_name().unwrap().to_string_lossy().into_owned();
        // Hardened and restarted, as the operator guide promises.
        for needle in [
            "ProtectSystem=strict",
            "Restart=on-failure",
            "StateDirectory=",
            "NoNewPrivileges=yes",
        ] {
            assert!(text.contains(needle), "{name} lacks {needle}");
        }
        assert!(
            text.contains("User=") || text.contains("DynamicUser=yes"),
            "{name} runs as root"
        );
        if name != "agora-bootstrap.service" {
            assert!(
                text.contains("AGORA_CONFIG=/etc/agora/config.toml"),
                "{name} does not read the TOML config"
            );
        }
        // The binaries as installed (/usr/local/bin) replaced by the ones just built.
        let copy = text
            .replace(
                "/usr/local/bin/agora-bootstrap",
                bootstrap.to_str().unwrap(),
            )
            .replace("/usr/local/bin/agora ", &format!("{} ", agora.display()));
        assert!(!copy.contains("/usr/local/bin/"), "{name}: {copy}");
        let path = tmp.path().join(&name);
        std::fs::write(&path, copy).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "systemd-analyze verify {name}: {stderr}"
        );
        // verify exits 0 on unknown keys and bad values (it only logs them): none may be logged.
        let about_it: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(&name) || l.contains(tmp.path().to_str().unwrap()))
            .collect();
        assert!(
            about_it.is_empty(),
            "systemd-analyze verify {name}: {stderr}"
        );
    }
}

#[test]
fn promtool_accepts_the_prometheus_config_which_scrapes_every_node() {
    let config = deploy().join("prometheus/prometheus.yml");
    let out = Command::new(tool("PROMTOOL"))
        .args(["check", "config"])
        .arg(&config)
        .output()
        .unwrap();
    ok(&out, "promtool check config");
    let text = std::fs::read_to_string(&config).unwrap();
    for target in [
        "bootstrap:9464",
        "miner1:7700",
        "miner2:7700",
        "miner3:7700",
        "validator:7700",
        "gateway:7700",
    ] {
        assert!(text.contains(target), "{target} is not scraped");
    }
}

/// The metric names a PromQL expression reads: identifiers left once strings, label matchers,
/// ranges, grouping clauses, function calls and keywords are taken out.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "inf",
        "nan",
    ];
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_string: Option<char> = None;
    for c in expr.chars() {
        if let Some(q) = in_string {
            if c == q {
                in_string = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => in_string = Some(c),
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => cleaned.push(c),
        }
        if matches!(c, '{' | '}' | '[' | ']') {
            cleaned.push(' ');
        }
    }
    // `by (a, b)` and friends name labels, not metrics.
    let mut out = BTreeSet::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`0.99`, `5m`, `1e3`): no metric in it.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':' | '$'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = j < chars.len() && chars[j] == '(';
            if KEYWORDS.contains(&word.as_str()) {
                skip_group = call || ["by", "without", "on", "ignoring"].contains(&word.as_str());
                continue;
            }
            // Aggregations (`sum by (le) (...)`) are followed by a grouping clause, not `(`.
            const AGGREGATIONS: &[&str] = &[
                "sum",
                "min",
                "max",
                "avg",
                "group",
                "stddev",
                "stdvar",
                "count",
                "count_values",
                "bottomk",
                "topk",
                "quantile",
                "limitk",
                "limit_ratio",
            ];
            if call || word.starts_with('$') || AGGREGATIONS.contains(&word.as_str()) {
                continue;
            }
            out.insert(word);
            continue;
        }
        if c == '(' && skip_group {
            // Skip the label list.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
        } else if !c.is_whitespace() {
            skip_group = false;
        }
        i += 1;
    }
    out
}

/// Every panel of a dashboard, rows' nested panels included.
fn panels(value: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    if let Some(list) = value.get("panels").and_then(Json::as_array) {
        for panel in list {
            out.push(panel);
            out.extend(panels(panel));
        }
    }
    out
}

#[test]
fn the_grafana_dashboards_load_and_query_documented_metrics() {
    let grafana = deploy().join("grafana");
    // Provisioning: a Prometheus datasource, and a dashboard provider reading the folder compose
    // mounts deploy/grafana/dashboards on.
    let datasource = &yaml_documents(&grafana.join("provisioning/datasources/prometheus.yaml"))[0];
    let ds = &datasource["datasources"][0];
    assert_eq!(yaml_str(ds, &["type"]), Some("prometheus"));
    assert_eq!(yaml_str(ds, &["url"]), Some("http://prometheus:9090"));
    let provider = &yaml_documents(&grafana.join("provisioning/dashboards/agora.yaml"))[0];
    let folder = yaml_str(&provider["providers"][0], &["options", "path"]).unwrap();
    let compose = std::fs::read_to_string(deploy().join("compose.yaml")).unwrap();
    assert!(
        compose.contains(&format!("./grafana/dashboards:{folder}")),
        "compose does not mount the dashboards on {folder}"
    );

    let docs = std::fs::read_to_string(repo().join("docs/metrics.md")).ok();
    for path in files_under(&grafana, "json") {
        let text = std::fs::read_to_string(&path).unwrap();
        let problems = check_dashboard(&text, docs.as_deref());
        assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
    }
}

/// Whether `docs` names the metric `name` as a whole word (a histogram's or counter's series by
/// its family name too).
fn documented(docs: &str, name: &str) -> bool {
    let family = ["_bucket", "_sum", "_count", "_total", "_created"]
        .iter()
        .find_map(|s| name.strip_suffix(s));
    [Some(name), family].into_iter().flatten().any(|n| {
        docs.match_indices(n).any(|(at, _)| {
            let before = docs[..at].chars().next_back();
            let after = docs[at + n.len()..].chars().next();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            !word(before) && (!word(after) || after == Some('_') && n != name)
        })
    })
}

/// What is wrong with one dashboard's JSON: not a dashboard, no panels, no queries, or queries
/// reading metrics `docs` (docs/metrics.md, when it exists) does not list.
fn check_dashboard(text: &str, docs: Option<&str>) -> Vec<String> {
    let dashboard: Json = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![format!("not JSON: {e}")],
    };
    let mut problems = Vec::new();
    if dashboard.get("title").and_then(Json::as_str).is_none() {
        problems.push("a dashboard has a title".to_string());
    }
    let all = panels(&dashboard);
    if all.is_empty() {
        problems.push("no panels".to_string());
    }
    let mut exprs = 0;
    for panel in all {
        for target in panel
            .get("targets")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let Some(expr) = target.get("expr").and_then(Json::as_str) else {
                continue;
            };
            exprs += 1;
            let Some(docs) = docs else { continue };
            for name in metric_names(expr) {
                if name != "up" && !documented(docs, &name) {
                    problems.push(format!(
                        "{expr:?} reads {name}, which docs/metrics.md does not list"
                    ));
                }
            }
        }
    }
    if exprs == 0 {
        problems.push("no Prometheus queries".to_string());
    }
    problems
}

#[test]
fn the_dashboard_check_finds_what_is_wrong() {
    let docs = "| `agora_queries_total` | counter |\n| `agora_query_seconds` | histogram |";
    let good = r#"{"title": "Agora", "panels": [
        {"type": "row", "panels": [
            {"type": "timeseries", "targets": [{"expr": "sum by (task) (rate(agora_queries_total[5m]))"}]}
        ]},
        {"type": "timeseries", "targets": [{"expr": "histogram_quantile(0.9, sum by (le) (rate(agora_query_seconds_bucket[5m])))"}]}
    ]}"#;
    assert_eq!(check_dashboard(good, Some(docs)), Vec::<String>::new());
    let unknown = good.replace("agora_queries_total", "agora_queries");
    let problems = check_dashboard(&unknown, Some(docs));
    assert!(
        problems.len() == 1 && problems[0].contains("reads agora_queries,"),
        "{problems:?}"
    );
    // Without docs/metrics.md, only the shape is checked.
    assert!(check_dashboard(&unknown, None).is_empty());
    assert_eq!(
        check_dashboard(r#"{"title": "x", "panels": []}"#, None),
        ["no panels", "no Prometheus queries"]
    );
    assert!(check_dashboard("{", None)[0].starts_with("not JSON"));
}

#[test]
fn metric_names_are_read_out_of_promql() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le, task) (rate(agora_query_seconds_bucket{job=~\"$job\"}[$__rate_interval]))) / on(instance) group_left up",
    );
    assert_eq!(
        names,
        BTreeSet::from(["agora_query_seconds_bucket".to_string(), "up".to_string()])
    );
    let names =
        metric_names("sum without (peer) (libp2p_swarm_connections_incoming_total) offset 5m");
    assert_eq!(
        names,
        BTreeSet::from(["libp2p_swarm_connections_incoming_total".to_string()])
    );
}

#[test]
fn the_kubernetes_manifests_parse_with_the_kinds_the_mesh_needs() {
    let mut kinds: BTreeMap<String, Vec<serde_norway::Value>> = BTreeMap::new();
    for path in files_under(&deploy().join("k8s"), "yaml") {
        for doc in yaml_documents(&path) {
            let kind = yaml_str(&doc, &["kind"])
                .unwrap_or_else(|| panic!("{}: a document with no kind", path.display()))
                .to_string();
            assert!(
                yaml_str(&doc, &["apiVersion"]).is_some(),
                "{}: {kind} with no apiVersion",
                path.display()
            );
            kinds.entry(kind).or_default().push(doc);
        }
    }
    for want in [
        "Namespace",
        "ConfigMap",
        "Service",
        "StatefulSet",
        "Deployment",
        "PersistentVolumeClaim",
        "Kustomization",
    ] {
        assert!(kinds.contains_key(want), "no {want} in deploy/k8s");
    }

    // The bootstrap StatefulSet: a headless Service for stable names, its key from a Secret.
    let sts = &kinds["StatefulSet"][0];
    let service_name = yaml_str(sts, &["spec", "serviceName"]).unwrap();
    let headless = kinds["Service"]
        .iter()
        .find(|s| yaml_str(s, &["metadata", "name"]) == Some(service_name))
        .unwrap_or_else(|| panic!("no Service {service_name}"));
    assert_eq!(yaml_str(headless, &["spec", "clusterIP"]), Some("None"));
    let sts_text = serde_norway::to_string(sts).unwrap();
    assert!(sts_text.contains("agora-bootstrap"));
    assert!(
        sts_text.contains("secretName"),
        "the identity comes from a Secret"
    );

    // Miners as Deployments of `agora serve`, a validator, and a gateway Service.
    let deployments: Vec<String> = kinds["Deployment"]
        .iter()
        .map(|d| serde_norway::to_string(d).unwrap())
        .collect();
    assert!(deployments.iter().filter(|d| d.contains("- serve")).count() >= 1);
    assert!(deployments.iter().any(|d| d.contains("- validate")));
    assert!(deployments.iter().any(|d| d.contains("- gateway")));
    assert!(
        kinds["Service"]
            .iter()
            .any(|s| yaml_str(s, &["metadata", "name"]) == Some("agora-gateway"))
    );

    // Every resource the kustomization names exists.
    let kustomization = &kinds["Kustomization"][0];
    for resource in kustomization["resources"].as_sequence().unwrap() {
        let file = resource.as_str().unwrap();
        assert!(
            deploy().join("k8s").join(file).exists(),
            "{file} is missing"
        );
    }
}

/// Runs `agora config show [COMMAND] --config FILE` with a clean environment; it must succeed.
fn config_show(home: &Path, file: &Path, command: Option<&str>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AGORA_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home).args(["config", "show"]);
    if let Some(command) = command {
        cmd.arg(command);
    }
    let out = cmd.arg("--config").arg(file).output().unwrap();
    let text = ok(
        &out,
        &format!("agora config show --config {}", file.display()),
    );
    let _: toml::Table = text.parse().unwrap();
    text
}

#[test]
fn every_config_file_in_deploy_is_accepted_by_agora() {
    let home = tempfile::tempdir().unwrap();
    let mut files = files_under(&deploy(), "toml");
    // The ConfigMap's config.toml, written out.
    for doc in yaml_documents(&deploy().join("k8s/configmap.yaml")) {
        if let Some(text) = yaml_str(&doc, &["data", "config.toml"]) {
            let path = home.path().join("configmap.toml");
            std::fs::write(&path, text).unwrap();
            files.push(path);
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    for file in &files {
        let all = config_show(home.path(), file, None);
        assert!(
            all.contains("file ["),
            "{}: nothing from the file",
            file.display()
        );
        for command in ["serve", "validate", "gateway"] {
            config_show(home.path(), file, Some(command));
        }
    }
    // The values the compose mesh relies on arrive where intended.
    let compose = config_show(
        home.path(),
        &deploy().join("compose/agora.toml"),
        Some("serve"),
    );
    assert!(
        compose.contains("http = \"0.0.0.0:7700\"  # file [serve]"),
        "{compose}"
    );
    assert!(
        compose.contains("loopback = true  # file [mesh]"),
        "{compose}"
    );
}

#[test]
fn the_compose_init_script_sets_up_wallets_ledger_and_bootstrap_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let mesh = tmp.path().join("mesh");
    // The binaries on PATH under the names the image installs them as.
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_agora"), bin.join("agora")).unwrap();
    std::os::unix::fs::symlink(common::bootstrap_binary(), bin.join("agora-bootstrap")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = || {
        let mut cmd = Command::new("sh");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AGORA_") {
                cmd.env_remove(&key);
            }
        }
        cmd.arg(deploy().join("compose/init-mesh.sh"))
            .env("PATH", &path)
            .env("HOME", tmp.path())
            .env("MESH_DIR", &mesh)
            .env("COLD_PW", "test password")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let first = ok(&run(), "init-mesh.sh");
    assert!(first.contains("init-mesh: ready"), "{first}");
    let addr = std::fs::read_to_string(mesh.join("bootstrap.addr")).unwrap();
    assert!(
        addr.starts_with("/dns4/bootstrap/tcp/4001/p2p/12D3Koo"),
        "{addr}"
    );
    // The metagraph: the validator and three miners and the client registered on subnet 1.
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["metagraph", "--subnet", "1", "--json"])
        .env("AGORA_LEDGER_LOG", mesh.join("ledger/log"))
        .env("AGORA_LEDGER_GENESIS", mesh.join("ledger/genesis.json"))
        .output()
        .unwrap();
    let metagraph: Json = serde_json::from_str(&ok(&out, "agora metagraph")).unwrap();
    let rows = metagraph
        .as_array()
        .or_else(|| metagraph.get("neurons").and_then(Json::as_array))
        .unwrap_or_else(|| panic!("{metagraph}"));
    assert_eq!(rows.len(), 5, "{metagraph}");
    // A second run keeps everything (identities survive a restart of the mesh).
    let second = ok(&run(), "init-mesh.sh again");
    assert!(second.contains("already set up"), "{second}");
    assert_eq!(
        std::fs::read_to_string(mesh.join("bootstrap.addr")).unwrap(),
        addr
    );
}

#[test]
fn the_image_entrypoint_fills_in_the_listen_address_and_bootstrap_list() {
    let tmp = tempfile::tempdir().unwrap();
    let addrs = tmp.path().join("bootstrap.addr");
    std::fs::write(
        &addrs,
        "/dns4/bootstrap/tcp/4001/p2p/A\n\n/dns4/boot2/tcp/4001/p2p/B\n",
    )
    .unwrap();
    let entrypoint = deploy().join("docker-entrypoint.sh");
    let run = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
        let out = Command::new("sh")
            .arg(&entrypoint)
            .arg("env")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AGORA_BOOTSTRAP_FILE", &addrs)
            .env("AGORA_LISTEN_SELF", "4001")
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        ok(&out, "docker-entrypoint.sh env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let env = run(&[]);
    assert_eq!(
        env["AGORA_BOOTSTRAP"],
        "/dns4/bootstrap/tcp/4001/p2p/A,/dns4/boot2/tcp/4001/p2p/B"
    );
    let listen = &env["AGORA_LISTEN"];
    assert!(
        listen.starts_with("/ip4/") && listen.ends_with("/tcp/4001"),
        "{listen}"
    );
    // What the operator set is kept.
    let env = run(&[
        ("AGORA_LISTEN", "/ip4/10.1.2.3/tcp/9"),
        ("AGORA_BOOTSTRAP", "/dns4/x/tcp/1/p2p/C"),
    ]);
    assert_eq!(env["AGORA_LISTEN"], "/ip4/10.1.2.3/tcp/9");
    assert_eq!(env["AGORA_BOOTSTRAP"], "/dns4/x/tcp/1/p2p/C");
    // Both scripts the image and compose run are valid POSIX shell.
    for script in [entrypoint, deploy().join("compose/init-mesh.sh")] {
        let out = Command::new("sh").arg("-n").arg(&script).output().unwrap();
        ok(&out, &format!("sh -n {}", script.display()));
    }
}
