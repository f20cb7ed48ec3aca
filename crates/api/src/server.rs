//! The accept loop (R16): every connection costs bounded time and memory, whatever a client
//! does. poem's own server sets no timer, and hyper's header timeout needs one and does not
//! run while a connection's protocol is being detected, so this loop is the project's own, on
//! hyper, serving poem's endpoint:
//!
//! - at most `max_connections` connections at once: at the cap the loop stops accepting until
//!   one ends, and new ones wait in the kernel's queue while the open ones are served;
//! - a request's head must arrive within `header_timeout` of its first byte (the first request
//!   of a connection: of the connection's start), else the connection is closed (HTTP/2,
//!   which sent no request: after its GOAWAY); the protocol's detection (HTTP/1.1, or HTTP/2
//!   with prior knowledge) is within that bound too;
//! - a request's body must arrive within `body_timeout` of its head, else 408 (`guard` answers
//!   it) and, on HTTP/1.1, the connection is closed; an HTTP/2 stream is reset;
//! - a connection with nothing to do for `idle_connection_timeout` is closed gracefully: a
//!   request being handled keeps it busy, and an answer being sent does while the client takes
//!   its pieces (`SentBody`), so a client that stops reading is idle;
//! - HTTP/1.1 heads are at most 32 KiB; HTTP/2 without TLS has at most 100 concurrent streams
//!   per connection (R15) and bounded header lists;
//! - on shutdown it stops accepting, lets the connections finish their requests (closing each
//!   once idle; one with no request in flight has the head's bound to start one), and gives up
//!   on the rest after `SHUTDOWN_GRACE`.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use poem::endpoint::{DynEndpoint, ToDynEndpoint};
use poem::http::header;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{EndpointExt, IntoEndpoint, Request, RequestParts, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// Concurrent HTTP/2 streams per connection (R15).
pub const MAX_STREAMS: u32 = 100;

/// The largest header list an HTTP/2 stream may send.
const MAX_HEADER_LIST: u32 = 16 * 1024;

/// HTTP/1.1's read buffer, and so the largest head (else 431): nginx's default bound (four
/// buffers of 8 KiB), which keeps a connection's half-sent head to about 36 KB of memory.
const MAX_HEAD: usize = 32 * 1024;

/// How long a shutdown waits for the connections' requests to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What every connection is bounded by (R16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_connection_timeout: Duration,
    pub max_connections: usize,
}

type Answer = hyper::Response<BoxBody<Bytes, io::Error>>;

/// The application every connection serves.
type App = Arc<dyn DynEndpoint<Output = Response>>;

/// Serves `app` on `listener` within `bounds` until `shutdown` resolves, then finishes the
/// requests in flight (at most `SHUTDOWN_GRACE`).
pub async fn serve<E>(
    listener: TcpListener,
    app: E,
    bounds: Bounds,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    E: IntoEndpoint,
    E::Endpoint: 'static,
{
    // Behind a pointer, like poem's own server: each request's future is then boxed where it
    // is made, and hyper moves a pointer, not the whole endpoint's future (moving that cost
    // recognition about 13% more instructions).
    let app: App = Arc::new(ToDynEndpoint(app.into_endpoint().map_to_response()));
    let local = listener.local_addr()?;
    let connections = Arc::new(Semaphore::new(bounds.max_connections));
    let (stop, stopping) = watch::channel(false);
    let refused = RefusedAccepts::default();
    tokio::pin!(shutdown);
    loop {
        // At the cap, nothing is accepted until a connection ends.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    refused.report(&error);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            local,
            peer,
            bounds,
        };
        let stopping = stopping.clone();
        tokio::spawn(async move {
            connection.serve(stream, stopping).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let all = u32::try_from(bounds.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace; closing them");
    }
    Ok(())
}

/// Logs refused accepts at most once a second, with how many more there were.
#[derive(Default)]
struct RefusedAccepts {
    last_second: AtomicU64,
    unlogged: AtomicU64,
}

impl RefusedAccepts {
    fn report(&self, error: &io::Error) {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if self.last_second.swap(second, Ordering::Relaxed) == second {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let also = self.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(%error, also_refused_since_the_last_line = also, "cannot accept a connection");
    }
}

/// One accepted connection.
struct Connection {
    app: App,
    local: SocketAddr,
    peer: SocketAddr,
    bounds: Bounds,
}

/// The HTTP/2 connection preface, by which a client with prior knowledge starts.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the connection's first bytes until they tell its protocol: HTTP/2 (they are the
/// preface) or HTTP/1.1. Returns the protocol and the bytes read, which the connection's reader
/// gives first; `None` when the connection closes first. (Reading, not peeking: a peek at a
/// partial preface returns at once for as long as it is queued.)
async fn detect(stream: &mut TcpStream) -> io::Result<Option<(bool, Bytes)>> {
    let mut read = Vec::with_capacity(PREFACE.len());
    let mut buffer = [0u8; PREFACE.len()];
    loop {
        let wanted = PREFACE.len() - read.len();
        let n = stream.read(&mut buffer[..wanted]).await?;
        if n == 0 {
            return Ok(None);
        }
        read.extend_from_slice(&buffer[..n]);
        if read[..] != PREFACE[..read.len()] {
            return Ok(Some((false, read.into())));
        }
        if read.len() == PREFACE.len() {
            return Ok(Some((true, read.into())));
        }
    }
}

impl Connection {
    async fn serve(self, mut stream: TcpStream, mut stopping: watch::Receiver<bool>) {
        let bounds = self.bounds;
        let accepted = Instant::now();
        // Detection is part of the first head's time, which runs from the connection's start.
        let detected = tokio::time::timeout(bounds.header_timeout, detect(&mut stream)).await;
        let Ok(Ok(Some((h2, first)))) = detected else {
            return;
        };
        let activity = Arc::new(Activity::new(!h2, accepted));
        let io = TokioIo::new(Watched {
            inner: stream,
            first,
            activity: activity.clone(),
        });
        let service = Service {
            app: self.app.clone(),
            local: self.local,
            remote: self.peer,
            bounds,
            activity: activity.clone(),
        };
        if h2 {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS)
                .max_header_list_size(MAX_HEADER_LIST)
                .max_pending_accept_reset_streams(Some(20))
                .keep_alive_interval(Some(Duration::from_secs(20)))
                .keep_alive_timeout(Duration::from_secs(20));
            let connection = builder.serve_connection(io, service);
            drive(connection, activity, bounds, &mut stopping).await;
        } else {
            let mut builder = hyper::server::conn::http1::Builder::new();
            // The head timer is `Activity`'s, which tells an idle connection from a half-sent
            // head; hyper's own would close idle keep-alive connections at the head's bound.
            builder
                .keep_alive(true)
                .header_read_timeout(None)
                .max_buf_size(MAX_HEAD);
            let connection = builder.serve_connection(io, service);
            drive(connection, activity, bounds, &mut stopping).await;
        }
    }
}

/// A connection that can be asked to finish its requests and close.
trait Graceful: Future {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl Graceful for hyper::server::conn::http1::Connection<TokioIo<Watched>, Service> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self);
    }
}

impl Graceful for hyper::server::conn::http2::Connection<TokioIo<Watched>, Service, TokioExecutor> {
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

/// Runs `connection` until it ends, a head is late (closed at once), it is idle for too long
/// or the server stops (closed gracefully: its requests finish first).
async fn drive<C: Graceful>(
    connection: C,
    activity: Arc<Activity>,
    bounds: Bounds,
    stopping: &mut watch::Receiver<bool>,
) {
    tokio::pin!(connection);
    let stop = async {
        if !*stopping.borrow() {
            let _ = stopping.changed().await;
        }
    };
    tokio::select! {
        _ = connection.as_mut() => return,
        deadline = activity.watch(bounds) => match deadline {
            // HTTP/1.1: a late head is closed at once. HTTP/2: its GOAWAY first, which tells a
            // client that opened a connection ahead of its requests that none was taken.
            Deadline::Head if activity.http1 => return,
            Deadline::Head | Deadline::Idle => {}
        },
        () = stop => {}
    }
    connection.as_mut().graceful_shutdown();
    // Closing: the requests in flight finish; with none in flight, a connection has the head's
    // bound (from now, or from its head's first byte) to start one, so one slow client does not
    // hold a shutdown for the whole grace. Past the grace, it is dropped with whatever is left.
    activity.finishing();
    let finishing = Bounds {
        idle_connection_timeout: bounds.header_timeout,
        ..bounds
    };
    tokio::select! {
        _ = connection => {}
        _ = activity.watch(finishing) => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
}

/// Which bound a connection ran out of.
enum Deadline {
    /// A head that did not arrive in time: closed at once.
    Head,
    /// No request for the idle timeout: closed gracefully.
    Idle,
}

/// What a connection is doing, for its timers: requests in flight, and since when it has had
/// nothing to do or a head has been arriving. Written with plain atomics on every request and
/// never signalled: the watcher wakes on its own often enough to see every deadline on time
/// (see `watch`), so a request costs no wake-up of the connection's task.
struct Activity {
    /// HTTP/1.1: bytes arriving on an idle connection begin a head. (HTTP/2's frames between
    /// requests begin nothing: its idle connection is bounded by the idle timeout.)
    http1: bool,
    /// What `since` counts from.
    origin: Instant,
    /// Requests whose handler is running: no bound applies (a login may wait its turn).
    in_flight: AtomicUsize,
    /// Answers being sent: each must make progress within the idle timeout (a client that
    /// stops reading one is idle, not busy).
    sending: AtomicUsize,
    /// One word, so that the two are always read together: the nanoseconds from `origin` since
    /// when the connection has had nothing to do (or its head has been arriving), shifted left
    /// by one, and in the lowest bit whether a head is on its way (bytes arrived while no
    /// request was in flight).
    since: AtomicU64,
}

/// The lowest bit of `Activity::since`: a head is on its way.
const HEAD: u64 = 1;

impl Activity {
    fn new(http1: bool, accepted: Instant) -> Self {
        Self {
            http1,
            origin: accepted,
            in_flight: AtomicUsize::new(0),
            sending: AtomicUsize::new(0),
            // The first head is expected from the connection's start.
            since: AtomicU64::new(HEAD),
        }
    }

    /// `now`, as `since` holds it, with the head bit clear.
    fn stamp(&self, now: Instant) -> u64 {
        let nanos = u64::try_from(now.saturating_duration_since(self.origin).as_nanos());
        nanos.unwrap_or(u64::MAX >> 1) << 1
    }

    /// Whether a request is being handled or answered.
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0 || self.sending.load(Ordering::SeqCst) > 0
    }

    /// Bytes arrived: on a connection with nothing in flight, a head has begun.
    fn bytes_arrived(&self) {
        if !self.http1 || self.busy() {
            return;
        }
        let since = self.since.load(Ordering::SeqCst);
        if since & HEAD == 0 {
            let head = self.stamp(Instant::now()) | HEAD;
            let _ = self
                .since
                .compare_exchange(since, head, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// The connection is closing: its idle time counts from now, unless an HTTP/1.1 head is on
    /// its way (its bound stands).
    fn finishing(&self) {
        let head_on_its_way = self.http1 && self.since.load(Ordering::SeqCst) & HEAD != 0;
        if !self.busy() && !head_on_its_way {
            self.since
                .store(self.stamp(Instant::now()), Ordering::SeqCst);
        }
    }

    /// A request was parsed: its head arrived whole.
    fn request_started(self: Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.since.fetch_and(!HEAD, Ordering::SeqCst);
        InFlight(self)
    }

    /// When the connection runs out of a bound as things stand, and which; `None` while a
    /// request is being handled. An answer being sent is due the idle timeout after its last
    /// progress. (The counts are read last: a request that started after `since` was read is
    /// seen there.)
    fn due(&self, bounds: Bounds) -> Option<(Instant, Deadline)> {
        let since = self.since.load(Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let sending = self.sending.load(Ordering::SeqCst) > 0;
        let at = self.origin + Duration::from_nanos(since >> 1);
        Some(if since & HEAD != 0 && !sending {
            (at + bounds.header_timeout, Deadline::Head)
        } else {
            (at + bounds.idle_connection_timeout, Deadline::Idle)
        })
    }

    /// Resolves when the connection runs out of a bound. Nothing wakes it but its timer: a
    /// deadline only moves later except when a head begins (idle -> head) or a request ends
    /// (in flight -> idle), and neither can fall due sooner than the shorter bound after the
    /// watcher last looked; so it looks again at most that long after, and at each deadline.
    async fn watch(&self, bounds: Bounds) -> Deadline {
        let step = bounds.header_timeout.min(bounds.idle_connection_timeout);
        loop {
            let now = Instant::now();
            let next = match self.due(bounds) {
                Some((at, deadline)) if at <= now => return deadline,
                Some((at, _)) => at.min(now + step),
                None => now + step,
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

/// A request in flight; when it ends, the connection is idle from then.
struct InFlight(Arc<Activity>);

impl InFlight {
    /// The handler answered: the answer is being sent, which `Sending` tracks until its body
    /// ends or is dropped.
    fn answered(self) -> Sending {
        let activity = self.0.clone();
        activity.sending.fetch_add(1, Ordering::SeqCst);
        drop(self);
        Sending(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.idle_now();
    }
}

/// An answer being sent.
struct Sending(Arc<Activity>);

impl Sending {
    /// The client took what it was sent and is asked to take more: the connection is not
    /// idle.
    fn progressed(&self) {
        self.0
            .since
            .store(self.0.stamp(Instant::now()), Ordering::SeqCst);
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.sending.fetch_sub(1, Ordering::SeqCst);
        self.0.idle_now();
    }
}

impl Activity {
    /// Once nothing is handled or sent, the connection is idle from now, unless the next
    /// head's bytes came in between: its bound stands.
    fn idle_now(&self) {
        if self.busy() {
            return;
        }
        let idle = self.stamp(Instant::now());
        let _ = self
            .since
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |since| {
                (since & HEAD == 0).then_some(idle)
            });
    }
}

/// The connection's socket, giving first the bytes read to detect its protocol, and telling
/// its `Activity` when bytes arrive.
struct Watched {
    inner: TcpStream,
    first: Bytes,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.first.is_empty() {
            let n = self.first.len().min(buf.remaining());
            let given = self.first.split_to(n);
            buf.put_slice(&given);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What answers a connection's requests.
#[derive(Clone)]
struct Service {
    app: App,
    local: SocketAddr,
    remote: SocketAddr,
    bounds: Bounds,
    activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let Service {
            app,
            local,
            remote,
            bounds,
            activity,
        } = self.clone();
        Box::pin(async move { Ok(answer(app, request, local, remote, bounds, activity).await) })
    }
}

/// One request: poem's request with the connection's addresses and a body that must arrive
/// within the body timeout, and poem's answer. A body that was late closes an HTTP/1.1
/// connection (the answer, 408, is the guard's).
async fn answer(
    app: App,
    request: hyper::Request<Incoming>,
    local: SocketAddr,
    remote: SocketAddr,
    bounds: Bounds,
    activity: Arc<Activity>,
) -> Answer {
    let in_flight = activity.request_started();
    let (parts, incoming) = request.into_parts();
    let http1 = parts.version < poem::http::Version::HTTP_2;
    let mut late = None;
    let body = if incoming.is_end_stream() {
        poem::Body::empty()
    } else {
        let flag = late.insert(Arc::new(AtomicBool::new(false)));
        poem::Body::from(BoxBody::new(TimedBody {
            inner: incoming,
            deadline: Box::pin(tokio::time::sleep(bounds.body_timeout)),
            late: flag.clone(),
        }))
    };
    let parts = RequestParts::from((
        parts,
        LocalAddr(local.into()),
        RemoteAddr(remote.into()),
        poem::http::uri::Scheme::HTTP,
    ));
    let mut response = DynEndpoint::call(&*app, Request::from_parts(parts, body))
        .await
        .unwrap_or_else(poem::Error::into_response);
    if http1 && late.is_some_and(|late| late.load(Ordering::Acquire)) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    let (parts, body) = Answer::from(response).into_parts();
    let body = BoxBody::new(SentBody {
        inner: body,
        rest: Bytes::new(),
        sending: in_flight.answered(),
    });
    Answer::from_parts(parts, body)
}

/// The most of an answer handed to hyper at a time: hyper asks for more only once the client
/// has taken what it had (HTTP/2: once the stream has window again; HTTP/1.1: once the socket
/// takes it), so each piece asked for is the client's progress.
const PIECE: usize = 16 * 1024;

/// An answer's body, in pieces of at most `PIECE` bytes, telling the connection's `Activity`
/// of each while it is being sent. (A piece is a slice of the answer's bytes, not a copy.)
struct SentBody {
    inner: BoxBody<Bytes, io::Error>,
    rest: Bytes,
    sending: Sending,
}

impl SentBody {
    fn piece(&mut self) -> Frame<Bytes> {
        let n = self.rest.len().min(PIECE);
        Frame::data(self.rest.split_to(n))
    }
}

impl HttpBody for SentBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.sending.progressed();
        if !self.rest.is_empty() {
            return Poll::Ready(Some(Ok(self.piece())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) if data.len() > PIECE => {
                    self.rest = data;
                    Poll::Ready(Some(Ok(self.piece())))
                }
                Ok(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            polled => polled,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + rest);
        }
        hint.set_lower(hint.lower() + rest);
        hint
    }
}

/// A request body that fails with `TimedOut` once its deadline passes before it ends.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    late: Arc<AtomicBool>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let timed_out =
            || io::Error::new(io::ErrorKind::TimedOut, "the body did not arrive in time");
        if self.late.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(timed_out())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|frame| frame.map_err(io::Error::other))),
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.late.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(timed_out())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The most connections a process serves when `WEBSESSIONS_MAX_CONNECTIONS` is unset.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Files a process keeps open besides its connections and database connections (its
/// binary's, logs, the listener, the runtime's), with room to spare.
const OTHER_FILES: u64 = 64;

/// R16: raises the open-file limit to its hard limit and returns the connection cap it
/// allows: `configured`, else `DEFAULT_MAX_CONNECTIONS` or, where the limit allows fewer, the
/// limit less the database connections the process may open and `OTHER_FILES`. A configured
/// cap beyond what the limit allows is refused with the most it allows.
pub fn connection_cap(
    configured: Option<usize>,
    database_connections: usize,
) -> Result<usize, usize> {
    let limit = raise_open_file_limit();
    let allowed = usize::try_from(
        limit
            .saturating_sub(database_connections as u64)
            .saturating_sub(OTHER_FILES),
    )
    .unwrap_or(usize::MAX)
    .max(1);
    match configured {
        Some(cap) if cap > allowed => Err(allowed),
        Some(cap) => Ok(cap),
        None => {
            let cap = DEFAULT_MAX_CONNECTIONS.min(allowed);
            if cap < DEFAULT_MAX_CONNECTIONS {
                tracing::info!(
                    open_file_limit = limit,
                    max_connections = cap,
                    "the open-file limit allows fewer connections than the default"
                );
            }
            Ok(cap)
        }
    }
}

/// Raises the soft open-file limit to the hard one; the limit now in force.
fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let now = if limit.current != limit.maximum && setrlimit(Resource::Nofile, raised).is_ok() {
        limit.maximum
    } else {
        limit.current
    };
    now.unwrap_or(u64::MAX)
}
