#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Fair queueing in front of a model (RELIABILITY.md, gap 3): one client with many queries queued
//! does not make another client's query wait behind all of them.
//!
//! The first test drives the real runner with the real MiniLM encoder: a greedy client queues as
//! many 64-text queries as the runner holds, then an honest client sends one query, and then the
//! greedy client one more. The dispatch order (not the clock) is checked: the honest query is let
//! through to the model after at most two other queries, ahead of the greedy client's backlog,
//! while the greedy client's own extra query waits behind its whole backlog (first come, first
//! served within one client). The other tests pin the queue's bounds: `Busy` when full (the
//! longest queue gives way first), deadlines, callers that go away, and per-client state dropped
//! when a client goes idle.
//!
//! No timing thresholds: deadlines in the bound tests are either far away or already past.

use agora::market::fair::{FairConfig, FairError, FairQueue};
use agora::market::runner::{ModelRunner, Ran};
use agora_inference::backend::DevicePreference;
use agora_inference::model_cache::MINILM;
use agora_protocols::{EmbedInput, EmbedOutput, Payload, SecretKey, Task};
use std::time::{Duration, Instant};

/// Texts per greedy query: one encoder batch.
const GREEDY_TEXTS: usize = 64;
/// Greedy queries: two running (the runner lets two batches' worth into the encoder) and fourteen
/// waiting, 896 of the 1024 texts the runner lets wait.
const GREEDY_QUERIES: usize = 16;
/// Most queries the honest one may wait behind: the greedy query whose turn is under way, and one
/// more if its credit covers it.
const HONEST_BOUND: u64 = 2;

fn embed_input(client: &str, i: usize, texts: usize) -> Vec<u8> {
    EmbedInput {
        texts: (0..texts)
            .map(|t| format!("{client} query {i} text {t}: the quick brown fox"))
            .collect(),
    }
    .to_bytes()
    .unwrap()
}

#[test]
fn an_honest_query_is_not_queued_behind_a_greedy_clients_backlog() {
    let runner = ModelRunner::load(&[MINILM.to_string()], DevicePreference::Cpu, |_| {}).unwrap();
    let greedy = SecretKey::generate().public();
    let honest = SecretKey::generate().public();
    let deadline = Instant::now() + Duration::from_secs(3600);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let run = |client, input: Vec<u8>| {
            let runner = runner.clone();
            tokio::spawn(async move {
                runner
                    .run_for(Some(client), Task::Embed, MINILM, &input, deadline)
                    .await
            })
        };
        let backlog: Vec<_> = (0..GREEDY_QUERIES)
            .map(|i| run(greedy, embed_input("greedy", i, GREEDY_TEXTS)))
            .collect();
        // Every greedy query has reached the fair queue: let through, or waiting.
        loop {
            let stats = runner.fair_stats(MINILM).unwrap();
            if stats.dispatched as usize + stats.waiting_queries == GREEDY_QUERIES {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let depth = runner.queue_depth(MINILM);
        assert!(depth > 0, "the greedy backlog shows in the queue depth");

        let honest_run = run(honest, embed_input("honest", 0, 1));
        // The honest query is queued (or through) before the greedy client's next one arrives.
        loop {
            let stats = runner.fair_stats(MINILM).unwrap();
            if stats.dispatched as usize + stats.waiting_queries == GREEDY_QUERIES + 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let extra = run(greedy, embed_input("greedy", GREEDY_QUERIES, GREEDY_TEXTS));

        let honest_ran: Ran = honest_run.await.unwrap().unwrap();
        let mut greedy_ran: Vec<Ran> = Vec::new();
        for h in backlog {
            greedy_ran.push(h.await.unwrap().unwrap());
        }
        let extra_ran = extra.await.unwrap().unwrap();

        // Every answer is a real one.
        let honest_out = EmbedOutput::from_bytes(&honest_ran.output).unwrap();
        assert_eq!(honest_out.vectors.len(), 1);
        for ran in greedy_ran.iter().chain([&extra_ran]) {
            assert_eq!(
                EmbedOutput::from_bytes(&ran.output).unwrap().vectors.len(),
                GREEDY_TEXTS
            );
        }

        let overtaken = greedy_ran
            .iter()
            .filter(|r| r.sequence > honest_ran.sequence)
            .count();
        println!(
            "honest query: dispatch #{} after waiting behind {}; greedy backlog queries let through \
             after it: {overtaken} of {GREEDY_QUERIES}; the greedy client's extra query waited \
             behind {}",
            honest_ran.sequence, honest_ran.waited_behind, extra_ran.waited_behind
        );
        assert!(
            honest_ran.waited_behind <= HONEST_BOUND,
            "the honest query waited behind {} queries",
            honest_ran.waited_behind
        );
        // It went ahead of most of the backlog: first come, first served would have put it last.
        assert!(
            overtaken >= GREEDY_QUERIES - 2 - HONEST_BOUND as usize,
            "only {overtaken} greedy queries went after the honest one"
        );
        // Within one client the order is first come, first served: the extra greedy query goes
        // after the whole backlog (and after the honest query).
        assert_eq!(extra_ran.sequence, GREEDY_QUERIES as u64 + 1, "dispatched last");
    });
    let stats = runner.fair_stats(MINILM).unwrap();
    assert_eq!(stats.clients, 0, "idle clients are forgotten");
    assert_eq!((stats.waiting, stats.running), (0, 0));
    assert_eq!(runner.queue_depth(MINILM), 0);
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn queue(in_flight: usize, capacity: usize, quantum: usize) -> FairQueue<u32> {
    FairQueue::new(FairConfig {
        in_flight,
        capacity,
        quantum,
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits until the queue holds `n` waiting queries (spawned tasks have reached it).
async fn until_waiting(q: &FairQueue<u32>, n: usize) {
    while q.stats().waiting_queries != n {
        tokio::task::yield_now().await;
    }
}

#[test]
fn clients_take_turns_by_deficit_round_robin() {
    runtime().block_on(async {
        let q = queue(1, 100, 2);
        let first = q.acquire(1, 1, far()).await.unwrap();
        assert_eq!(first.waited_behind(), 0);
        // Client 1 queues six queries of cost 1, then clients 2 and 3 one each.
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let mut handles = Vec::new();
        let mut queued = 0;
        for client in [1, 1, 1, 1, 1, 1, 2, 3] {
            let (q2, tx) = (q.clone(), tx.clone());
            handles.push(tokio::spawn(async move {
                let permit = q2.acquire(client, 1, far()).await.unwrap();
                tx.send((client, permit.sequence())).await.unwrap();
            }));
            queued += 1;
            until_waiting(&q, queued).await;
        }
        drop(tx);
        drop(first);
        let mut order = Vec::new();
        while let Some((client, _)) = rx.recv().await {
            order.push(client);
        }
        // Quantum 2: two of client 1's, then 2 and 3, then the rest of client 1's.
        assert_eq!(order, [1, 1, 2, 3, 1, 1, 1, 1]);
        let stats = q.stats();
        assert_eq!((stats.clients, stats.waiting, stats.running), (0, 0, 0));
        assert_eq!(stats.dispatched, 9);
    });
}

#[test]
fn a_full_queue_refuses_busy_and_the_longest_queue_gives_way() {
    runtime().block_on(async {
        let q = queue(4, 4, 1);
        let _running = q.acquire(1, 4, far()).await.unwrap();
        let mut greedy = Vec::new();
        for n in 1..=4 {
            let q2 = q.clone();
            greedy.push(tokio::spawn(async move { q2.acquire(1, 1, far()).await }));
            until_waiting(&q, n).await;
        }
        // Full: the greedy client itself gets no more.
        assert_eq!(q.acquire(1, 1, far()).await.unwrap_err(), FairError::Busy);
        // Another client gets in: the greedy client's newest query gives way.
        let q2 = q.clone();
        let honest = tokio::spawn(async move { q2.acquire(2, 1, far()).await.map(|_| ()) });
        let pushed = greedy.pop().unwrap().await.unwrap();
        assert_eq!(pushed.unwrap_err(), FairError::Busy);
        assert_eq!(q.stats().waiting_queries, 4);
        assert_eq!(q.stats().clients, 2);
        // A query bigger than the room is refused when it cannot push anyone out.
        assert_eq!(q.acquire(3, 4, far()).await.unwrap_err(), FairError::Busy);
        for h in greedy {
            h.abort();
        }
        honest.abort();
    });
}

#[test]
fn expired_and_abandoned_waiters_leave_their_queues() {
    runtime().block_on(async {
        let q = queue(1, 10, 1);
        let running = q.acquire(1, 1, far()).await.unwrap();
        // Already past its deadline: refused at once.
        let past = Instant::now();
        assert_eq!(q.acquire(2, 1, past).await.unwrap_err(), FairError::Expired);
        // Its deadline passes while it waits.
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(q.acquire(2, 1, soon).await.unwrap_err(), FairError::Expired);
        assert_eq!(q.stats().waiting_queries, 0);
        assert_eq!(q.stats().clients, 0);
        // Its caller goes away.
        let q2 = q.clone();
        let abandoned = tokio::spawn(async move { q2.acquire(3, 1, far()).await.map(|_| ()) });
        until_waiting(&q, 1).await;
        abandoned.abort();
        let _ = abandoned.await;
        let stats = q.stats();
        assert_eq!((stats.waiting_queries, stats.clients), (0, 0));
        // The model's room was not lost to any of them.
        drop(running);
        let next = q.acquire(4, 1, far()).await.unwrap();
        assert_eq!(next.waited_behind(), 0);
        assert_eq!(q.stats().running, 1);
    });
}

#[test]
fn a_query_bigger_than_the_model_room_runs_alone() {
    runtime().block_on(async {
        let q = queue(4, 100, 4);
        let big = q.acquire(1, 1000, far()).await.unwrap();
        assert_eq!(q.stats().running, 4, "charged the whole room, not more");
        let q2 = q.clone();
        let small =
            tokio::spawn(async move { q2.acquire(2, 1, far()).await.map(|p| p.sequence()) });
        until_waiting(&q, 1).await;
        drop(big);
        assert_eq!(small.await.unwrap().unwrap(), 1);
    });
}
