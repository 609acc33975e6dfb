#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Balances: a genesis file plus countersigned receipts.

use agora_ledger::balances::{
    Account, BalanceError, Balances, Genesis, MAX_GENESIS_FILE, UNITS_PER_TOKEN, format_units,
};
use agora_protocols::{ContentId, ProviderReceipt, Receipt, ReceiptBody, SecretKey, Task};
use std::collections::BTreeMap;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn receipt(client: &SecretKey, provider: &SecretKey, n: u64, price: u64) -> Receipt {
    let body = ReceiptBody {
        version: agora_protocols::receipt::RECEIPT_VERSION,
        query_id: ContentId::of_payload(&n.to_le_bytes()),
        subnet: 1,
        task: Task::Generate,
        model: "smollm2-135m".to_string(),
        input_hash: ContentId::of_payload(b"in"),
        output_hash: ContentId::of_payload(b"out"),
        price,
        client: client.public(),
        provider: provider.public(),
        nonce: n,
        requested_at_ms: 1,
        answered_at_ms: 2,
    };
    ProviderReceipt::sign(body, provider)
        .unwrap()
        .countersign(client)
        .unwrap()
}

fn genesis(entries: &[(&SecretKey, u64)]) -> Genesis {
    Genesis::new(entries.iter().map(|(k, v)| (k.public(), *v)).collect()).unwrap()
}

#[test]
fn units_format_with_nine_decimals() {
    assert_eq!(UNITS_PER_TOKEN, 1_000_000_000);
    assert_eq!(format_units(1_250_000_000), "1.250000000");
    assert_eq!(format_units(0), "0.000000000");
    assert_eq!(format_units(7), "0.000000007");
    assert_eq!(format_units(u64::MAX), "18446744073.709551615");
}

#[test]
fn receipts_move_money_from_client_to_provider() {
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let g = genesis(&[(&alice, 10 * UNITS_PER_TOKEN), (&bob, UNITS_PER_TOKEN)]);
    let receipts = [
        receipt(&alice, &carol, 1, 2 * UNITS_PER_TOKEN),
        receipt(&alice, &bob, 2, UNITS_PER_TOKEN),
        // bob spends what alice paid him, plus his own genesis
        receipt(&bob, &carol, 3, 2 * UNITS_PER_TOKEN),
    ];
    let b = Balances::compute(&g, &receipts).unwrap();
    assert_eq!(
        b.get(&alice.public()),
        Account {
            genesis: 10 * UNITS_PER_TOKEN,
            paid: 3 * UNITS_PER_TOKEN,
            received: 0,
            balance: 7 * UNITS_PER_TOKEN,
        }
    );
    assert_eq!(
        b.get(&bob.public()),
        Account {
            genesis: UNITS_PER_TOKEN,
            paid: 2 * UNITS_PER_TOKEN,
            received: UNITS_PER_TOKEN,
            balance: 0,
        }
    );
    assert_eq!(
        b.get(&carol.public()),
        Account {
            genesis: 0,
            paid: 0,
            received: 4 * UNITS_PER_TOKEN,
            balance: 4 * UNITS_PER_TOKEN,
        }
    );
    assert_eq!(b.get(&key(9).public()), Account::default());
    assert_eq!(b.total(), g.total());
    assert_eq!(b.receipts_applied(), 3);
    let keys: Vec<_> = b.iter().map(|(k, _)| *k).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 3);
}

#[test]
fn a_receipt_seen_twice_is_paid_once() {
    let (alice, bob) = (key(1), key(2));
    let g = genesis(&[(&alice, 100)]);
    let r = receipt(&alice, &bob, 1, 30);
    let b = Balances::compute(&g, [&r, &r, &r.clone()]).unwrap();
    assert_eq!(b.get(&alice.public()).balance, 70);
    assert_eq!(b.get(&bob.public()).received, 30);
    assert_eq!(b.receipts_applied(), 1);
}

#[test]
fn overdrawing_names_the_receipt_and_client() {
    let (alice, bob) = (key(1), key(2));
    let g = genesis(&[(&alice, 50)]);
    let ok = receipt(&alice, &bob, 1, 40);
    let too_much = receipt(&alice, &bob, 2, 11);
    let err = Balances::compute(&g, [&ok, &too_much]).unwrap_err();
    match &err {
        BalanceError::Overdrawn {
            receipt,
            client,
            balance,
            price,
        } => {
            assert_eq!(*receipt, too_much.id());
            assert_eq!(**client, alice.public());
            assert_eq!((*balance, *price), (10, 11));
        }
        other => panic!("expected Overdrawn, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&too_much.id().to_hex()), "{text}");
    // A client with no genesis at all cannot pay anything but zero.
    let free = receipt(&bob, &alice, 3, 0);
    assert!(Balances::compute(&Genesis::default(), [&free]).is_ok());
    let paid = receipt(&bob, &alice, 4, 1);
    assert!(matches!(
        Balances::compute(&Genesis::default(), [&paid]),
        Err(BalanceError::Overdrawn { .. })
    ));
}

#[test]
fn genesis_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("genesis.json");
    let g = genesis(&[(&key(1), 5), (&key(2), 6 * UNITS_PER_TOKEN)]);
    g.save(&path).unwrap();
    let loaded = Genesis::load(&path).unwrap();
    assert_eq!(loaded, g);
    assert_eq!(loaded.balance_of(&key(2).public()), 6 * UNITS_PER_TOKEN);
    assert_eq!(loaded.balance_of(&key(3).public()), 0);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&key(1).public().to_hex()));
}

#[test]
fn genesis_file_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genesis.json");
    let good = key(1).public().to_hex();

    std::fs::write(
        &path,
        format!(r#"{{"accounts": {{"{good}": 1, "not-a-key": 2}}}}"#),
    )
    .unwrap();
    let err = Genesis::load(&path).unwrap_err();
    assert!(
        matches!(&err, BalanceError::BadKey { key, .. } if key == "not-a-key"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not-a-key"), "{err}");

    // 32 bytes that are not a curve point.
    let not_a_point = "ff".repeat(31) + "7f";
    std::fs::write(&path, format!(r#"{{"accounts": {{"{not_a_point}": 1}}}}"#)).unwrap();
    if let Err(err) = Genesis::load(&path) {
        assert!(err.to_string().contains(&not_a_point), "{err}");
    }

    std::fs::write(&path, r#"{"accounts": {}, "extra": 1}"#).unwrap();
    let err = Genesis::load(&path).unwrap_err();
    assert!(matches!(err, BalanceError::Json { .. }), "{err:?}");
    assert!(err.to_string().contains("extra"), "{err}");

    std::fs::write(&path, format!(r#"{{"accounts": {{"{good}": -1}}}}"#)).unwrap();
    assert!(matches!(
        Genesis::load(&path),
        Err(BalanceError::Json { .. })
    ));

    let upper = good.to_uppercase();
    std::fs::write(
        &path,
        format!(r#"{{"accounts": {{"{good}": 1, "{upper}": 2}}}}"#),
    )
    .unwrap();
    assert!(matches!(
        Genesis::load(&path),
        Err(BalanceError::DuplicateKey(_))
    ));

    let other = key(2).public().to_hex();
    std::fs::write(
        &path,
        format!(
            r#"{{"accounts": {{"{good}": {}, "{other}": 1}}}}"#,
            u64::MAX
        ),
    )
    .unwrap();
    assert!(matches!(
        Genesis::load(&path),
        Err(BalanceError::GenesisOverflow)
    ));

    assert!(matches!(
        Genesis::load(&dir.path().join("missing.json")),
        Err(BalanceError::Io { .. })
    ));

    let big = vec![b' '; usize::try_from(MAX_GENESIS_FILE).unwrap() + 1];
    std::fs::write(&path, big).unwrap();
    assert!(matches!(
        Genesis::load(&path),
        Err(BalanceError::TooLarge { .. })
    ));
}

#[test]
fn a_genesis_map_that_overflows_is_refused() {
    let mut accounts = BTreeMap::new();
    accounts.insert(key(1).public(), u64::MAX);
    accounts.insert(key(2).public(), 1);
    assert!(matches!(
        Genesis::new(accounts),
        Err(BalanceError::GenesisOverflow)
    ));
}

#[test]
fn flows_sum_what_each_key_paid_and_received() {
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let r1 = receipt(&alice, &bob, 1, 5);
    let r2 = receipt(&bob, &carol, 2, 7);
    let f = agora_ledger::balances::flows([&r1, &r2, &r1]).unwrap();
    assert_eq!(f[&alice.public()].paid, 5);
    assert_eq!(f[&bob.public()].received, 5);
    assert_eq!(f[&bob.public()].paid, 7);
    assert_eq!(f[&carol.public()].received, 7);
    assert_eq!(f.len(), 3);
}
