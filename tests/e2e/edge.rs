//! The edge's bounds (R16) from outside, with short timeouts (a head 1 s, a body 1 s, an idle
//! connection 2 s): half-sent heads, heads sent a byte at a time, stalled bodies over HTTP/1.1
//! and HTTP/2, idle and silent connections, the connection cap, and the open-file limit. No
//! test asserts a speed: each asserts what happens by a bound with room to spare.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use websessions_tests::Backend;

use crate::contract::SendChecked;
use crate::server::Server;
use crate::support::{PASSWORD, api_login};

websessions_tests::on! {
    sqlite: [
        r16_hundreds_of_half_sent_heads_stop_nobody_and_are_closed_at_the_header_timeout,
        r16_a_stalled_body_is_answered_408_and_its_connection_closed,
        r16_a_stalled_http2_stream_is_answered_408_while_its_connection_serves_others,
        r16_an_idle_connection_lasts_the_idle_timeout_and_a_silent_one_the_header_timeout,
        r16_a_head_begun_on_a_kept_alive_connection_has_the_header_timeout_from_its_first_byte,
        r16_at_the_connection_cap_a_new_connection_waits_until_one_ends,
        r16_the_bytes_read_to_tell_the_protocol_are_not_lost,
        r16_a_shutdown_is_not_held_by_a_half_sent_head,
        r16_unread_answers_over_http2_share_the_document_rather_than_copy_it,
        r16_an_answer_read_slowly_over_http2_is_not_cut_and_an_unread_one_is_bounded,
        r16_a_head_is_at_most_32_kib,
    ];
}

const SHORT: [(&str, &str); 3] = [
    ("WEBSESSIONS_HEADER_TIMEOUT", "1s"),
    ("WEBSESSIONS_BODY_TIMEOUT", "1s"),
    ("WEBSESSIONS_IDLE_CONNECTION_TIMEOUT", "2s"),
];

/// How long after a bound the server may take to act on it, on a busy machine.
const SLACK: Duration = Duration::from_secs(3);

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap()
}

/// Whether the server closed `stream` by `deadline` (end of file, or a reset), reading and
/// dropping whatever it answered first.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Everything the server answers on `stream` until it closes it (or `SLACK` passes).
async fn answer_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(SLACK * 2, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// Recognition and liveness, asked afresh: both must answer while the attack goes on.
async fn others_are_served(server: &Server, credential: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let live = http.get(server.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let mine = http
        .get(server.url("/v1/session"))
        .bearer_auth(credential)
        .send_checked()
        .await
        .unwrap();
    assert_eq!(mine.status(), StatusCode::OK);
}

async fn r16_hundreds_of_half_sent_heads_stop_nobody_and_are_closed_at_the_header_timeout(
    backend: Backend,
) {
    let server = Server::start(backend, &SHORT).await;
    server.create_user("alice", PASSWORD);
    let credential = api_login(&server, "alice", PASSWORD).await;
    let started = Instant::now();
    let mut half_sent = Vec::new();
    for _ in 0..300 {
        let mut stream = connect(&server).await;
        stream
            .write_all(b"GET /v1/session HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        half_sent.push(stream);
    }
    // Heads sent a byte at a time: each byte is not a new start.
    let mut dripping = Vec::new();
    for _ in 0..20 {
        dripping.push(connect(&server).await);
    }
    for byte in b"GET /v1/session HTT" {
        for stream in &mut dripping {
            let _ = stream.write_all(&[*byte]).await;
        }
        others_are_served(&server, &credential).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = started + Duration::from_secs(1) + SLACK;
    for (n, stream) in half_sent.iter_mut().chain(dripping.iter_mut()).enumerate() {
        assert!(
            closed_by(stream, deadline).await,
            "connection {n} still open"
        );
    }
    others_are_served(&server, &credential).await;
}

async fn r16_a_stalled_body_is_answered_408_and_its_connection_closed(backend: Backend) {
    let server = Server::start(backend, &SHORT).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(
            b"POST /v1/session/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
    let answer = answer_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(
        closed_by(&mut stream, Instant::now() + SLACK).await,
        "the connection is closed after a late body"
    );
}

async fn r16_a_stalled_http2_stream_is_answered_408_while_its_connection_serves_others(
    backend: Backend,
) {
    let server = Server::start(backend, &SHORT).await;
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let live = http.get(server.url("/health/live")).send().await.unwrap();
    assert_eq!(live.version(), reqwest::Version::HTTP_2);
    // Bodies that send a first piece and then nothing, their senders kept open.
    let mut senders = Vec::new();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        sender.send(Ok(b"{\"username\":".to_vec())).await.unwrap();
        senders.push(sender);
        let body = reqwest::Body::wrap_stream(tokio_stream(receiver));
        let request = http
            .post(server.url("/v1/session/login"))
            .header("content-type", "application/json")
            .body(body);
        stalled.push(tokio::spawn(request.send()));
    }
    // Meanwhile the same connection serves others.
    for _ in 0..5 {
        let resp = http.get(server.url("/health/live")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    for stream in stalled {
        let resp = tokio::time::timeout(Duration::from_secs(1) + SLACK, stream)
            .await
            .expect("answered within the body timeout")
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    }
    drop(senders);
    let resp = http.get(server.url("/health/live")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "the connection still serves");
}

/// The receiving half of a channel as a stream of body pieces.
fn tokio_stream(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

async fn r16_an_idle_connection_lasts_the_idle_timeout_and_a_silent_one_the_header_timeout(
    backend: Backend,
) {
    let server = Server::start(backend, &SHORT).await;
    let mut idle = connect(&server).await;
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    idle.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let answered = Instant::now();
    let mut silent = connect(&server).await;
    let connected = Instant::now();
    // Past the header timeout, the idle connection is still open: it awaits its next head
    // for the idle timeout, not the head's bound.
    assert!(
        !closed_by(&mut idle, answered + Duration::from_millis(1500)).await,
        "an idle keep-alive connection was closed at the header timeout"
    );
    assert!(closed_by(&mut idle, answered + Duration::from_secs(2) + SLACK).await);
    assert!(
        closed_by(&mut silent, connected + Duration::from_secs(1) + SLACK).await,
        "a connection that never sent a head outlived the header timeout"
    );
}

async fn r16_a_head_begun_on_a_kept_alive_connection_has_the_header_timeout_from_its_first_byte(
    backend: Backend,
) {
    let settings = [
        ("WEBSESSIONS_HEADER_TIMEOUT", "1s"),
        ("WEBSESSIONS_IDLE_CONNECTION_TIMEOUT", "60s"),
    ];
    let server = Server::start(backend, &settings).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    // Idle for longer than the head's bound, then half a head: its bound runs from its first
    // byte, not from the idle connection's, and is the head's, not the idle one's.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\n")
        .await
        .unwrap();
    let begun = Instant::now();
    assert!(
        !closed_by(&mut stream, begun + Duration::from_millis(700)).await,
        "a head was closed before its bound, counted from the idle time"
    );
    assert!(
        closed_by(&mut stream, begun + Duration::from_secs(1) + SLACK).await,
        "a half-sent head on a kept-alive connection was held to the idle timeout"
    );
}

async fn r16_at_the_connection_cap_a_new_connection_waits_until_one_ends(backend: Backend) {
    let settings = [
        ("WEBSESSIONS_MAX_CONNECTIONS", "5"),
        ("WEBSESSIONS_HEADER_TIMEOUT", "30s"),
        ("WEBSESSIONS_IDLE_CONNECTION_TIMEOUT", "30s"),
    ];
    let server = Server::start(backend, &settings).await;
    // Five connections hold every place (with the test client's own kept-alive one, the last
    // of them waits in the kernel's queue already).
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut stream = connect(&server).await;
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    let waiting = tokio::spawn({
        let url = server.url("/health/live");
        async move { reqwest::get(url).await.map(|resp| resp.status()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a sixth connection was served at the cap of five"
    );
    drop(held);
    let status = tokio::time::timeout(SLACK, waiting)
        .await
        .expect("served once a place was free")
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

async fn r16_the_bytes_read_to_tell_the_protocol_are_not_lost(backend: Backend) {
    let server = Server::start(backend, &SHORT).await;
    // HTTP/2's preface in two pieces: the server answers with its own settings.
    let mut h2 = connect(&server).await;
    h2.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    h2.write_all(b"\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(SLACK, h2.read_exact(&mut frame))
        .await
        .expect("the server answered the preface")
        .unwrap();
    assert_eq!(
        frame[3], 4,
        "the server's first frame is SETTINGS: {frame:?}"
    );
    // An HTTP/1.1 head whose first byte is the preface's: it is served whole (without its
    // "P", the method would be unknown and no session started).
    let mut http1 = connect(&server).await;
    http1.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    http1
        .write_all(b"OST /v1/session HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = answer_until_closed(&mut http1).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

async fn r16_a_shutdown_is_not_held_by_a_half_sent_head(backend: Backend) {
    let server = Server::start(backend, &SHORT).await;
    let mut half = connect(&server).await;
    half.write_all(b"GET /health/live HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut silent_h2 = connect(&server).await;
    silent_h2
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let stopping = Instant::now();
    let (status, logs) = server.stop().await;
    assert!(status.success(), "{status}\n{logs}");
    // The head's bound (1 s) ends them, not the 30 s grace.
    assert!(
        stopping.elapsed() < Duration::from_secs(1) + SLACK * 2,
        "a half-sent head held the shutdown for {:?}",
        stopping.elapsed()
    );
    assert!(!logs.contains("after the shutdown grace"), "{logs}");
}

/// The resident memory of a process, in bytes.
fn resident(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

async fn r16_unread_answers_over_http2_share_the_document_rather_than_copy_it(backend: Backend) {
    let server = Server::start(backend, &SHORT).await;
    let tcp = connect(&server).await;
    // A client that reads no answer's body: each stays with the server until the stream ends.
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    let before = resident(server.pid());
    let mut answers = Vec::new();
    for _ in 0..100 {
        let mut client = client.clone().ready().await.unwrap();
        let request = poem::http::Request::get(server.url("/docs"))
            .body(())
            .unwrap();
        let (answer, _) = client.send_request(request, true).unwrap();
        answers.push(answer);
    }
    let mut document = 0;
    for answer in answers {
        let answer = answer.await.unwrap();
        assert_eq!(answer.status(), 200);
        let length = answer.headers().get("content-length").unwrap();
        document = length.to_str().unwrap().parse::<u64>().unwrap();
    }
    let grown = resident(server.pid()).saturating_sub(before);
    // A copy per stream would be 100 documents of more than a megabyte each.
    assert!(document > 1_000_000, "the document is {document} bytes");
    assert!(
        grown < 40 * 1024 * 1024,
        "100 unread answers grew the server by {} MiB",
        grown / 1024 / 1024
    );
}

/// An HTTP/2 connection whose windows are 16 KiB, and a GET of the 1.8 MB `/docs` on it: the
/// answer's body, and the connection's task (which ends when the server closes it).
async fn docs_over_http2(
    server: &Server,
) -> (
    h2::RecvStream,
    usize,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(16 * 1024)
        .initial_connection_window_size(16 * 1024)
        .handshake::<_, bytes::Bytes>(connect(server).await)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = poem::http::Request::get(server.url("/docs"))
        .body(())
        .unwrap();
    let (answer, _) = client.send_request(request, true).unwrap();
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 200);
    let length = answer.headers()["content-length"].to_str().unwrap();
    let length = length.parse().unwrap();
    (answer.into_body(), length, connection)
}

async fn r16_an_answer_read_slowly_over_http2_is_not_cut_and_an_unread_one_is_bounded(
    backend: Backend,
) {
    let server = Server::start(backend, &SHORT).await;
    // A client on a slow link: it takes longer than the idle and header timeouts together to
    // read the answer, and the server keeps sending while it reads.
    let (mut body, length, _connection) = docs_over_http2(&server).await;
    let started = Instant::now();
    let mut received = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the answer was cut while the client was reading it");
        received += chunk.len();
        tokio::time::sleep(Duration::from_millis(40)).await;
        body.flow_control().release_capacity(chunk.len()).unwrap();
    }
    assert_eq!(received, length, "the whole answer arrived");
    assert!(
        started.elapsed() > Duration::from_secs(3),
        "it was read slowly"
    );
    // A client that stops reading: the answer makes no progress, so the connection is idle
    // and closed (GOAWAY, then the header timeout to finish), not held for ever.
    let (mut body, _, connection) = docs_over_http2(&server).await;
    let first = body.data().await.unwrap().unwrap();
    let stopped = Instant::now();
    assert!(!first.is_empty());
    let bound = Duration::from_secs(3) + SLACK;
    tokio::time::timeout(bound.saturating_sub(stopped.elapsed()), connection)
        .await
        .expect("a connection whose client stopped reading was held past its bounds")
        .ok();
}

/// A half-sent head costs the server its bytes for the header timeout: heads are at most
/// 32 KiB (nginx's default bound), so 2,000 of them hold tens of megabytes, not a hundred.
async fn r16_a_head_is_at_most_32_kib(backend: Backend) {
    let server = Server::start(backend, &SHORT).await;
    let head = |cookie: usize| {
        format!(
            "GET /health/live HTTP/1.1\r\nHost: x\r\nCookie: a={}\r\n\r\n",
            "b".repeat(cookie)
        )
    };
    let mut stream = connect(&server).await;
    stream.write_all(head(30 * 1024).as_bytes()).await.unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200", "a 30 KiB head is served");
    let mut stream = connect(&server).await;
    // Written in the background: the server may close before it has read the whole head.
    let big = head(40 * 1024);
    let (mut reader, mut writer) = stream.split();
    let (_, answer) = tokio::join!(writer.write_all(big.as_bytes()), async {
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(SLACK, reader.read_to_end(&mut answer)).await;
        answer
    });
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "a 40 KiB head: {}",
        String::from_utf8_lossy(&answer[..answer.len().min(40)])
    );
}

/// R16: `serve` raises its open-file limit to the hard limit and caps its connections within
/// it; a cap set beyond what the limit allows stops it with exit code 2.
#[test]
fn r16_a_connection_cap_beyond_the_open_file_limit_stops_serve_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite").display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 200 && exec \"$0\" serve")
        .arg(env!("CARGO_BIN_EXE_websessions"))
        .env("WEBSESSIONS_DATABASE_URL", &url)
        .env("WEBSESSIONS_LISTEN", "127.0.0.1:0")
        .env("WEBSESSIONS_MAX_CONNECTIONS", "1000")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("WEBSESSIONS_MAX_CONNECTIONS"), "{stderr}");
    assert!(
        stderr.contains("116"),
        "200 less 2 x 10 database connections and 64: {stderr}"
    );
}
