//! Connections to the relay: opened, secured and authenticated here, kept open between
//! messages, and reused newest first.
//!
//! At most `pool_max_size` sends use a connection at once (the rest wait for one, within their
//! timeout), and every connection that finished a transaction cleanly goes back to the pool,
//! so a steady stream of sends opens each connection once rather than one in every few
//! messages (which left thousands of sockets in TIME_WAIT). A connection used within the last
//! [`PROBE_AFTER`] is reused as it is; an older one is first probed with NOOP. A connection
//! reused unprobed that turns out to be closed fails at MAIL FROM, before anything was
//! delivered, and the provider retries once on a new one ([`Session::unprobed`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::Ehlo;
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::Error as SmtpError;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{Security, Stage};

/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection idle longer than this is probed with NOOP before reuse.
const PROBE_AFTER: Duration = Duration::from_secs(2);
/// Time allowed for a polite QUIT when a connection is closed in the background.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to connect.
pub(super) struct Relay {
    /// The provider's name, for logs.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub tls: Option<TlsParameters>,
    pub credentials: Option<Credentials>,
    pub hello: ClientId,
}

/// An open connection ready for MAIL FROM.
pub(super) struct Session {
    pub connection: AsyncSmtpConnection,
    /// The server offered PIPELINING (RFC 2920) in its EHLO reply.
    pub pipelining: bool,
    /// Taken from the pool without a NOOP probe: a failure at MAIL FROM without a reply (or
    /// with 421) may just mean the server closed it meanwhile.
    pub unprobed: bool,
}

impl Relay {
    /// Opens, secures and authenticates a new connection.
    pub(super) async fn connect(&self, timeout: Duration) -> Result<Session, (Stage, SmtpError)> {
        let wrapper = match self.security {
            Security::Tls => self.tls.clone(),
            Security::Starttls | Security::Plain => None,
        };
        let mut connection = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(timeout),
            &self.hello,
            wrapper,
            None,
        )
        .await
        .map_err(|e| (Stage::Connect, e))?;
        if self.security == Security::Starttls {
            if let Some(tls) = &self.tls {
                if !connection.can_starttls() {
                    tracing::error!(
                        provider = %self.name,
                        "SMTP server does not offer STARTTLS; refusing to send in clear \
                         (misconfigured relay, or something on the path stripping STARTTLS)"
                    );
                }
                connection
                    .starttls(tls.clone(), &self.hello)
                    .await
                    .map_err(|e| (Stage::Connect, e))?;
            }
        }
        // lettre keeps only the extensions it knows from EHLO, and PIPELINING is not one of
        // them: ask again (once per connection, before AUTH) and read the reply's lines.
        let offered = connection
            .command(Ehlo::new(self.hello.clone()))
            .await
            .map_err(|e| (Stage::Connect, e))?;
        let pipelining = offered
            .message()
            .any(|line| line.trim().eq_ignore_ascii_case("PIPELINING"));
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| (Stage::Auth, e))?;
        }
        Ok(Session {
            connection,
            pipelining,
            unprobed: false,
        })
    }
}

/// A pooled connection and when it was last used.
struct Parked {
    connection: AsyncSmtpConnection,
    pipelining: bool,
    since: Instant,
}

/// Idle connections, and the cap on connections in use.
pub(super) struct Pool {
    size: usize,
    /// Oldest first: connections are parked at the end and taken from the end.
    idle: Mutex<Vec<Parked>>,
    /// One permit per connection in use; none with a size of 0 (no pool, no cap).
    in_use: Option<Semaphore>,
}

impl Pool {
    /// A pool of at most `size` connections; 0: a new connection for each message.
    pub(super) fn new(size: usize) -> Self {
        Self {
            size,
            idle: Mutex::new(Vec::with_capacity(size)),
            in_use: (size > 0).then(|| Semaphore::new(size)),
        }
    }

    /// Waits until fewer than `size` sends hold a connection; the permit is the right to one.
    pub(super) async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        match &self.in_use {
            // The semaphore is never closed.
            Some(in_use) => in_use.acquire().await.ok(),
            None => None,
        }
    }

    /// A connection ready for MAIL FROM: the newest live pooled one, or a new one.
    pub(super) async fn checkout(
        &self,
        relay: &Relay,
        timeout: Duration,
    ) -> Result<Session, (Stage, SmtpError)> {
        loop {
            let Some(parked) = self.lock_idle().pop() else {
                break;
            };
            let idle_for = parked.since.elapsed();
            let mut connection = parked.connection;
            if idle_for > IDLE_TIMEOUT || connection.has_broken() {
                close_in_background(connection);
                continue;
            }
            let unprobed = idle_for <= PROBE_AFTER;
            if unprobed || connection.test_connected().await {
                return Ok(Session {
                    connection,
                    pipelining: parked.pipelining,
                    unprobed,
                });
            }
        }
        relay.connect(timeout).await
    }

    /// Puts a connection that finished a transaction cleanly back in the pool.
    pub(super) fn checkin(&self, session: Session) {
        if session.connection.has_broken() {
            return;
        }
        let mut surplus = Vec::new();
        {
            let mut idle = self.lock_idle();
            // Parked in time order, so the expired ones are at the front.
            let expired = idle
                .iter()
                .take_while(|parked| parked.since.elapsed() > IDLE_TIMEOUT)
                .count();
            surplus.extend(idle.drain(..expired).map(|parked| parked.connection));
            if idle.len() < self.size {
                idle.push(Parked {
                    connection: session.connection,
                    pipelining: session.pipelining,
                    since: Instant::now(),
                });
            } else {
                surplus.push(session.connection);
            }
        }
        for connection in surplus {
            close_in_background(connection);
        }
    }

    /// The idle connections (a poisoned lock still holds usable connections).
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Parked>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sends QUIT and closes, without holding up the caller; a silent server is given up on.
pub(super) fn close_in_background(mut connection: AsyncSmtpConnection) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, connection.abort()).await;
    });
}
