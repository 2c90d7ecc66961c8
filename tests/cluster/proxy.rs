//! A loopback TCP proxy in front of PostgreSQL that can stop forwarding: an instance whose
//! database connections go through it is cut off from the database (its queries hang, as
//! on a stalled network) until forwarding resumes, when what was held back goes through.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The running proxy.
pub struct Proxy {
    /// `host:port` to connect to instead of the database server.
    pub address: String,
    forwarding: Arc<watch::Sender<bool>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`host:port`) on a free loopback port, forwarding.
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("address").to_string();
        let (tx, _) = watch::channel(true);
        let forwarding = Arc::new(tx);
        let state = forwarding.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = pipe(client_read, server_write, state.subscribe()) => {}
                        _ = pipe(server_read, client_write, state.subscribe()) => {}
                    }
                });
            }
        });
        Self {
            address,
            forwarding,
        }
    }

    /// Stops (`false`) or resumes (`true`) forwarding on every connection, old and new.
    pub fn forward(&self, on: bool) {
        self.forwarding.send_replace(on);
    }
}

/// Copies `from` to `to`, holding each chunk while forwarding is stopped.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut forwarding: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if forwarding.wait_for(|on| *on).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if forwarding.wait_for(|on| *on).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The `host:port` of a `postgres://user@host:port/db` URL.
pub fn authority(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_part = after_scheme.split('/').next().unwrap_or_default();
    host_part
        .rsplit_once('@')
        .map_or(host_part, |(_, h)| h)
        .to_string()
}
