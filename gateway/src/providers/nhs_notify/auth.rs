//! Access to the NHS England API platform for an application-restricted API: OAuth 2.0
//! client credentials, proven by a client assertion (a JWT signed RS512 with our private
//! key, whose public half is registered with the platform under `kid`). The access token
//! is kept until shortly before it expires, so a busy gateway asks for one every few
//! minutes, not once per request.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA512};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use super::answer::read_bounded;
use crate::providers::{http, SendError};

/// How long a client assertion is good for: the platform refuses `exp` more than five
/// minutes ahead, so this leaves a minute for clocks that disagree.
const ASSERTION_LIFETIME_SECS: i64 = 240;

/// The most of a token answer read: real ones are a few hundred bytes.
const TOKEN_ANSWER_LIMIT: usize = 64 * 1024;

/// A token is renewed this long before the platform says it expires (or at half its
/// life, if that is shorter), so no request carries one that lapses on the way.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// The longest a token is kept whatever `expires_in` says.
const LONGEST_KEPT: Duration = Duration::from_secs(3600);

/// A private key that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("private key: {0}")]
pub struct KeyError(String);

/// Reads an RSA private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, as `openssl genpkey`
/// writes) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
pub fn read_private_key(pem: &str) -> Result<RsaKeyPair, KeyError> {
    let (label, der) = pem_body(pem).ok_or_else(|| KeyError("not a PEM block".into()))?;
    let pair = match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        other => {
            return Err(KeyError(format!(
                "a {other:?} block is not an RSA private key"
            )))
        }
    };
    pair.map_err(|e| KeyError(format!("not a usable RSA key: {e}")))
}

/// The label and decoded bytes of the first PEM block in `pem`.
fn pem_body(pem: &str) -> Option<(String, Vec<u8>)> {
    let start = pem.find("-----BEGIN ")?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body = &rest[label_end + 5..];
    let end = body.find(&format!("-----END {label}-----"))?;
    let text: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    Some((label, STANDARD.decode(text).ok()?))
}

/// Who we are to the platform and how we prove it.
pub struct Credentials {
    /// The application's API key: `iss` and `sub` of every assertion.
    pub api_key: String,
    /// The id the public key was registered under (its JWKS entry), the assertion's `kid`.
    pub kid: String,
    /// The private key assertions are signed with.
    pub key: RsaKeyPair,
    /// The platform's token endpoint, also the assertion's `aud`.
    pub token_url: String,
}

/// A signed client assertion for `credentials`, made at `now` (seconds since the epoch).
pub fn client_assertion(credentials: &Credentials, now: i64) -> Result<String, String> {
    let header = json!({ "alg": "RS512", "typ": "JWT", "kid": credentials.kid });
    let claims = json!({
        "iss": credentials.api_key,
        "sub": credentials.api_key,
        "aud": credentials.token_url,
        "jti": random_uuid(),
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; credentials.key.public().modulus_len()];
    credentials
        .key
        .sign(
            &RSA_PKCS1_SHA512,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| "the private key would not sign".to_string())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// A random (version 4) UUID in its text form: each assertion's `jti`, each batch's
/// reference.
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The platform's token answer. `expires_in` comes as a string (`"599"`) from the
/// platform; a number is taken too.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: serde_json::Value,
}

/// Access tokens for one application, fetched when needed and kept until shortly before
/// they expire.
pub struct Tokens {
    credentials: Credentials,
    client: reqwest::Client,
    /// The token and when to stop using it. Held across the fetch, so that many sends
    /// waiting at once cause one fetch.
    current: Mutex<Option<(String, Instant)>>,
}

impl Tokens {
    /// Tokens for `credentials`, fetched with `client`.
    pub fn new(credentials: Credentials, client: reqwest::Client) -> Self {
        Self {
            credentials,
            client,
            current: Mutex::new(None),
        }
    }

    /// A token good for the next request: the kept one, or a new one.
    pub async fn token(&self, provider: &str) -> Result<String, SendError> {
        let mut current = self.current.lock().await;
        if let Some((token, until)) = current.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let (token, lifetime) = self.fetch(provider).await?;
        let keep = lifetime
            .min(LONGEST_KEPT)
            .saturating_sub(RENEW_BEFORE.min(lifetime / 2));
        *current = Some((token.clone(), Instant::now() + keep));
        Ok(token)
    }

    /// Forgets the kept token (the API refused it), so the next send fetches another.
    pub async fn forget(&self) {
        *self.current.lock().await = None;
    }

    async fn fetch(&self, provider: &str) -> Result<(String, Duration), SendError> {
        let assertion = client_assertion(&self.credentials, chrono::Utc::now().timestamp())
            .map_err(|reason| SendError::Permanent {
                reason: format!("{provider}: {reason}"),
            })?;
        let form = [
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        let response = self
            .client
            .post(&self.credentials.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| http::transport_error(provider, &e))?;
        let status = response.status();
        let retry_after = http::retry_after(response.headers());
        let body = read_bounded(response, TOKEN_ANSWER_LIMIT).await;
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(SendError::Retryable {
                reason: format!(
                    "{provider}: token endpoint answered HTTP {}",
                    status.as_u16()
                ),
                retry_after,
            });
        }
        if !status.is_success() {
            tracing::error!(
                provider,
                status = status.as_u16(),
                "the NHS England API platform refused our client assertion: check the API key, kid, registered public key and this machine's clock"
            );
            return Err(SendError::Permanent {
                reason: format!(
                    "{provider}: token endpoint refused us: HTTP {}",
                    status.as_u16()
                ),
            });
        }
        let answer: TokenAnswer = body
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| SendError::Retryable {
                reason: format!("{provider}: token endpoint sent an answer that could not be read"),
                retry_after: None,
            })?;
        let seconds = match &answer.expires_in {
            serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
            other => other.as_u64(),
        }
        .unwrap_or(0);
        Ok((answer.access_token, Duration::from_secs(seconds)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4_and_differ() {
        let a = random_uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, random_uuid());
    }

    #[test]
    fn assertions_are_signed_rs512_with_the_platform_claims() {
        let pem = include_str!("../../../../tests/fixtures/nhs_notify_test_key.pem");
        let credentials = Credentials {
            api_key: "key".into(),
            kid: "kid-1".into(),
            key: read_private_key(pem).unwrap(),
            token_url: "https://int.api.service.nhs.uk/oauth2/token".into(),
        };
        let jwt = client_assertion(&credentials, 1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let part = |i: usize| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[i]).unwrap()).unwrap()
        };
        assert_eq!(
            part(0),
            json!({ "alg": "RS512", "typ": "JWT", "kid": "kid-1" })
        );
        let claims = part(1);
        assert_eq!(claims["iss"], "key");
        assert_eq!(claims["sub"], "key");
        assert_eq!(claims["aud"], credentials.token_url);
        assert_eq!(claims["exp"], 1_700_000_000 + ASSERTION_LIFETIME_SECS);
        assert_eq!(claims["jti"].as_str().unwrap().len(), 36);
        let public = credentials.key.public().as_ref().to_vec();
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA512,
            public,
        )
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn pem_blocks_are_read_and_other_text_refused() {
        let pem = "junk\n-----BEGIN TEST-----\nAAEC\nAw==\n-----END TEST-----\n";
        assert_eq!(pem_body(pem), Some(("TEST".into(), vec![0, 1, 2, 3])));
        assert!(pem_body("-----BEGIN TEST-----\nAAEC").is_none());
        assert!(read_private_key("not a key").is_err());
        assert!(read_private_key(pem).is_err());
    }
}
