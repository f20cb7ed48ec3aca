//! Recognition's own connections and batched reads (see `src/sessions/hot_path.rs`): every
//! concurrent read gets its own row (all backends); what happens to the connections when the
//! server ends them, and when a request is cancelled mid-statement (PostgreSQL and
//! MySQL/MariaDB), and when the server hangs under batched reads. A backend that is not
//! configured is reported as ignored.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::task::Poll;

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use time::OffsetDateTime;
use time::macros::datetime;
use websessions_domain::ports::{NewSession, SessionRepository, Target};
use websessions_domain::{ClientIp, SessionId, SessionKind, SessionPolicy, Token};
use websessions_infrastructure::SeaSessions;
use websessions_tests::{Backend, TestDb};

const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

async fn session(repo: &SeaSessions, n: u8) -> SessionId {
    repo.create(NewSession {
        token_hash: Token::from_bytes(vec![n; 16]).hash(),
        ip_address: ClientIp::new("203.0.113.5".parse().unwrap()),
        kind: SessionKind::Browser,
        user: None,
        now: NOW,
    })
    .await
    .unwrap()
}

/// Ends every connection to the test database, as a server restart would.
async fn end_connections(db: &TestDb, backend: Backend) {
    match backend {
        Backend::Postgres => assert!(
            db.as_admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{db}' AND pid <> pg_backend_pid()"
            )
            .await
        ),
        Backend::Mysql => {
            // One connection lists and kills all the others (a pooled one might be on the list).
            let admin = db.conn.begin().await.unwrap();
            let ids = admin
                .query_all_raw(Statement::from_string(
                    DbBackend::MySql,
                    "SELECT id FROM information_schema.processlist \
                     WHERE db = DATABASE() AND id <> CONNECTION_ID()",
                ))
                .await
                .unwrap();
            assert!(!ids.is_empty(), "recognition holds connections");
            for row in ids {
                let id: i64 = row.try_get("", "id").unwrap();
                admin
                    .execute_unprepared(&format!("KILL {id}"))
                    .await
                    .unwrap();
            }
            admin.commit().await.unwrap();
        }
        Backend::Sqlite => unreachable!("no server ends an embedded file's connections"),
    }
}

websessions_tests::on! {
    sqlite: [concurrent_reads_each_get_their_own_row];
    postgres needs postgres: [
        concurrent_reads_each_get_their_own_row,
        r9_a_clearing_whose_commit_answer_was_lost_is_never_replayed,
        recognition_survives_the_server_ending_its_kept_connections,
        a_recognition_cancelled_mid_statement_never_hands_its_answer_to_the_next,
        a_hung_database_costs_each_batched_read_no_more_than_the_wait,
    ];
    mysql needs mysql: [
        concurrent_reads_each_get_their_own_row,
        r9_a_clearing_whose_commit_answer_was_lost_is_never_replayed,
        recognition_survives_the_server_ending_its_kept_connections,
        a_recognition_cancelled_mid_statement_never_hands_its_answer_to_the_next,
        a_hung_database_costs_each_batched_read_no_more_than_the_wait,
    ];
}

async fn concurrent_reads_each_get_their_own_row(backend: Backend) {
    let db = TestDb::new(backend).await;
    let repo = SeaSessions::new(db.store.clone()).unwrap();
    let mut ids = Vec::new();
    for n in 1..=40u8 {
        ids.push((n, session(&repo, n).await));
    }
    let unknown = |k: i64| SessionId::new(10_000 + k).unwrap();
    let mut reads = Vec::new();
    for i in 0..600usize {
        let repo = repo.clone();
        let (n, id) = if i % 13 == 0 {
            (0, unknown((i % 8) as i64))
        } else {
            ids[i % ids.len()]
        };
        let abandoned = i % 17 == 0;
        reads.push(tokio::spawn(async move {
            if abandoned {
                // Given up before its answer: the batch it was in must still answer the rest.
                let _ = tokio::time::timeout(std::time::Duration::ZERO, repo.find(id)).await;
                return None;
            }
            Some((n, id, repo.find(id).await.unwrap()))
        }));
    }
    let mut answered = 0;
    for read in reads {
        let Some((n, id, found)) = read.await.unwrap() else {
            continue;
        };
        answered += 1;
        if n == 0 {
            assert!(found.is_none(), "{id} does not exist");
        } else {
            let row = found.unwrap_or_else(|| panic!("{id} exists"));
            assert_eq!(row.id, id);
            assert_eq!(row.token_hash, Token::from_bytes(vec![n; 16]).hash());
        }
    }
    assert!(answered > 500, "{answered}");
    repo.close().await;
    db.drop().await;
}

async fn recognition_survives_the_server_ending_its_kept_connections(backend: Backend) {
    let db = TestDb::new(backend).await;
    let repo = SeaSessions::new(db.store.clone()).unwrap();
    let id = session(&repo, 1).await;
    let token_hash = Token::from_bytes(vec![1; 16]).hash();
    // Keep a few recognition connections open, then have the server end them all.
    let warm: Vec<_> = (0..3)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.find(id).await })
        })
        .collect();
    for found in warm {
        assert_eq!(found.await.unwrap().unwrap().unwrap().id, id);
    }
    end_connections(&db, backend).await;
    let found = repo.find(id).await.expect("a read on a fresh connection");
    assert_eq!(found.unwrap().id, id);

    end_connections(&db, backend).await;
    let target = Target {
        id,
        token_hash,
        cutoffs: SessionPolicy::default().cutoffs(NOW),
        ip: None,
    };
    let touched = repo
        .touch_and_find(&target, NOW)
        .await
        .expect("a touch on a fresh connection");
    assert_eq!(touched.unwrap().id, id);

    end_connections(&db, backend).await;
    let touched = repo
        .touch(&target, NOW)
        .await
        .expect("a touch on a fresh connection");
    assert!(touched);
    repo.close().await;
    db.drop().await;
}

async fn a_recognition_cancelled_mid_statement_never_hands_its_answer_to_the_next(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let repo = SeaSessions::new(db.store.clone()).unwrap();
    let first = session(&repo, 1).await;
    let second = session(&repo, 2).await;
    let cutoffs = SessionPolicy::default().cutoffs(NOW);
    assert_eq!(repo.find(second).await.unwrap().unwrap().id, second);
    for _ in 0..5 {
        // Another transaction holds the first session's row, so its touch waits in the
        // server: polled once, the statement is out and its answer is not.
        let lock = db.conn.begin().await.unwrap();
        lock.execute_unprepared(&format!(
            "SELECT id FROM sessions WHERE id = {} FOR UPDATE",
            first.get()
        ))
        .await
        .unwrap();
        let target = Target {
            id: first,
            token_hash: Token::from_bytes(vec![1; 16]).hash(),
            cutoffs,
            ip: None,
        };
        let mut touch = repo.touch_and_find(&target, NOW);
        let finished = std::future::poll_fn(|cx| Poll::Ready(touch.as_mut().poll(cx).is_ready()));
        assert!(
            !finished.await,
            "the touch finished while the row was locked"
        );
        drop(touch);
        // The abandoned touch now completes in the server; its answer must reach no one.
        lock.commit().await.unwrap();
        let found = repo.find(second).await.unwrap().unwrap();
        assert_eq!(found.id, second);
    }
    repo.close().await;
    db.drop().await;
}

/// A TCP proxy to the database server that injects faults: while hung, it accepts
/// connections and swallows what either side sends, as a server that stopped answering would;
/// armed to cut, it passes the next `COMMIT` to the server and then ends that connection
/// without passing the answer back (a COMMIT whose answer was lost), and holds every new
/// connection until released.
struct FaultyProxy {
    port: u16,
    state: std::sync::Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    hung: std::sync::atomic::AtomicBool,
    cut_next_commit: std::sync::atomic::AtomicBool,
    /// Set once a COMMIT was cut.
    cut: tokio::sync::Notify,
    /// Whether new connections are held back.
    held: std::sync::atomic::AtomicBool,
    released: tokio::sync::Notify,
}

impl FaultyProxy {
    async fn to(url: &str) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
        let upstream = authority.rsplit('@').next().unwrap().to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = std::sync::Arc::new(ProxyState::default());
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let state = shared.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    while state.held.load(Ordering::SeqCst) {
                        let released = state.released.notified();
                        if !state.held.load(Ordering::SeqCst) {
                            break;
                        }
                        released.await;
                    }
                    if state.hung.load(Ordering::SeqCst) {
                        // Accepted, never answered.
                        let _held = client;
                        return std::future::pending::<()>().await;
                    }
                    let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    // Set when this connection's COMMIT was cut: nothing more passes back.
                    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let (up_state, up_cut) = (state.clone(), cut.clone());
                    tokio::spawn(async move {
                        let mut buffer = vec![0; 16 * 1024];
                        while let Ok(n @ 1..) = client_read.read(&mut buffer).await {
                            let chunk = &buffer[..n];
                            let cutting = chunk.windows(6).any(|w| w == b"COMMIT")
                                && up_state.cut_next_commit.swap(false, Ordering::SeqCst);
                            if cutting {
                                up_cut.store(true, Ordering::SeqCst);
                                up_state.held.store(true, Ordering::SeqCst);
                            }
                            if !up_state.hung.load(Ordering::SeqCst)
                                && server_write.write_all(chunk).await.is_err()
                            {
                                break;
                            }
                            if cutting {
                                // Give the server the time to commit, then end the
                                // connection with the answer unsent.
                                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                                up_state.cut.notify_one();
                                break;
                            }
                        }
                    });
                    let mut buffer = vec![0; 16 * 1024];
                    while let Ok(n @ 1..) = server_read.read(&mut buffer).await {
                        if cut.load(Ordering::SeqCst) {
                            break;
                        }
                        if !state.hung.load(Ordering::SeqCst)
                            && client_write.write_all(&buffer[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, state }
    }

    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        let user = authority
            .rsplit_once('@')
            .map_or(String::new(), |(u, _)| format!("{u}@"));
        format!("{scheme}://{user}127.0.0.1:{}/{path}", self.port)
    }

    fn hang(&self, hung: bool) {
        self.state
            .hung
            .store(hung, std::sync::atomic::Ordering::SeqCst);
    }

    /// Cuts the next COMMIT's answer, then holds new connections until `release`.
    fn cut_next_commit(&self) {
        self.state
            .cut_next_commit
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Resolves once a COMMIT was cut (the server has it; its client never hears).
    async fn commit_cut(&self) {
        self.state.cut.notified().await;
    }

    fn release(&self) {
        self.state
            .held
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.state.released.notify_waiters();
    }
}

/// SPEC section 5, `WEBSESSIONS_DATABASE_WAIT`: a request waits for the database at most the
/// wait, however many reads are queued for the readers; then it is unavailable (503), and
/// once the database answers again, reads succeed.
async fn a_hung_database_costs_each_batched_read_no_more_than_the_wait(backend: Backend) {
    use std::time::{Duration, Instant};
    const WAIT: Duration = Duration::from_secs(1);
    let db = TestDb::new(backend).await;
    let id = session(&SeaSessions::new(db.store.clone()).unwrap(), 1).await;
    let proxy = FaultyProxy::to(&db.url).await;
    let store = websessions_infrastructure::connect(
        &proxy.url(&db.url),
        &websessions_infrastructure::PoolOptions {
            max_connections: 4,
            wait: WAIT,
        },
    )
    .await
    .unwrap();
    let repo = SeaSessions::new(store).unwrap();
    assert_eq!(repo.find(id).await.unwrap().unwrap().id, id);

    proxy.hang(true);
    // Twenty batches of 32: queued behind one another, they took up to ten waits.
    let reads: Vec<_> = (0..640)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let found = repo.find(id).await;
                (started.elapsed(), found)
            })
        })
        .collect();
    let mut longest = Duration::ZERO;
    for read in reads {
        let (took, found) = read.await.unwrap();
        assert!(
            matches!(found, Err(websessions_domain::InfraError::Unavailable(_))),
            "{found:?}"
        );
        longest = longest.max(took);
    }
    assert!(
        longest < WAIT * 3,
        "a read waited {longest:?} with a wait of {WAIT:?}"
    );

    proxy.hang(false);
    let mut found = repo.find(id).await;
    for _ in 0..10 {
        if found.is_ok() {
            break;
        }
        found = repo.find(id).await;
    }
    assert_eq!(found.unwrap().unwrap().id, id);
    db.drop().await;
}

/// R9's last sentence: a verified password's clearing of failures runs at most once. Its
/// COMMIT reaches the server and the answer is lost; meanwhile another attempt is counted.
/// Replaying the clearing would delete that attempt's failure: it answers unavailable instead.
async fn r9_a_clearing_whose_commit_answer_was_lost_is_never_replayed(backend: Backend) {
    use websessions_domain::ports::LockoutRepository;
    use websessions_domain::{Attempt, InfraError, LockoutPolicy, Username};
    use websessions_infrastructure::SeaLockouts;
    let db = TestDb::new(backend).await;
    let proxy = FaultyProxy::to(&db.url).await;
    // One connection: a replay would have to open a new one, which the proxy holds back.
    let store = websessions_infrastructure::connect(
        &proxy.url(&db.url),
        &websessions_infrastructure::PoolOptions {
            max_connections: 1,
            wait: std::time::Duration::from_secs(10),
        },
    )
    .await
    .unwrap();
    let (proxied, direct) = (SeaLockouts::new(store), SeaLockouts::new(db.store.clone()));
    let name = Username::parse("alice").unwrap();
    let policy = LockoutPolicy::default();
    proxied.attempt(&name, NOW, policy).await.unwrap();
    let Attempt::Counted(counted) = proxied.attempt(&name, NOW, policy).await.unwrap() else {
        panic!("no lock yet");
    };
    assert_eq!(counted.failure_count, 2);

    proxy.cut_next_commit();
    let clearing = tokio::spawn(async move { proxied.verified(&name, counted).await });
    proxy.commit_cut().await;
    // Another attempt, counted after the clearing committed.
    let name = Username::parse("alice").unwrap();
    let Attempt::Counted(later) = direct.attempt(&name, NOW, policy).await.unwrap() else {
        panic!("no lock");
    };
    assert_eq!(later.failure_count, 1, "the clearing reached the server");
    proxy.release();
    let outcome = clearing.await.unwrap();
    assert!(
        matches!(outcome, Err(InfraError::Unavailable(_))),
        "a lost COMMIT is unavailability: {outcome:?}"
    );
    assert_eq!(
        direct.state(&name, NOW).await.unwrap().failure_count,
        1,
        "the later attempt's failure stands"
    );
    db.drop().await;
}
