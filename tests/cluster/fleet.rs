//! Real `gateway serve` processes on one database, configured by one file, each logging to
//! a file of its own; whatever is still running when the fleet is dropped is killed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peer::{SECRET, SECRET_ENV};

/// Settings every instance of a test shares.
pub struct Settings<'a> {
    /// The database.
    pub database_url: &'a str,
    /// The loopback provider.
    pub provider_url: &'a str,
    /// Its rate, e.g. `100/s`, and burst.
    pub rate: &'a str,
    pub burst: u32,
    /// Sends in flight per instance.
    pub concurrency: usize,
    /// Lease length in seconds.
    pub lease_seconds: u64,
}

/// The processes of one test, and where their config and logs are.
pub struct Fleet {
    dir: PathBuf,
    config: PathBuf,
    /// The config file's text, for instances started with some settings changed.
    toml: String,
    children: Vec<(String, Child)>,
}

impl Fleet {
    /// Writes the instances' config file into `dir`.
    pub fn new(dir: &Path, settings: &Settings) -> Self {
        let config = dir.join("gateway.toml");
        let toml = format!(
            r#"
[server]
bind = "127.0.0.1:0"

[database]
url = "{database_url}"
max_connections = 5

[dispatch]
concurrency = {concurrency}
claim_batch = 64
lease_seconds = {lease_seconds}
poll_interval_ms = 100

[quiet_hours]
start = "21:00"
end = "21:00"

[cluster]
heartbeat_seconds = 1
missed_beats = 3

[telemetry]
log_filter = "info,sqlx=warn"

[[providers]]
name = "loopback-sms"
kind = "webhook"
channel = "sms"
rate = "{rate}"
burst = {burst}
url = "{provider_url}"
signing_secret_env = "{SECRET_ENV}"
"#,
            database_url = settings.database_url,
            concurrency = settings.concurrency,
            lease_seconds = settings.lease_seconds,
            rate = settings.rate,
            burst = settings.burst,
            provider_url = settings.provider_url,
        );
        std::fs::write(&config, &toml).expect("write config");
        Self {
            dir: dir.to_path_buf(),
            config,
            toml,
            children: Vec::new(),
        }
    }

    /// Starts `gateway serve --role ROLE` as instance `name`; returns its process id.
    pub fn start(&mut self, name: &str, role: &str) -> u32 {
        let config = self.config.clone();
        self.start_with_config(name, role, &config)
    }

    /// Starts instance `name` with each `(from, to)` replaced in its copy of the config
    /// (another database address, another provider URL); returns its process id.
    pub fn start_changed(&mut self, name: &str, role: &str, changes: &[(&str, &str)]) -> u32 {
        let mut toml = self.toml.clone();
        for (from, to) in changes {
            assert!(toml.contains(from), "{from} is not in the config");
            toml = toml.replace(from, to);
        }
        let config = self.dir.join(format!("gateway-{name}.toml"));
        std::fs::write(&config, toml).expect("write config");
        self.start_with_config(name, role, &config)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the instance.
    pub fn signal(&mut self, pid: u32, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    fn start_with_config(&mut self, name: &str, role: &str, config: &Path) -> u32 {
        let log = File::create(self.dir.join(format!("{name}.log"))).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        // The config file says everything; settings in this environment must not override it.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GATEWAY__") {
                command.env_remove(key);
            }
        }
        let child = command
            .args(["serve", "--role", role])
            .current_dir(&self.dir)
            .env("GATEWAY_CONFIG", config)
            .env(SECRET_ENV, SECRET)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start gateway");
        let pid = child.id();
        self.children.push((name.to_string(), child));
        pid
    }

    /// Kills the instance with SIGKILL, as a crash would.
    pub fn kill(&mut self, pid: u32) {
        let (_, child) = self.child(pid);
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// Stops every running instance with SIGTERM and waits for each to exit; panics if one
    /// does not stop cleanly within `limit`.
    pub fn terminate_all(&mut self, limit: Duration) {
        for (_, child) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
        }
        let deadline = Instant::now() + limit;
        for (name, child) in &mut self.children {
            loop {
                match child.try_wait().expect("wait") {
                    Some(_) => break,
                    None if Instant::now() > deadline => panic!("{name} did not stop on SIGTERM"),
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }

    /// The last lines each instance logged, for a failing test's report.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {name} (last 30 lines)\n"));
            for line in &lines[lines.len().saturating_sub(30)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Whether every instance started so far is still running, or which one is not.
    pub fn check_running(&mut self, except: &[u32]) -> Result<(), String> {
        for (name, child) in &mut self.children {
            if except.contains(&child.id()) {
                continue;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("{name} exited early: {status}"));
            }
        }
        Ok(())
    }

    fn child(&mut self, pid: u32) -> &mut (String, Child) {
        self.children
            .iter_mut()
            .find(|(_, c)| c.id() == pid)
            .expect("an instance with that pid")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
