//! `agora wallet` end to end: the real binary, a temporary wallet directory, passwords from the
//! environment (as a headless user would give them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly on purpose

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const COLD_PW: &str = "cold password for tests";
const HOT_PW: &str = "hot password for tests";

/// Runs `agora wallet <args>` with wallets under `root` and both passwords in the environment.
fn agora(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agora"))
        .arg("wallet")
        .args(args)
        .env("AGORA_WALLET_PATH", root)
        .env("COLD_PW", COLD_PW)
        .env("HOT_PW", HOT_PW)
        .env("WRONG_PW", "not the right password")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// Creates wallet `name` with an encrypted coldkey and an encrypted hotkey "default".
fn create(root: &Path, name: &str, words: &str) -> serde_json::Value {
    json(&agora(
        root,
        &[
            "new",
            "--name",
            name,
            "--words",
            words,
            "--password-env",
            "COLD_PW",
            "--hotkey-password-env",
            "HOT_PW",
            "--insecure-fast-kdf",
            "--json",
        ],
    ))
}

#[test]
fn create_then_restore_from_mnemonic_gives_the_same_keys() {
    for words in ["12", "24"] {
        let root = tempfile::tempdir().unwrap();
        let created = create(root.path(), "alice", words);
        let cold_phrase = created["coldkey"]["mnemonic"].as_str().unwrap();
        let hot_phrase = created["hotkey"]["mnemonic"].as_str().unwrap();
        assert_eq!(cold_phrase.split(' ').count().to_string(), words);
        assert_eq!(hot_phrase.split(' ').count().to_string(), words);

        // Restore both into another directory: one from a file, one from the flag.
        let other = tempfile::tempdir().unwrap();
        let phrase_file = other.path().join("phrase.txt");
        fs::write(&phrase_file, format!("{cold_phrase}\n")).unwrap();
        let cold = json(&agora(
            other.path(),
            &[
                "regen",
                "coldkey",
                "--name",
                "restored",
                "--mnemonic-file",
                phrase_file.to_str().unwrap(),
                "--password-env",
                "COLD_PW",
                "--insecure-fast-kdf",
                "--json",
            ],
        ));
        assert_eq!(cold["public_key"], created["coldkey"]["public_key"]);
        let hot = json(&agora(
            other.path(),
            &[
                "regen",
                "hotkey",
                "--name",
                "restored",
                "--hotkey",
                "default",
                "--mnemonic",
                hot_phrase,
                "--no-password",
                "--json",
            ],
        ));
        assert_eq!(hot["public_key"], created["hotkey"]["public_key"]);
        assert_eq!(hot["peer_id"], created["hotkey"]["peer_id"]);

        // The restored keys sign exactly as the originals.
        let sig_a = ok(&agora(
            root.path(),
            &[
                "sign",
                "--name",
                "alice",
                "--coldkey",
                "--message",
                "hi",
                "--password-env",
                "COLD_PW",
            ],
        ));
        let sig_b = ok(&agora(
            other.path(),
            &[
                "sign",
                "--name",
                "restored",
                "--coldkey",
                "--message",
                "hi",
                "--password-env",
                "COLD_PW",
            ],
        ));
        assert_eq!(sig_a, sig_b);
    }
}

#[test]
fn show_and_list_need_no_password_and_report_the_peer_id() {
    let root = tempfile::tempdir().unwrap();
    let created = create(root.path(), "alice", "12");
    let shown = json(&agora(root.path(), &["show", "--name", "alice", "--json"]));
    assert_eq!(
        shown["coldkey"]["public_key"],
        created["coldkey"]["public_key"]
    );
    assert_eq!(shown["coldkey"]["encrypted"], true);
    assert_eq!(shown["coldkey"]["kdf"]["name"], "argon2id");
    let hot = &shown["hotkeys"]["default"];
    assert_eq!(hot["public_key"], created["hotkey"]["public_key"]);
    assert_eq!(hot["encrypted"], true);

    // The peer id is the one libp2p derives from the hotkey's public key.
    let public = agora_wallet::PublicKey::from_hex(hot["public_key"].as_str().unwrap()).unwrap();
    let expected = agora_wallet::peer_id(&public).unwrap().to_string();
    assert_eq!(hot["peer_id"], expected.as_str());
    // And from the secret key, as a node would load it.
    let wallet = agora_wallet::Wallet::new(root.path(), "alice").unwrap();
    let secret = wallet
        .unlock_hotkey(
            "default",
            Some(&agora_wallet::Password::from_string(HOT_PW.into())),
        )
        .unwrap();
    let keypair = agora_wallet::libp2p_keypair(&secret).unwrap();
    assert_eq!(keypair.public().to_peer_id().to_string(), expected);

    create(root.path(), "bob", "24");
    let listed = json(&agora(root.path(), &["list", "--json"]));
    let names: Vec<_> = listed["wallets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let text = ok(&agora(root.path(), &["list"]));
    assert!(
        text.contains(created["coldkey"]["public_key"].as_str().unwrap()),
        "{text}"
    );
    assert!(text.contains(&expected), "{text}");
    let text = ok(&agora(root.path(), &["show", "--name", "alice"]));
    assert!(text.contains("encrypted, argon2id"), "{text}");
}

#[test]
fn new_prints_the_phrases_once_with_a_warning() {
    let root = tempfile::tempdir().unwrap();
    let out = agora(
        root.path(),
        &[
            "new",
            "--name",
            "alice",
            "--password-env",
            "COLD_PW",
            "--no-hotkey-password",
            "--insecure-fast-kdf",
        ],
    );
    let text = ok(&out);
    assert!(text.contains("coldkey phrase:"), "{text}");
    assert!(text.contains("hotkey \"default\" phrase:"), "{text}");
    assert!(text.contains("shown only this once"), "{text}");
    // The phrase is nowhere on disk.
    let phrase = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("coldkey phrase: "))
        .unwrap();
    for entry in walk(root.path()) {
        let contents = fs::read_to_string(&entry).unwrap();
        assert!(!contents.contains(phrase), "{}", entry.display());
    }
    // The unencrypted hotkey signs without a password.
    ok(&agora(
        root.path(),
        &["sign", "--name", "alice", "--message", "hello"],
    ));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn wrong_password_fails_cleanly_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    create(root.path(), "alice", "12");
    let coldkey = root.path().join("alice/coldkey");
    let before = fs::read(&coldkey).unwrap();
    let err = fails(&agora(
        root.path(),
        &[
            "sign",
            "--name",
            "alice",
            "--coldkey",
            "--message",
            "x",
            "--password-env",
            "WRONG_PW",
        ],
    ));
    assert!(err.contains("wrong password"), "{err}");
    assert!(err.contains("coldkey"), "{err}");
    assert_eq!(fs::read(&coldkey).unwrap(), before);
    let err = fails(&agora(
        root.path(),
        &[
            "sign",
            "--name",
            "alice",
            "--message",
            "x",
            "--password-env",
            "COLD_PW",
        ],
    ));
    assert!(
        err.contains("wrong password"),
        "the hotkey has its own password: {err}"
    );
    let err = fails(&agora(
        root.path(),
        &[
            "sign",
            "--name",
            "alice",
            "--coldkey",
            "--message",
            "x",
            "--password-env",
            "UNSET_VARIABLE_X",
        ],
    ));
    assert!(err.contains("UNSET_VARIABLE_X is not set"), "{err}");
}

#[test]
fn damaged_files_and_loose_permissions_give_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    create(root.path(), "alice", "12");
    let coldkey = root.path().join("alice/coldkey");
    let good = fs::read(&coldkey).unwrap();
    let sign = |root: &Path| {
        agora(
            root,
            &[
                "sign",
                "--name",
                "alice",
                "--coldkey",
                "--message",
                "x",
                "--password-env",
                "COLD_PW",
            ],
        )
    };

    // Corrupt.
    fs::write(&coldkey, b"{ this is not json").unwrap();
    let err = fails(&sign(root.path()));
    assert!(err.contains("corrupt keyfile"), "{err}");
    assert!(err.contains("regen"), "says how to recover: {err}");

    // Truncated.
    fs::write(&coldkey, &good[..good.len() - 40]).unwrap();
    let err = fails(&sign(root.path()));
    assert!(err.contains("corrupt keyfile"), "{err}");

    // Tampered ciphertext (valid JSON, one bit flipped).
    let mut json: serde_json::Value = serde_json::from_slice(&good).unwrap();
    let mut ct = hex::decode(json["secret"]["ciphertext"].as_str().unwrap()).unwrap();
    ct[5] ^= 0x80;
    json["secret"]["ciphertext"] = hex::encode(ct).into();
    fs::write(&coldkey, serde_json::to_vec(&json).unwrap()).unwrap();
    let err = fails(&sign(root.path()));
    assert!(err.contains("tampered"), "{err}");
    assert!(!err.contains("wrong password"), "{err}");

    // Permissions.
    fs::write(&coldkey, &good).unwrap();
    fs::set_permissions(&coldkey, fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(&sign(root.path()));
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains("0644"), "{err}");
    // show reports it per key rather than failing the whole wallet.
    let shown = json_of(&agora(root.path(), &["show", "--name", "alice", "--json"]));
    assert!(
        shown["coldkey"]["error"]
            .as_str()
            .unwrap()
            .contains("chmod 600")
    );
    assert!(shown["hotkeys"]["default"]["public_key"].is_string());
    // Nothing was changed by any of it; fixing the mode makes it work again.
    assert_eq!(fs::read(&coldkey).unwrap(), good);
    fs::set_permissions(&coldkey, fs::Permissions::from_mode(0o600)).unwrap();
    ok(&sign(root.path()));
}

fn json_of(out: &Output) -> serde_json::Value {
    json(out)
}

#[test]
fn existing_keys_are_not_overwritten_without_the_flag() {
    let root = tempfile::tempdir().unwrap();
    let created = create(root.path(), "alice", "12");
    let coldkey = root.path().join("alice/coldkey");
    let hotkey = root.path().join("alice/hotkeys/default");
    let cold_before = fs::read(&coldkey).unwrap();
    let hot_before = fs::read(&hotkey).unwrap();

    let out = agora(
        root.path(),
        &[
            "new",
            "--name",
            "alice",
            "--password-env",
            "COLD_PW",
            "--no-hotkey-password",
            "--insecure-fast-kdf",
        ],
    );
    let err = fails(&out);
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("--overwrite"), "{err}");
    let other_phrase = created["hotkey"]["mnemonic"].as_str().unwrap();
    let err = fails(&agora(
        root.path(),
        &[
            "regen",
            "coldkey",
            "--name",
            "alice",
            "--mnemonic",
            other_phrase,
            "--password-env",
            "COLD_PW",
            "--insecure-fast-kdf",
        ],
    ));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&agora(
        root.path(),
        &["new-hotkey", "--name", "alice", "--no-password"],
    ));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(fs::read(&coldkey).unwrap(), cold_before);
    assert_eq!(fs::read(&hotkey).unwrap(), hot_before);

    // With --overwrite the key is replaced.
    let replaced = json(&agora(
        root.path(),
        &[
            "regen",
            "coldkey",
            "--name",
            "alice",
            "--mnemonic",
            other_phrase,
            "--password-env",
            "COLD_PW",
            "--insecure-fast-kdf",
            "--overwrite",
            "--json",
        ],
    ));
    assert_ne!(replaced["public_key"], created["coldkey"]["public_key"]);
    let pub_file = fs::read_to_string(root.path().join("alice/coldkeypub.txt")).unwrap();
    assert_eq!(pub_file.trim(), replaced["public_key"].as_str().unwrap());
}

#[test]
fn sign_verify_round_trip_and_a_flipped_bit_fails() {
    let root = tempfile::tempdir().unwrap();
    let created = create(root.path(), "alice", "12");
    let hot_pub = created["hotkey"]["public_key"].as_str().unwrap();
    let signature = ok(&agora(
        root.path(),
        &[
            "sign",
            "--name",
            "alice",
            "--message",
            "pay bob 5",
            "--password-env",
            "HOT_PW",
        ],
    ));
    let signature = signature.trim();
    assert_eq!(signature.len(), 128);

    let verify = |key: &str, sig: &str, message: &str| {
        agora(
            root.path(),
            &[
                "verify",
                "--key",
                key,
                "--signature",
                sig,
                "--message",
                message,
            ],
        )
    };
    let text = ok(&verify(hot_pub, signature, "pay bob 5"));
    assert!(text.contains("valid"), "{text}");

    // One bit flipped in the signature, the message or the key: rejected with exit status 1.
    let mut bytes = hex::decode(signature).unwrap();
    bytes[0] ^= 0x01;
    let err = fails(&verify(hot_pub, &hex::encode(&bytes), "pay bob 5"));
    assert!(err.contains("invalid"), "{err}");
    fails(&verify(hot_pub, signature, "pay bob 4"));
    let cold_pub = created["coldkey"]["public_key"].as_str().unwrap();
    fails(&verify(cold_pub, signature, "pay bob 5"));
    let err = fails(&verify("zz", signature, "pay bob 5"));
    assert!(err.contains("--key"), "{err}");

    // A file signs byte for byte, and the coldkey signs too.
    let file = root.path().join("message.bin");
    fs::write(&file, [0u8, 159, 146, 150, 255]).unwrap();
    let file = file.to_str().unwrap();
    let sig = ok(&agora(
        root.path(),
        &[
            "sign",
            "--name",
            "alice",
            "--coldkey",
            "--file",
            file,
            "--password-env",
            "COLD_PW",
        ],
    ));
    ok(&agora(
        root.path(),
        &[
            "verify",
            "--key",
            cold_pub,
            "--signature",
            sig.trim(),
            "--file",
            file,
        ],
    ));
}

#[test]
fn new_hotkey_adds_to_an_existing_wallet() {
    let root = tempfile::tempdir().unwrap();
    create(root.path(), "alice", "12");
    let out = json(&agora(
        root.path(),
        &[
            "new-hotkey",
            "--name",
            "alice",
            "--hotkey",
            "miner2",
            "--no-password",
            "--json",
        ],
    ));
    assert!(
        out["hotkey"]["peer_id"]
            .as_str()
            .unwrap()
            .starts_with("12D3KooW")
    );
    let shown = json(&agora(root.path(), &["show", "--name", "alice", "--json"]));
    assert_eq!(shown["hotkeys"]["miner2"]["encrypted"], false);
    let err = fails(&agora(
        root.path(),
        &["new-hotkey", "--name", "nobody", "--no-password"],
    ));
    assert!(err.contains("no wallet"), "{err}");
}

#[test]
fn weak_passwords_and_bad_names_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "wallet",
            "new",
            "--name",
            "alice",
            "--password-env",
            "SHORT",
            "--no-hotkey",
        ])
        .env("AGORA_WALLET_PATH", root.path())
        .env("SHORT", "abc")
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("too short"), "{err}");
    assert!(!root.path().join("alice").exists());
    let err = fails(&agora(root.path(), &["show", "--name", "../etc"]));
    assert!(err.contains("invalid wallet name"), "{err}");
}

#[test]
fn help_reads_well() {
    let root = tempfile::tempdir().unwrap();
    let text = ok(&agora(root.path(), &["--help"]));
    for sub in [
        "new",
        "new-hotkey",
        "list",
        "show",
        "regen",
        "sign",
        "verify",
    ] {
        assert!(text.contains(sub), "{sub} missing from:\n{text}");
    }
    assert!(text.contains("coldkey"), "{text}");
    let text = ok(&agora(root.path(), &["new", "--help"]));
    assert!(text.contains("--password-file"), "{text}");
    assert!(text.contains("--password-env"), "{text}");
    assert!(text.contains("--words"), "{text}");
    assert!(
        !text.contains("insecure"),
        "the test-only flag stays hidden:\n{text}"
    );
    let text = ok(&agora(root.path(), &["regen", "--help"]));
    assert!(
        text.contains("process list"),
        "warns about --mnemonic: {text}"
    );
}

#[test]
fn a_public_key_file_that_disagrees_with_the_keyfile_is_flagged() {
    let root = tempfile::tempdir().unwrap();
    let created = create(root.path(), "alice", "12");
    let impostor = agora_wallet::SecretKey::generate().public().to_hex();
    fs::write(
        root.path().join("alice/coldkeypub.txt"),
        format!("{impostor}\n"),
    )
    .unwrap();
    let shown = json(&agora(root.path(), &["show", "--name", "alice", "--json"]));
    // The keyfile's key is reported, and the mismatch is called out.
    assert_eq!(
        shown["coldkey"]["public_key"],
        created["coldkey"]["public_key"]
    );
    let warning = shown["coldkey"]["warning"].as_str().unwrap();
    assert!(warning.contains(&impostor), "{warning}");
    assert!(shown["hotkeys"]["default"]["warning"].is_null());
    let text = ok(&agora(root.path(), &["show", "--name", "alice"]));
    assert!(text.contains("trust the keyfile"), "{text}");
}
