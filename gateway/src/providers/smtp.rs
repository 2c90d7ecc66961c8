//! The `smtp` provider: email through an SMTP relay (lettre's client), connections pooled.
//!
//! Settings, beside `name`, `kind = "smtp"` and `channel = "email"`:
//!
//! - `host`: the relay's host name (checked against its TLS certificate).
//! - `port`: defaults to 587 for `starttls`, 465 for `tls`, 25 for `plain`.
//! - `security`: `"starttls"` (default: plain connection upgraded with STARTTLS, refused if the
//!   server does not offer it), `"tls"` (TLS from the first byte, "SMTPS") or `"plain"` (no
//!   encryption at all: only for a relay on loopback, tests, or an internal relay on a trusted
//!   network; credentials and patient data cross the wire in clear).
//! - `username` and `password_env`: together or not at all; `password_env` names the
//!   environment variable holding the password (secrets never sit in config files).
//! - `from`: the sending mailbox, such as `"Riverside Surgery <noreply@example.nhs.uk>"`. Each
//!   message is sent from its address with the practice's email display name, else the
//!   practice's name, as display name (the configured name is used when the practice has
//!   neither), and with the practice's `email` as Reply-To. Its domain ends every Message-ID.
//! - `timeout_ms` (default 10000): the time allowed for one message's whole SMTP exchange,
//!   connecting, TLS and authentication included. A server that takes longer is abandoned (the
//!   connection is closed, never reused) and the send is retryable.
//! - `pool_max_size` (default 10): idle connections kept open for reuse; 0 closes each one after
//!   its message.
//!
//! lettre's `AsyncSmtpTransport` is not used directly: its async client has no read timeout, and
//! an abandoned send would put a connection back in its pool in the middle of a transaction
//! (later replies then answer the wrong commands). It also cannot say whether a refusal came at
//! RCPT or at DATA, which decides between a bad address and rejected content. So this provider
//! drives lettre's `AsyncSmtpConnection` itself and keeps its own small pool of idle connections,
//! into which only connections that finished a transaction cleanly go back.

use std::error::Error as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::Error as SmtpError;
use lettre::{Address, Message};
use serde::Deserialize;

use super::{Accepted, Outgoing, Provider, SendError};
use crate::config::ProviderConfig;
use crate::domain::{Channel, Priority};

/// Default time allowed for one message's whole SMTP exchange.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default number of idle connections kept for reuse.
const DEFAULT_POOL_MAX_SIZE: u32 = 10;
/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed for a polite QUIT when a connection is closed in the background.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends email through an SMTP relay.
pub struct SmtpProvider {
    name: String,
    channel: Channel,
    host: String,
    port: u16,
    security: Security,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    from: Mailbox,
    hello: ClientId,
    timeout: Duration,
    pool_max_size: usize,
    idle: Mutex<Vec<IdleConnection>>,
}

/// A pooled connection and when it was last used.
struct IdleConnection {
    connection: AsyncSmtpConnection,
    since: Instant,
}

/// The `smtp` kind's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpSettings {
    /// The relay's host name.
    host: String,
    /// The relay's port; the default follows `security`.
    port: Option<u16>,
    /// How the connection is encrypted.
    #[serde(default)]
    security: Security,
    /// The account to authenticate as, with `password_env`.
    username: Option<String>,
    /// The environment variable holding the account's password.
    password_env: Option<String>,
    /// The sending mailbox.
    from: String,
    /// Time allowed for one message's SMTP exchange, in milliseconds.
    timeout_ms: Option<u64>,
    /// Idle connections kept open for reuse.
    pool_max_size: Option<u32>,
}

/// How the connection to the relay is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Security {
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    #[default]
    Starttls,
    /// TLS from the first byte (implicit TLS, "SMTPS").
    Tls,
    /// No encryption: loopback, tests and internal relays only.
    Plain,
}

impl Security {
    /// The usual port for this kind of connection.
    fn default_port(self) -> u16 {
        match self {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::Plain => 25,
        }
    }
}

/// Where in the SMTP exchange something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// TCP, TLS, greeting, EHLO, STARTTLS.
    Connect,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA, the content and the final reply.
    Data,
}

impl Stage {
    /// The stage as named in reasons.
    fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connecting",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
        }
    }
}

/// The `List-Unsubscribe` header (RFC 2369) with one HTTPS link.
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let url = s.trim().trim_start_matches('<').trim_end_matches('>');
        Ok(Self(url.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

/// The `List-Unsubscribe-Post` header (RFC 8058): the link unsubscribes with one POST.
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_string())
    }
}

impl SmtpProvider {
    /// Checks the settings' shape without reading secrets or touching the network.
    pub fn check_config(config: &ProviderConfig) -> Result<(), String> {
        Self::checked_settings(config).map(|_| ())
    }

    /// The parsed settings and the `from` mailbox, with every rule checked.
    fn checked_settings(config: &ProviderConfig) -> Result<(SmtpSettings, Mailbox), String> {
        let settings: SmtpSettings = config.settings()?;
        if config.channel != Channel::Email {
            return Err("kind \"smtp\" carries email only: set channel = \"email\"".into());
        }
        if settings.host.trim().is_empty() {
            return Err("kind \"smtp\" needs `host`, the SMTP relay to send through".into());
        }
        if settings.port == Some(0) {
            return Err("`port` must be from 1 to 65535".into());
        }
        let from: Mailbox = settings.from.parse().map_err(|e| {
            format!("`from` is not a mailbox such as \"Surgery <noreply@example.nhs.uk>\": {e}")
        })?;
        match (&settings.username, &settings.password_env) {
            (Some(_), None) | (None, Some(_)) => {
                return Err("`username` and `password_env` go together: set both or neither".into())
            }
            (Some(user), Some(variable)) if user.is_empty() || variable.is_empty() => {
                return Err("`username` and `password_env` must not be empty".into())
            }
            _ => {}
        }
        if settings.timeout_ms == Some(0) {
            return Err("`timeout_ms` must be at least 1".into());
        }
        Ok((settings, from))
    }

    /// Builds the provider, reading the password from the environment; connects lazily.
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let (settings, from) = Self::checked_settings(config)?;
        let credentials = match (&settings.username, &settings.password_env) {
            (Some(user), Some(variable)) => {
                let password = config.secret_from_env("password_env", variable)?;
                Some(Credentials::new(user.clone(), password))
            }
            _ => None,
        };
        let tls = match settings.security {
            Security::Plain => None,
            Security::Starttls | Security::Tls => Some(
                TlsParameters::new(settings.host.clone())
                    .map_err(|e| format!("cannot set up TLS for `host`: {e}"))?,
            ),
        };
        if settings.security == Security::Plain && credentials.is_some() {
            tracing::warn!(
                provider = %config.name,
                "smtp provider sends its password unencrypted (security = \"plain\")"
            );
        }
        Ok(Self {
            name: config.name.clone(),
            channel: config.channel,
            port: settings
                .port
                .unwrap_or_else(|| settings.security.default_port()),
            host: settings.host,
            security: settings.security,
            tls,
            credentials,
            from,
            hello: ClientId::default(),
            timeout: Duration::from_millis(settings.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
            pool_max_size: settings.pool_max_size.unwrap_or(DEFAULT_POOL_MAX_SIZE) as usize,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The message as sent, and its Message-ID without angle brackets.
    fn compose(&self, message: &Outgoing, to: &Address) -> Result<(String, Vec<u8>), SendError> {
        let domain = self.from.email.domain();
        let message_id = format!(
            "{}.{}@{}",
            hex::encode(rand::random::<[u8; 16]>()),
            message.message_id,
            domain
        );
        let practice_name = message
            .practice
            .email_display_name
            .as_deref()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .or(Some(message.practice.name.trim()))
            .filter(|name| !name.is_empty());
        let display_name = practice_name
            .map(str::to_string)
            .or_else(|| self.from.name.clone());
        let mut builder = Message::builder()
            .from(Mailbox::new(display_name, self.from.email.clone()))
            .to(Mailbox::new(None, to.clone()))
            .message_id(Some(format!("<{message_id}>")));
        if let Some(subject) = &message.subject {
            builder = builder.subject(subject);
        }
        if let Some(reply_to) = &message.practice.reply_to {
            match reply_to.parse::<Mailbox>() {
                Ok(mut mailbox) => {
                    if mailbox.name.is_none() {
                        mailbox.name = practice_name.map(str::to_string);
                    }
                    builder = builder.reply_to(mailbox);
                }
                Err(_) => tracing::warn!(
                    provider = %self.name,
                    practice = %message.practice.ods_code,
                    "practice reply-to address does not parse; sending without Reply-To"
                ),
            }
        }
        if message.priority == Priority::Bulk {
            if let Some(url) = &message.unsubscribe_url {
                let url = url::Url::parse(url).map_err(|e| SendError::Permanent {
                    reason: format!("unsubscribe link is not a URL: {e}"),
                })?;
                builder = builder
                    .header(ListUnsubscribe(url.to_string()))
                    .header(ListUnsubscribePost);
            }
        }
        let built = match &message.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                message.body.clone(),
                html.clone(),
            )),
            None => builder
                .header(ContentType::TEXT_PLAIN)
                .body(message.body.clone()),
        };
        let email = built.map_err(|e| SendError::Permanent {
            reason: format!("cannot build the email: {e}"),
        })?;
        Ok((message_id, email.formatted()))
    }

    /// A connection ready for MAIL FROM: a live pooled one, or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, (Stage, SmtpError)> {
        loop {
            let parked = self.lock_idle().pop();
            let Some(IdleConnection {
                mut connection,
                since,
            }) = parked
            else {
                break;
            };
            if since.elapsed() > IDLE_TIMEOUT || connection.has_broken() {
                close_in_background(connection);
                continue;
            }
            if connection.test_connected().await {
                return Ok(connection);
            }
        }
        self.connect().await
    }

    /// Opens, secures and authenticates a new connection.
    async fn connect(&self) -> Result<AsyncSmtpConnection, (Stage, SmtpError)> {
        let wrapper = match self.security {
            Security::Tls => self.tls.clone(),
            Security::Starttls | Security::Plain => None,
        };
        let mut connection = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
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
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| (Stage::Auth, e))?;
        }
        Ok(connection)
    }

    /// Puts a connection that finished a transaction cleanly back in the pool.
    fn checkin(&self, connection: AsyncSmtpConnection) {
        if connection.has_broken() {
            return;
        }
        let mut surplus = Vec::new();
        {
            let mut idle = self.lock_idle();
            let mut kept = Vec::with_capacity(idle.len() + 1);
            for parked in idle.drain(..) {
                if parked.since.elapsed() > IDLE_TIMEOUT {
                    surplus.push(parked.connection);
                } else {
                    kept.push(parked);
                }
            }
            *idle = kept;
            if idle.len() < self.pool_max_size {
                idle.push(IdleConnection {
                    connection,
                    since: Instant::now(),
                });
            } else {
                surplus.push(connection);
            }
        }
        for connection in surplus {
            close_in_background(connection);
        }
    }

    /// The idle connections (a poisoned lock still holds usable connections).
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<IdleConnection>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Turns a failure into the retry policy's class, logging what operators must fix.
    fn classify(&self, stage: Stage, error: &SmtpError) -> SendError {
        let Some(code) = error.status() else {
            return self.classify_without_reply(stage, error);
        };
        let code = code.severity as u16 * 100 + code.category as u16 * 10 + code.detail as u16;
        let enhanced = enhanced_status(error);
        let shown = match enhanced {
            Some((class, subject, detail)) => format!("{code} {class}.{subject}.{detail}"),
            None => code.to_string(),
        };
        let reason = format!("SMTP server refused {}: {shown}", stage.as_str());
        if error.is_transient() {
            return SendError::Retryable {
                reason,
                retry_after: None,
            };
        }
        let auth_failure = stage == Stage::Auth
            || matches!(code, 530 | 534 | 535 | 538)
            || matches!(enhanced, Some((_, 7, 8 | 9 | 11 | 12 | 14)));
        if auth_failure {
            tracing::error!(
                provider = %self.name,
                code = %shown,
                "SMTP authentication failed: check `username` and the password in `password_env`"
            );
            return SendError::Permanent { reason };
        }
        match stage {
            Stage::Rcpt | Stage::Data if names_bad_recipient(stage, code, enhanced) => {
                SendError::BadRecipient { reason }
            }
            Stage::Connect | Stage::Mail => {
                tracing::error!(
                    provider = %self.name,
                    code = %shown,
                    stage = stage.as_str(),
                    "SMTP server refuses this gateway or its sender address: check `from` and \
                     the relay's settings"
                );
                SendError::Permanent { reason }
            }
            _ => SendError::Permanent { reason },
        }
    }

    /// A failure with no SMTP reply code: network, TLS, unreadable replies, local refusals.
    fn classify_without_reply(&self, stage: Stage, error: &SmtpError) -> SendError {
        let retryable = |reason: String| SendError::Retryable {
            reason,
            retry_after: None,
        };
        if error.is_tls() {
            return retryable(format!("{}: {error}", stage.as_str()));
        }
        if error.is_response() {
            // The text could echo what we sent, so it is not repeated.
            return retryable(format!(
                "unreadable reply from SMTP server ({})",
                stage.as_str()
            ));
        }
        if error.is_client() {
            if stage == Stage::Auth {
                tracing::error!(
                    provider = %self.name,
                    "SMTP authentication impossible: {error}"
                );
                return SendError::Permanent {
                    reason: format!("AUTH: {error}"),
                };
            }
            if stage == Stage::Connect {
                // Such as STARTTLS not offered: could be an attacker on the path, so retry.
                return retryable(format!("{}: {error}", stage.as_str()));
            }
            return SendError::Permanent {
                reason: format!("{}: {error}", stage.as_str()),
            };
        }
        retryable(format!("{}: {error}", stage.as_str()))
    }
}

/// Whether a permanent refusal at RCPT (or, for a single recipient, at the end of DATA) is about
/// the recipient's address rather than our relay, our sender or the content.
fn names_bad_recipient(stage: Stage, code: u16, enhanced: Option<(u16, u16, u16)>) -> bool {
    match enhanced {
        // X.1.x addressing (but X.1.7 and X.1.8 are the sender's), X.2.1 mailbox disabled,
        // X.4.4 no route to the recipient's domain.
        Some((_, 1, detail)) => detail != 7 && detail != 8,
        Some((_, 2, 1)) | Some((_, 4, 4)) => true,
        Some(_) => false,
        // Without an enhanced code only RCPT's mailbox replies say so: 550 mailbox unavailable,
        // 551 user not local, 553 mailbox name not allowed.
        None => stage == Stage::Rcpt && matches!(code, 550 | 551 | 553),
    }
}

/// The enhanced status code (RFC 3463) at the start of the reply text, such as `5.1.1`.
fn enhanced_status(error: &SmtpError) -> Option<(u16, u16, u16)> {
    let text = error.source()?.to_string();
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let class: u16 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
        return None;
    }
    Some((class, subject, detail))
}

/// Sends QUIT and closes, without holding up the caller; a silent server is given up on.
fn close_in_background(mut connection: AsyncSmtpConnection) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(QUIT_TIMEOUT, connection.abort()).await;
    });
}

/// MAIL FROM, RCPT TO and DATA on an open connection.
async fn transaction(
    connection: &mut AsyncSmtpConnection,
    from: &Address,
    to: &Address,
    email: &[u8],
) -> Result<(), (Stage, SmtpError)> {
    let mut parameters = Vec::new();
    if !email.is_ascii()
        && connection
            .server_info()
            .supports_feature(Extension::EightBitMime)
    {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    connection
        .command(Mail::new(Some(from.clone()), parameters))
        .await
        .map_err(|e| (Stage::Mail, e))?;
    connection
        .command(Rcpt::new(to.clone(), Vec::new()))
        .await
        .map_err(|e| (Stage::Rcpt, e))?;
    connection
        .command(Data)
        .await
        .map_err(|e| (Stage::Data, e))?;
    connection
        .message(email)
        .await
        .map_err(|e| (Stage::Data, e))?;
    Ok(())
}

#[async_trait]
impl Provider for SmtpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn channel(&self) -> Channel {
        self.channel
    }

    async fn send(&self, message: &Outgoing) -> Result<Accepted, SendError> {
        let to: Address = message
            .address
            .trim()
            .parse()
            .map_err(|_| SendError::BadRecipient {
                reason: "not a valid email address".into(),
            })?;
        let (message_id, email) = self.compose(message, &to)?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = || SendError::Retryable {
            reason: format!(
                "SMTP server did not finish within {} ms",
                self.timeout.as_millis()
            ),
            retry_after: None,
        };
        // A connection abandoned mid-command is dropped (closed), never reused.
        let mut connection = match tokio::time::timeout_at(deadline, self.checkout()).await {
            Err(_) => return Err(timed_out()),
            Ok(Err((stage, error))) => return Err(self.classify(stage, &error)),
            Ok(Ok(connection)) => connection,
        };
        let sent = tokio::time::timeout_at(
            deadline,
            transaction(&mut connection, &self.from.email, &to, &email),
        )
        .await;
        match sent {
            Err(_) => Err(timed_out()),
            Ok(Err((stage, error))) => {
                close_in_background(connection);
                Err(self.classify(stage, &error))
            }
            Ok(Ok(())) => {
                self.checkin(connection);
                Ok(Accepted {
                    provider_ref: Some(message_id),
                })
            }
        }
    }
}
