#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The receipt store on real redb files: round trips, upgrades, conflicts, indexes, totals,
//! durability across reopen, damaged files, and the group-commit writer.

use agora_ledger::store::{
    Entry, Inserted, ListFilter, ReceiptStore, ReceiptWriter, StoreError, StoredReceipt,
};
use agora_protocols::{
    ContentId, ProviderReceipt, PublicKey, Receipt, ReceiptBody, SecretKey, Task,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

fn body(client: &SecretKey, provider: &SecretKey, n: u64, price: u64) -> ReceiptBody {
    ReceiptBody {
        version: agora_protocols::receipt::RECEIPT_VERSION,
        query_id: ContentId::of_payload(&n.to_le_bytes()),
        subnet: 1,
        task: Task::Embed,
        model: "all-minilm-l6-v2".to_string(),
        input_hash: ContentId::of_payload(b"input"),
        output_hash: ContentId::of_payload(b"output"),
        price,
        client: client.public(),
        provider: provider.public(),
        nonce: n,
        requested_at_ms: 1_700_000_000_000 + n,
        answered_at_ms: 1_700_000_000_050 + n,
    }
}

fn half(client: &SecretKey, provider: &SecretKey, n: u64, price: u64) -> ProviderReceipt {
    ProviderReceipt::sign(body(client, provider, n, price), provider).unwrap()
}

fn full(client: &SecretKey, provider: &SecretKey, n: u64, price: u64) -> Receipt {
    half(client, provider, n, price)
        .countersign(client)
        .unwrap()
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("nested").join("receipts.redb")
}

fn open(path: &Path) -> ReceiptStore {
    ReceiptStore::open(path).unwrap()
}

/// A second, equally valid provider signature over the same body: ed25519 signing is
/// deterministic, so it takes a different nonce prefix (hazmat) to make one. It stands for a
/// provider that signed the same receipt twice.
fn resigned_half(original: &ProviderReceipt, provider: &SecretKey) -> ProviderReceipt {
    use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
    use ed25519_dalek::{Digest, Sha512};
    let digest: [u8; 64] = Sha512::digest(provider.seed()).into();
    let mut esk = ExpandedSecretKey::from_bytes(&digest);
    esk.hash_prefix[0] ^= 0x55;
    let body_bytes = original.body().to_bytes().unwrap();
    let mut message = b"agora/receipt/provider\0".to_vec();
    message.extend_from_slice(&agora_protocols::receipt::RECEIPT_VERSION.to_le_bytes());
    message.extend_from_slice(&provider.public().to_bytes());
    message.extend_from_slice(&body_bytes);
    let vk = ed25519_dalek::SigningKey::from_bytes(&provider.seed()).verifying_key();
    let signature = raw_sign::<Sha512>(&esk, &message, &vk).to_bytes();
    // The signature is the last 64 bytes of the encoded half.
    let mut bytes = original.to_bytes().unwrap();
    let at = bytes.len() - 64;
    bytes[at..].copy_from_slice(&signature);
    let other = ProviderReceipt::from_bytes(&bytes).expect("a second valid signature");
    assert_ne!(other.to_bytes().unwrap(), original.to_bytes().unwrap());
    assert_eq!(other.id(), original.id());
    other
}

#[test]
fn half_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let (c, p) = (key(1), key(2));
    let h = half(&c, &p, 1, 500);
    assert_eq!(store.put_provider_half(&h).unwrap(), Inserted::New);
    let got = store.get(&h.id()).unwrap().unwrap();
    assert_eq!(got, StoredReceipt::Half(h.clone()));
    assert!(!got.is_countersigned());
    assert_eq!(got.id(), h.id());
    assert_eq!(got.body(), h.body());
    assert_eq!(store.count().unwrap(), 1);
    assert_eq!(store.get(&ContentId([9; 32])).unwrap(), None);
}

#[test]
fn full_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let r = full(&key(1), &key(2), 1, 700);
    assert_eq!(store.put_receipt(&r).unwrap(), Inserted::New);
    let got = store.get(&r.id()).unwrap().unwrap();
    assert!(got.is_countersigned());
    assert_eq!(got, StoredReceipt::Full(r.clone()));
    assert_eq!(got.as_receipt(), Some(&r));
}

#[test]
fn half_upgrades_to_full_and_both_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let (c, p) = (key(1), key(2));
    let h = half(&c, &p, 1, 500);
    let r = h.clone().countersign(&c).unwrap();
    assert_eq!(store.put_provider_half(&h).unwrap(), Inserted::New);
    assert_eq!(
        store.put_provider_half(&h).unwrap(),
        Inserted::AlreadyPresent
    );
    assert_eq!(store.put_receipt(&r).unwrap(), Inserted::Upgraded);
    assert_eq!(store.put_receipt(&r).unwrap(), Inserted::AlreadyPresent);
    // The half of a receipt already stored in full is nothing new.
    assert_eq!(
        store.put_provider_half(&h).unwrap(),
        Inserted::AlreadyPresent
    );
    assert_eq!(store.count().unwrap(), 1);
    assert!(store.get(&r.id()).unwrap().unwrap().is_countersigned());
    // The upgrade keeps the receipt's place in insertion order and the unpaid total unchanged.
    assert_eq!(store.unpaid(&c.public(), &p.public()).unwrap(), 500);
    assert_eq!(store.get_row(&r.id()).unwrap().unwrap().seq, 0);
}

#[test]
fn a_different_receipt_under_a_stored_id_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let (c, p) = (key(1), key(2));
    let h = half(&c, &p, 1, 500);
    let other = resigned_half(&h, &p);
    store.put_provider_half(&h).unwrap();
    match store.put_provider_half(&other) {
        Err(StoreError::Conflict(id)) => assert_eq!(id, h.id()),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // A countersignature over the other provider signature cannot upgrade the stored half.
    let r = h.clone().countersign(&c).unwrap();
    let r_other = other.clone().countersign(&c).unwrap();
    assert!(matches!(
        store.put_receipt(&r_other),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.put_receipt(&r).unwrap(), Inserted::Upgraded);
    // Over the full receipt: the other full receipt, and the other half, conflict too.
    assert!(matches!(
        store.put_receipt(&r_other),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.put_provider_half(&other),
        Err(StoreError::Conflict(_))
    ));
    // Nothing changed.
    assert_eq!(store.get(&h.id()).unwrap(), Some(StoredReceipt::Full(r)));
    assert_eq!(store.unpaid(&c.public(), &p.public()).unwrap(), 500);
}

#[test]
fn put_many_is_all_or_nothing_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let (c, p) = (key(1), key(2));
    let h = half(&c, &p, 1, 10);
    let r = h.clone().countersign(&c).unwrap();
    let r2 = full(&c, &p, 2, 20);
    let results = store
        .put_many(&[
            Entry::Half(h.clone()),
            Entry::Full(r.clone()),
            Entry::Full(r2.clone()),
            Entry::Full(r2.clone()),
        ])
        .unwrap();
    assert_eq!(
        results,
        vec![
            Inserted::New,
            Inserted::Upgraded,
            Inserted::New,
            Inserted::AlreadyPresent
        ]
    );
    assert_eq!(store.count().unwrap(), 2);
    assert_eq!(store.unpaid(&c.public(), &p.public()).unwrap(), 30);

    // A batch with a conflicting entry writes nothing.
    let h3 = half(&c, &p, 3, 40);
    let conflicting = resigned_half(&h, &p);
    let err = store
        .put_many(&[Entry::Half(h3.clone()), Entry::Half(conflicting)])
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(store.get(&h3.id()).unwrap(), None);
    assert_eq!(store.count().unwrap(), 2);
    assert_eq!(store.unpaid(&c.public(), &p.public()).unwrap(), 30);
}

#[test]
fn contains_query_finds_halves_and_full_receipts_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let (c1, c2, p) = (key(1), key(2), key(3));
    let h = half(&c1, &p, 7, 1);
    let r = full(&c2, &p, 8, 1);
    store.put_provider_half(&h).unwrap();
    store.put_receipt(&r).unwrap();
    assert!(
        store
            .contains_query(&c1.public(), &h.body().query_id)
            .unwrap()
    );
    assert!(
        store
            .contains_query(&c2.public(), &r.body().query_id)
            .unwrap()
    );
    // The same query id from another client is another query.
    assert!(
        !store
            .contains_query(&c2.public(), &h.body().query_id)
            .unwrap()
    );
    assert!(
        !store
            .contains_query(&c1.public(), &ContentId([0; 32]))
            .unwrap()
    );
}

/// Unpaid totals recomputed the slow way, from every stored row.
fn recomputed_unpaid(store: &ReceiptStore) -> HashMap<(PublicKey, PublicKey), u64> {
    let mut totals = HashMap::new();
    for r in store.all().unwrap() {
        let row = store.get_row(&r.id()).unwrap().unwrap();
        if !row.settled {
            *totals
                .entry((r.body().client, r.body().provider))
                .or_insert(0) += r.body().price;
        }
    }
    totals
}

#[test]
fn unpaid_totals_match_a_recomputation_and_fall_when_settled() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let keys: Vec<SecretKey> = (1..=4).map(key).collect();
    let mut ids = Vec::new();
    for n in 0..40u64 {
        let c = &keys[(n % 2) as usize];
        let p = &keys[2 + (n % 3 % 2) as usize];
        let price = 1_000 + n * 7;
        let id = if n.is_multiple_of(3) {
            let h = half(c, p, n, price);
            store.put_provider_half(&h).unwrap();
            h.id()
        } else {
            let r = full(c, p, n, price);
            store.put_receipt(&r).unwrap();
            r.id()
        };
        ids.push(id);
    }
    let check = |store: &ReceiptStore| {
        let expected = recomputed_unpaid(store);
        for c in &keys[..2] {
            for p in &keys[2..] {
                let want = expected
                    .get(&(c.public(), p.public()))
                    .copied()
                    .unwrap_or(0);
                assert_eq!(store.unpaid(&c.public(), &p.public()).unwrap(), want);
            }
        }
        assert!(store.audit().unwrap().is_clean());
    };
    check(&store);
    let before = store.unpaid(&keys[0].public(), &keys[2].public()).unwrap();
    assert!(before > 0);

    // Settle a few (one twice, one unknown id): each counts once.
    let to_settle = [ids[0], ids[6], ids[12], ids[6], ContentId([7; 32])];
    assert_eq!(store.mark_settled(&to_settle).unwrap(), 3);
    assert_eq!(store.mark_settled(&to_settle).unwrap(), 0);
    check(&store);
    let after = store.unpaid(&keys[0].public(), &keys[2].public()).unwrap();
    let settled_prices: u64 = [0u64, 6, 12].iter().map(|n| 1_000 + n * 7).sum();
    assert_eq!(after, before - settled_prices);
    assert!(store.get_row(&ids[6]).unwrap().unwrap().settled);

    // A settled half that is then countersigned stays settled and unpaid stays put.
    let c = &keys[0];
    let p = &keys[2];
    let h = half(c, p, 0, 1_000);
    assert_eq!(h.id(), ids[0]);
    store.put_receipt(&h.countersign(c).unwrap()).unwrap();
    assert!(store.get_row(&ids[0]).unwrap().unwrap().settled);
    assert_eq!(store.unpaid(&c.public(), &p.public()).unwrap(), after);
    check(&store);
}

#[test]
fn list_is_newest_first_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let (a, b, p, q) = (key(1), key(2), key(3), key(4));
    let mut ids = Vec::new();
    for n in 0..10u64 {
        let (c, prov) = if n.is_multiple_of(2) {
            (&a, &p)
        } else {
            (&b, &q)
        };
        let r = full(c, prov, n, n + 1);
        store.put_receipt(&r).unwrap();
        ids.push(r.id());
    }
    let all = store.list(&ListFilter::default()).unwrap();
    let listed: Vec<ContentId> = all.iter().map(StoredReceipt::id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    let limited = store
        .list(&ListFilter {
            limit: 3,
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 3);
    assert_eq!(limited[0].id(), ids[9]);
    assert!(
        store
            .list(&ListFilter {
                limit: 0,
                ..ListFilter::default()
            })
            .unwrap()
            .is_empty()
    );

    // As client (a) and as provider (q).
    let of_a = store
        .list(&ListFilter {
            party: Some(a.public()),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(of_a.len(), 5);
    assert!(of_a.iter().all(|r| r.body().client == a.public()));
    let of_q = store
        .list(&ListFilter {
            party: Some(q.public()),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(of_q.len(), 5);
    assert!(of_q.iter().all(|r| r.body().provider == q.public()));

    store.mark_settled(&[ids[0], ids[1], ids[2]]).unwrap();
    let unsettled = store
        .list(&ListFilter {
            only_unsettled: true,
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(unsettled.len(), 7);
    assert!(!unsettled.iter().any(|r| ids[..3].contains(&r.id())));
    let unsettled_of_a = store
        .list(&ListFilter {
            party: Some(a.public()),
            only_unsettled: true,
            limit: 2,
        })
        .unwrap();
    let got: Vec<ContentId> = unsettled_of_a.iter().map(StoredReceipt::id).collect();
    assert_eq!(got, vec![ids[8], ids[6]]);
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (c, p) = (key(1), key(2));
    let h = half(&c, &p, 1, 11);
    let r = full(&c, &p, 2, 22);
    let r_settled = full(&c, &p, 3, 33);
    {
        let store = open(&path);
        store.put_provider_half(&h).unwrap();
        store.put_receipt(&r).unwrap();
        store.put_receipt(&r_settled).unwrap();
        store.mark_settled(&[r_settled.id()]).unwrap();
        // A second handle on the same file, while this one is open, is refused.
        assert!(matches!(
            ReceiptStore::open(&path),
            Err(StoreError::Locked(_))
        ));
    }
    let store = open(&path);
    assert_eq!(store.count().unwrap(), 3);
    assert_eq!(
        store.get(&h.id()).unwrap(),
        Some(StoredReceipt::Half(h.clone()))
    );
    assert_eq!(
        store.get(&r.id()).unwrap(),
        Some(StoredReceipt::Full(r.clone()))
    );
    assert!(store.get_row(&r_settled.id()).unwrap().unwrap().settled);
    assert_eq!(store.unpaid(&c.public(), &p.public()).unwrap(), 33);
    assert!(
        store
            .contains_query(&c.public(), &h.body().query_id)
            .unwrap()
    );
    let order: Vec<ContentId> = store.all().unwrap().iter().map(StoredReceipt::id).collect();
    assert_eq!(order, vec![h.id(), r.id(), r_settled.id()]);
    // Insertion continues after the old sequence numbers.
    let r4 = full(&c, &p, 4, 44);
    store.put_receipt(&r4).unwrap();
    assert_eq!(store.get_row(&r4.id()).unwrap().unwrap().seq, 3);
}

#[test]
fn a_file_that_is_not_a_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.redb");
    std::fs::write(&path, vec![0xA5u8; 64 * 1024]).unwrap();
    let err = ReceiptStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");

    let path = dir.path().join("short.redb");
    std::fs::write(&path, b"redb?").unwrap();
    assert!(ReceiptStore::open(&path).is_err());
}

/// Flips bytes of a valid store in many places; every open or read must return, never panic.
#[test]
fn a_damaged_store_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (c, p) = (key(1), key(2));
    let receipts: Vec<Receipt> = (0..50).map(|n| full(&c, &p, n, 100 + n)).collect();
    {
        let store = open(&path);
        for r in &receipts {
            store.put_receipt(r).unwrap();
        }
    }
    let pristine = std::fs::read(&path).unwrap();
    // Where the receipt's bytes sit in the file (copy-on-write may leave old copies behind too):
    // damage to every copy must not go unnoticed.
    let needle = receipts[17].to_bytes().unwrap();
    let copies: Vec<usize> = pristine
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_slice())
        .map(|(at, _)| at)
        .collect();
    assert!(!copies.is_empty(), "receipt bytes are in the file");
    let mut damages: Vec<(Vec<usize>, bool)> = (0..pristine.len())
        .step_by(pristine.len() / 64 + 1)
        .map(|at| (vec![at], false))
        .collect();
    damages.push((copies.iter().map(|at| at + 10).collect(), true));
    damages.push((
        copies.iter().map(|at| at + needle.len() - 3).collect(),
        true,
    ));
    let mut refused = 0;
    for (offsets, must_notice) in damages {
        let mut damaged = pristine.clone();
        for &at in &offsets {
            damaged[at] ^= 0xFF;
        }
        std::fs::write(&path, &damaged).unwrap();
        let outcome = std::panic::catch_unwind(|| match ReceiptStore::open(&path) {
            Err(_) => true,
            Ok(store) => {
                let mut failed = store.all().is_err();
                for r in &receipts {
                    failed |= store.get(&r.id()).is_err();
                }
                failed |= !store.audit().map(|a| a.is_clean()).unwrap_or(false);
                failed
            }
        });
        let noticed = outcome.unwrap_or_else(|_| panic!("flipped bytes at {offsets:?} panicked"));
        assert!(
            noticed || !must_notice,
            "damage to a receipt at {offsets:?} went unnoticed"
        );
        refused += usize::from(noticed);
    }
    eprintln!("{refused} of the flipped bytes were noticed");
    assert!(refused > 0);
}

#[test]
fn a_corrupt_row_is_reported_by_audit_and_refused_by_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (c, p) = (key(1), key(2));
    let good = full(&c, &p, 1, 5);
    let bad = full(&c, &p, 2, 6);
    {
        let store = open(&path);
        store.put_receipt(&good).unwrap();
        store.put_receipt(&bad).unwrap();
    }
    // Rewrite one row through redb itself (valid pages, wrong contents): a flipped signature bit.
    {
        const RECEIPTS: redb::TableDefinition<&[u8; 32], &[u8]> =
            redb::TableDefinition::new("receipts");
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(RECEIPTS).unwrap();
            let mut row = {
                use redb::ReadableTable;
                table.get(&bad.id().0).unwrap().unwrap().value().to_vec()
            };
            let last = row.len() - 1;
            row[last] ^= 1;
            table.insert(&bad.id().0, row.as_slice()).unwrap();
            let short = [1u8, 2, 0];
            table.insert(&[0xEE; 32], short.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = open(&path);
    assert!(matches!(
        store.get(&bad.id()),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.get(&ContentId([0xEE; 32])),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(store.get(&good.id()).unwrap().is_some());
    assert!(store.all().is_err());
    let audit = store.audit().unwrap();
    assert_eq!(audit.good.len(), 1);
    assert_eq!(audit.bad.len(), 1);
    assert_eq!(audit.bad[0].0, bad.id().to_hex());
    // The kept total still counts the bad row's price, the recomputation cannot.
    assert_eq!(audit.unpaid_mismatches.len(), 1);
    assert!(!audit.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_groups_concurrent_commits_and_they_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path);
    let writer = ReceiptWriter::spawn(store.clone(), 64);
    let keys: Vec<SecretKey> = (1..=6).map(key).collect();
    let mut tasks = Vec::new();
    let mut expected = Vec::new();
    for n in 0..200u64 {
        let c = keys[(n % 3) as usize].clone();
        let p = keys[3 + (n % 3) as usize].clone();
        let entry = if n.is_multiple_of(4) {
            Entry::Half(half(&c, &p, n, n))
        } else {
            Entry::Full(full(&c, &p, n, n))
        };
        expected.push(entry.clone());
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move { writer.commit(entry).await }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), Inserted::New);
    }
    let transactions = writer.transactions();
    eprintln!("200 commits in {transactions} transactions");
    assert!(transactions >= 1);
    assert!(transactions < 200, "{transactions} transactions");

    // A commit of something already there, and a bad entry mixed into a batch, answer each caller.
    let again = writer.commit(expected[1].clone()).await.unwrap();
    assert_eq!(again, Inserted::AlreadyPresent);
    let Entry::Half(h0) = &expected[0] else {
        panic!("entry 0 is a half")
    };
    let conflicting = resigned_half(h0, &keys[3]);
    let fresh = Entry::Full(full(&keys[0], &keys[3], 1_000, 1));
    let (a, b) = tokio::join!(
        writer.commit(Entry::Half(conflicting)),
        writer.commit(fresh.clone())
    );
    assert!(matches!(a, Err(StoreError::Conflict(_))));
    assert_eq!(b.unwrap(), Inserted::New);
    expected.push(fresh);

    writer.clone().close().await;
    assert!(matches!(
        writer.commit(expected[0].clone()).await,
        Err(StoreError::WriterClosed)
    ));
    drop(writer);
    drop(store);

    let store = open(&path);
    assert_eq!(store.count().unwrap(), expected.len() as u64);
    for entry in &expected {
        let got = store.get(&entry.id()).unwrap().unwrap();
        assert_eq!(got.body(), entry.body());
        assert_eq!(got.is_countersigned(), matches!(entry, Entry::Full(_)));
    }
    assert!(store.audit().unwrap().is_clean());
}

#[tokio::test]
async fn writer_applies_back_pressure_with_a_queue_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&db_path(&dir));
    let writer = ReceiptWriter::spawn(store.clone(), 1);
    let (c, p) = (key(1), key(2));
    let mut set = tokio::task::JoinSet::new();
    for n in 0..20u64 {
        let writer = writer.clone();
        let entry = Entry::Full(full(&c, &p, n, 1));
        set.spawn(async move { writer.commit(entry).await });
    }
    while let Some(result) = set.join_next().await {
        assert_eq!(result.unwrap().unwrap(), Inserted::New);
    }
    assert_eq!(store.count().unwrap(), 20);
    assert_eq!(store.unpaid(&c.public(), &p.public()).unwrap(), 20);
}
