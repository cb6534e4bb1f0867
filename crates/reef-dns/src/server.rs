//! The server: the current [`Table`] behind a cheap swap, and one UDP socket plus one TCP
//! listener per served address, each with its own tasks.
//!
//! UDP: a few worker tasks share each socket (one per core, at most four); a worker answers
//! local queries inline (`recv_from` -> rules -> `send_to`, no allocation) and hands
//! forwards to spawned tasks so they never hold up local answers. TCP: one task per
//! connection, 2-byte framing, pipelined queries, forwards answered as they complete.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::forward;
use crate::table::{Outcome, Table};
use crate::wire::{self, Body, Parsed, QueryMeta, BADVERS, REFUSED, SERVFAIL};
use crate::{ContainerDns, DnsState, Transport, MAX_TCP_CONNECTIONS, TCP_IDLE_TIMEOUT};

/// Largest UDP query the server looks at.
const MAX_UDP_QUERY: usize = 4096;
/// Forwarded queries in flight across the whole server; past this, SERVFAIL at once.
const MAX_FORWARDS: usize = 1024;
/// Packets a UDP worker handles before it yields to other tasks.
const UDP_BUDGET: u32 = 64;
/// How long `listen` keeps retrying an address still held by sockets being closed.
const BIND_RETRY: Duration = Duration::from_secs(1);

/// The embedded DNS server. Cheap to share; see the crate docs for the rules.
pub struct DnsServer {
    shared: Arc<Shared>,
    /// Bound address -> the tasks serving it.
    listeners: Mutex<HashMap<SocketAddr, Listener>>,
    /// Held by whoever is building the next table.
    writer: Mutex<()>,
}

/// What the serving tasks share.
struct Shared {
    /// The current table and its generation, swapped whole by `publish`.
    table: RwLock<(u64, Arc<Table>)>,
    /// Mirror of the generation, so tasks notice a new table without taking the lock.
    generation: AtomicU64,
    /// Permits for forwarded queries in flight.
    forwards: Arc<Semaphore>,
}

struct Listener {
    tasks: Vec<AbortHandle>,
}

impl Listener {
    fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A task's handle on the current table: re-read only when the generation moved.
struct View {
    generation: u64,
    table: Arc<Table>,
}

impl View {
    fn new(shared: &Shared) -> View {
        let guard = shared.table.read().unwrap_or_else(|e| e.into_inner());
        View {
            generation: guard.0,
            table: guard.1.clone(),
        }
    }

    fn current(&mut self, shared: &Shared) -> &Table {
        if shared.generation.load(Ordering::Acquire) != self.generation {
            *self = View::new(shared);
        }
        &self.table
    }
}

impl DnsServer {
    /// A server that knows nothing and serves nowhere yet.
    pub fn new() -> Arc<DnsServer> {
        Arc::new(DnsServer {
            shared: Arc::new(Shared {
                table: RwLock::new((0, Arc::new(Table::default()))),
                generation: AtomicU64::new(0),
                forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
            }),
            listeners: Mutex::new(HashMap::new()),
            writer: Mutex::new(()),
        })
    }

    /// Replaces what the server knows, atomically: queries that arrive after this returns
    /// see `state`. The table is built before the swap, so queries never wait on it.
    pub fn publish(&self, state: DnsState) {
        let _writer = self.lock_writer();
        self.swap(Table::new(&state));
    }

    /// Replaces what the server knows of container `id` (`None`: it has no entries any
    /// more), atomically, in time proportional to that container's entries. Networks and
    /// their gateways are as the last [`publish`](DnsServer::publish) said.
    pub fn update_container(&self, id: &str, now: Option<&ContainerDns>) {
        let _writer = self.lock_writer();
        let current = Arc::clone(
            &self
                .shared
                .table
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .1,
        );
        self.swap(current.with_container(id, now));
    }

    /// Writers take turns, so an update never builds on a table another is replacing.
    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn swap(&self, table: Table) {
        let old = {
            let mut guard = self.shared.table.write().unwrap_or_else(|e| e.into_inner());
            guard.0 += 1;
            self.shared.generation.store(guard.0, Ordering::Release);
            std::mem::replace(&mut guard.1, Arc::new(table))
        };
        drop(old);
    }

    /// Binds UDP and TCP on `addr:53` (a gateway address present in this namespace) and
    /// serves them until [`DnsServer::unlisten`]; returns once bound. Does nothing for an
    /// address already served. Must be called within a tokio runtime, whose tasks serve.
    pub async fn listen(self: &Arc<Self>, addr: Ipv4Addr) -> io::Result<()> {
        let bind = SocketAddr::from((addr, 53));
        if self.lock_listeners().contains_key(&bind) {
            return Ok(());
        }
        self.start(bind, addr).await.map(|_| ())
    }

    /// Stops serving on `addr`, every port (closes its sockets and TCP connections; they are
    /// gone once the runtime has run the cancelled tasks, which `listen` allows for).
    pub fn unlisten(&self, addr: Ipv4Addr) {
        self.lock_listeners().retain(|bound, listener| {
            if bound.ip() == std::net::IpAddr::V4(addr) {
                listener.stop();
                false
            } else {
                true
            }
        });
    }

    /// For tests and benchmarks: serves UDP and TCP on `bind` (e.g. `127.0.0.1:0`) as if it
    /// were the address of the network whose gateway is `as_gateway_of`; returns the bound
    /// address (the same port for both).
    pub async fn listen_on(
        self: &Arc<Self>,
        bind: SocketAddr,
        as_gateway_of: Ipv4Addr,
    ) -> io::Result<SocketAddr> {
        self.start(bind, as_gateway_of).await
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Listener>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn start(&self, bind: SocketAddr, gateway: Ipv4Addr) -> io::Result<SocketAddr> {
        let (udp, tcp) = bind_pair(bind).await?;
        let local = udp.local_addr()?;
        let udp = Arc::new(udp);
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let mut tasks = Vec::with_capacity(workers + 1);
        for _ in 0..workers {
            let task = udp_worker(self.shared.clone(), udp.clone(), gateway);
            tasks.push(tokio::spawn(task).abort_handle());
        }
        drop(udp);
        let task = tcp_accept(self.shared.clone(), tcp, gateway);
        tasks.push(tokio::spawn(task).abort_handle());
        tracing::debug!(%local, %gateway, "dns listening");
        if let Some(old) = self.lock_listeners().insert(local, Listener { tasks }) {
            old.stop();
        }
        Ok(local)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for listener in self.lock_listeners().values() {
            listener.stop();
        }
    }
}

/// Binds UDP on `bind` and TCP on the same address and port, retrying for a moment while
/// the address is still held (by sockets of an `unlisten` not yet run down, or a port 0
/// pick that TCP cannot have).
async fn bind_pair(bind: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let deadline = Instant::now() + BIND_RETRY;
    loop {
        let attempt = async {
            let udp = UdpSocket::bind(bind).await?;
            let tcp = TcpListener::bind(udp.local_addr()?).await?;
            Ok::<_, io::Error>((udp, tcp))
        };
        match attempt.await {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if bind.port() != 0 {
                    sleep(Duration::from_millis(20)).await;
                }
            }
            other => return other,
        }
    }
}

/// What to do after the rules ran on one packet.
enum Step<'t> {
    /// Send what was written to `out`.
    Reply,
    /// Nothing to send (UDP), or close the connection (TCP).
    Drop,
    /// Forward to these upstreams.
    Forward(QueryMeta, &'t Arc<[SocketAddr]>),
}

/// Runs the rules on `packet` and writes any local reply to `out` (appending).
fn handle<'t>(
    table: &'t Table,
    gateway: Ipv4Addr,
    client: Ipv4Addr,
    packet: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> Step<'t> {
    let parsed = match wire::parse(packet) {
        Ok(p) => p,
        Err(e) => {
            tracing::trace!(%client, error = %e, "dropping malformed packet");
            return Step::Drop;
        }
    };
    let limit = match transport {
        Transport::Udp => None,
        Transport::Tcp => Some(usize::from(u16::MAX)),
    };
    let (meta, body) = match parsed {
        Parsed::Reject { meta, rcode } => {
            if !table.knows(gateway, client) {
                return refuse(packet, &meta, transport, out);
            }
            (meta, Body::Rcode(rcode))
        }
        Parsed::Query {
            meta,
            key,
            qtype,
            qclass,
        } => {
            let outcome = table.resolve(gateway, client, &key, qtype, qclass);
            let body = match &outcome {
                Outcome::UnknownClient => return refuse(packet, &meta, transport, out),
                _ if meta.edns.is_some_and(|e| e.version > 0) => Body::Rcode(BADVERS),
                Outcome::Addrs(addrs) => {
                    let addrs = addrs.as_slice();
                    Body::Addrs(addrs, table.rotation(addrs.len()))
                }
                Outcome::Ptr(name) => Body::Ptr(name),
                Outcome::NoData => Body::Rcode(wire::NOERROR),
                Outcome::NxDomain => Body::Rcode(wire::NXDOMAIN),
                Outcome::Forward(upstreams) if upstreams.is_empty() => Body::Rcode(SERVFAIL),
                Outcome::Forward(upstreams) => return Step::Forward(meta, upstreams),
            };
            // `body` may borrow `outcome` (merged addresses), so write it here.
            let limit = limit.unwrap_or(meta.local_udp_limit());
            wire::encode_reply(packet, &meta, body, Some(limit), out);
            return Step::Reply;
        }
    };
    let limit = limit.unwrap_or(meta.local_udp_limit());
    wire::encode_reply(packet, &meta, body, Some(limit), out);
    Step::Reply
}

/// What the server does with one raw packet, as [`handle_packet`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketAction {
    /// Send these bytes back (over TCP, after the 2-byte length the server adds).
    Reply(Vec<u8>),
    /// Send nothing (UDP), or close the connection (TCP).
    Drop,
    /// Relay the packet to these upstream servers (never empty).
    Forward(Vec<SocketAddr>),
}

/// The server's own handling of one raw packet that arrived from `client` over `transport`
/// on the address serving `gateway`: the same code its UDP workers and TCP connections run
/// on every query (the zero-allocation wire path, not [`crate::answer`]), without sockets.
///
/// Public so fuzz tests (`tests/fuzz_dns.rs`) and tools can feed it arbitrary bytes; the
/// server itself does not go through it. What the socket loops do around it is not
/// included: UDP packets over 4096 bytes are dropped before this, TCP frames are at most
/// 65535 bytes, and forwarding and relaying the upstream's answer happen afterwards.
pub fn handle_packet(
    table: &Table,
    gateway: Ipv4Addr,
    client: Ipv4Addr,
    packet: &[u8],
    transport: Transport,
) -> PacketAction {
    let mut out = Vec::new();
    match handle(table, gateway, client, packet, transport, &mut out) {
        Step::Reply => PacketAction::Reply(out),
        Step::Drop => PacketAction::Drop,
        Step::Forward(_, upstreams) => PacketAction::Forward(upstreams.to_vec()),
    }
}

/// An unknown client: nothing over UDP, REFUSED over TCP.
fn refuse<'t>(
    packet: &[u8],
    meta: &QueryMeta,
    transport: Transport,
    out: &mut Vec<u8>,
) -> Step<'t> {
    match transport {
        Transport::Udp => Step::Drop,
        Transport::Tcp => {
            wire::encode_reply(packet, meta, Body::Rcode(REFUSED), None, out);
            Step::Reply
        }
    }
}

async fn udp_worker(shared: Arc<Shared>, sock: Arc<UdpSocket>, gateway: Ipv4Addr) {
    let weak = Arc::downgrade(&sock);
    let mut buf = vec![0u8; MAX_UDP_QUERY + 1];
    let mut out = Vec::with_capacity(1500);
    let mut view = View::new(&shared);
    let mut budget = UDP_BUDGET;
    loop {
        // Plain syscalls while packets are queued (parking on readiness only when the queue
        // is empty), but let the worker thread run other tasks now and then under a flood.
        budget -= 1;
        if budget == 0 {
            budget = UDP_BUDGET;
            tokio::task::yield_now().await;
        }
        let (n, peer) = match sock.try_recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                budget = UDP_BUDGET;
                if let Err(e) = sock.readable().await {
                    tracing::debug!(error = %e, "dns udp socket failed");
                }
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "dns udp receive failed");
                continue;
            }
        };
        let SocketAddr::V4(peer4) = peer else {
            continue;
        };
        if n > MAX_UDP_QUERY {
            continue;
        }
        let packet = &buf[..n];
        out.clear();
        let table = view.current(&shared);
        match handle(
            table,
            gateway,
            *peer4.ip(),
            packet,
            Transport::Udp,
            &mut out,
        ) {
            Step::Reply => {
                let sent = match sock.try_send_to(&out, peer) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        sock.send_to(&out, peer).await
                    }
                    other => other,
                };
                if let Err(e) = sent {
                    tracing::debug!(%peer, error = %e, "dns udp send failed");
                }
            }
            Step::Drop => {}
            Step::Forward(meta, upstreams) => {
                let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
                    wire::encode_reply(packet, &meta, Body::Rcode(SERVFAIL), None, &mut out);
                    let _ = sock.send_to(&out, peer).await;
                    continue;
                };
                let query = packet.to_vec();
                let upstreams = upstreams.clone();
                let weak = weak.clone();
                tokio::spawn(async move {
                    udp_forward(query, meta, upstreams, weak, peer).await;
                    drop(permit);
                });
            }
        }
    }
}

async fn udp_forward(
    query: Vec<u8>,
    meta: QueryMeta,
    upstreams: Arc<[SocketAddr]>,
    sock: Weak<UdpSocket>,
    peer: SocketAddr,
) {
    let reply = forward::forward(&query, &upstreams, Transport::Udp).await;
    let mut out = Vec::new();
    forward::finish(&query, &meta, reply, Transport::Udp, &mut out);
    // The socket may be gone (unlisten): then so is the client's server.
    if let Some(sock) = sock.upgrade() {
        let _ = sock.send_to(&out, peer).await;
    }
}

async fn tcp_accept(shared: Arc<Shared>, listener: TcpListener, gateway: Ipv4Addr) {
    // Dropping this task (unlisten) drops the set, which aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    while conns.try_join_next().is_some() {}
                    if conns.len() >= MAX_TCP_CONNECTIONS {
                        tracing::debug!(%peer, "too many dns tcp connections; closing");
                        drop(stream);
                        continue;
                    }
                    conns.spawn(tcp_conn(shared.clone(), stream, peer, gateway));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "dns tcp accept failed");
                    sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Writes a framed reply (its first two bytes are the length to fill in).
async fn write_framed(stream: &mut TcpStream, framed: &mut [u8]) -> io::Result<()> {
    let len = u16::try_from(framed.len() - 2)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "reply too long"))?;
    framed[..2].copy_from_slice(&len.to_be_bytes());
    timeout(TCP_IDLE_TIMEOUT, stream.write_all(framed))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client not reading"))?
}

async fn tcp_conn(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr, gateway: Ipv4Addr) {
    let SocketAddr::V4(peer4) = peer else {
        return;
    };
    let client = *peer4.ip();
    let _ = stream.set_nodelay(true);
    let mut view = View::new(&shared);
    let mut inbuf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(1500);
    let mut forwards: JoinSet<Vec<u8>> = JoinSet::new();
    let mut eof = false;
    let mut deadline = Instant::now() + TCP_IDLE_TIMEOUT;
    loop {
        // Answer every complete frame received so far.
        let mut at = 0;
        while inbuf.len() - at >= 2 {
            let len = usize::from(u16::from_be_bytes([inbuf[at], inbuf[at + 1]]));
            if len == 0 {
                return;
            }
            if inbuf.len() - at - 2 < len {
                break;
            }
            let packet = &inbuf[at + 2..at + 2 + len];
            at += 2 + len;
            out.clear();
            out.extend_from_slice(&[0, 0]);
            let table = view.current(&shared);
            match handle(table, gateway, client, packet, Transport::Tcp, &mut out) {
                Step::Reply => {
                    if write_framed(&mut stream, &mut out).await.is_err() {
                        return;
                    }
                }
                Step::Drop => return,
                Step::Forward(meta, upstreams) => {
                    let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
                        wire::encode_reply(packet, &meta, Body::Rcode(SERVFAIL), None, &mut out);
                        if write_framed(&mut stream, &mut out).await.is_err() {
                            return;
                        }
                        continue;
                    };
                    let query = packet.to_vec();
                    let upstreams = upstreams.clone();
                    forwards.spawn(async move {
                        let reply = forward::forward(&query, &upstreams, Transport::Tcp).await;
                        let mut framed = vec![0, 0];
                        forward::finish(&query, &meta, reply, Transport::Tcp, &mut framed);
                        drop(permit);
                        framed
                    });
                }
            }
        }
        inbuf.drain(..at);
        if eof && forwards.is_empty() {
            return;
        }
        if inbuf.capacity() - inbuf.len() < 1024 {
            inbuf.reserve(4096);
        }
        tokio::select! {
            biased;
            Some(done) = forwards.join_next(), if !forwards.is_empty() => {
                if let Ok(mut framed) = done {
                    if write_framed(&mut stream, &mut framed).await.is_err() {
                        return;
                    }
                }
                deadline = Instant::now() + TCP_IDLE_TIMEOUT;
            }
            read = stream.read_buf(&mut inbuf), if !eof => match read {
                Ok(0) => eof = true,
                Ok(_) => deadline = Instant::now() + TCP_IDLE_TIMEOUT,
                Err(_) => return,
            },
            _ = sleep_until(deadline), if forwards.is_empty() => return,
            else => return,
        }
    }
}
