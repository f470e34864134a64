//! The proxy's modes, against a plain echo server.

use super::*;

const QUIET: Duration = Duration::from_millis(150);
const SOON: Duration = Duration::from_secs(5);

/// An upstream that echoes every byte, and reports what it received.
async fn echo() -> (u16, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind((HOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = stream.read(&mut buf).await {
                    let _ = tx.send(buf[..n].to_vec());
                    if stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, rx)
}

async fn connect(proxy: &Proxy) -> TcpStream {
    TcpStream::connect((HOST, proxy.port())).await.unwrap()
}

/// Reads exactly `n` bytes; `None` when they did not come within `limit`.
async fn read(stream: &mut TcpStream, n: usize, limit: Duration) -> Option<io::Result<Vec<u8>>> {
    let mut buf = vec![0; n];
    let read = tokio::time::timeout(limit, stream.read_exact(&mut buf)).await;
    read.ok().map(|r| r.map(|_| buf))
}

async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    let back = read(stream, bytes.len(), SOON).await.expect("in time");
    assert_eq!(back.unwrap(), bytes);
}

fn assert_reset(result: Option<io::Result<Vec<u8>>>) {
    let err = result.expect("an answer in time").expect_err("a reset");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test]
async fn pass_forwards_both_ways() {
    let (port, mut seen) = echo().await;
    let proxy = Proxy::start(port).await.unwrap();
    let mut client = connect(&proxy).await;
    round_trip(&mut client, b"ping").await;
    assert_eq!(seen.recv().await.unwrap(), b"ping");
    assert_eq!(proxy.live_connections(), 1);
    assert_eq!(proxy.shutdown().await, 0);
}

#[tokio::test]
async fn latency_and_blackhole_hold_bytes_until_healed() {
    let (port, mut seen) = echo().await;
    let proxy = Proxy::start(port).await.unwrap();
    let control = proxy.control();
    let mut client = connect(&proxy).await;
    control.set(Mode::Latency(Duration::from_secs(3_600)));
    client.write_all(b"slow").await.unwrap();
    assert_eq!(seen.recv().await.unwrap(), b"slow", "requests pass");
    assert!(read(&mut client, 4, QUIET).await.is_none(), "replies wait");
    control.set(Mode::Blackhole);
    assert_eq!(control.mode(), Mode::Blackhole);
    client.write_all(b"hole").await.unwrap();
    let held = tokio::time::timeout(QUIET, seen.recv()).await;
    assert!(held.is_err(), "requests are held too");
    control.set(Mode::Pass);
    let healed = read(&mut client, 8, SOON).await.expect("in time");
    assert_eq!(healed.unwrap(), b"slowhole", "in order, nothing lost");
    assert_eq!(proxy.shutdown().await, 0);
}

#[tokio::test]
async fn reset_tears_down_open_connections_and_loses_replies() {
    let (port, mut seen) = echo().await;
    let proxy = Proxy::start(port).await.unwrap();
    let mut open = connect(&proxy).await;
    round_trip(&mut open, b"a").await;
    assert_eq!(seen.recv().await.unwrap(), b"a");
    proxy.control().set(Mode::Reset);
    assert_reset(read(&mut open, 1, SOON).await);
    let mut fresh = connect(&proxy).await;
    fresh.write_all(b"lands").await.unwrap();
    assert_eq!(seen.recv().await.unwrap(), b"lands", "the request ran");
    assert_reset(read(&mut fresh, 5, SOON).await);
    assert_eq!(proxy.shutdown().await, 0);
}

#[tokio::test]
async fn refuse_resets_every_connection_at_once() {
    let (port, mut seen) = echo().await;
    let proxy = Proxy::start(port).await.unwrap();
    let mut open = connect(&proxy).await;
    round_trip(&mut open, b"a").await;
    proxy.control().set(Mode::Refuse);
    assert_reset(read(&mut open, 1, SOON).await);
    let mut fresh = connect(&proxy).await;
    let _ = fresh.write_all(b"never").await;
    assert_reset(read(&mut fresh, 1, SOON).await);
    assert_eq!(seen.recv().await.unwrap(), b"a");
    assert!(seen.try_recv().is_err(), "nothing else reached the server");
    assert_eq!(proxy.shutdown().await, 0);
}

#[tokio::test]
async fn a_dead_upstream_resets_the_client() {
    let free = TcpListener::bind((HOST, 0)).await.unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let proxy = Proxy::start(port).await.unwrap();
    let mut client = connect(&proxy).await;
    assert_reset(read(&mut client, 1, SOON).await);
    assert_eq!(proxy.shutdown().await, 0);
}

#[tokio::test]
async fn shutdown_ends_every_connection_task() {
    let (port, _seen) = echo().await;
    let proxy = Proxy::start(port).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = connect(&proxy).await;
        round_trip(&mut client, b"x").await;
        clients.push(client);
    }
    proxy.control().set(Mode::Blackhole);
    clients[0].write_all(b"held").await.unwrap();
    assert_eq!(proxy.live_connections(), 3);
    assert_eq!(proxy.shutdown().await, 0);
    for client in &mut clients {
        assert_reset(read(client, 1, SOON).await);
    }
}

#[tokio::test]
async fn swallow_silences_open_connections_for_good_and_heals_new_ones() {
    let (port, mut seen) = echo().await;
    let proxy = Proxy::start(port).await.unwrap();
    let control = proxy.control();
    let mut idle = connect(&proxy).await;
    let mut busy = connect(&proxy).await;
    round_trip(&mut busy, b"warm").await;
    assert_eq!(seen.recv().await.unwrap(), b"warm");
    control.set(Mode::Swallow);
    busy.write_all(b"lost").await.unwrap();
    assert!(
        read(&mut busy, 4, QUIET).await.is_none(),
        "no reply, no reset"
    );
    assert!(
        tokio::time::timeout(QUIET, seen.recv()).await.is_err(),
        "nothing reaches the server"
    );
    control.set(Mode::Pass);
    for stream in [&mut idle, &mut busy] {
        stream.write_all(b"dead").await.unwrap();
        assert!(
            read(stream, 4, QUIET).await.is_none(),
            "stays silent after the heal"
        );
    }
    let mut fresh = connect(&proxy).await;
    round_trip(&mut fresh, b"new!").await;
    assert_eq!(proxy.shutdown().await, 0);
}
