//! Targets for files a node reads: wallet keyfiles, genesis files, model weights' headers.

use agora_inference::generation::gguf::MetadataValue;
use agora_inference::generation::{Gguf, LlamaConfig, Tokenizer};
use agora_ledger::balances::Genesis;
use agora_ledger::state::genesis::LedgerGenesis;
use agora_wallet::keyfile::Keyfile;
use burn_store::{ModuleStore, SafetensorsStore};

/// A wallet keyfile (`Keyfile::parse`, JSON): what parses writes back to a file that parses to
/// the same key. A plaintext key is opened (cheap); an encrypted one is not (Argon2id at the
/// file's own costs would measure the KDF, not the parser).
pub fn keyfile(data: &[u8]) {
    let Ok(file) = Keyfile::parse(data) else {
        return;
    };
    let Ok(bytes) = file.to_bytes() else {
        return;
    };
    match Keyfile::parse(&bytes) {
        Ok(again) => {
            assert_eq!(again.kind(), file.kind());
            assert_eq!(again.public(), file.public());
            assert_eq!(again.is_encrypted(), file.is_encrypted());
            assert_eq!(again.kdf_params(), file.kdf_params());
        }
        Err(e) => panic_invariant(&format!("a keyfile written back does not parse: {e}")),
    }
    if !file.is_encrypted()
        && let Ok(key) = file.open(None)
    {
        assert_eq!(key.public(), file.public());
    }
}

/// The balances genesis (`Genesis::from_json`, `{"accounts": {...}}`).
pub fn balances_genesis(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(genesis) = Genesis::from_json(text) else {
        return;
    };
    match Genesis::from_json(&genesis.to_json()) {
        Ok(again) => assert_eq!(again, genesis),
        Err(e) => panic_invariant(&format!("a genesis written back does not parse: {e}")),
    }
}

/// The ledger genesis (`LedgerGenesis::from_json`): parsed, written back, and turned into the
/// state at height 0, whose supply must add up.
pub fn ledger_genesis(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(genesis) = LedgerGenesis::from_json(text) else {
        return;
    };
    match genesis
        .to_json()
        .map(|json| LedgerGenesis::from_json(&json))
    {
        Ok(Ok(again)) => assert_eq!(again, genesis),
        Ok(Err(e)) => panic_invariant(&format!("a genesis written back does not parse: {e}")),
        Err(e) => panic_invariant(&format!("a parsed genesis does not write: {e}")),
    }
    let state = genesis.to_state();
    assert_eq!(state.total_held(), Some(state.total_issuance()));
    assert!(state.state_root().is_ok());
}

/// A GGUF model file (`Gguf::parse`), then what loading does with it: every tensor's bytes and
/// dequantisation, the tokenizer and the model configuration read from the metadata.
pub fn gguf(data: &[u8]) {
    let Ok(file) = Gguf::parse(data.to_vec()) else {
        return;
    };
    for (key, value) in file.metadata() {
        match value {
            MetadataValue::String(_) => assert!(file.get_str(key).is_ok()),
            MetadataValue::Array(_) => assert!(file.get_array(key).is_ok()),
            _ => {}
        }
        let _ = file.get_u64(key);
        let _ = file.get_f32(key);
        let _ = file.get_bool(key);
        let _ = file.get_string_array(key);
    }
    for info in file.tensors() {
        if let Ok(bytes) = file.tensor_bytes(info) {
            assert_eq!(bytes.len() as u64, info.size);
        }
        if let Ok(values) = file.dequantize(&info.name) {
            assert_eq!(values.len() as u64, info.n_elements);
        }
    }
    let _ = Tokenizer::from_gguf(&file);
    let _ = LlamaConfig::from_gguf(&file);
}

/// A safetensors weights file, through the reader the embedding model loads with
/// (burn-store's `SafetensorsStore`): the header, then every tensor's data.
pub fn safetensors(data: &[u8]) {
    let mut store = SafetensorsStore::from_bytes(Some(data.to_vec()));
    let Ok(snapshots) = store.get_all_snapshots() else {
        return;
    };
    for snapshot in snapshots.values() {
        let _ = snapshot.to_data();
    }
}

#[allow(clippy::panic)]
fn panic_invariant(what: &str) -> ! {
    panic!("invariant broken: {what}")
}

/// The flags of one command table a config file may hold, of each kind of value parser the
/// command line uses: lists of text, a number, a bounded number, a switch, a socket address, a
/// choice. (The real command's flags live in the `agora` binary; the decoder only ever sees them
/// as clap arguments like these.)
fn config_flags() -> Vec<clap::Arg> {
    use clap::{Arg, ArgAction, value_parser};
    vec![
        Arg::new("models").long("model").action(ArgAction::Append),
        Arg::new("prices").long("price").action(ArgAction::Append),
        Arg::new("credit_limit")
            .long("credit-limit")
            .action(ArgAction::Set)
            .value_parser(value_parser!(u64)),
        Arg::new("rate_limit")
            .long("rate-limit")
            .action(ArgAction::Set)
            .value_parser(value_parser!(u32).range(1..)),
        Arg::new("loopback")
            .long("loopback")
            .action(ArgAction::SetTrue),
        Arg::new("http")
            .long("http")
            .action(ArgAction::Set)
            .value_parser(value_parser!(std::net::SocketAddr)),
        Arg::new("relay")
            .long("relay")
            .action(ArgAction::Set)
            .value_parser(["auto", "always", "never"]),
    ]
}

/// The operator's TOML configuration file (`agora::config_file`, what `agora` reads with
/// `--config`): the text parsed, its tables and keys checked against the shared tables and one
/// command table (`[serve]`, with flags of every kind of parser), and each value turned into the
/// text a flag would carry and checked with that flag's parser. What passes holds: every table and
/// key the check accepted is known, and a value is a list only where its flag takes several.
pub fn config(data: &[u8]) {
    use agora::config_file::{ConfigTables, is_list, shared_keys, values};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = ConfigTables::parse(text) else {
        return;
    };
    let flags = config_flags();
    let command_keys: Vec<String> = flags
        .iter()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let known = |table: &str| {
        shared_keys(table).or_else(|| (table == "serve").then(|| command_keys.clone()))
    };
    let checked = file.check(known).is_ok();
    // Shared keys take text; a shared list (bootstrap, listen, subnet) takes several.
    let text_flag = clap::Arg::new("text")
        .long("text")
        .action(clap::ArgAction::Set);
    let list_flag = clap::Arg::new("list")
        .long("list")
        .action(clap::ArgAction::Append);
    for (table, key, value) in file.entries() {
        if checked {
            assert!(
                known(table).is_some_and(|keys| keys.iter().any(|k| k == key)),
                "[{table}] {key} passed the check but is unknown"
            );
        }
        let arg = flags
            .iter()
            .find(|a| table == "serve" && a.get_long() == Some(key))
            .unwrap_or(if matches!(key, "bootstrap" | "listen" | "subnet") {
                &list_flag
            } else {
                &text_flag
            });
        if let Ok(values) = values(value, arg) {
            if is_list(arg) {
                assert!(value.is_array() || values.len() == 1);
            } else {
                assert_eq!(
                    values.len(),
                    1,
                    "[{table}] {key}: one value for a single flag"
                );
            }
        }
    }
}
