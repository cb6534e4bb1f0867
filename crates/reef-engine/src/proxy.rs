//! Published ports on IPv6 host addresses (`-p [::1]:8080:80`).
//!
//! Containers are IPv4 and the kernel cannot NAT an IPv6 connection to an IPv4 address, so
//! these bindings, and only these, are relayed by reefd itself: one task per binding inside
//! the daemon (no process), on a socket with IPV6_V6ONLY so IPv4 traffic stays on the
//! kernel's NAT path. Sockets are bound synchronously, so a taken port fails the start.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV6};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockProtocol,
    SockType, SockaddrIn6,
};
use reef_core::ports::Proto;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::AbortHandle;

/// How long a UDP client's relay socket lives without traffic.
const UDP_IDLE: Duration = Duration::from_secs(60);

/// One relayed binding.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    /// Host side.
    pub listen: SocketAddrV6,
    /// Container side.
    pub target: SocketAddr,
    /// Protocol (tcp or udp).
    pub proto: Proto,
}

/// The relays a running container's IPv6 host bindings need.
pub(crate) fn relays_of(c: &reef_core::model::Container) -> Vec<Relay> {
    let Some(ep) = c.endpoints.first() else {
        return vec![];
    };
    c.ports
        .iter()
        .filter_map(|b| match b.host_ip {
            std::net::IpAddr::V6(v6) => Some(Relay {
                listen: SocketAddrV6::new(v6, b.host_port, 0, 0),
                target: SocketAddr::new(ep.ip.into(), b.container_port),
                proto: b.proto,
            }),
            std::net::IpAddr::V4(_) => None,
        })
        .collect()
}

/// The relays of every running container.
#[derive(Default)]
pub(crate) struct Proxies {
    tasks: Mutex<HashMap<String, Vec<AbortHandle>>>,
}

fn v6_socket(addr: SocketAddrV6, kind: SockType, proto: SockProtocol) -> io::Result<i32> {
    let fd = socket(
        AddressFamily::Inet6,
        kind,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        proto,
    )?;
    setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    use std::os::fd::AsRawFd;
    bind(fd.as_raw_fd(), &SockaddrIn6::from(addr))?;
    if kind == SockType::Stream {
        listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    }
    Ok(fd.into_raw_fd())
}

impl Proxies {
    /// Bind and start the relays of container `id`; on any error none is left running.
    pub(crate) fn start(
        &self,
        rt: &tokio::runtime::Handle,
        id: &str,
        relays: &[Relay],
    ) -> io::Result<()> {
        if relays.is_empty() {
            return Ok(());
        }
        let _ctx = rt.enter();
        let mut handles = Vec::new();
        for r in relays {
            let started =
                match r.proto {
                    Proto::Tcp => v6_socket(r.listen, SockType::Stream, SockProtocol::Tcp)
                        .and_then(|fd| {
                            let l = TcpListener::from_std(tcp_from_fd(fd))?;
                            Ok(rt.spawn(relay_tcp(l, r.target)).abort_handle())
                        }),
                    Proto::Udp => v6_socket(r.listen, SockType::Datagram, SockProtocol::Udp)
                        .and_then(|fd| {
                            let s = UdpSocket::from_std(udp_from_fd(fd))?;
                            Ok(rt.spawn(relay_udp(Arc::new(s), r.target)).abort_handle())
                        }),
                    Proto::Sctp => Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "IPv6 host addresses carry tcp and udp",
                    )),
                };
            match started {
                Ok(h) => handles.push(h),
                Err(e) => {
                    handles.iter().for_each(AbortHandle::abort);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("publish [{}]:{}: {e}", r.listen.ip(), r.listen.port()),
                    ));
                }
            }
        }
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), handles);
        Ok(())
    }

    /// Stop container `id`'s relays (their sockets close with the tasks).
    pub(crate) fn stop(&self, id: &str) {
        if let Some(hs) = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            hs.iter().for_each(AbortHandle::abort);
        }
    }
}

#[allow(unsafe_code)]
fn tcp_from_fd(fd: i32) -> std::net::TcpListener {
    // SAFETY: `fd` is a listening socket created by `v6_socket` and owned by nobody else.
    unsafe { std::net::TcpListener::from_raw_fd(fd) }
}

#[allow(unsafe_code)]
fn udp_from_fd(fd: i32) -> std::net::UdpSocket {
    // SAFETY: `fd` is a bound datagram socket created by `v6_socket` and owned by nobody else.
    unsafe { std::net::UdpSocket::from_raw_fd(fd) }
}

async fn relay_tcp(listener: TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut upstream) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

async fn relay_udp(sock: Arc<UdpSocket>, target: SocketAddr) {
    let peers: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let existing = peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&client)
            .cloned();
        let upstream = match existing {
            Some(u) => u,
            None => {
                let Ok(u) = UdpSocket::bind("0.0.0.0:0").await else {
                    continue;
                };
                if u.connect(target).await.is_err() {
                    continue;
                }
                let u = Arc::new(u);
                peers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(client, u.clone());
                let (back, reply_to, table) = (sock.clone(), u.clone(), peers.clone());
                tokio::spawn(async move {
                    let mut rbuf = vec![0u8; 65536];
                    while let Ok(Ok(m)) =
                        tokio::time::timeout(UDP_IDLE, reply_to.recv(&mut rbuf)).await
                    {
                        let _ = back.send_to(&rbuf[..m], client).await;
                    }
                    table
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&client);
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}
