//! A batching scheduler in front of a model.
//!
//! Models are much cheaper per item in batches, and callers arrive one at a time from async code. The
//! scheduler owns the model on one worker thread (model calls block for milliseconds: they must not run
//! on the async executor) and groups waiting requests into dynamic batches:
//!
//! - a batch starts as soon as a request is waiting and closes when it holds `max_batch` requests or
//!   `max_wait` has passed since its first request, whichever comes first;
//! - the queue is bounded (`queue_capacity`): when it is full, [`Scheduler::submit`] answers
//!   [`SchedulerError::Busy`] at once instead of letting the backlog (and latency) grow, so the caller
//!   can go to another provider;
//! - every request has a deadline; one that expires while queued is answered
//!   [`SchedulerError::DeadlineExceeded`] and never reaches the model, and the caller's future gives up
//!   at the deadline even if the model is busy;
//! - a caller that goes away (drops its [`Ticket`]) cancels its request: the worker skips it.
//!
//! It is generic over the batch function, so any model can sit behind it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), agora_inference::scheduler::SchedulerError> {
//! use agora_inference::scheduler::{Scheduler, SchedulerConfig};
//! let doubler = Scheduler::spawn("doubler", SchedulerConfig::default(), |xs: Vec<u32>| {
//!     xs.into_iter().map(|x| x * 2).collect()
//! })
//! .map_err(|_| agora_inference::scheduler::SchedulerError::Stopped)?;
//! assert_eq!(doubler.submit(21).await?, 42);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Limits of one scheduler. The defaults suit a small encoder on a CPU.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Most requests in one batch (at least 1).
    pub max_batch: usize,
    /// Longest a batch waits for more requests after its first one arrived.
    pub max_wait: Duration,
    /// Most requests waiting (at least 1); beyond it, [`SchedulerError::Busy`].
    pub queue_capacity: usize,
    /// Deadline of a request submitted with [`Scheduler::submit`].
    pub default_timeout: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_batch: 32,
            max_wait: Duration::from_millis(5),
            queue_capacity: 256,
            default_timeout: Duration::from_secs(30),
        }
    }
}

impl SchedulerConfig {
    /// Sets [`SchedulerConfig::max_batch`].
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = n;
        self
    }
    /// Sets [`SchedulerConfig::max_wait`].
    pub fn with_max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }
    /// Sets [`SchedulerConfig::queue_capacity`].
    pub fn with_queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }
    /// Sets [`SchedulerConfig::default_timeout`].
    pub fn with_default_timeout(mut self, d: Duration) -> Self {
        self.default_timeout = d;
        self
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// The queue is full; try later or elsewhere.
    #[error("the model is busy: its queue is full")]
    Busy,
    /// The deadline passed before the answer was ready.
    #[error("the request's deadline passed before it was served")]
    DeadlineExceeded,
    /// The worker has stopped (the scheduler was shut down, or its thread died).
    #[error("the model's worker has stopped")]
    Stopped,
    /// The batch function panicked or returned the wrong number of outputs.
    #[error("the batch failed: {0}")]
    BatchFailed(String),
}

/// What became of the requests a worker queued: counted alike by the embedding scheduler and the
/// generation batcher, so that adverts (queue depth) and metrics read both the same way.
#[derive(Debug, Default)]
pub struct RequestCounters {
    queued: AtomicUsize,
    served: AtomicU64,
    expired: AtomicU64,
    cancelled: AtomicU64,
    rejected: AtomicU64,
}

impl RequestCounters {
    /// Requests accepted and waiting for the worker.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
    /// Requests answered.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
    /// Requests dropped because their deadline passed.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }
    /// Requests dropped because their caller went away.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }
    /// Requests refused with [`SchedulerError::Busy`].
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub(crate) fn enqueued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn set_queued(&self, waiting: usize) {
        self.queued.store(waiting, Ordering::Relaxed);
    }
    pub(crate) fn add_served(&self, count: u64) {
        self.served.fetch_add(count, Ordering::Relaxed);
    }
    pub(crate) fn add_expired(&self, count: u64) {
        self.expired.fetch_add(count, Ordering::Relaxed);
    }
    pub(crate) fn add_cancelled(&self, count: u64) {
        self.cancelled.fetch_add(count, Ordering::Relaxed);
    }
    pub(crate) fn add_rejected(&self, count: u64) {
        self.rejected.fetch_add(count, Ordering::Relaxed);
    }
}

/// Counters of the embedding scheduler, for capability adverts (queue depth) and metrics.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    requests: RequestCounters,
    batches: AtomicU64,
}

impl SchedulerStats {
    /// What became of the requests.
    pub fn requests(&self) -> &RequestCounters {
        &self.requests
    }
    /// Batches run so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
}

struct Job<I, O> {
    input: I,
    deadline: Instant,
    reply: oneshot::Sender<Result<O, SchedulerError>>,
}

/// A cloneable handle to a model's queue. The worker stops when the last handle is dropped (after
/// finishing what is queued).
#[derive(Debug)]
pub struct Scheduler<I, O> {
    tx: SyncSender<Job<I, O>>,
    stats: Arc<SchedulerStats>,
    default_timeout: Duration,
}

impl<I, O> Clone for Scheduler<I, O> {
    fn clone(&self) -> Self {
        Scheduler {
            tx: self.tx.clone(),
            stats: Arc::clone(&self.stats),
            default_timeout: self.default_timeout,
        }
    }
}

impl<I, O> std::fmt::Debug for Job<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<I: Send + 'static, O: Send + 'static> Scheduler<I, O> {
    /// Starts the worker thread (named `name`) that owns `batch`.
    ///
    /// `batch` gets the inputs of one batch and must return one output per input, in order; a wrong
    /// count or a panic fails that batch's requests with [`SchedulerError::BatchFailed`] and the worker
    /// goes on. The error is the OS refusing a thread.
    pub fn spawn<F>(name: &str, config: SchedulerConfig, batch: F) -> Result<Self, std::io::Error>
    where
        F: FnMut(Vec<I>) -> Vec<O> + Send + 'static,
    {
        let capacity = config.queue_capacity.max(1);
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let stats = Arc::new(SchedulerStats::default());
        let worker = Worker {
            rx,
            batch,
            max_batch: config.max_batch.max(1),
            max_wait: config.max_wait,
            stats: Arc::clone(&stats),
        };
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || worker.run())?;
        Ok(Scheduler {
            tx,
            stats,
            default_timeout: config.default_timeout,
        })
    }
}

impl<I, O> Scheduler<I, O> {
    /// Queues `input` with the default deadline; await the [`Ticket`] for the answer.
    ///
    /// The request is queued when this returns (before the first poll), so [`SchedulerError::Busy`]
    /// comes back at once when the queue is full. Dropping the ticket cancels the request.
    pub fn submit(&self, input: I) -> Ticket<O> {
        self.submit_with_deadline(input, Instant::now() + self.default_timeout)
    }

    /// Queues `input` with its own deadline.
    pub fn submit_with_deadline(&self, input: I, deadline: Instant) -> Ticket<O> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            input,
            deadline,
            reply,
        };
        // Count before sending: the worker may take the job (and decrement) before try_send returns.
        self.stats.requests.enqueued();
        let state = match self.tx.try_send(job) {
            Ok(()) => TicketState::Waiting(rx),
            Err(e) => {
                self.stats.requests.dequeued();
                match e {
                    TrySendError::Full(_) => {
                        self.stats.requests.add_rejected(1);
                        TicketState::Done(Some(SchedulerError::Busy))
                    }
                    TrySendError::Disconnected(_) => {
                        TicketState::Done(Some(SchedulerError::Stopped))
                    }
                }
            }
        };
        Ticket {
            state,
            deadline,
            timer: None,
        }
    }

    /// The scheduler's counters.
    pub fn stats(&self) -> &SchedulerStats {
        &self.stats
    }
}

enum TicketState<O> {
    Waiting(oneshot::Receiver<Result<O, SchedulerError>>),
    Done(Option<SchedulerError>),
}

/// The answer to one request, as a future. Dropping it cancels the request.
///
/// The deadline is enforced on both sides: the worker skips expired requests, and the future resolves
/// to [`SchedulerError::DeadlineExceeded`] at the deadline when polled inside a tokio runtime (outside
/// one it waits for the worker, which still answers expired requests with that error).
pub struct Ticket<O> {
    state: TicketState<O>,
    deadline: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<O> std::fmt::Debug for Ticket<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<O> Ticket<O> {
    /// Waits for the answer on the current thread, for callers outside async code. Deadlines are
    /// enforced by the worker.
    pub fn wait(self) -> Result<O, SchedulerError> {
        match self.state {
            TicketState::Done(e) => Err(e.unwrap_or(SchedulerError::Stopped)),
            TicketState::Waiting(rx) => rx.blocking_recv().unwrap_or(Err(SchedulerError::Stopped)),
        }
    }
}

impl<O> Future for Ticket<O> {
    type Output = Result<O, SchedulerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Ticket holds no self-references: the receiver and the boxed timer are both Unpin.
        let this = self.get_mut();
        let rx = match &mut this.state {
            TicketState::Done(e) => {
                return Poll::Ready(Err(e.take().unwrap_or(SchedulerError::Stopped)));
            }
            TicketState::Waiting(rx) => rx,
        };
        if let Poll::Ready(answer) = Pin::new(rx).poll(cx) {
            this.state = TicketState::Done(None);
            return Poll::Ready(answer.unwrap_or(Err(SchedulerError::Stopped)));
        }
        if this.timer.is_none() && tokio::runtime::Handle::try_current().is_ok() {
            this.timer = Some(Box::pin(tokio::time::sleep_until(this.deadline.into())));
        }
        if let Some(timer) = &mut this.timer
            && timer.as_mut().poll(cx).is_ready()
        {
            // Dropping the receiver tells the worker to skip the request if it has not run yet.
            this.state = TicketState::Done(None);
            return Poll::Ready(Err(SchedulerError::DeadlineExceeded));
        }
        Poll::Pending
    }
}

struct Worker<I, O, F> {
    rx: Receiver<Job<I, O>>,
    batch: F,
    max_batch: usize,
    max_wait: Duration,
    stats: Arc<SchedulerStats>,
}

impl<I, O, F> Worker<I, O, F>
where
    F: FnMut(Vec<I>) -> Vec<O>,
{
    fn run(mut self) {
        // recv fails only when every Scheduler handle is gone and the queue is empty: time to stop.
        while let Ok(first) = self.rx.recv() {
            let jobs = self.collect(first);
            self.serve(jobs);
        }
    }

    /// Gathers a batch: everything already queued, then more until it is full or `max_wait` after the
    /// first request. Requests whose caller left or whose deadline passed are answered and dropped here,
    /// so they never take a seat in the batch.
    fn collect(&mut self, first: Job<I, O>) -> Vec<Job<I, O>> {
        let opened = Instant::now();
        let mut jobs = Vec::with_capacity(self.max_batch);
        self.admit(first, &mut jobs);
        while jobs.len() < self.max_batch {
            let job = match self.rx.try_recv() {
                Ok(job) => job,
                Err(_) => {
                    let left = self.max_wait.saturating_sub(opened.elapsed());
                    if left.is_zero() || jobs.is_empty() {
                        break;
                    }
                    match self.rx.recv_timeout(left) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            self.admit(job, &mut jobs);
        }
        jobs
    }

    fn admit(&self, job: Job<I, O>, jobs: &mut Vec<Job<I, O>>) {
        self.stats.requests.dequeued();
        if job.reply.is_closed() {
            self.stats.requests.add_cancelled(1);
        } else if Instant::now() >= job.deadline {
            self.stats.requests.add_expired(1);
            let _ = job.reply.send(Err(SchedulerError::DeadlineExceeded));
        } else {
            jobs.push(job);
        }
    }

    fn serve(&mut self, jobs: Vec<Job<I, O>>) {
        // Check again: a caller may have left while the batch was filling.
        let (live, gone): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| !j.reply.is_closed());
        self.stats.requests.add_cancelled(gone.len() as u64);
        if live.is_empty() {
            return;
        }
        let count = live.len();
        let (inputs, replies): (Vec<I>, Vec<_>) =
            live.into_iter().map(|j| (j.input, j.reply)).unzip();
        let batch = &mut self.batch;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| batch(inputs)));
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(outputs) if outputs.len() == count => {
                self.stats.requests.add_served(count as u64);
                for (reply, output) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(output));
                }
            }
            Ok(outputs) => {
                let msg = format!("{} outputs for {count} inputs", outputs.len());
                tracing::error!(%msg, "batch function broke its contract");
                for reply in replies {
                    let _ = reply.send(Err(SchedulerError::BatchFailed(msg.clone())));
                }
            }
            Err(_) => {
                tracing::error!("batch function panicked");
                for reply in replies {
                    let _ = reply.send(Err(SchedulerError::BatchFailed(
                        "the model panicked".to_owned(),
                    )));
                }
            }
        }
    }
}
