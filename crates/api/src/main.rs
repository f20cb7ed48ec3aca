//! The `websessions` binary: the composition root, and the only place that names concrete
//! adapters (SeaORM repositories, argon2id, the OS CSPRNG, the system clock).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use websessions_api::cli::{AuditArgs, AuditCommand, Cli, Command, UserCommand};
use websessions_api::config::{self, Config, ConfigError, Rejected};
use websessions_api::http::{self, Context, EdgeSettings, Readiness};
use websessions_api::metrics::Metrics;
use websessions_api::server;
use websessions_api::telemetry;
use websessions_domain::audit::{self, AuditFilter, MAX_AUDIT_PAGE, VerifyError};
use websessions_domain::ports::AuditTrail;
use websessions_domain::{Password, Ports, SessionAdmin, Sessions, Superuser, UserAdmin};
use websessions_infrastructure::{
    AddressLimits, Argon2Hasher, OsTokens, PoolOptions, SeaAccounts, SeaAudit, SeaLockouts,
    SeaSessions, SeaUsers, Store, SystemClock, TokioTimer, connect, migrate,
};

#[tokio::main]
async fn main() -> ExitCode {
    let (cli, config) = match config::parse::<Cli>(|cli| &cli.config) {
        Ok(parsed) => parsed,
        Err(Rejected::Config(error)) => {
            eprintln!("websessions: {error}");
            return ExitCode::from(2);
        }
        Err(Rejected::Clap(error)) => error.exit(),
    };
    telemetry::init(config.log_format);
    match run(cli.command.unwrap_or(Command::Serve), config).await {
        Ok(()) => ExitCode::SUCCESS,
        // A setting that only serving can judge (the connection cap against the machine).
        Err(error) if error.is::<ConfigError>() => {
            eprintln!("websessions: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("websessions: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        // The document depends only on the API's types and the cookie's name.
        Command::Openapi => println!("{}", http::openapi(&config.cookie.name)),
        Command::Migrate => {
            open(&config).await?;
            eprintln!("migrations applied");
        }
        Command::Serve => {
            let max_connections = connection_cap(&config)?;
            serve(Services::open(&config).await?, &config, max_connections).await?;
        }
        Command::Purge => {
            let services = Services::open(&config).await?;
            let report = services.rules.purge(&Superuser::operator()).await?;
            println!("{}", report.total());
            services.close().await;
        }
        Command::User(command) => {
            let services = Services::open(&config).await?;
            user(&services.rules, command).await?;
            services.close().await;
        }
        Command::Audit(AuditArgs {
            command: None,
            since,
            json,
        }) => {
            let services = Services::open(&config).await?;
            let printed = print_audit(&services.rules, since, json).await;
            services.close().await;
            printed?;
        }
        Command::Audit(AuditArgs {
            command: Some(AuditCommand::Verify { expect_head }),
            ..
        }) => {
            let store = open(&config).await?;
            let verified = audit::verify(&SeaAudit::new(store.clone()), expect_head).await;
            store.close().await;
            match verified {
                Ok(verified) => {
                    println!("anchor {}", verified.anchor);
                    println!("head {}", verified.head);
                    println!("records {}", verified.records);
                }
                Err(VerifyError::Broken(broken)) => bail!("the audit chain is broken: {broken}"),
                Err(VerifyError::Infra(error)) => return Err(error.into()),
            }
        }
    }
    Ok(())
}

/// `websessions audit`: every record since `since`, oldest first, a page at a time; as JSON
/// lines, or one line of text each.
async fn print_audit(
    rules: &Sessions,
    since: Option<time::OffsetDateTime>,
    json: bool,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let operator = Superuser::operator();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut after = None;
    loop {
        let filter = AuditFilter {
            since,
            after,
            limit: MAX_AUDIT_PAGE,
            ..AuditFilter::default()
        };
        let page = rules.audit(&operator, filter).await?;
        for record in &page.items {
            let view = record.to_json();
            if json {
                writeln!(out, "{view}")?;
            } else {
                // What a client typed (a username, a user agent) is quoted and escaped, so it
                // cannot pass for another field or another line; `-` is no value.
                let quoted = |value: Option<&str>| {
                    value.map_or_else(|| "-".to_owned(), |v| format!("{v:?}"))
                };
                let entry = &record.entry;
                writeln!(
                    out,
                    "{seq} {at} {event} user={user} actor={actor} session={session} ip={ip} agent={agent} {details}",
                    seq = record.seq,
                    at = view["at"].as_str().unwrap_or_default(),
                    event = entry.event,
                    user = quoted(entry.username.as_deref()),
                    actor = quoted(entry.actor.as_deref()),
                    session = entry
                        .session_id
                        .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                    ip = entry.client_ip.as_deref().unwrap_or("-"),
                    agent = quoted(entry.user_agent.as_deref()),
                    details = view["details"],
                )?;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    out.flush()?;
    Ok(())
}

/// `websessions user ...`, as the operator at the machine.
async fn user(rules: &Sessions, command: UserCommand) -> anyhow::Result<()> {
    let operator = Superuser::operator();
    match command {
        UserCommand::Create { name, superuser } => {
            let password = read_password()?;
            rules
                .create_user(&operator, &name, password, superuser)
                .await?;
            eprintln!("created user {name}");
        }
        UserCommand::SetPassword { name } => {
            let password = read_password()?;
            rules.reset_password(&operator, &name, password).await?;
            eprintln!("password set; every session of {name} has ended");
        }
        UserCommand::Unlock { name } => {
            rules.unlock(&operator, &name).await?;
            eprintln!("unlocked {name}");
        }
    }
    Ok(())
}

/// Opens the database and applies pending migrations (every command that touches data runs
/// on the current schema).
async fn open(config: &Config) -> anyhow::Result<Store> {
    let pool = PoolOptions {
        max_connections: config.database_max_connections,
        wait: config.database_wait,
    };
    // A driver's error may quote the whole URL: never with its password.
    let url = &config.database_url;
    let hide = |error: websessions_infrastructure::DbErr| {
        anyhow::anyhow!(url.redact_in(&error.to_string()))
    };
    let db = connect(url.expose(), &pool)
        .await
        .map_err(hide)
        .context("cannot open the database (WEBSESSIONS_DATABASE_URL)")?;
    migrate(&db)
        .await
        .map_err(hide)
        .context("cannot migrate the database")?;
    Ok(db)
}

/// The concrete adapters and the rules over them, built once for any command that touches
/// data. The rules and the database's waits report to the metrics `/metrics` shows (a
/// command's metrics go nowhere).
struct Services {
    store: Store,
    audit: Arc<SeaAudit>,
    sessions: Arc<SeaSessions>,
    rules: Arc<Sessions>,
    metrics: Arc<Metrics>,
}

impl Services {
    async fn open(config: &Config) -> anyhow::Result<Self> {
        let store = open(config).await?;
        let sessions = Arc::new(SeaSessions::new(store.clone())?);
        let metrics = Arc::new(Metrics::new());
        let waits = metrics.clone();
        store
            .patience()
            .observe_with(Arc::new(move |waited: Duration| {
                waits.observe_database_wait(waited.as_secs_f64());
            }));
        let hasher = Argon2Hasher::owasp()
            .context("cannot set up password hashing")?
            .with_max_pending(config.max_pending_hashes);
        let limits = AddressLimits::new(config.limits.session_start, config.limits.login);
        let audit = Arc::new(SeaAudit::new(store.clone()));
        let ports = Ports {
            sessions: sessions.clone(),
            accounts: Arc::new(SeaAccounts::new(store.clone())),
            users: Arc::new(SeaUsers::new(store.clone())),
            lockouts: Arc::new(SeaLockouts::new(store.clone())),
            hasher: Arc::new(hasher),
            tokens: Arc::new(OsTokens),
            clock: Arc::new(SystemClock),
            timer: Arc::new(TokioTimer),
            limits: Arc::new(limits),
            events: metrics.clone(),
            audit: audit.clone(),
        };
        let rules = Sessions::new(ports, config.policy.clone(), config.lockout)
            .with_audit_retention(config.audit_retention);
        let rules = Arc::new(rules);
        Ok(Self {
            store,
            audit,
            sessions,
            rules,
            metrics,
        })
    }

    /// The server's context.
    fn context(&self, config: &Config) -> Arc<Context> {
        Arc::new(Context {
            holder: self.rules.clone(),
            me: self.rules.clone(),
            admin: self.rules.clone(),
            users: self.rules.clone(),
            readiness: Arc::new(DatabaseReadiness(self.store.clone())),
            edge: Arc::new(EdgeSettings {
                cookie: config.cookie.clone(),
                trusted_proxies: config.trusted_proxies.clone(),
                trusted_origins: config.trusted_origins.clone(),
                token_length: config.policy.token_length(),
            }),
            policy: config.policy.clone(),
            metrics: self.metrics.clone(),
            portal: config.portal,
        })
    }

    /// Closed politely, so the database logs no unexpected disconnects.
    async fn close(self) {
        self.sessions.close().await;
        self.store.close().await;
    }
}

/// Ready while the database answers a ping within a second: readiness never waits for the
/// database to come back, so it says 503 for as long as the database is unreachable.
struct DatabaseReadiness(Store);

#[async_trait]
impl Readiness for DatabaseReadiness {
    async fn ready(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.0.ping()).await,
            Ok(true)
        )
    }
}

/// R16: the open-file limit raised, and the connections it allows beside the database's (the
/// pool's, and as many again of recognition's own); checked before anything is opened.
fn connection_cap(config: &Config) -> Result<usize, ConfigError> {
    let database = 2 * config.database_max_connections as usize;
    server::connection_cap(config.edge.max_connections, database).map_err(|allowed| ConfigError {
        variable: "WEBSESSIONS_MAX_CONNECTIONS".into(),
        reason: format!(
            "the open-file limit allows at most {allowed} connections beside the database's; \
             raise it (ulimit -n) or lower this"
        ),
    })
}

async fn serve(services: Services, config: &Config, max_connections: usize) -> anyhow::Result<()> {
    let ctx = services.context(config);
    let housekeeping = tokio::spawn(housekeeping(
        ctx.admin.clone(),
        services.audit.clone(),
        config.housekeeping_interval,
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot serve on {}", config.listen))?;
    tracing::info!(listen = %config.listen, max_connections, "serving");
    let bounds = server::Bounds {
        header_timeout: config.edge.header_timeout,
        body_timeout: config.edge.body_timeout,
        idle_connection_timeout: config.edge.idle_connection_timeout,
        max_connections,
    };
    let served = server::serve(listener, http::app(ctx), bounds, shutdown_signal()).await;
    housekeeping.abort();
    services.close().await;
    served.with_context(|| format!("cannot serve on {}", config.listen))?;
    tracing::info!("stopped");
    Ok(())
}

/// R8: maintenance every `interval`; a failure is logged and retried at the next tick. Each
/// tick also logs the audit chain's head (R19), so a truncation of the newest records can be
/// found with `websessions audit verify --expect-head` against a head the logs kept.
async fn housekeeping(
    admin: Arc<dyn SessionAdmin>,
    audit: Arc<dyn AuditTrail>,
    interval: Duration,
) {
    // The first run comes one interval after start, not at once: a restart is no reason to
    // purge, and a batch of restarts should not purge together.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match admin.purge(&Superuser::operator()).await {
            Ok(report) if report.total() > 0 => {
                tracing::info!(deleted = report.total(), "maintenance");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(
                error = format!("{:#}", anyhow::Error::from(error)),
                "maintenance failed"
            ),
        }
        match audit.ends().await {
            Ok(ends) => tracing::info!(head = %ends.head, anchor = %ends.anchor, "audit chain"),
            Err(error) => tracing::warn!(
                error = format!("{:#}", anyhow::Error::from(error)),
                "cannot read the audit chain's head"
            ),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// The first line of standard input when it is not a terminal; else a prompt, twice.
fn read_password() -> anyhow::Result<Password> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Again: ")?;
        if first != second {
            bail!("the passwords differ");
        }
        return Ok(Password::new(first));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Ok(Password::new(line))
}
