//! A small SMTP server on loopback for tests: it records each message as received (envelope
//! and data, dot-unstuffed) and answers as scripted. Shared by `tests/provider_smtp.rs` and the
//! end-to-end tests (`tests/api`), which include it with `#[path = ...] mod smtp_server;`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The address of `MAIL FROM`.
    pub mail_from: String,
    /// The addresses of each accepted `RCPT TO`.
    pub rcpt_to: Vec<String>,
    /// The message (headers and body) as sent after `DATA`, dot-unstuffed.
    pub data: Vec<u8>,
}

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Reply to every RCPT TO instead of 250.
    pub rcpt: Option<&'static str>,
    /// Reply after the end of DATA instead of 250.
    pub data_end: Option<&'static str>,
    /// Accept connections and never say a word.
    pub silent: bool,
    /// Greet with something that is not SMTP.
    pub garbage: bool,
    /// Offer AUTH PLAIN and require these credentials before MAIL.
    pub auth: Option<(&'static str, &'static str)>,
    /// Say nothing after the end of DATA for this many messages (across connections).
    pub stall_data_end: usize,
    /// Hang up without QUIT after each accepted message.
    pub close_after_message: bool,
}

/// A running server.
pub struct Server {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    /// Starts listening on 127.0.0.1 and serves each connection by `script`.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stalls = Arc::new(AtomicUsize::new(script.stall_data_end));
        let script = Arc::new(script);
        let (r, c) = (received.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (script, r, stalls) = (script.clone(), r.clone(), stalls.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &script, &r, &stalls).await;
                });
            }
        });
        Self {
            addr,
            received,
            connections,
        }
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// The address inside `MAIL FROM:<...>` or `RCPT TO:<...>`.
fn angle_address(argument: &str) -> String {
    let start = argument.find('<').map_or(0, |i| i + 1);
    let end = argument.find('>').unwrap_or(argument.len());
    argument[start..end].to_string()
}

/// Whether an `AUTH PLAIN` response carries the expected credentials.
fn plain_matches(encoded: &str, user: &str, password: &str) -> bool {
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
    parts.len() == 3 && parts[1] == user.as_bytes() && parts[2] == password.as_bytes()
}

/// One SMTP session.
async fn serve(
    stream: TcpStream,
    script: &Script,
    received: &Mutex<Vec<Received>>,
    stalls: &AtomicUsize,
) -> std::io::Result<()> {
    if script.silent {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
        return Ok(());
    }
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if script.garbage {
        write
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        tokio::time::sleep(Duration::from_secs(30)).await;
        return Ok(());
    }
    write.write_all(b"220 mx.test ESMTP ready\r\n").await?;
    let mut authenticated = script.auth.is_none();
    let mut mail_from: Option<String> = None;
    let mut rcpt_to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let auth = if script.auth.is_some() {
                "250-AUTH PLAIN\r\n"
            } else {
                ""
            };
            format!("250-mx.test greets you\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 10485760\r\n{auth}250 ENHANCEDSTATUSCODES\r\n")
        } else if upper.starts_with("HELO") {
            "250 mx.test\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let mut response = command["AUTH PLAIN".len()..].trim().to_string();
            if response.is_empty() {
                write.write_all(b"334 \r\n").await?;
                let mut next = String::new();
                reader.read_line(&mut next).await?;
                response = next.trim().to_string();
            }
            let (user, password) = script.auth.unwrap_or_default();
            if plain_matches(&response, user, password) {
                authenticated = true;
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            if !authenticated {
                "530 5.7.0 Authentication required\r\n".into()
            } else {
                mail_from = Some(angle_address(command));
                rcpt_to.clear();
                "250 2.1.0 OK\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            if mail_from.is_none() {
                "503 5.5.1 MAIL first\r\n".into()
            } else if let Some(reply) = script.rcpt {
                format!("{reply}\r\n")
            } else {
                rcpt_to.push(angle_address(command));
                "250 2.1.5 OK\r\n".into()
            }
        } else if upper == "DATA" {
            if rcpt_to.is_empty() {
                "554 5.5.1 No valid recipients\r\n".into()
            } else {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = Vec::new();
                loop {
                    let mut raw = Vec::new();
                    if reader.read_until(b'\n', &mut raw).await? == 0 {
                        return Ok(());
                    }
                    if raw == b".\r\n" {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 4.5.2).
                    let unstuffed = if raw.starts_with(b".") {
                        &raw[1..]
                    } else {
                        &raw[..]
                    };
                    data.extend_from_slice(unstuffed);
                }
                let stall = stalls
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if stall {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return Ok(());
                }
                let from = mail_from.take().unwrap_or_default();
                let to = std::mem::take(&mut rcpt_to);
                match script.data_end {
                    Some(reply) => format!("{reply}\r\n"),
                    None => {
                        received.lock().unwrap().push(Received {
                            mail_from: from,
                            rcpt_to: to,
                            data,
                        });
                        if script.close_after_message {
                            write
                                .write_all(b"250 2.0.0 Ok: queued as 1A2B3C\r\n")
                                .await?;
                            return Ok(());
                        }
                        "250 2.0.0 Ok: queued as 1A2B3C\r\n".into()
                    }
                }
            }
        } else if upper == "RSET" {
            mail_from = None;
            rcpt_to.clear();
            "250 2.0.0 OK\r\n".into()
        } else if upper.starts_with("NOOP") {
            "250 2.0.0 OK\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "500 5.5.2 Command not recognised\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
}
