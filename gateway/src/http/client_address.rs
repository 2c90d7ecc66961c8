//! Who is on the other end of a request: the connection's address, or the client a trusted
//! reverse proxy names. Per-client limits (sign-in throttling, anonymous follows, push
//! receipts) count by it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::app::AppState;

/// The client's address: the connection's own, or, when that is a trusted proxy, the
/// nearest `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    // Read from the right: entries to the left of the nearest untrusted one are the
    // client's own to write, so they count for nothing.
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let nearest = entries
        .into_iter()
        .rev()
        .map_while(|entry| entry.trim().parse::<IpAddr>().ok())
        .find(|ip| !trusted.contains(ip));
    Some(nearest.unwrap_or(peer))
}

/// The client address of a request (see [`client_address`]); `None` when the server was
/// not started with connection info. Every per-client limit (console sign-in, anonymous
/// push follows, push receipts) reads the client through this one extractor.
pub struct ClientAddress(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientAddress(client_address(
            peer,
            &parts.headers,
            &state.config.server.trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.9".parse().unwrap(),
        );
        let proxy = [ip("127.0.0.1")];
        assert_eq!(
            client_address(Some(ip("192.0.2.5")), &headers, &proxy),
            Some(ip("192.0.2.5"))
        );
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), &headers, &proxy),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), &headers, &[]),
            Some(ip("127.0.0.1"))
        );
        let both = [ip("127.0.0.1"), ip("203.0.113.9")];
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), &headers, &both),
            Some(ip("198.51.100.1"))
        );
        headers.insert("x-forwarded-for", "nonsense".parse().unwrap());
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), &headers, &proxy),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(client_address(None, &headers, &proxy), None);
    }
}
