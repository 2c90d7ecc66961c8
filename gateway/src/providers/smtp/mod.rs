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
//! - `pool_max_size` (default 64, the default `dispatch.concurrency`): the most connections open
//!   to the relay at once, each kept open for the next message; more sends than that wait for a
//!   free connection (within `timeout_ms`). Set it to what the relay allows one client. 0: a
//!   new connection for each message, closed after it, and no limit.
//!
//! lettre's `AsyncSmtpTransport` is not used directly: its async client has no read timeout, and
//! an abandoned send would put a connection back in its pool in the middle of a transaction
//! (later replies then answer the wrong commands). It also cannot say whether a refusal came at
//! RCPT or at DATA, which decides between a bad address and rejected content. So this provider
//! drives lettre's `AsyncSmtpConnection` itself ([`wire`]: pipelined commands where the server
//! offers them) and keeps its own pool ([`pool`]), into which only connections that finished a
//! transaction cleanly go back.

mod classify;
mod pool;
mod wire;

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message};
use serde::Deserialize;

use self::classify::classify;
use self::pool::{close_in_background, Pool, Relay, Session};
use self::wire::{transaction, Content};
use super::{Accepted, Outgoing, Provider, SendError};
use crate::config::ProviderConfig;
use crate::domain::{Channel, Priority};

/// Default time allowed for one message's whole SMTP exchange.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default number of connections to the relay (the default `dispatch.concurrency`).
const DEFAULT_POOL_MAX_SIZE: u32 = 64;

/// Sends email through an SMTP relay.
pub struct SmtpProvider {
    channel: Channel,
    relay: Relay,
    from: Mailbox,
    timeout: Duration,
    pool: Pool,
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
    /// The most connections open to the relay at once, kept open for reuse.
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
            channel: config.channel,
            relay: Relay {
                name: config.name.clone(),
                port: settings
                    .port
                    .unwrap_or_else(|| settings.security.default_port()),
                host: settings.host,
                security: settings.security,
                tls,
                credentials,
                hello: ClientId::default(),
            },
            from,
            timeout: Duration::from_millis(settings.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
            pool: Pool::new(settings.pool_max_size.unwrap_or(DEFAULT_POOL_MAX_SIZE) as usize),
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
                    provider = %self.relay.name,
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
}

#[async_trait]
impl Provider for SmtpProvider {
    fn name(&self) -> &str {
        &self.relay.name
    }

    fn channel(&self) -> Channel {
        self.channel
    }

    /// SMTP has no delivery receipts that reach the gateway.
    fn confirms_delivery(&self) -> bool {
        false
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
        let content = Content::new(email);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let timed_out = || SendError::Retryable {
            reason: format!(
                "SMTP server did not finish within {} ms",
                self.timeout.as_millis()
            ),
            retry_after: None,
        };
        let Ok(_turn) = tokio::time::timeout_at(deadline, self.pool.turn()).await else {
            return Err(SendError::Retryable {
                reason: format!(
                    "no connection to the SMTP server came free within {} ms \
                     (all `pool_max_size` connections busy)",
                    self.timeout.as_millis()
                ),
                retry_after: None,
            });
        };
        let mut fresh = false;
        loop {
            // A connection abandoned mid-command is dropped (closed), never reused.
            let session = if fresh {
                tokio::time::timeout_at(deadline, self.relay.connect(self.timeout)).await
            } else {
                tokio::time::timeout_at(deadline, self.pool.checkout(&self.relay, self.timeout))
                    .await
            };
            let mut session: Session = match session {
                Err(_) => return Err(timed_out()),
                Ok(Err((stage, error))) => return Err(classify(self.name(), stage, &error)),
                Ok(Ok(session)) => session,
            };
            let sent = tokio::time::timeout_at(
                deadline,
                transaction(
                    &mut session.connection,
                    session.pipelining,
                    &self.from.email,
                    &to,
                    &content,
                ),
            )
            .await;
            match sent {
                Err(_) => return Err(timed_out()),
                Ok(Err((stage, error))) => {
                    close_in_background(session.connection);
                    // A pooled connection the server closed meanwhile: nothing was delivered
                    // (MAIL FROM failed), so once more on a new connection.
                    let closed = match error.status() {
                        None => true,
                        Some(code) => u16::from(code) == 421,
                    };
                    if stage == Stage::Mail && session.unprobed && closed && !fresh {
                        tracing::debug!(provider = %self.name(), "pooled SMTP connection was closed; reconnecting");
                        fresh = true;
                        continue;
                    }
                    return Err(classify(self.name(), stage, &error));
                }
                Ok(Ok(())) => {
                    self.pool.checkin(session);
                    return Ok(Accepted {
                        provider_ref: Some(message_id),
                    });
                }
            }
        }
    }
}
