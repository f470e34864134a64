//! An in-process TCP fault proxy: one per node, between the clients and the real server.
//!
//! Each proxy listens on a free loopback port and forwards every connection to its node's
//! `redis-server`. Its [`Mode`] can be switched at run time from any thread through a
//! [`ProxyControl`]; every connection reads the mode before it forwards each chunk, so a
//! switch takes effect at once, mid-connection.
//!
//! Bytes are never reordered, and dropped only by [`Mode::Swallow`], on a connection that
//! never delivers anything again: a Redis connection that lost bytes and went on would be
//! desynchronised, which is not a fault a network produces. A blackhole holds bytes (as
//! TCP would while retransmitting) and delivers them when healed; a reset tears the
//! connection down with an RST.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

const HOST: &str = "127.0.0.1";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const CHUNK: usize = 16 * 1024;
const QUEUE: usize = 64;
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// What a proxy does with the traffic of its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything at once.
    Pass,
    /// Hold every reply for this long after it arrived from the server; requests pass.
    Latency(Duration),
    /// Accept connections but forward nothing, in either direction, until healed; held
    /// bytes are delivered in order afterwards.
    Blackhole,
    /// Reset every open connection (RST) at the switch; on connections opened meanwhile,
    /// requests still reach the server but the first reply resets the connection, so the
    /// client cannot tell whether its command ran.
    Reset,
    /// Reset every open connection and every new one as soon as it is accepted.
    Refuse,
    /// Accept connections and take every byte, but deliver nothing either way and never
    /// close or reset: a peer that vanished behind a firewall dropping its packets. A
    /// connection that saw this mode stays so after the mode changes back; only
    /// connections opened afterwards pass, as with TCP, where the stuck connection lasts
    /// until one side gives up on it.
    Swallow,
}

impl Mode {
    fn aborts(self) -> bool {
        matches!(self, Mode::Reset | Mode::Refuse)
    }
}

/// A handle that switches one proxy's mode; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct ProxyControl {
    mode: Arc<watch::Sender<Mode>>,
}

impl ProxyControl {
    /// Switches the proxy to `mode`, for open and new connections alike.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }
}

/// One fault proxy in front of one server; its tasks end on [`Proxy::shutdown`] or drop.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    control: ProxyControl,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    live: Arc<AtomicUsize>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port that forwards to `127.0.0.1:upstream`, in
    /// [`Mode::Pass`]. Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// The I/O error when no loopback port can be bound.
    pub async fn start(upstream: u16) -> io::Result<Self> {
        let listener = TcpListener::bind((HOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let (mode, _) = watch::channel(Mode::Pass);
        let control = ProxyControl {
            mode: Arc::new(mode),
        };
        let (stop, stopped) = watch::channel(false);
        let live = Arc::new(AtomicUsize::new(0));
        let accept = Acceptor {
            listener,
            upstream,
            mode: control.mode.subscribe(),
            live: live.clone(),
        };
        let task = Some(tokio::spawn(accept.run(stopped)));
        Ok(Self {
            port,
            control,
            stop,
            task,
            live,
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/` for this proxy.
    pub fn url(&self) -> String {
        format!("redis://{HOST}:{}/", self.port)
    }

    /// A handle to switch this proxy's mode.
    pub fn control(&self) -> ProxyControl {
        self.control.clone()
    }

    /// How many connection tasks are running now.
    pub fn live_connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Stops accepting, ends every connection task and waits for all of them; returns
    /// how many connection tasks are still alive afterwards (0 unless a task leaked).
    pub async fn shutdown(mut self) -> usize {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            // A panicked acceptor has dropped its connection set already.
            let _ = task.await;
        }
        self.live_connections()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            // Dropping the acceptor's future drops its `JoinSet`, which aborts the
            // connection tasks.
            task.abort();
        }
    }
}

/// The accept loop of one proxy, owner of every connection task.
struct Acceptor {
    listener: TcpListener,
    upstream: u16,
    mode: watch::Receiver<Mode>,
    live: Arc<AtomicUsize>,
}

impl Acceptor {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                // Only `shutdown` (or dropping the proxy) changes it.
                _ = stopped.changed() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((client, _)) => self.admit(client, &mut conns),
                    // Out of descriptors and the like: back off instead of spinning.
                    Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.shutdown().await;
    }

    fn admit(&self, client: TcpStream, conns: &mut JoinSet<()>) {
        // Every close by the proxy is abrupt (RST), as a crashed peer's would be.
        let _ = client.set_zero_linger();
        let _ = client.set_nodelay(true);
        if *self.mode.borrow() == Mode::Refuse {
            return;
        }
        let live = LiveGuard::new(self.live.clone());
        let (upstream, mode) = (self.upstream, self.mode.clone());
        conns.spawn(async move {
            let _live = live;
            serve(client, upstream, mode).await;
        });
    }
}

/// Counts one running connection task while alive.
struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(live: Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self(live)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which way bytes flow: requests go up to the server, replies come down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up,
    Down,
}

/// What a reader hands its writer: bytes stamped with their arrival; no bytes is the end
/// of the stream, which is held like data so that a blackhole also hides a close.
struct Item {
    arrived: Instant,
    bytes: Vec<u8>,
}

/// Runs one proxied connection until either side closes, the mode resets it, or the
/// proxy stops.
async fn serve(mut client: TcpStream, upstream: u16, mode: watch::Receiver<Mode>) {
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((HOST, upstream)));
    // A dead server: the client sees its connection reset, as with a refused connect.
    let Ok(Ok(mut server)) = connect.await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let swallowed = Arc::new(AtomicBool::new(*mode.borrow() == Mode::Swallow));
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let up = Route {
        mode: mode.clone(),
        dir: Dir::Up,
        swallowed: swallowed.clone(),
    };
    let down = Route {
        dir: Dir::Down,
        ..up.clone()
    };
    tokio::select! {
        () = direction(client_read, server_write, up) => {}
        () = direction(server_read, client_write, down) => {}
        () = watch_switches(mode, swallowed) => {}
    }
}

/// One direction of one connection: what decides whether its bytes pass.
#[derive(Clone)]
struct Route {
    mode: watch::Receiver<Mode>,
    dir: Dir,
    /// Set once the connection saw [`Mode::Swallow`]; it never delivers again.
    swallowed: Arc<AtomicBool>,
}

/// Forwards one direction; returns when the writer is done (the source closed, a write
/// failed, or the mode reset the connection).
async fn direction(from: impl AsyncReadExt + Unpin, to: impl AsyncWriteExt + Unpin, route: Route) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let reader = async {
        read_into(from, tx).await;
        // The writer decides when this direction ends, once it has delivered the rest.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = reader => {}
        _ = write_from(to, rx, route) => {}
    }
}

async fn read_into(mut from: impl AsyncReadExt + Unpin, tx: mpsc::Sender<Item>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        let item = Item {
            arrived: Instant::now(),
            bytes: buf[..n].to_vec(),
        };
        if tx.send(item).await.is_err() || n == 0 {
            return;
        }
    }
}

async fn write_from(
    mut to: impl AsyncWriteExt + Unpin,
    mut rx: mpsc::Receiver<Item>,
    mut route: Route,
) -> io::Result<()> {
    while let Some(item) = rx.recv().await {
        let pass = hold(&mut route, item.arrived).await?;
        if item.bytes.is_empty() {
            if !pass && route.dir == Dir::Down {
                // A swallowed connection never tells the client the server closed it.
                std::future::pending::<()>().await;
            }
            break;
        }
        if pass {
            to.write_all(&item.bytes).await?;
        }
    }
    Ok(())
}

/// Waits until the mode lets a chunk that arrived at `arrived` through; `false` when the
/// connection swallows it.
async fn hold(route: &mut Route, arrived: Instant) -> io::Result<bool> {
    let gone = |_| io::Error::from(io::ErrorKind::BrokenPipe);
    loop {
        if route.swallowed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let current = *route.mode.borrow_and_update();
        match (current, route.dir) {
            (Mode::Pass, _) | (Mode::Latency(_) | Mode::Reset, Dir::Up) => return Ok(true),
            (Mode::Latency(delay), Dir::Down) => tokio::select! {
                () = tokio::time::sleep_until(arrived + delay) => return Ok(true),
                changed = route.mode.changed() => changed.map_err(gone)?,
            },
            (Mode::Blackhole, _) => route.mode.changed().await.map_err(gone)?,
            (Mode::Swallow, _) => route.swallowed.store(true, Ordering::SeqCst),
            (Mode::Reset | Mode::Refuse, _) => {
                return Err(io::Error::from(io::ErrorKind::ConnectionReset));
            }
        }
    }
}

/// Completes when the mode switches to one that resets open connections; marks the
/// connection swallowed when the mode switches to [`Mode::Swallow`], even if no byte is
/// on its way then.
async fn watch_switches(mut mode: watch::Receiver<Mode>, swallowed: Arc<AtomicBool>) {
    // A connection opened under `Reset` is not reset by the switch it was born after.
    mode.borrow_and_update();
    while mode.changed().await.is_ok() {
        let current = *mode.borrow_and_update();
        if current == Mode::Swallow {
            swallowed.store(true, Ordering::SeqCst);
        }
        if current.aborts() && !swallowed.load(Ordering::SeqCst) {
            return;
        }
    }
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
