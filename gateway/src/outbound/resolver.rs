//! The HTTP client for outside addresses: it resolves names itself and connects only to
//! addresses the [`AddressPolicy`] permits, and refuses IP-literal hosts the same way
//! (reqwest consults no resolver for those).

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::AddressPolicy;

/// The only reason ever stored for a refused address: the same whatever the address, port
/// or name was, so that attempts cannot be used to map the internal network.
pub const ADDRESS_NOT_ALLOWED: &str = "address not allowed";

/// A request refused because its host is, or resolves only to, addresses the policy does
/// not permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("address not allowed")]
pub struct AddressNotAllowed;

/// A reqwest resolver that looks the name up with the system resolver and keeps only the
/// permitted addresses; a name with none left fails with [`AddressNotAllowed`].
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: AddressPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }

    /// The permitted addresses among `found`, or why there are none.
    pub fn permitted(
        policy: &AddressPolicy,
        found: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<Vec<SocketAddr>, AddressNotAllowed> {
        let permitted: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| policy.permits(a.ip()))
            .collect();
        if permitted.is_empty() {
            Err(AddressNotAllowed)
        } else {
            Ok(permitted)
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let permitted = Self::permitted(&policy, found)?;
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

/// Whether a URL's host, if it is an IP literal, is one the policy permits (names are
/// checked by the resolver when the request connects).
pub fn check_literal(url: &url::Url, policy: &AddressPolicy) -> Result<(), AddressNotAllowed> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    if policy.permits(ip) {
        Ok(())
    } else {
        Err(AddressNotAllowed)
    }
}

/// Whether a request failed because the resolver refused its addresses.
pub fn is_address_refusal(error: &(dyn StdError + 'static)) -> bool {
    let mut cause = Some(error);
    // Bounded: error chains are short, but a cycle must not hang a worker.
    for _ in 0..32 {
        match cause {
            Some(e) if e.is::<AddressNotAllowed>() => return true,
            Some(e) => cause = e.source(),
            None => return false,
        }
    }
    false
}

/// Finishes a client for requests to outside addresses: the [`GuardedResolver`] for
/// `policy`, and no proxy from the environment (a proxy would resolve the name itself,
/// past the check).
pub fn guarded_client(
    builder: reqwest::ClientBuilder,
    policy: AddressPolicy,
) -> Result<reqwest::Client, String> {
    builder
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_permitted_addresses_are_kept() {
        let strict = AddressPolicy::default();
        let found: Vec<SocketAddr> = vec![
            "127.0.0.1:0".parse().unwrap(),
            "93.184.215.14:0".parse().unwrap(),
        ];
        assert_eq!(
            GuardedResolver::permitted(&strict, found.clone()),
            Ok(vec![found[1]])
        );
        assert_eq!(
            GuardedResolver::permitted(&strict, found[..1].to_vec()),
            Err(AddressNotAllowed)
        );
        assert_eq!(
            GuardedResolver::permitted(&strict, Vec::new()),
            Err(AddressNotAllowed)
        );
    }

    #[test]
    fn ip_literals_are_checked_in_every_spelling() {
        let strict = AddressPolicy::default();
        for url in [
            "https://127.0.0.1/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://169.254.169.254/latest",
            "https://[fd00::1]:8443/x",
        ] {
            let url = url::Url::parse(url).unwrap();
            assert_eq!(
                check_literal(&url, &strict),
                Err(AddressNotAllowed),
                "{url}"
            );
        }
        for url in ["https://8.8.8.8/x", "https://fcm.googleapis.com/fcm/send/a"] {
            let url = url::Url::parse(url).unwrap();
            assert_eq!(check_literal(&url, &strict), Ok(()), "{url}");
        }
        let loopback = AddressPolicy::parse(&["127.0.0.0/8"]).unwrap();
        let url = url::Url::parse("http://127.0.0.1:9/x").unwrap();
        assert_eq!(check_literal(&url, &loopback), Ok(()));
    }

    #[tokio::test]
    async fn the_client_refuses_a_name_resolving_to_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = guarded_client(reqwest::Client::builder(), AddressPolicy::default()).unwrap();
        let error = client
            .get(format!("http://localhost:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert!(is_address_refusal(&error), "{error:?}");
        listener.set_nonblocking(true).unwrap();
        assert!(
            listener.accept().is_err(),
            "a connection reached the listener"
        );
    }
}
