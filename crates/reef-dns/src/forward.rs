//! Forwarding to a container's upstream servers: each upstream in turn, over the transport
//! the query came on, with a fresh random query id and source port per attempt.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout_at, Instant};

use crate::wire::{self, reply_id, reply_rcode, REFUSED, SERVFAIL};
use crate::{Transport, UPSTREAM_TIMEOUT};

/// An unpredictable query id for an upstream query.
fn random_id() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish() as u16
}

/// Sends `query` to each of `upstreams` in turn and returns the first usable reply, with the
/// id set back to the query's. A SERVFAIL or REFUSED reply counts as a failure.
pub(crate) async fn forward(
    query: &[u8],
    upstreams: &[SocketAddr],
    transport: Transport,
) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let client_id = [query[0], query[1]];
    let mut q = query.to_vec();
    for &upstream in upstreams {
        let id = random_id();
        q[..2].copy_from_slice(&id.to_be_bytes());
        let deadline = Instant::now() + UPSTREAM_TIMEOUT;
        let result = match transport {
            Transport::Udp => udp_exchange(&q, id, upstream, deadline).await,
            Transport::Tcp => tcp_exchange(&q, id, upstream, deadline).await,
        };
        match result {
            Ok(mut reply) => {
                let rcode = reply_rcode(&reply);
                if rcode == SERVFAIL || rcode == REFUSED {
                    tracing::debug!(%upstream, rcode, "upstream failed the query");
                    continue;
                }
                reply[..2].copy_from_slice(&client_id);
                return Some(reply);
            }
            Err(e) => tracing::debug!(%upstream, error = %e, "upstream did not answer"),
        }
    }
    None
}

fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "upstream timed out")
}

async fn udp_exchange(
    q: &[u8],
    id: u16,
    upstream: SocketAddr,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    let sock = UdpSocket::bind(unspecified_for(upstream)).await?;
    sock.connect(upstream).await?;
    sock.send(q).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| timed_out())??;
        if reply_id(&buf[..n]) == Some(id) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(
    q: &[u8],
    id: u16,
    upstream: SocketAddr,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        stream.set_nodelay(true)?;
        let len = u16::try_from(q.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
        let mut framed = Vec::with_capacity(q.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(q);
        stream.write_all(&framed).await?;
        loop {
            let len = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await?;
            if reply_id(&buf) == Some(id) {
                return Ok(buf);
            }
        }
    };
    timeout_at(deadline, exchange)
        .await
        .map_err(|_| timed_out())?
}

/// Turns what [`forward`] got into the bytes for the client: the relayed reply (replaced by
/// an empty TC reply when it is too big for a UDP client) or SERVFAIL.
pub(crate) fn finish(
    query: &[u8],
    meta: &wire::QueryMeta,
    reply: Option<Vec<u8>>,
    transport: Transport,
    out: &mut Vec<u8>,
) {
    match reply {
        Some(r) if transport == Transport::Udp && r.len() > meta.relay_udp_limit() => {
            wire::encode_truncated(query, meta, out)
        }
        Some(r) => out.extend_from_slice(&r),
        None => wire::encode_reply(query, meta, wire::Body::Rcode(SERVFAIL), None, out),
    }
}
