//! The configuration layers through the real binary: built-in defaults < the TOML file < the
//! environment < flags; the file's location (`--config`, `AGORA_CONFIG`, `~/.agora/config.toml`);
//! errors for unknown keys, bad values and oversized files; `agora config show` printing TOML that
//! reads back (and is itself a config file); `agora completions`.
//!
//! Every run gets a fresh HOME and no inherited `AGORA_*` variable, so a developer's own
//! `~/.agora/config.toml` or environment cannot change what these tests see.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `agora ARGS` with HOME = `home`, no inherited AGORA_* variables, then `env` set.
fn agora(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agora"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AGORA_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home)
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// `agora config show COMMAND FLAGS...`, which must succeed, parsed as TOML.
fn show(home: &Path, env: &[(&str, &str)], args: &[&str]) -> (toml::Table, String) {
    let mut full = vec!["config", "show"];
    full.extend_from_slice(args);
    let out = agora(home, env, &full);
    assert!(
        out.status.success(),
        "agora {full:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let table: toml::Table = text
        .parse()
        .unwrap_or_else(|e| panic!("config show printed invalid TOML ({e}):\n{text}"));
    (table, text)
}

/// The source comment `config show` printed after `table`.`key`.
fn source_of(text: &str, table: &str, key: &str) -> String {
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_table = line == format!("[{table}]");
            continue;
        }
        if in_table && line.starts_with(&format!("{key} = ")) {
            let comment = line.rsplit_once("  # ").map(|(_, c)| c).unwrap_or("");
            return comment.split(';').next().unwrap_or("").to_string();
        }
    }
    panic!("no {key} in [{table}]:\n{text}");
}

fn value<'a>(table: &'a toml::Table, command: &str, key: &str) -> &'a toml::Value {
    table[command]
        .as_table()
        .unwrap()
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in [{command}]"))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const FILE: &str = r#"
[mesh]
relay = "always"
subnet = [2, 3]
bootstrap = ["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]

[client]
max-price = 5

[query]
max-price = 6

[node]
http = "127.0.0.1:7701"
"#;

#[test]
fn flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();

    // Built-in defaults: no file anywhere.
    let (t, text) = show(h, &[], &["node"]);
    assert_eq!(value(&t, "node", "relay").as_str(), Some("auto"));
    assert_eq!(source_of(&text, "node", "relay"), "default");
    assert!(text.contains("# http: not set"), "{text}");
    assert!(text.contains("# subnet: not set"), "{text}");

    // The file at the default location.
    write(&h.join(".agora/config.toml"), FILE);
    let (t, text) = show(h, &[], &["node"]);
    assert_eq!(value(&t, "node", "relay").as_str(), Some("always"));
    assert_eq!(source_of(&text, "node", "relay"), "file [mesh]");
    assert_eq!(value(&t, "node", "http").as_str(), Some("127.0.0.1:7701"));
    assert_eq!(source_of(&text, "node", "http"), "file [node]");
    let subnets: Vec<i64> = value(&t, "node", "subnet")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_integer().unwrap())
        .collect();
    assert_eq!(subnets, [2, 3]);
    assert_eq!(
        value(&t, "node", "bootstrap").as_array().unwrap().len(),
        1,
        "{text}"
    );

    // A command's own table wins over the shared one.
    let (t, text) = show(h, &[], &["query"]);
    assert_eq!(value(&t, "query", "max-price").as_integer(), Some(6));
    assert_eq!(source_of(&text, "query", "max-price"), "file [query]");
    let (t, text) = show(h, &[], &["gateway"]);
    assert_eq!(value(&t, "gateway", "max-price").as_integer(), Some(5));
    assert_eq!(source_of(&text, "gateway", "max-price"), "file [client]");

    // The environment over the file; lists are comma-separated there.
    let env = [
        ("AGORA_RELAY", "never"),
        ("AGORA_SUBNET", "4,5"),
        ("AGORA_NODE_HTTP", "127.0.0.1:7702"),
    ];
    let (t, text) = show(h, &env, &["node"]);
    assert_eq!(value(&t, "node", "relay").as_str(), Some("never"));
    assert_eq!(source_of(&text, "node", "relay"), "env AGORA_RELAY");
    assert_eq!(value(&t, "node", "http").as_str(), Some("127.0.0.1:7702"));
    assert_eq!(
        value(&t, "node", "subnet").as_array().unwrap().len(),
        2,
        "{text}"
    );
    assert_eq!(source_of(&text, "node", "subnet"), "env AGORA_SUBNET");

    // Flags over the environment; a flag list replaces the file's and the environment's.
    let (t, text) = show(
        h,
        &env,
        &[
            "node",
            "--relay",
            "auto",
            "--subnet",
            "7",
            "--http",
            "127.0.0.1:7703",
        ],
    );
    assert_eq!(value(&t, "node", "relay").as_str(), Some("auto"));
    assert_eq!(source_of(&text, "node", "relay"), "flag");
    assert_eq!(value(&t, "node", "http").as_str(), Some("127.0.0.1:7703"));
    assert_eq!(source_of(&text, "node", "subnet"), "flag");
    assert_eq!(
        value(&t, "node", "subnet").as_array().unwrap(),
        &vec![toml::Value::Integer(7)]
    );
    // Switches read 1/yes/on from the environment.
    let (t, text) = show(h, &[("AGORA_LOOPBACK", "1")], &["node"]);
    assert_eq!(value(&t, "node", "loopback").as_bool(), Some(true));
    assert_eq!(source_of(&text, "node", "loopback"), "env AGORA_LOOPBACK");
}

#[test]
fn the_file_is_found_by_flag_then_environment_then_home() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let default = h.join(".agora/config.toml");
    let by_env = h.join("env.toml");
    let by_flag = h.join("flag.toml");
    write(&default, "[node]\nhttp = \"127.0.0.1:1\"\n");
    write(&by_env, "[node]\nhttp = \"127.0.0.1:2\"\n");
    write(&by_flag, "[node]\nhttp = \"127.0.0.1:3\"\n");
    let env = by_env.to_str().unwrap();
    let flag = by_flag.to_str().unwrap();

    let path = |env: &[(&str, &str)], args: &[&str]| {
        let mut full = vec!["config", "path"];
        full.extend_from_slice(args);
        let out = agora(h, env, &full);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    assert_eq!(path(&[], &[]), default.to_str().unwrap());
    assert_eq!(path(&[("AGORA_CONFIG", env)], &[]), env);
    assert_eq!(path(&[("AGORA_CONFIG", env)], &["--config", flag]), flag);

    let http = |env: &[(&str, &str)], args: &[&str]| {
        let mut full = vec!["node"];
        full.extend_from_slice(args);
        let (t, _) = show(h, env, &full);
        value(&t, "node", "http").as_str().unwrap().to_string()
    };
    assert_eq!(http(&[], &[]), "127.0.0.1:1");
    assert_eq!(http(&[("AGORA_CONFIG", env)], &[]), "127.0.0.1:2");
    assert_eq!(
        http(&[("AGORA_CONFIG", env)], &["--config", flag]),
        "127.0.0.1:3"
    );
    // The global flag goes before the subcommand too.
    let out = agora(h, &[], &["--config", flag, "config", "show", "node"]);
    assert!(
        stdout(&out).contains("http = \"127.0.0.1:3\""),
        "{}",
        stdout(&out)
    );

    // An empty file (/dev/null) turns the default one off.
    let (t, text) = show(h, &[("AGORA_CONFIG", "/dev/null")], &["node"]);
    assert!(text.contains("# http: not set"), "{text}");
    assert!(t.contains_key("node"));
    // A file named explicitly must exist; the default one need not.
    std::fs::remove_file(&default).unwrap();
    let out = agora(
        h,
        &[("AGORA_CONFIG", "/nonexistent/agora.toml")],
        &["config", "show"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/agora.toml"),
        "{}",
        stderr(&out)
    );
    show(h, &[], &[]);
}

#[test]
fn an_unknown_key_or_table_is_an_error_naming_it_and_the_valid_keys() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("agora.toml");
    let file_str = file.to_str().unwrap();

    write(&file, "[mesh]\nbootstrapp = []\n");
    let out = agora(
        home.path(),
        &[],
        &["--config", file_str, "node", "--ephemeral-key"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(file_str), "{err}");
    assert!(err.contains("unknown key `bootstrapp` in [mesh]"), "{err}");
    assert!(err.contains("bootstrap, listen, kad-server"), "{err}");
    assert!(stdout(&out).is_empty());

    write(&file, "[serve]\nmodels = [\"all-minilm-l6-v2\"]\n");
    let out = agora(
        home.path(),
        &[],
        &["--config", file_str, "config", "show", "serve"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown key `models` in [serve]"), "{err}");
    assert!(err.contains("model, price"), "{err}");

    write(&file, "[meshh]\nrelay = \"auto\"\n");
    let out = agora(home.path(), &[], &["--config", file_str, "config", "show"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown table [meshh]"), "{err}");
    assert!(
        err.contains("mesh, wallet, ledger, client, node, serve"),
        "{err}"
    );

    write(&file, "relay = \"auto\"\n");
    let out = agora(home.path(), &[], &["--config", file_str, "config", "show"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`relay` is not a table"),
        "{}",
        stderr(&out)
    );

    // Commands that do not read the file are not stopped by a broken one.
    let out = agora(home.path(), &[], &["--config", file_str, "wallet", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_bad_value_is_reported_as_clap_reports_a_bad_flag_with_the_file_and_key() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("agora.toml");
    let file_str = file.to_str().unwrap();

    write(&file, "[mesh]\nrelay = \"sometimes\"\n");
    let out = agora(
        home.path(),
        &[],
        &["--config", file_str, "node", "--ephemeral-key"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{file_str}: [mesh] relay")), "{err}");
    // The very words clap uses for `--relay sometimes`.
    let flag = agora(home.path(), &[], &["node", "--relay", "sometimes"]);
    assert_eq!(flag.status.code(), Some(2));
    assert!(
        stderr(&flag).contains("invalid value 'sometimes' for '--relay <RELAY>'"),
        "{}",
        stderr(&flag)
    );
    assert!(
        err.contains("invalid value 'sometimes' for '--relay <RELAY>'"),
        "{err}"
    );
    assert!(
        err.contains("[possible values: auto, always, never]"),
        "{err}"
    );

    for (text, needle) in [
        (
            "[node]\nhttp = 7700\n",
            "invalid value '7700' for '--http <HOST:PORT>'",
        ),
        (
            "[mesh]\nsubnet = [\"one\"]\n",
            "invalid value 'one' for '--subnet <N>'",
        ),
        (
            "[mesh]\nbootstrap = [\"not-an-address\"]\n",
            "invalid value 'not-an-address'",
        ),
        (
            "[mesh]\nrelay = [\"auto\"]\n",
            "[mesh] relay: takes one value, not a list",
        ),
        (
            "[mesh]\nloopback = \"maybe\"\n",
            "invalid value 'maybe' for '--loopback",
        ),
        ("[mesh\nrelay = 1\n", "is not valid TOML"),
    ] {
        write(&file, text);
        let out = agora(
            home.path(),
            &[],
            &["--config", file_str, "config", "show", "node"],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(needle), "{text}: expected {needle:?} in {err}");
        assert!(err.contains(file_str), "{err}");
    }

    // Over the size limit.
    write(&file, &format!("# {}\n", "x".repeat(70 * 1024)));
    let out = agora(home.path(), &[], &["--config", file_str, "config", "show"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("over the limit of 65536"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_show_prints_toml_that_is_itself_a_config_file() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("agora.toml");
    write(&file, FILE);
    let (first, text) = show(home.path(), &[], &["--config", file.to_str().unwrap()]);
    for command in [
        "node",
        "serve",
        "validate",
        "query",
        "gateway",
        "peers",
        "providers",
    ] {
        assert!(first.contains_key(command), "no [{command}] in\n{text}");
    }
    // Every value line says where it came from.
    for line in text.lines().filter(|l| l.contains(" = ")) {
        let source = line.rsplit_once("  # ").map(|(_, c)| c).unwrap_or("");
        assert!(
            ["flag", "env ", "file [", "default"]
                .iter()
                .any(|s| source.starts_with(s)),
            "no source on {line:?}"
        );
    }
    // Read back as a config file, it gives the same values.
    let again = home.path().join("again.toml");
    std::fs::write(&again, &text).unwrap();
    let (second, _) = show(home.path(), &[], &["--config", again.to_str().unwrap()]);
    assert_eq!(first, second);
}

#[test]
fn a_real_command_runs_on_values_from_the_file_and_the_environment() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("agora.toml");
    let file_port = common::free_port();
    let env_port = common::free_port();
    write(
        &file,
        &format!(
            "[mesh]\nloopback = true\nlisten = [\"/ip4/127.0.0.1/tcp/{file_port}\"]\n\
             [node]\nhttp = \"127.0.0.1:0\"\n"
        ),
    );
    let env_listen = format!("/ip4/127.0.0.1/tcp/{env_port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .env("HOME", home.path())
        .env("AGORA_CONFIG", &file)
        .env("AGORA_LISTEN", &env_listen)
        .args(["node", "--ephemeral-key"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = common::lines(child.stdout.take().unwrap(), None);
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(common::DEADLINE) {
        if line == "ready" {
            break;
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&format!("listen {env_listen}/p2p/"))),
        "the environment's listen address wins over the file's: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|l| l.contains(&format!("/tcp/{file_port}/"))),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("http 127.0.0.1:")),
        "the file's [node] http starts the API: {seen:?}"
    );

    // A required flag can come from the file: `agora serve` gets past clap to its own check.
    write(
        &file,
        "[serve]\nmodel = [\"no-such-model\"]\n[wallet]\nwallet = \"w\"\n",
    );
    let out = agora(
        home.path(),
        &[("AGORA_CONFIG", file.to_str().unwrap())],
        &["serve"],
    );
    assert!(
        stderr(&out).contains("unknown model \"no-such-model\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completions_are_scripts_the_shells_accept() {
    let home = tempfile::tempdir().unwrap();
    let out = agora(home.path(), &[], &["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    assert!(script.contains("agora"), "{script}");
    assert!(
        script.contains("--bootstrap"),
        "subcommand flags are completed"
    );
    let mut bash = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    bash.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let checked = bash.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    for shell in ["zsh", "fish"] {
        let out = agora(home.path(), &[], &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("agora"), "{shell}");
    }
}

#[test]
fn every_key_and_environment_variable_is_documented() {
    let home = tempfile::tempdir().unwrap();
    let (tables, text) = show(home.path(), &[], &[]);
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap();
    for (table, keys) in &tables {
        assert!(
            docs.contains(&format!("[{table}]")),
            "[{table}] undocumented"
        );
        for key in keys.as_table().unwrap().keys() {
            assert!(docs.contains(&format!("`{key}`")), "key {key} undocumented");
        }
    }
    // Keys no layer sets are listed as comments: `# key: not set; env ...`.
    for line in text.lines() {
        if let Some((key, _)) = line
            .strip_prefix("# ")
            .and_then(|l| l.split_once(": not set"))
        {
            assert!(docs.contains(&format!("`{key}`")), "key {key} undocumented");
        }
    }
    let envs: Vec<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("AGORA_"))
        .collect();
    assert!(envs.len() > 20, "{envs:?}");
    for env in envs {
        assert!(docs.contains(&format!("`{env}`")), "{env} undocumented");
    }
}
