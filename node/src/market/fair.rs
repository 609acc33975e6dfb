//! Fair queueing of queries in front of a model: per-client queues, deficit round robin.
//!
//! A model's own scheduler is one first-come, first-served queue, so a client with many queries in
//! flight would make every other client's query wait behind all of them. A [`FairQueue`] sits in
//! front of it and lets only a small, bounded amount of work into it at once
//! ([`FairConfig::in_flight`], in cost units: texts for embedding, chats for generation). Everything
//! else waits here, in one queue per client, and is handed to the model by deficit round robin
//! (Shreedhar and Varghese, 1995): each client whose turn comes gets [`FairConfig::quantum`] units of
//! credit and sends queries while its credit covers the next one's cost. So a client's query waits
//! behind at most one turn of every other waiting client, however many queries each has queued,
//! and a client sending large queries gets no more of the model than one sending small ones.
//!
//! Every bound is explicit:
//! - the waiting work over all clients is at most [`FairConfig::capacity`] units. When an arrival
//!   does not fit, the last query of the longest queue (if longer than the arrival's own client's)
//!   is refused [`FairError::Busy`] to make room, so a client with little queued can always get in
//!   while one with much queued is turned away first; otherwise the arrival is refused `Busy`;
//! - per-client state exists only while the client has queries waiting: a client whose queue
//!   empties is forgotten (with its credit), so the state is bounded by the waiting queries;
//! - a query whose deadline passes while waiting is answered [`FairError::Expired`] and leaves its
//!   queue; so does one whose caller goes away (the future of [`FairQueue::acquire`] dropped).
//!
//! A [`Permit`] is the right to run one query on the model; dropping it (when the model has
//! answered) lets the next waiting query in.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;

/// Limits of one [`FairQueue`], in cost units (texts for embedding, chats for generation).
#[derive(Debug, Clone, Copy)]
pub struct FairConfig {
    /// Most units handed to the model and not finished. Small, so that the model's own FIFO stays
    /// short and the order is decided here; large enough to keep the model's batches full. A query
    /// costing more than this is charged this much, so it can still run (alone).
    pub in_flight: usize,
    /// Most units waiting here, over all clients; beyond it, [`FairError::Busy`].
    pub capacity: usize,
    /// Credit a client gets per turn: how much of the model one client may take before the next
    /// waiting client's turn.
    pub quantum: usize,
}

/// Why a query was not let through to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FairError {
    /// No room to wait (or this query was pushed out by one from a client with less queued).
    #[error("the model's queue is full")]
    Busy,
    /// The deadline passed while it waited.
    #[error("the deadline passed while the query waited for the model")]
    Expired,
}

/// The right to run one query on the model, in dispatch order; dropping it frees its units.
#[derive(Debug)]
pub struct Permit<K: Eq + Hash + Clone> {
    queue: Option<Arc<Mutex<State<K>>>>,
    cost: usize,
    sequence: u64,
    waited: u64,
}

impl<K: Eq + Hash + Clone> Permit<K> {
    /// This query's place in the model's dispatch order (0 for the first query let through).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// How many other queries were let through to the model between this one's arrival and its
    /// own dispatch: the queries it waited behind (0 if it went straight through).
    pub fn waited_behind(&self) -> u64 {
        self.waited
    }
}

impl<K: Eq + Hash + Clone> Drop for Permit<K> {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            let mut state = lock(&queue);
            state.running = state.running.saturating_sub(self.cost);
            state.dispatch(&queue);
        }
    }
}

/// What [`FairQueue::stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FairStats {
    /// Units waiting here.
    pub waiting: usize,
    /// Queries waiting here.
    pub waiting_queries: usize,
    /// Clients with queries waiting (the per-client state held).
    pub clients: usize,
    /// Units handed to the model and not finished.
    pub running: usize,
    /// Queries let through to the model so far.
    pub dispatched: u64,
}

/// Per-client queues in front of one model. Cheap to clone: clones share the queues.
#[derive(Debug)]
pub struct FairQueue<K: Eq + Hash + Clone> {
    state: Arc<Mutex<State<K>>>,
}

impl<K: Eq + Hash + Clone> Clone for FairQueue<K> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
        }
    }
}

type Grant<K> = Result<Permit<K>, FairError>;

#[derive(Debug)]
struct Waiter<K: Eq + Hash + Clone> {
    id: u64,
    cost: usize,
    /// `dispatched` when it arrived.
    arrived_at: u64,
    grant: oneshot::Sender<Grant<K>>,
}

#[derive(Debug)]
struct ClientQueue<K: Eq + Hash + Clone> {
    waiting: VecDeque<Waiter<K>>,
    /// Units of `waiting`.
    units: usize,
    deficit: usize,
    /// Whether this client's turn has begun (its quantum for the turn already credited).
    in_turn: bool,
}

#[derive(Debug)]
struct State<K: Eq + Hash + Clone> {
    config: FairConfig,
    clients: HashMap<K, ClientQueue<K>>,
    /// Clients with queries waiting, in turn order; the front one's turn is the current one.
    ring: VecDeque<K>,
    waiting: usize,
    waiting_queries: usize,
    running: usize,
    dispatched: u64,
    next_id: u64,
}

/// Whether `cost` more units fit beside `running` (a query always fits when nothing runs).
fn room(running: usize, in_flight: usize, cost: usize) -> bool {
    running == 0 || running + cost <= in_flight
}

fn lock<K: Eq + Hash + Clone>(state: &Mutex<State<K>>) -> MutexGuard<'_, State<K>> {
    // Nothing here panics while holding the lock; if something did, the counters are still the
    // best there is.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<K: Eq + Hash + Clone> State<K> {
    fn has_room(&self, cost: usize) -> bool {
        room(self.running, self.config.in_flight, cost)
    }

    fn permit(&mut self, queue: &Arc<Mutex<State<K>>>, cost: usize, arrived_at: u64) -> Permit<K> {
        self.running += cost;
        let sequence = self.dispatched;
        self.dispatched += 1;
        Permit {
            queue: Some(Arc::clone(queue)),
            cost,
            sequence,
            waited: sequence.saturating_sub(arrived_at),
        }
    }

    /// Hands waiting queries to the model, by deficit round robin, while it has room.
    fn dispatch(&mut self, queue: &Arc<Mutex<State<K>>>) {
        while let Some(client) = self.ring.front().cloned() {
            let quantum = self.config.quantum.max(1);
            let Some(q) = self.clients.get_mut(&client) else {
                self.ring.pop_front();
                continue;
            };
            let Some(head) = q.waiting.front() else {
                self.clients.remove(&client);
                self.ring.pop_front();
                continue;
            };
            let cost = head.cost;
            if !q.in_turn {
                q.deficit = q.deficit.saturating_add(quantum);
                q.in_turn = true;
            }
            if q.deficit < cost {
                // Its credit is spent for this turn: the next client's turn.
                q.in_turn = false;
                self.ring.rotate_left(1);
                continue;
            }
            if !room(self.running, self.config.in_flight, cost) {
                return;
            }
            let Some(waiter) = q.waiting.pop_front() else {
                continue;
            };
            q.deficit -= cost;
            q.units -= cost;
            let idle = q.waiting.is_empty();
            if idle {
                // Idle: forgotten, credit and all.
                self.clients.remove(&client);
                self.ring.pop_front();
            }
            self.waiting -= cost;
            self.waiting_queries -= 1;
            let permit = self.permit(queue, cost, waiter.arrived_at);
            if let Err(Ok(mut permit)) = waiter.grant.send(Ok(permit)) {
                // The caller went away just now: take the units back here (dropping the permit
                // normally would take this lock again).
                permit.queue = None;
                self.running -= permit.cost;
                self.dispatched -= 1;
            }
        }
    }

    /// Removes waiter `id` of `client` (gone: expired or its caller dropped it), if still waiting.
    fn forget(&mut self, client: &K, id: u64) {
        let Some(q) = self.clients.get_mut(client) else {
            return;
        };
        let Some(at) = q.waiting.iter().position(|w| w.id == id) else {
            return;
        };
        if let Some(w) = q.waiting.remove(at) {
            q.units -= w.cost;
            self.waiting -= w.cost;
            self.waiting_queries -= 1;
        }
        if q.waiting.is_empty() {
            self.clients.remove(client);
            self.ring.retain(|c| c != client);
        }
    }

    /// Makes room for `cost` more units for `client` by refusing the newest queries of longer
    /// queues; whether there is room now.
    fn make_room(&mut self, client: &K, cost: usize) -> bool {
        while self.waiting + cost > self.config.capacity {
            let own = self.clients.get(client).map_or(0, |q| q.units) + cost;
            let Some((longest, units)) = self
                .clients
                .iter()
                .map(|(k, q)| (k.clone(), q.units))
                .max_by_key(|(_, units)| *units)
            else {
                return false;
            };
            if longest == *client || units <= own {
                return false;
            }
            let Some(q) = self.clients.get_mut(&longest) else {
                return false;
            };
            let Some(pushed) = q.waiting.pop_back() else {
                return false;
            };
            q.units -= pushed.cost;
            if q.waiting.is_empty() {
                self.clients.remove(&longest);
                self.ring.retain(|c| *c != longest);
            }
            self.waiting -= pushed.cost;
            self.waiting_queries -= 1;
            let _ = pushed.grant.send(Err(FairError::Busy));
        }
        true
    }
}

/// Forgets its waiter if the wait ends without a grant (deadline, or the caller went away).
struct Waiting<'a, K: Eq + Hash + Clone> {
    state: &'a Mutex<State<K>>,
    client: K,
    id: u64,
}

impl<K: Eq + Hash + Clone> Drop for Waiting<'_, K> {
    fn drop(&mut self) {
        lock(self.state).forget(&self.client, self.id);
    }
}

impl<K: Eq + Hash + Clone> FairQueue<K> {
    /// Empty queues with the limits of `config` (each at least 1).
    pub fn new(config: FairConfig) -> Self {
        let config = FairConfig {
            in_flight: config.in_flight.max(1),
            capacity: config.capacity.max(1),
            quantum: config.quantum.max(1),
        };
        Self {
            state: Arc::new(Mutex::new(State {
                config,
                clients: HashMap::new(),
                ring: VecDeque::new(),
                waiting: 0,
                waiting_queries: 0,
                running: 0,
                dispatched: 0,
                next_id: 0,
            })),
        }
    }

    /// Waits for `client`'s turn to run a query costing `cost` units, until `deadline`. Answers at
    /// once when the model has room and nobody waits; [`FairError::Busy`] at once when there is no
    /// room to wait.
    pub async fn acquire(
        &self,
        client: K,
        cost: usize,
        deadline: Instant,
    ) -> Result<Permit<K>, FairError> {
        let (waiting, granted) = {
            let mut state = lock(&self.state);
            let cost = cost.clamp(1, state.config.in_flight);
            if Instant::now() >= deadline {
                return Err(FairError::Expired);
            }
            let arrived_at = state.dispatched;
            if state.ring.is_empty() && state.has_room(cost) {
                return Ok(state.permit(&self.state, cost, arrived_at));
            }
            if !state.make_room(&client, cost) {
                return Err(FairError::Busy);
            }
            let id = state.next_id;
            state.next_id += 1;
            let (grant, granted) = oneshot::channel();
            let q = state
                .clients
                .entry(client.clone())
                .or_insert_with(|| ClientQueue {
                    waiting: VecDeque::new(),
                    units: 0,
                    deficit: 0,
                    in_turn: false,
                });
            let new_client = q.waiting.is_empty();
            q.waiting.push_back(Waiter {
                id,
                cost,
                arrived_at,
                grant,
            });
            q.units += cost;
            if new_client {
                state.ring.push_back(client.clone());
            }
            state.waiting += cost;
            state.waiting_queries += 1;
            // Room may have freed with nobody to hand it to (a waiter that just left).
            state.dispatch(&self.state);
            let waiting = Waiting {
                state: &self.state,
                client,
                id,
            };
            (waiting, granted)
        };
        let outcome = tokio::time::timeout_at(deadline.into(), granted).await;
        // On a grant the waiter is no longer queued and forgetting it is a no-op; otherwise it
        // leaves its queue here.
        drop(waiting);
        match outcome {
            Ok(Ok(grant)) => grant,
            Ok(Err(_)) => Err(FairError::Busy),
            Err(_) => Err(FairError::Expired),
        }
    }

    /// What waits and runs now.
    pub fn stats(&self) -> FairStats {
        let state = lock(&self.state);
        FairStats {
            waiting: state.waiting,
            waiting_queries: state.waiting_queries,
            clients: state.clients.len(),
            running: state.running,
            dispatched: state.dispatched,
        }
    }
}
