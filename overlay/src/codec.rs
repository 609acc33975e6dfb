//! The `/agora/query/1` request-response codec: one length-prefixed frame each way, decoded by
//! `agora_protocols::codec` under a hard size limit.
//!
//! The frame is a 4-byte big-endian length followed by that many bytes. The length is checked
//! against the limit before a single payload byte is read or allocated, so a peer announcing a
//! 4 GiB frame costs us four bytes of reading.
//!
//! Inbound request frames are also charged by their length against [`InboundLimits`] before
//! their payload is read: the process-wide byte budget, the sending peer's byte rate (a token
//! bucket of bytes) and its count of open requests. The charge travels with the request as an
//! [`InboundPermit`] until it is answered, so the bytes of every inbound request held anywhere in
//! the node (read, queued for the application, waiting for the model) are bounded, not only their
//! number. A refused small frame is read into a scratch buffer and answered with why
//! ([`QueryFrame::Refused`]); a refused large one is not read at all: its stream is dropped.
//!
//! The codec learns which peer a connection belongs to from [`crate::behaviour::QueryBehaviour`],
//! which names the peer just before libp2p clones the codec for the connection's handler.

use crate::config::InboundLimits;
use agora_protocols::query::{MAX_WIRE_REQUEST_LEN, MAX_WIRE_RESPONSE_LEN};
use agora_protocols::{QueryError, QueryErrorKind, QueryWireRequest, QueryWireResponse, codec};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The protocol name of the query exchange.
pub const QUERY_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/query/1");

/// What the codec reads from (and writes to) a request stream.
#[derive(Debug)]
pub enum QueryFrame {
    /// A request read in full. Inbound, `permit` holds its bytes against the inbound limits until
    /// the permit is dropped (with the reply); outbound requests carry none.
    Request {
        /// The request.
        request: QueryWireRequest,
        /// The bytes it holds of the inbound budget.
        permit: Option<InboundPermit>,
    },
    /// An inbound frame refused from its length prefix (and, being small, read and discarded):
    /// answer it with this error. Never written.
    Refused(QueryError),
}

impl From<QueryWireRequest> for QueryFrame {
    fn from(request: QueryWireRequest) -> Self {
        QueryFrame::Request {
            request,
            permit: None,
        }
    }
}

/// One peer's share of the inbound limits.
#[derive(Debug)]
struct PeerBudget {
    /// Bytes it may still send now.
    tokens: f64,
    /// When `tokens` was last brought up to date (and, for forgetting, last used).
    refilled: Instant,
    /// Its requests read and not yet answered.
    streams: usize,
}

/// The state every clone of the codec shares.
#[derive(Debug)]
struct Shared {
    limits: InboundLimits,
    /// Bytes of inbound frames held now.
    held: AtomicUsize,
    /// The most ever held at once.
    peak: AtomicUsize,
    peers: Mutex<HashMap<PeerId, PeerBudget>>,
    /// The peer whose connection handler is being made (see [`QueryCodec::for_next_connection`]).
    next_peer: Mutex<Option<PeerId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; if something did, the counts are still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Takes `len` bytes of the process budget if they are free. Frames larger than a small one
    /// leave the small-frame reserve alone.
    fn take_budget(&self, len: usize) -> bool {
        let limit = if len <= self.limits.small_frame_bytes {
            self.limits.budget_bytes
        } else {
            self.limits
                .budget_bytes
                .saturating_sub(self.limits.small_reserve_bytes)
        };
        let taken = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(len).filter(|&after| after <= limit)
            });
        match taken {
            Ok(before) => {
                self.peak.fetch_max(before + len, Ordering::AcqRel);
                true
            }
            Err(_) => false,
        }
    }

    /// Charges a frame of `len` bytes from `peer`, or says why not. Nothing is charged on refusal.
    fn admit(
        self: &Arc<Self>,
        peer: Option<PeerId>,
        len: usize,
    ) -> Result<InboundPermit, QueryError> {
        let refuse = |kind, message: String| QueryError { kind, message };
        let Some(peer) = peer else {
            // A codec not bound to a connection (tests, fuzzing): the process budget only.
            return if self.take_budget(len) {
                Ok(InboundPermit {
                    shared: Arc::clone(self),
                    peer: None,
                    bytes: len,
                })
            } else {
                Err(refuse(
                    QueryErrorKind::Busy,
                    "inbound byte budget spent: try later".into(),
                ))
            };
        };
        let limits = &self.limits;
        let now = Instant::now();
        let mut peers = lock(&self.peers);
        if !peers.contains_key(&peer) && peers.len() >= limits.max_tracked_peers {
            // Forget the peer idle longest; one with open requests is never forgotten.
            let stalest = peers
                .iter()
                .filter(|(_, b)| b.streams == 0)
                .min_by_key(|(_, b)| b.refilled)
                .map(|(p, _)| *p);
            match stalest {
                Some(p) => {
                    peers.remove(&p);
                }
                None => {
                    return Err(refuse(
                        QueryErrorKind::Busy,
                        "too many peers sending: try later".into(),
                    ));
                }
            }
        }
        let burst = limits.peer_burst_bytes as f64;
        let budget = peers.entry(peer).or_insert(PeerBudget {
            tokens: burst,
            refilled: now,
            streams: 0,
        });
        let elapsed = now.saturating_duration_since(budget.refilled).as_secs_f64();
        budget.tokens = (budget.tokens + elapsed * limits.peer_bytes_per_sec as f64).min(burst);
        budget.refilled = now;
        if budget.streams >= limits.max_streams_per_peer {
            return Err(refuse(
                QueryErrorKind::RateLimited,
                format!(
                    "more than {} open requests from one peer",
                    limits.max_streams_per_peer
                ),
            ));
        }
        if budget.tokens < len as f64 {
            return Err(refuse(
                QueryErrorKind::RateLimited,
                format!(
                    "over {} bytes per second from one peer",
                    limits.peer_bytes_per_sec
                ),
            ));
        }
        if !self.take_budget(len) {
            return Err(refuse(
                QueryErrorKind::Busy,
                "inbound byte budget spent: try later".into(),
            ));
        }
        budget.tokens -= len as f64;
        budget.streams += 1;
        Ok(InboundPermit {
            shared: Arc::clone(self),
            peer: Some(peer),
            bytes: len,
        })
    }
}

/// An inbound request's charge against [`InboundLimits`]: its bytes of the process budget and one
/// of its peer's open requests. Released when dropped, which is when its reply is sent or dropped.
#[derive(Debug)]
pub struct InboundPermit {
    shared: Arc<Shared>,
    peer: Option<PeerId>,
    bytes: usize,
}

impl InboundPermit {
    /// The bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for InboundPermit {
    fn drop(&mut self) {
        self.shared.held.fetch_sub(self.bytes, Ordering::AcqRel);
        if let Some(peer) = self.peer
            && let Some(budget) = lock(&self.shared.peers).get_mut(&peer)
        {
            budget.streams = budget.streams.saturating_sub(1);
        }
    }
}

/// Codec for [`QueryFrame`] / [`QueryWireResponse`] frames, charging inbound requests against
/// [`InboundLimits`]. Every clone shares one set of limits; a clone made for a connection's
/// handler knows the connection's peer.
#[derive(Debug)]
pub struct QueryCodec {
    shared: Arc<Shared>,
    /// The remote peer of the connection this clone reads from; `None` for the template the
    /// behaviour holds (and codecs used outside a swarm).
    peer: Option<PeerId>,
}

impl Default for QueryCodec {
    fn default() -> Self {
        Self::new(InboundLimits::default())
    }
}

impl Clone for QueryCodec {
    /// A clone of a connection's codec reads from the same peer; a clone of the template is for
    /// the connection being set up, whose peer [`QueryCodec::for_next_connection`] names.
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            peer: self.peer.or_else(|| *lock(&self.shared.next_peer)),
        }
    }
}

impl QueryCodec {
    /// A codec with fresh counters under `limits`.
    pub fn new(limits: InboundLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                held: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                peers: Mutex::new(HashMap::new()),
                next_peer: Mutex::new(None),
            }),
            peer: None,
        }
    }

    /// Names the peer of the connection whose handler is made next (`None` once it is made), so
    /// that the codec cloned into that handler charges that peer.
    pub fn for_next_connection(&self, peer: Option<PeerId>) {
        *lock(&self.shared.next_peer) = peer;
    }

    /// Bytes of inbound request frames held now, over the whole process.
    pub fn held_bytes(&self) -> usize {
        self.shared.held.load(Ordering::Acquire)
    }

    /// The most bytes of inbound request frames ever held at once.
    pub fn peak_bytes(&self) -> usize {
        self.shared.peak.load(Ordering::Acquire)
    }
}

/// Reads a frame's 4-byte length prefix and checks it against `limit`.
async fn read_len<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<usize> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = usize::try_from(u32::from_be_bytes(len))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame length"))?;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the limit of {limit}"),
        ));
    }
    Ok(len)
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let len = read_len(io, limit).await?;
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Reads and discards `len` bytes through a fixed scratch buffer.
async fn discard<T: AsyncRead + Unpin + Send>(io: &mut T, mut len: usize) -> io::Result<()> {
    let mut scratch = [0u8; 4096];
    while len > 0 {
        let n = len.min(scratch.len());
        io.read_exact(&mut scratch[..n]).await?;
        len -= n;
    }
    Ok(())
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
    limit: usize,
) -> io::Result<()> {
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes is over the limit of {limit}",
                bytes.len()
            ),
        ));
    }
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame length"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err.to_string())
}

impl libp2p::request_response::Codec for QueryCodec {
    type Protocol = StreamProtocol;
    type Request = QueryFrame;
    type Response = QueryWireResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Self::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let len = read_len(io, MAX_WIRE_REQUEST_LEN).await?;
        let permit = match self.shared.admit(self.peer, len) {
            Ok(permit) => permit,
            Err(refusal) if len <= self.shared.limits.small_frame_bytes => {
                discard(io, len).await?;
                return Ok(QueryFrame::Refused(refusal));
            }
            Err(refusal) => {
                return Err(io::Error::other(format!(
                    "frame of {len} bytes refused: {}",
                    refusal.message
                )));
            }
        };
        let mut bytes = vec![0u8; len];
        io.read_exact(&mut bytes).await?;
        let request = codec::decode(&bytes, MAX_WIRE_REQUEST_LEN).map_err(invalid)?;
        Ok(QueryFrame::Request {
            request,
            permit: Some(permit),
        })
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Self::Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, MAX_WIRE_RESPONSE_LEN).await?;
        codec::decode(&bytes, MAX_WIRE_RESPONSE_LEN).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Self::Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let QueryFrame::Request { request, .. } = req else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a refusal is answered, never sent",
            ));
        };
        let bytes = codec::encode(&request).map_err(invalid)?;
        write_frame(io, &bytes, MAX_WIRE_REQUEST_LEN).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Self::Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = codec::encode(&res).map_err(invalid)?;
        write_frame(io, &bytes, MAX_WIRE_RESPONSE_LEN).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use libp2p::request_response::Codec;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let mut codec = QueryCodec::default();
        let req = QueryWireRequest::Query(vec![7; 100]);
        let mut buf = futures::io::Cursor::new(Vec::new());
        codec
            .write_request(&QUERY_PROTOCOL, &mut buf, req.clone().into())
            .await
            .unwrap();
        let mut rd = futures::io::Cursor::new(buf.into_inner());
        let QueryFrame::Request { request, permit } =
            codec.read_request(&QUERY_PROTOCOL, &mut rd).await.unwrap()
        else {
            panic!("refused")
        };
        assert_eq!(request, req);
        // The frame's bytes are held until the permit goes.
        assert!(codec.held_bytes() > 100);
        drop(permit);
        assert_eq!(codec.held_bytes(), 0);

        // A length prefix over the limit is refused before any allocation.
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let mut rd = futures::io::Cursor::new(huge);
        assert!(codec.read_request(&QUERY_PROTOCOL, &mut rd).await.is_err());

        // Garbage of a legal length is an error, not a panic.
        let mut junk = 5u32.to_be_bytes().to_vec();
        junk.extend_from_slice(&[0xff; 5]);
        let mut rd = futures::io::Cursor::new(junk);
        assert!(codec.read_response(&QUERY_PROTOCOL, &mut rd).await.is_err());

        // Truncated frames are errors too.
        let mut short = 50u32.to_be_bytes().to_vec();
        short.extend_from_slice(&[1; 10]);
        let mut rd = futures::io::Cursor::new(short);
        assert!(codec.read_response(&QUERY_PROTOCOL, &mut rd).await.is_err());
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut bytes = u32::try_from(len).unwrap().to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(0xA5, len));
        bytes
    }

    async fn read(codec: &mut QueryCodec, bytes: Vec<u8>) -> io::Result<QueryFrame> {
        codec
            .read_request(&QUERY_PROTOCOL, &mut futures::io::Cursor::new(bytes))
            .await
    }

    fn refused(frame: io::Result<QueryFrame>) -> Option<QueryErrorKind> {
        match frame {
            Ok(QueryFrame::Refused(e)) => Some(e.kind),
            _ => None,
        }
    }

    /// A codec bound to one peer, as the behaviour makes them for connections.
    fn for_peer(template: &QueryCodec, peer: PeerId) -> QueryCodec {
        template.for_next_connection(Some(peer));
        let codec = template.clone();
        template.for_next_connection(None);
        codec
    }

    #[tokio::test]
    async fn frames_are_charged_by_bytes_from_their_length_prefix() {
        let limits = InboundLimits {
            budget_bytes: 1000,
            small_frame_bytes: 100,
            small_reserve_bytes: 200,
            peer_bytes_per_sec: 0,
            peer_burst_bytes: 2000,
            max_streams_per_peer: 3,
            max_tracked_peers: 2,
            check_threads: 1,
        };
        let template = QueryCodec::new(limits);
        let (a, b, c, d) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        let mut from_a = for_peer(&template, a);
        let mut from_b = for_peer(&template, b);
        let charge = |codec: &QueryCodec, len| codec.shared.admit(codec.peer, len);

        // A large frame from a; a second from b would eat into the small frames' reserve: Busy,
        // and being large it is not even read (the stream is dropped).
        let first = charge(&from_a, 500).unwrap();
        assert_eq!(charge(&from_b, 500).unwrap_err().kind, QueryErrorKind::Busy);
        assert!(read(&mut from_b, frame(500)).await.is_err());
        // Small frames may use the reserve.
        let smalls: Vec<_> = (0..3).map(|_| charge(&from_b, 100).unwrap()).collect();
        assert_eq!(template.held_bytes(), 800);
        // b has three requests open: a fourth is refused RateLimited, read and answered.
        assert_eq!(
            refused(read(&mut from_b, frame(50)).await),
            Some(QueryErrorKind::RateLimited)
        );
        drop(smalls);
        drop(first);
        assert_eq!(template.held_bytes(), 0);

        // Two peers remembered at most: c makes the one idle longest with nothing open (b) go;
        // with a and c both holding requests open, a fourth peer is refused.
        let open_a = charge(&from_a, 10).unwrap();
        let from_c = for_peer(&template, c);
        let open_c = charge(&from_c, 10).unwrap();
        {
            let peers = template.shared.peers.lock().unwrap();
            assert!(peers.contains_key(&a) && peers.contains_key(&c) && !peers.contains_key(&b));
        }
        let from_d = for_peer(&template, d);
        assert_eq!(charge(&from_d, 10).unwrap_err().kind, QueryErrorKind::Busy);
        drop((open_a, open_c));

        // a's bucket (2000 bytes, refilled at 0 bytes/s) runs dry, whatever the budget says:
        // RateLimited, and a frame read in full holds its bytes until its permit goes.
        drop(charge(&from_a, 500).unwrap());
        drop(charge(&from_a, 500).unwrap());
        let frame_a = QueryWireRequest::Settle(vec![1; 400]);
        let bytes = codec::encode(&frame_a).unwrap();
        let mut framed = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        let QueryFrame::Request { request, permit } = read(&mut from_a, framed).await.unwrap()
        else {
            panic!("refused")
        };
        assert_eq!(request, frame_a);
        assert_eq!(template.held_bytes(), bytes.len());
        drop(permit);
        assert_eq!(
            charge(&from_a, 600).unwrap_err().kind,
            QueryErrorKind::RateLimited
        );
        assert_eq!(template.held_bytes(), 0);
        assert_eq!(template.peak_bytes(), 800);
    }
}
