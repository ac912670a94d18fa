//! In-process backends on `127.0.0.1:0` (or a fixed address when a test
//! needs one): [`Backend`] echoes, greets with its name, answers after the
//! client's EOF or half-closes itself, and records its peers and what it
//! read. They run on one shared tokio runtime and stop when dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};

use super::loopback;

/// The runtime every in-process backend runs on, shared by all tests.
pub(super) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the backends' runtime starts")
    })
}

/// What a backend does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// Echo every byte until EOF, then close.
    Echo,
    /// Write `NAME\n` at once, then echo.
    Named(String),
    /// Read to EOF, then reply `received N bytes\n` and close: proves a
    /// client's half-close was passed on and the way back stayed open.
    ReplyAfterEof,
    /// Write the greeting, shut the write side, then keep reading and
    /// record what arrives: a backend-side half-close.
    GreetThenHalfClose(String),
    /// Record every byte until EOF, answer `ok\n`, close: what a backend
    /// receives, exactly (a PROXY protocol header included).
    Record,
}

/// An in-process backend on loopback. Stops (listener and connections)
/// when dropped.
pub struct Backend {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    received: Arc<Mutex<Vec<u8>>>,
    task: JoinHandle<()>,
}

impl Backend {
    /// Echoes each connection's bytes back until EOF.
    pub fn echo() -> Backend {
        Backend::start(any_port(), Behaviour::Echo).expect("bind a backend")
    }

    /// Records every byte each connection sends until EOF (see
    /// [`Backend::received`]), answers `ok\n` and closes.
    pub fn recording() -> Backend {
        Backend::start(any_port(), Behaviour::Record).expect("bind a backend")
    }

    /// Greets each connection with `name\n`, then echoes.
    pub fn named(name: &str) -> Backend {
        Backend::start(any_port(), Behaviour::Named(name.to_string())).expect("bind a backend")
    }

    /// One backend greeting with each of `names`, in order.
    pub fn named_each(names: &[&str]) -> Vec<Backend> {
        names.iter().map(|name| Backend::named(name)).collect()
    }

    /// A named backend on a fixed address (for the seed's ports, or to
    /// bring a refused address to life).
    pub fn named_on(addr: SocketAddr, name: &str) -> io::Result<Backend> {
        Backend::start(addr, Behaviour::Named(name.to_string()))
    }

    /// Replies `received N bytes\n` after the client's EOF.
    pub fn reply_after_eof() -> Backend {
        Backend::start(any_port(), Behaviour::ReplyAfterEof).expect("bind a backend")
    }

    /// Sends `greeting`, shuts its write side, records what it reads.
    pub fn greet_then_half_close(greeting: &str) -> Backend {
        Backend::start(
            any_port(),
            Behaviour::GreetThenHalfClose(greeting.to_string()),
        )
        .expect("bind a backend")
    }

    fn start(addr: SocketAddr, behaviour: Behaviour) -> io::Result<Backend> {
        let listener = runtime().block_on(TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let peers = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Mutex::new(Vec::new()));
        let task = runtime().spawn(serve(
            listener,
            behaviour,
            Arc::clone(&peers),
            Arc::clone(&received),
        ));
        Ok(Backend {
            addr,
            peers,
            received,
            task,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has accepted.
    pub fn accepts(&self) -> usize {
        self.peers().len()
    }

    /// The peer address of every connection it accepted, in order.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What a `recording` or `greet_then_half_close` backend has read so
    /// far, every connection's bytes one after the other.
    pub fn received(&self) -> Vec<u8> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Aborting drops the listener and the JoinSet of connections, but
        // later, on a runtime thread. Wait until the task is gone, so the
        // address is free once the drop returns: the next test to bind a
        // fixed port (the seed's 8080-8084) must not find it still taken.
        self.task.abort();
        let _ = runtime().block_on(&mut self.task);
    }
}

fn any_port() -> SocketAddr {
    loopback(0)
}

async fn serve(
    listener: TcpListener,
    behaviour: Behaviour,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    received: Arc<Mutex<Vec<u8>>>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                peers.lock().unwrap_or_else(|p| p.into_inner()).push(peer);
                connections.spawn(handle(stream, behaviour.clone(), Arc::clone(&received)));
            }
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(mut stream: TcpStream, behaviour: Behaviour, received: Arc<Mutex<Vec<u8>>>) {
    let _ = stream.set_nodelay(true);
    let _ = match behaviour {
        Behaviour::Echo => echo(&mut stream).await,
        Behaviour::Named(name) => match stream.write_all(format!("{name}\n").as_bytes()).await {
            Ok(()) => echo(&mut stream).await,
            Err(e) => Err(e),
        },
        Behaviour::ReplyAfterEof => reply_after_eof(&mut stream).await,
        Behaviour::GreetThenHalfClose(greeting) => {
            greet_then_half_close(&mut stream, &greeting, &received).await
        }
        Behaviour::Record => record(&mut stream, &received).await,
    };
}

async fn echo(stream: &mut TcpStream) -> io::Result<()> {
    let (mut reader, mut writer) = stream.split();
    tokio::io::copy(&mut reader, &mut writer).await?;
    writer.shutdown().await
}

async fn record(stream: &mut TcpStream, received: &Mutex<Vec<u8>>) -> io::Result<()> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await?;
    received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend_from_slice(&all);
    stream.write_all(b"ok\n").await?;
    stream.shutdown().await
}

async fn reply_after_eof(stream: &mut TcpStream) -> io::Result<()> {
    let mut sink = Vec::new();
    let n = stream.read_to_end(&mut sink).await?;
    stream
        .write_all(format!("received {n} bytes\n").as_bytes())
        .await?;
    stream.shutdown().await
}

async fn greet_then_half_close(
    stream: &mut TcpStream,
    greeting: &str,
    received: &Mutex<Vec<u8>>,
) -> io::Result<()> {
    stream.write_all(greeting.as_bytes()).await?;
    stream.shutdown().await?;
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(&buf[..n]);
    }
}
