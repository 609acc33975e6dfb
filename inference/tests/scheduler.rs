//! The batching scheduler, with a toy batch function. No test depends on how long anything takes:
//! the worker is held on a gate while the test arranges the queue, then released.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests and benches fail loudly

use agora_inference::scheduler::{Scheduler, SchedulerConfig, SchedulerError};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A batch function that reports each batch's inputs, and blocks on input 0 until the gate opens.
struct Probe {
    scheduler: Scheduler<u32, u32>,
    batches: Arc<Mutex<Vec<Vec<u32>>>>,
    started: mpsc::Receiver<()>,
    gate: mpsc::SyncSender<()>,
}

fn probe(config: SchedulerConfig) -> Probe {
    let batches = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&batches);
    let (started_tx, started) = mpsc::channel();
    let (gate, gate_rx) = mpsc::sync_channel::<()>(16);
    let scheduler = Scheduler::spawn("probe", config, move |xs: Vec<u32>| {
        seen.lock().unwrap().push(xs.clone());
        if xs.contains(&0) {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
        }
        xs.into_iter().map(|x| x * 10).collect()
    })
    .unwrap();
    Probe {
        scheduler,
        batches,
        started,
        gate,
    }
}

/// Submits the blocking request 0 and waits until the worker is inside the batch function with it.
fn hold_worker(p: &Probe) -> agora_inference::scheduler::Ticket<u32> {
    let t = p.scheduler.submit(0);
    p.started.recv().unwrap();
    t
}

fn config() -> SchedulerConfig {
    SchedulerConfig::default()
        .with_max_batch(4)
        .with_max_wait(Duration::ZERO)
        .with_queue_capacity(8)
}

#[tokio::test]
async fn answers_come_back_to_the_right_caller() {
    let p = probe(config().with_queue_capacity(32));
    let tickets: Vec<_> = (1..=20).map(|i| p.scheduler.submit(i)).collect();
    for (i, t) in (1..=20).zip(tickets) {
        assert_eq!(t.await.unwrap(), i * 10);
    }
    assert_eq!(p.scheduler.stats().requests().served(), 20);
}

#[tokio::test]
async fn waiting_requests_are_grouped_into_one_batch() {
    let p = probe(config());
    let first = hold_worker(&p);
    let tickets: Vec<_> = (1..=4).map(|i| p.scheduler.submit(i)).collect();
    p.gate.send(()).unwrap();
    assert_eq!(first.await.unwrap(), 0);
    for t in tickets {
        t.await.unwrap();
    }
    let batches = p.batches.lock().unwrap().clone();
    assert_eq!(batches, vec![vec![0], vec![1, 2, 3, 4]]);
}

#[tokio::test]
async fn batches_never_exceed_max_batch() {
    let p = probe(config());
    let first = hold_worker(&p);
    let tickets: Vec<_> = (1..=8).map(|i| p.scheduler.submit(i)).collect();
    p.gate.send(()).unwrap();
    first.await.unwrap();
    for t in tickets {
        t.await.unwrap();
    }
    let batches = p.batches.lock().unwrap().clone();
    assert_eq!(batches, vec![vec![0], vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
}

#[tokio::test]
async fn a_batch_waits_for_company_until_it_is_full() {
    // With a long max_wait, a lone request waits for the batch to fill: three submissions made one by
    // one still run as one batch of three.
    let p = probe(
        SchedulerConfig::default()
            .with_max_batch(3)
            .with_max_wait(Duration::from_secs(3600)),
    );
    let a = p.scheduler.submit(1);
    let b = p.scheduler.submit(2);
    let c = p.scheduler.submit(3);
    assert_eq!((a.await, b.await, c.await), (Ok(10), Ok(20), Ok(30)));
    assert_eq!(p.batches.lock().unwrap().clone(), vec![vec![1, 2, 3]]);
}

#[tokio::test]
async fn a_full_queue_answers_busy_at_once() {
    let p = probe(config().with_queue_capacity(3));
    let first = hold_worker(&p);
    let queued: Vec<_> = (1..=3).map(|i| p.scheduler.submit(i)).collect();
    assert_eq!(p.scheduler.stats().requests().queued(), 3);
    assert_eq!(p.scheduler.submit(99).await, Err(SchedulerError::Busy));
    assert_eq!(p.scheduler.stats().requests().rejected(), 1);
    p.gate.send(()).unwrap();
    first.await.unwrap();
    for t in queued {
        t.await.unwrap();
    }
    // Room again once the queue drained.
    assert_eq!(p.scheduler.submit(5).await, Ok(50));
    assert!(!p.batches.lock().unwrap().iter().flatten().any(|&x| x == 99));
}

#[tokio::test]
async fn an_expired_request_never_reaches_the_model() {
    let p = probe(config());
    let first = hold_worker(&p);
    // Already past its deadline when the worker gets to it.
    let late = p.scheduler.submit_with_deadline(7, Instant::now());
    let fine = p.scheduler.submit(8);
    p.gate.send(()).unwrap();
    first.await.unwrap();
    assert_eq!(late.await, Err(SchedulerError::DeadlineExceeded));
    assert_eq!(fine.await, Ok(80));
    assert_eq!(p.scheduler.stats().requests().expired(), 1);
    assert!(!p.batches.lock().unwrap().iter().flatten().any(|&x| x == 7));
}

#[tokio::test]
async fn expired_request_is_answered_without_the_worker() {
    // The worker is stuck in a batch; the caller's future still resolves at its deadline.
    let p = probe(config());
    let first = hold_worker(&p);
    let stuck = p.scheduler.submit_with_deadline(3, Instant::now());
    assert_eq!(stuck.await, Err(SchedulerError::DeadlineExceeded));
    p.gate.send(()).unwrap();
    first.await.unwrap();
}

#[tokio::test]
async fn a_dropped_ticket_skips_the_work() {
    let p = probe(config());
    let first = hold_worker(&p);
    let gone = p.scheduler.submit(6);
    let kept = p.scheduler.submit(9);
    drop(gone);
    p.gate.send(()).unwrap();
    first.await.unwrap();
    assert_eq!(kept.await, Ok(90));
    let batches = p.batches.lock().unwrap().clone();
    assert_eq!(batches, vec![vec![0], vec![9]]);
    assert_eq!(p.scheduler.stats().requests().cancelled(), 1);
}

#[tokio::test]
async fn a_cancelled_future_skips_the_work() {
    // The async caller goes away (its task is aborted) while the request is queued.
    let p = probe(config());
    let first = hold_worker(&p);
    let ticket = p.scheduler.submit(6);
    let task = tokio::spawn(ticket);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    p.gate.send(()).unwrap();
    first.await.unwrap();
    assert_eq!(p.scheduler.submit(2).await, Ok(20));
    assert!(!p.batches.lock().unwrap().iter().flatten().any(|&x| x == 6));
}

#[tokio::test]
async fn a_panicking_batch_fails_only_its_requests() {
    let s = Scheduler::spawn("panics", config(), |xs: Vec<u32>| {
        assert!(!xs.contains(&13), "unlucky");
        xs
    })
    .unwrap();
    assert!(matches!(
        s.submit(13).await,
        Err(SchedulerError::BatchFailed(_))
    ));
    assert_eq!(s.submit(14).await, Ok(14));
}

#[tokio::test]
async fn a_wrong_output_count_fails_the_batch() {
    let s = Scheduler::spawn("short", config(), |_: Vec<u32>| Vec::<u32>::new()).unwrap();
    assert!(matches!(
        s.submit(1).await,
        Err(SchedulerError::BatchFailed(_))
    ));
}

#[test]
fn blocking_callers_can_wait_too() {
    let s = Scheduler::spawn("sync", config(), |xs: Vec<u32>| xs).unwrap();
    assert_eq!(s.submit(5).wait(), Ok(5));
}

#[test]
fn the_worker_stops_with_the_last_handle() {
    let (tx, rx) = mpsc::channel::<()>();
    let s = Scheduler::spawn("stops", config(), move |xs: Vec<u32>| {
        let _keep = &tx;
        xs
    })
    .unwrap();
    assert_eq!(s.submit(1).wait(), Ok(1));
    drop(s);
    // The worker thread drops the batch function (and with it `tx`) when it exits.
    assert!(rx.recv().is_err());
}
