//! One poll of one source over HTTP: a conditional GET through the guarded client, bounded
//! in time as a whole (connecting, waiting and reading), and a body read chunk by chunk that
//! stops as soon as it would pass [`MAX_DOCUMENT_BYTES`].

use std::time::Duration;

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use reqwest::{Client, Response, StatusCode};

use super::Source;
use crate::config::SourceKind;
use crate::intake::sources::{SourceError, MAX_DOCUMENT_BYTES};
use crate::outbound::{check_literal, is_address_refusal, AddressPolicy};

/// Why a poll gave no document. The text is short and safe to log: it never repeats the
/// document nor the source's URL (which may carry a token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// The host is, or resolves only to, addresses `[status_sources]` does not allow.
    #[error("address not allowed")]
    AddressNotAllowed,
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    /// An error status; `retry_after` is what a 429 or 503 asked for.
    #[error("answered HTTP {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Redirects are not followed: the target would escape the address checks of IP
    /// literals, and a moved document should be configured where it now is.
    #[error("redirected (HTTP {0}); set the source's url to the final address")]
    Redirected(u16),
    #[error("document over the {cap}-byte cap")]
    TooLarge { cap: usize },
    /// The document was read but did not parse.
    #[error("{0}")]
    Document(#[from] SourceError),
    /// Connecting or reading failed: refused, reset, TLS, a broken body.
    #[error("{0}")]
    Transport(String),
    /// The document was read, but the sink could not take its incidents.
    #[error("incidents not recorded: {0}")]
    Sink(String),
}

impl PollError {
    /// How long the source asked to be left alone, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PollError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What the last delivered document said to send back, so an unchanged document costs the
/// supplier a 304 and the gateway no parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Validators {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

impl Validators {
    fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            etag: headers.get(ETAG).cloned(),
            last_modified: headers.get(LAST_MODIFIED).cloned(),
        }
    }

    fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// What a successful poll brought.
#[derive(Debug)]
pub(super) enum Fetched {
    /// 304: the document is as it was when `validators` were taken.
    NotModified,
    /// A whole document, at most [`MAX_DOCUMENT_BYTES`], and the validators to send next.
    Document {
        body: Vec<u8>,
        validators: Validators,
    },
}

/// The client every poller shares: names resolved and checked against `addresses` at
/// connect time, no proxy, no redirects. Time limits are per source, in [`fetch`].
pub(super) fn client(addresses: AddressPolicy) -> Result<Client, String> {
    let builder = Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "gp-notification-gateway/",
            env!("CARGO_PKG_VERSION")
        ));
    crate::outbound::guarded_client(builder, addresses)
}

/// Polls `source` once, within its timeout.
pub(super) async fn fetch(
    client: &Client,
    addresses: &AddressPolicy,
    source: &Source,
    validators: &Validators,
) -> Result<Fetched, PollError> {
    // IP-literal hosts never reach the resolver, so they are checked here.
    check_literal(&source.url, addresses).map_err(|_| PollError::AddressNotAllowed)?;
    tokio::time::timeout(source.timeout, request(client, source, validators))
        .await
        .unwrap_or(Err(PollError::Timeout(source.timeout)))
}

async fn request(
    client: &Client,
    source: &Source,
    validators: &Validators,
) -> Result<Fetched, PollError> {
    let accept = match source.kind {
        SourceKind::Statuspage => "application/json",
        SourceKind::Feed => {
            "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
        }
    };
    let mut request = client.get(source.url.clone()).header(ACCEPT, accept);
    if let Some(etag) = &validators.etag {
        request = request.header(IF_NONE_MATCH, etag.clone());
    }
    if let Some(modified) = &validators.last_modified {
        request = request.header(IF_MODIFIED_SINCE, modified.clone());
    }
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED && !validators.is_empty() {
        return Ok(Fetched::NotModified);
    }
    if status.is_redirection() {
        return Err(PollError::Redirected(status.as_u16()));
    }
    if !status.is_success() {
        return Err(PollError::Status {
            status: status.as_u16(),
            retry_after: crate::providers::http::retry_after(response.headers()),
        });
    }
    let validators = Validators::from_headers(response.headers());
    let body = read_capped(&mut response, MAX_DOCUMENT_BYTES).await?;
    Ok(Fetched::Document { body, validators })
}

/// The body, refused as soon as it would pass `cap` bytes: a declared length over the cap is
/// refused before reading, and an undeclared one is read only up to it. Dropping the
/// response then closes the connection, so the rest is never downloaded.
async fn read_capped(response: &mut Response, cap: usize) -> Result<Vec<u8>, PollError> {
    let declared = response.content_length().unwrap_or(0);
    if declared > cap as u64 {
        return Err(PollError::TooLarge { cap });
    }
    let mut body = Vec::with_capacity(declared as usize);
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if chunk.len() > cap - body.len() {
            return Err(PollError::TooLarge { cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport failure in a few words, from reqwest's kind and the innermost cause (an OS
/// error such as "Connection refused"); never the URL.
fn transport(error: reqwest::Error) -> PollError {
    if is_address_refusal(&error) {
        return PollError::AddressNotAllowed;
    }
    let kind = if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut innermost = None;
    let mut cause = std::error::Error::source(&error);
    // Bounded: error chains are short, but a cycle must not hang a poller.
    for _ in 0..16 {
        match cause {
            Some(inner) => {
                innermost = Some(inner);
                cause = inner.source();
            }
            None => break,
        }
    }
    let detail = innermost
        .map(|inner| crate::intake::sources::clean_text(&inner.to_string(), 120))
        .unwrap_or_default();
    if detail.is_empty() {
        PollError::Transport(kind.to_string())
    } else {
        PollError::Transport(format!("{kind}: {detail}"))
    }
}
