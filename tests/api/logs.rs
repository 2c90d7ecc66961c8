//! The released binary's logs as an operator's log collector reads them: `gateway serve` with
//! `format = "json"` writes one JSON object per line, and a request id the client chose is on
//! the line that records the request's answer as well as in its error body.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::console::client;
use crate::helpers::{spawn_app, Db, TestApp};

/// How long the binary may take to start listening (it runs migrations first).
const START_LIMIT: Duration = Duration::from_secs(60);

/// A `gateway serve` process on `app`'s database, whose standard error arrives line by line.
struct Served {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    /// Starts the binary with JSON logs on a free port, in `dir` (where its demo providers
    /// write), with nothing from this environment but the settings given here.
    fn start(app: &TestApp, dir: &std::path::Path) -> Served {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GATEWAY__") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .arg("serve")
            .current_dir(dir)
            .env_remove("GATEWAY_CONFIG")
            .env_remove("RUST_LOG")
            .env("GATEWAY__DATABASE__URL", app.database_url())
            .env("GATEWAY__SERVER__BIND", "127.0.0.1:0")
            .env("GATEWAY__TELEMETRY__FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gateway");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Served {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one is the "gateway listening" line; returns the address it names.
    fn address(&mut self) -> String {
        loop {
            let line = self.lines.recv_timeout(START_LIMIT).unwrap_or_else(|_| {
                panic!(
                    "no \"gateway listening\" line; so far:\n{}",
                    self.seen.join("\n")
                )
            });
            self.seen.push(line.clone());
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                if value["fields"]["message"] == "gateway listening" {
                    let address = value["fields"]["address"].as_str().expect("address");
                    return format!("http://{address}");
                }
            }
        }
    }

    /// Stops the process with SIGTERM, as an operator would, and returns every line it wrote.
    fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        // The reader thread ends when the pipe closes with the process.
        self.seen.extend(self.lines.iter());
        assert!(exit.success(), "{exit}:\n{}", self.seen.join("\n"));
        self.seen
    }
}

/// The parsed lines whose request span carries `id`.
fn lines_of_request<'a>(lines: &'a [Value], id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| line["span"]["request_id"] == id)
        .collect()
}

pub async fn json_logs_parse_line_by_line_and_carry_the_clients_request_id(db: Db) {
    let app = spawn_app(db).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut served = tokio::task::block_in_place(|| Served::start(&app, dir.path()));
    let address = tokio::task::block_in_place(|| served.address());
    let url = format!("{address}/api/v1/practices");

    let refused = client()
        .get(&url)
        .header("x-request-id", "support-call-42")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "support-call-42", "{body}");
    let answered = client()
        .get(&url)
        .bearer_auth(&app.admin_key)
        .header("x-request-id", "morning-check-43")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), StatusCode::OK);

    let raw = tokio::task::block_in_place(|| served.stop());
    let lines: Vec<Value> = raw
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    for line in &lines {
        assert!(line["timestamp"].is_string(), "no time: {line}");
        assert!(line["level"].is_string(), "no level: {line}");
        assert!(
            !line.to_string().contains("\\u001b["),
            "colour code: {line}"
        );
    }
    for (id, status) in [("support-call-42", 401), ("morning-check-43", 200)] {
        let own = lines_of_request(&lines, id);
        let finished: Vec<_> = own
            .iter()
            .filter(|line| line["fields"]["message"] == "finished processing request")
            .collect();
        assert_eq!(finished.len(), 1, "{id}: {}", raw.join("\n"));
        assert_eq!(finished[0]["fields"]["status"], status, "{}", finished[0]);
        assert_eq!(finished[0]["span"]["route"], "/api/v1/practices");
    }
    assert!(
        lines
            .iter()
            .any(|line| line["fields"]["message"] == "gateway listening"),
        "the start is logged as JSON too"
    );
}
