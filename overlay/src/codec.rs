//! The `/agora/query/1` request-response codec: one length-prefixed frame each way, decoded by
//! `agora_protocols::codec` under a hard size limit.
//!
//! The frame is a 4-byte big-endian length followed by that many bytes. The length is checked
//! against the limit before a single payload byte is read or allocated, so a peer announcing a
//! 4 GiB frame costs us four bytes of reading.

use agora_protocols::query::{MAX_WIRE_REQUEST_LEN, MAX_WIRE_RESPONSE_LEN};
use agora_protocols::{QueryWireRequest, QueryWireResponse, codec};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use std::io;

/// The protocol name of the query exchange.
pub const QUERY_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/query/1");

/// Codec for [`QueryWireRequest`] / [`QueryWireResponse`] frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
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
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
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
    type Request = QueryWireRequest;
    type Response = QueryWireResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Self::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, MAX_WIRE_REQUEST_LEN).await?;
        codec::decode(&bytes, MAX_WIRE_REQUEST_LEN).map_err(invalid)
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
        let bytes = codec::encode(&req).map_err(invalid)?;
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
        let mut codec = QueryCodec;
        let req = QueryWireRequest::Query(vec![7; 100]);
        let mut buf = futures::io::Cursor::new(Vec::new());
        codec
            .write_request(&QUERY_PROTOCOL, &mut buf, req.clone())
            .await
            .unwrap();
        let mut rd = futures::io::Cursor::new(buf.into_inner());
        assert_eq!(
            codec.read_request(&QUERY_PROTOCOL, &mut rd).await.unwrap(),
            req
        );

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
}
