//! `balancer backend`: the demo HTTP/1.1 backend (the seed's `runserver.py`).
//!
//! It owns everything one demo backend does once its listener is bound:
//! the accept loop, one hyper connection per client with graceful shutdown,
//! and the answers of SPEC 6: `GET /health`, files under `--dir`, a short
//! text naming the backend otherwise, `X-Backend` on every answer, `403` for
//! clients outside `--allow-from`, and `--delay` before each answer.
//!
//! Request paths never reach the filesystem unchecked: a path is split into
//! segments, each is percent-decoded, and any `..`, `.`, `/`, `\` or NUL in a
//! decoded segment answers `404` before anything is opened. A path that
//! passes is joined to the canonical `--dir`, canonicalized again (so
//! symlinks are followed) and served only if the result still lies inside
//! `--dir` and is a regular file. A directory, or a path with no file behind
//! it, gets the text answer, as SPEC 6 says for any `PATH` that is not a
//! file. Someone who can swap symlinks inside `--dir` between the check and
//! the open could still race it; this is a demo server, and `--dir` is
//! trusted.

use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::net::accept::accept_loop;
use crate::net::http_server::{HttpServer, percent_decode};

/// What one demo backend answers and to whom; built by the CLI
/// (`balancer backend`) and by `balancer demo`, shared by every connection.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// The backend's name, sent in the `X-Backend` header and in text
    /// answers so a client can see which backend the balancer picked.
    pub name: String,
    /// Client networks that get answers; empty means everyone. Anyone else
    /// gets `403`, which is how the demo shows that backends only answer
    /// traffic that came through the balancer (its `source_address`).
    pub allow_from: Vec<ipnet::IpNet>,
    /// Directory whose regular files are served by path; `None` serves no
    /// files, only text answers.
    pub dir: Option<PathBuf>,
    /// Simulated latency: every answer waits this long before it is sent,
    /// so latency-aware algorithms have something to see.
    pub delay: Duration,
}

/// How long a client may take to send a request head before the connection
/// is closed, so idle or slow clients cannot hold connections forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Size of one chunk read from a served file.
const FILE_CHUNK: usize = 64 * 1024;

/// The body of every answer: a fixed text, or a file streamed in chunks.
type AnswerBody = Either<Full<Bytes>, FileBody>;

/// Serves HTTP/1.1 on an already-bound listener until `shutdown` is cancelled,
/// then finishes in-flight requests (hyper_util graceful) and returns.
///
/// Binding is the caller's job (the CLI binds `--listen`, tests bind
/// `127.0.0.1:0`), so this cannot fail: accept errors are logged and retried
/// after a pause. Once `shutdown` is cancelled the listener is closed
/// at once (new connects are refused), idle keep-alive connections are
/// closed, and requests already being answered finish first (including
/// their `delay`); callers that need a bound wrap this in a timeout.
pub async fn serve(
    listener: TcpListener,
    options: Arc<BackendOptions>,
    shutdown: CancellationToken,
) {
    let owner = format!("backend {}", options.name);
    let server = HttpServer::new(owner.as_str(), HEADER_READ_TIMEOUT);
    accept_loop(listener, &shutdown, &owner, |stream, peer| {
        // Headers and a streamed body go out as separate writes: without
        // this, Nagle and delayed ACKs hold the second one back for tens
        // of milliseconds.
        let _ = stream.set_nodelay(true);
        let client = peer.ip().to_canonical();
        let options = Arc::clone(&options);
        let service = service_fn(move |request| {
            let options = Arc::clone(&options);
            async move { Ok::<_, Infallible>(answer(request, client, &options).await) }
        });
        server.serve(stream, peer, service, ());
    })
    .await;
    server.shutdown(None).await;
}

/// Answers one request after the configured delay, and logs it.
async fn answer(
    request: Request<Incoming>,
    client: IpAddr,
    options: &BackendOptions,
) -> Response<AnswerBody> {
    tokio::time::sleep(options.delay).await;
    let path = request.uri().path();
    let response = route(request.method(), path, client, options).await;
    tracing::debug!(
        backend = %options.name,
        %client,
        path,
        status = response.status().as_u16(),
        "answered"
    );
    response
}

/// Picks the answer for a request: allow list first, then method, then path.
async fn route(
    method: &Method,
    path: &str,
    client: IpAddr,
    options: &BackendOptions,
) -> Response<AnswerBody> {
    let head_only = method == Method::HEAD;
    if !is_allowed(&options.allow_from, client) {
        return forbidden(client, options, head_only);
    }
    if method != Method::GET && !head_only {
        return method_not_allowed(options);
    }
    if path == "/health" {
        return text(StatusCode::OK, "ok\n".to_owned(), options, head_only);
    }
    let Some(relative) = safe_relative_path(path) else {
        return not_found(options, head_only);
    };
    let found = match &options.dir {
        Some(dir) => find_file(dir, &relative).await,
        None => Lookup::NoFile,
    };
    match found {
        Lookup::File(file) => serve_file(file, &relative, options, head_only),
        Lookup::NoFile => {
            let body = format!("hello from {}: you asked for {path}\n", options.name);
            text(StatusCode::OK, body, options, head_only)
        }
        Lookup::Outside => not_found(options, head_only),
    }
}

/// Whether `client` may be answered: everyone when the list is empty.
fn is_allowed(allow_from: &[ipnet::IpNet], client: IpAddr) -> bool {
    allow_from.is_empty() || allow_from.iter().any(|net| net.contains(&client))
}

/// The `403` for a client outside `allow_from`, naming who is allowed.
fn forbidden(client: IpAddr, options: &BackendOptions, head_only: bool) -> Response<AnswerBody> {
    let allowed = options
        .allow_from
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let body = format!(
        "403 forbidden: backend {} only answers traffic from the balancer ({allowed}); you are {client}\n",
        options.name
    );
    text(StatusCode::FORBIDDEN, body, options, head_only)
}

/// The `405` for any method other than GET and HEAD, with `Allow`.
fn method_not_allowed(options: &BackendOptions) -> Response<AnswerBody> {
    let body = format!(
        "405 method not allowed: backend {} answers GET and HEAD only\n",
        options.name
    );
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, body, options, false);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// The `404` for a path that is unsafe or leads outside `--dir`.
fn not_found(options: &BackendOptions, head_only: bool) -> Response<AnswerBody> {
    let body = format!(
        "404 not found: backend {} serves nothing at that path\n",
        options.name
    );
    text(StatusCode::NOT_FOUND, body, options, head_only)
}

/// A plain-text answer with `X-Backend` and `Content-Length`; for HEAD the
/// length is the one GET would send, and the body is left out.
fn text(
    status: StatusCode,
    body: String,
    options: &BackendOptions,
    head_only: bool,
) -> Response<AnswerBody> {
    let length = body.len() as u64;
    let body = if head_only {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    respond(
        status,
        "text/plain; charset=utf-8",
        length,
        Either::Left(Full::new(body)),
        options,
    )
}

/// Builds an answer with the headers every answer carries.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    length: u64,
    body: AnswerBody,
    options: &BackendOptions,
) -> Response<AnswerBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A name that is not a valid header value (a control character) is left
    // out of the header rather than failing the answer; the body still has it.
    if let Ok(name) = HeaderValue::from_str(&options.name) {
        headers.insert("x-backend", name);
    }
    response
}

// === Paths and files ===

/// Turns a request path into a path relative to `--dir`, or `None` when the
/// path could escape it or is malformed.
///
/// Each `/`-separated segment is percent-decoded on its own, so an encoded
/// slash (`%2f`) cannot join segments. A decoded segment that is `.` or
/// `..`, or that contains `/`, `\` or NUL, or is not UTF-8, rejects the
/// whole path. Empty segments (`//`, a trailing `/`) are skipped.
fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix('/')?;
    let mut relative = PathBuf::new();
    for raw in rest.split('/') {
        let segment = percent_decode(raw)?;
        if segment.is_empty() {
            continue;
        }
        if segment == "." || segment == ".." || segment.contains(['/', '\\', '\0']) {
            return None;
        }
        relative.push(segment);
    }
    Some(relative)
}

/// What a safe relative path names under `--dir`.
#[derive(Debug)]
enum Lookup {
    /// A regular file inside `--dir`, by its canonical path, with its length.
    File(FoundFile),
    /// Nothing, or something that is not a regular file (a directory): the
    /// text answer.
    NoFile,
    /// Something whose canonical path (after symlinks) lies outside `--dir`.
    Outside,
}

/// A regular file found inside `--dir`, opened and measured.
#[derive(Debug)]
struct FoundFile {
    file: tokio::fs::File,
    length: u64,
}

/// Looks `relative` up under `dir`, following symlinks, and opens it only if
/// its canonical path is inside the canonical `dir` and is a regular file.
async fn find_file(dir: &Path, relative: &Path) -> Lookup {
    let root = match tokio::fs::canonicalize(dir).await {
        Ok(root) => root,
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot read the backend's directory");
            return Lookup::NoFile;
        }
    };
    let Ok(target) = tokio::fs::canonicalize(root.join(relative)).await else {
        return Lookup::NoFile;
    };
    if !target.starts_with(&root) {
        return Lookup::Outside;
    }
    // Check the type before opening: opening a FIFO would block.
    match tokio::fs::metadata(&target).await {
        Ok(metadata) if metadata.is_file() => {}
        _ => return Lookup::NoFile,
    }
    let Ok(file) = tokio::fs::File::open(&target).await else {
        return Lookup::NoFile;
    };
    match file.metadata().await {
        Ok(metadata) if metadata.is_file() => Lookup::File(FoundFile {
            file,
            length: metadata.len(),
        }),
        _ => Lookup::NoFile,
    }
}

/// The `200` carrying a file, typed by the requested name's extension.
fn serve_file(
    found: FoundFile,
    requested: &Path,
    options: &BackendOptions,
    head_only: bool,
) -> Response<AnswerBody> {
    let body = if head_only {
        Either::Left(Full::new(Bytes::new()))
    } else {
        Either::Right(FileBody::new(found.file, found.length))
    };
    respond(
        StatusCode::OK,
        content_type(requested),
        found.length,
        body,
        options,
    )
}

/// The `Content-Type` for a file name, from a few common extensions.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

// === impl FileBody ===

/// A file streamed in chunks of [`FILE_CHUNK`] bytes, so serving a large
/// file never holds it in memory. It sends exactly the length announced in
/// `Content-Length`: a file that grows is cut there, and a file that
/// shrinks ends the body with an error (hyper then closes the connection).
#[derive(Debug)]
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buffer: BytesMut,
}

impl FileBody {
    fn new(file: tokio::fs::File, length: u64) -> Self {
        Self {
            file,
            remaining: length,
            buffer: BytesMut::new(),
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining).map_or(FILE_CHUNK, |left| left.min(FILE_CHUNK));
        this.buffer.resize(want, 0);
        let mut read = ReadBuf::new(&mut this.buffer);
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut read))?;
        let filled = read.filled().len();
        if filled == 0 {
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being served",
            ))));
        }
        this.remaining -= filled as u64;
        this.buffer.truncate(filled);
        Poll::Ready(Some(Ok(Frame::data(this.buffer.split().freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::time::Instant;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpSocket, TcpStream};

    /// Upper bound on any one exchange; a hang fails the test instead.
    const PATIENCE: Duration = Duration::from_secs(10);

    const SECRET: &[u8] = b"TOP SECRET: outside the served directory";

    /// A backend serving on 127.0.0.1:0; dropping it cancels `serve`.
    struct Running {
        addr: SocketAddr,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    async fn start(options: BackendOptions) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, Arc::new(options), shutdown.clone()));
        Running {
            addr,
            shutdown,
            task,
        }
    }

    fn named(name: &str) -> BackendOptions {
        BackendOptions {
            name: name.to_owned(),
            ..BackendOptions::default()
        }
    }

    /// One parsed HTTP/1.1 response, as bytes arrived on the socket.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }

        fn content_length(&self) -> usize {
            self.header("content-length").unwrap().parse().unwrap()
        }

        fn text(&self) -> &str {
            std::str::from_utf8(&self.body).unwrap()
        }
    }

    /// Reads a status line, headers and (unless `head_only`) exactly
    /// `Content-Length` bytes of body.
    async fn read_reply<R: AsyncBufReadExt + Unpin>(reader: &mut R, head_only: bool) -> Reply {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            let (key, value) = line.split_once(':').unwrap();
            headers.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if !head_only {
            reply.body = vec![0; reply.content_length()];
            reader.read_exact(&mut reply.body).await.unwrap();
        }
        reply
    }

    /// Sends one request with `Connection: close` on `stream`, reads the
    /// reply, and checks that nothing follows it before EOF, so the
    /// `Content-Length` is exact and HEAD really has no body.
    async fn exchange_on(stream: TcpStream, method: &str, path: &str) -> Reply {
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        let work = async {
            let mut reader = BufReader::new(stream);
            reader
                .get_mut()
                .write_all(request.as_bytes())
                .await
                .unwrap();
            let reply = read_reply(&mut reader, method == "HEAD").await;
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "bytes after the reply: {rest:?}");
            reply
        };
        tokio::time::timeout(PATIENCE, work).await.unwrap()
    }

    async fn exchange(addr: SocketAddr, method: &str, path: &str) -> Reply {
        exchange_on(TcpStream::connect(addr).await.unwrap(), method, path).await
    }

    async fn get(addr: SocketAddr, path: &str) -> Reply {
        exchange(addr, "GET", path).await
    }

    /// A served directory `site/` next to a `secret` file it must never
    /// serve.
    fn site_with_secret() -> (tempfile::TempDir, PathBuf) {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret"), SECRET).unwrap();
        let site = outer.path().join("site");
        std::fs::create_dir_all(site.join("a")).unwrap();
        std::fs::write(site.join("index.html"), b"<h1>hi</h1>\n").unwrap();
        (outer, site)
    }

    fn serving(site: &Path) -> BackendOptions {
        BackendOptions {
            dir: Some(site.to_owned()),
            ..named("b1")
        }
    }

    #[tokio::test]
    async fn health_answers_200_ok() {
        let backend = start(named("b1")).await;
        let reply = get(backend.addr, "/health").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "ok\n");
        assert_eq!(reply.header("x-backend"), Some("b1"));
    }

    #[tokio::test]
    async fn a_path_without_a_file_gets_a_text_naming_the_backend_and_the_path() {
        let backend = start(named("b7")).await;
        let reply = get(backend.addr, "/index.html?x=1").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello from b7: you asked for /index.html\n");
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }

    #[tokio::test]
    async fn every_answer_carries_x_backend_and_an_exact_content_length() {
        let (_outer, site) = site_with_secret();
        let open = start(serving(&site)).await;
        let closed = start(BackendOptions {
            allow_from: vec!["127.0.0.2/32".parse().unwrap()],
            ..named("b1")
        })
        .await;
        let replies = [
            get(open.addr, "/health").await,
            get(open.addr, "/index.html").await,
            get(open.addr, "/nothing/here").await,
            get(open.addr, "/../secret").await,
            exchange(open.addr, "POST", "/").await,
            get(closed.addr, "/health").await,
        ];
        let statuses: Vec<u16> = replies.iter().map(|reply| reply.status).collect();
        assert_eq!(statuses, [200, 200, 200, 404, 405, 403]);
        for reply in &replies {
            assert_eq!(reply.header("x-backend"), Some("b1"), "{reply:?}");
            assert_eq!(reply.content_length(), reply.body.len(), "{reply:?}");
        }
    }

    #[tokio::test]
    async fn a_client_outside_allow_from_gets_403_naming_who_is_allowed() {
        let backend = start(BackendOptions {
            allow_from: vec!["127.0.0.2/32".parse().unwrap()],
            ..named("b1")
        })
        .await;
        let reply = get(backend.addr, "/").await;
        assert_eq!(reply.status, 403);
        assert_eq!(
            reply.text(),
            "403 forbidden: backend b1 only answers traffic from the balancer (127.0.0.2/32); you are 127.0.0.1\n"
        );
    }

    #[tokio::test]
    async fn a_client_bound_to_an_allowed_address_gets_200() {
        let backend = start(BackendOptions {
            allow_from: vec!["127.0.0.2/32".parse().unwrap()],
            ..named("b1")
        })
        .await;
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let stream = socket.connect(backend.addr).await.unwrap();
        let reply = exchange_on(stream, "GET", "/x").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello from b1: you asked for /x\n");
    }

    #[test]
    fn an_ipv4_mapped_ipv6_client_counts_as_its_ipv4_address() {
        let allow = ["127.0.0.2/32".parse().unwrap()];
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped());
        assert!(is_allowed(&allow, mapped.to_canonical()));
        assert!(!is_allowed(&allow, IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert!(is_allowed(&[], IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[tokio::test]
    async fn a_file_under_dir_is_served_byte_exact_with_its_content_type() {
        let (_outer, site) = site_with_secret();
        // Larger than one chunk and not valid UTF-8, to check streaming.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(site.join("a").join("blob.PNG"), &data).unwrap();
        let backend = start(serving(&site)).await;

        let reply = get(backend.addr, "/a/blob.PNG").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("image/png"));
        assert!(reply.body == data, "served bytes differ from the file");

        let reply = get(backend.addr, "/index.html").await;
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(reply.body, b"<h1>hi</h1>\n");
    }

    #[tokio::test]
    async fn traversal_attempts_answer_404_and_never_leak_the_secret() {
        let (_outer, site) = site_with_secret();
        let backend = start(serving(&site)).await;
        for path in [
            "/../secret",
            "/a/../../secret",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/.%2e/secret",
            "/a/%2e%2e/%2e%2e/secret",
            "/..%2fsecret",
            "/%2e%2e%2fsecret",
            "/a%2f..%2f..%2fsecret",
            "/..%5csecret",
            "/secret%00",
            "/./index.html",
            "/%zz",
        ] {
            let reply = get(backend.addr, path).await;
            assert_eq!(reply.status, 404, "{path}");
            assert!(
                !reply.text().contains("TOP SECRET"),
                "{path} leaked the secret"
            );
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_symlink_inside_dir_pointing_outside_answers_404() {
        let (outer, site) = site_with_secret();
        std::os::unix::fs::symlink(outer.path().join("secret"), site.join("link")).unwrap();
        std::os::unix::fs::symlink(outer.path(), site.join("a").join("up")).unwrap();
        std::os::unix::fs::symlink(site.join("index.html"), site.join("inside")).unwrap();
        let backend = start(serving(&site)).await;

        for path in ["/link", "/a/up/secret"] {
            let reply = get(backend.addr, path).await;
            assert_eq!(reply.status, 404, "{path}");
            assert!(
                !reply.text().contains("TOP SECRET"),
                "{path} leaked the secret"
            );
        }
        let reply = get(backend.addr, "/inside").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, b"<h1>hi</h1>\n");
    }

    #[tokio::test]
    async fn a_directory_under_dir_gets_the_text_answer() {
        let (_outer, site) = site_with_secret();
        let backend = start(serving(&site)).await;
        let reply = get(backend.addr, "/a/").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "hello from b1: you asked for /a/\n");
    }

    #[tokio::test]
    async fn head_answers_the_get_headers_without_a_body() {
        let (_outer, site) = site_with_secret();
        let backend = start(serving(&site)).await;
        // `exchange` reads to EOF after the head, so any body would show.
        let reply = exchange(backend.addr, "HEAD", "/index.html").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_length(), b"<h1>hi</h1>\n".len());
        assert_eq!(reply.header("x-backend"), Some("b1"));
        let reply = exchange(backend.addr, "HEAD", "/health").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_length(), 3);
    }

    #[tokio::test]
    async fn post_answers_405_with_an_allow_header() {
        let backend = start(named("b1")).await;
        let reply = exchange(backend.addr, "POST", "/health").await;
        assert_eq!(reply.status, 405);
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    }

    #[tokio::test]
    async fn two_requests_are_answered_on_one_keep_alive_connection() {
        let backend = start(named("b1")).await;
        let work = async {
            let mut reader = BufReader::new(TcpStream::connect(backend.addr).await.unwrap());
            for path in ["/one", "/two"] {
                let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
                reader
                    .get_mut()
                    .write_all(request.as_bytes())
                    .await
                    .unwrap();
                let reply = read_reply(&mut reader, false).await;
                assert_eq!(
                    reply.text(),
                    format!("hello from b1: you asked for {path}\n")
                );
            }
        };
        tokio::time::timeout(PATIENCE, work).await.unwrap();
    }

    #[tokio::test]
    async fn cancelling_shutdown_closes_idle_connections_and_serve_returns() {
        let mut backend = start(named("b1")).await;
        let mut reader = BufReader::new(TcpStream::connect(backend.addr).await.unwrap());
        let request = "GET /health HTTP/1.1\r\nHost: test\r\n\r\n";
        reader
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let reply = tokio::time::timeout(PATIENCE, read_reply(&mut reader, false))
            .await
            .unwrap();
        assert_eq!(reply.status, 200);

        backend.shutdown.cancel();
        tokio::time::timeout(PATIENCE, &mut backend.task)
            .await
            .unwrap()
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "the idle connection stays open");
        assert!(TcpStream::connect(backend.addr).await.is_err());
    }

    #[tokio::test]
    async fn each_answer_waits_at_least_the_delay() {
        let delay = Duration::from_millis(200);
        let backend = start(BackendOptions {
            delay,
            ..named("b1")
        })
        .await;
        let started = Instant::now();
        let reply = get(backend.addr, "/health").await;
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() >= delay);
    }

    #[test]
    fn safe_relative_path_keeps_plain_segments_and_decodes_escapes() {
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
        assert_eq!(
            safe_relative_path("/a//b%20c/"),
            Some(Path::new("a").join("b c"))
        );
        assert_eq!(safe_relative_path("/..."), Some(PathBuf::from("...")));
    }

    #[test]
    fn safe_relative_path_rejects_anything_that_could_leave_the_directory() {
        for path in [
            "", "*", "/..", "/.", "/a/..", "/%2e%2E", "/a%2fb", "/a%2Fb", "/a\\b", "/a%5cb",
            "/a%00", "/%", "/%2", "/%g0", "/%ff",
        ] {
            assert_eq!(safe_relative_path(path), None, "{path}");
        }
    }

    #[test]
    fn content_type_is_guessed_from_a_few_extensions() {
        assert_eq!(content_type(Path::new("x.json")), "application/json");
        assert_eq!(content_type(Path::new("x.SVG")), "image/svg+xml");
        assert_eq!(content_type(Path::new("x.css")), "text/css; charset=utf-8");
        assert_eq!(content_type(Path::new("x")), "application/octet-stream");
        assert_eq!(content_type(Path::new("x.exe")), "application/octet-stream");
    }
}
