//! A nats-server with JetStream that this process starts and owns — for `onething dev` when
//! none answers, the benchmark, the chaos suite and the end-to-end tests; never in a
//! deployment, where the broker is the platform's. One spawner for all of them: on a port
//! the server picks itself and reports (no port chosen first and bound later, which another
//! process may take in between), restartable on the same port and store as after a crash.

use anyhow::{Context as _, bail};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// How the server is configured.
#[derive(Debug, Clone)]
pub enum NatsConfig {
    /// No users; the store synced to disk every `sync_interval` (nats-server's syntax:
    /// `always`, or a duration such as `2m`, its default).
    Open {
        /// `always` or a duration.
        sync_interval: String,
    },
    /// A configuration file of its own (users, permissions, TLS …); its `jetstream` block
    /// says how the store syncs.
    File(PathBuf),
}

/// Who the readiness probe connects as (a configuration with users needs one of them).
#[derive(Debug, Clone, Default)]
pub struct ProbeUser {
    /// User name; empty: none.
    pub user: String,
    /// Password.
    pub password: String,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct NatsServerSpec {
    /// The nats-server binary.
    pub bin: PathBuf,
    /// Its configuration.
    pub config: NatsConfig,
    /// The JetStream store folder (kept across restarts).
    pub store: PathBuf,
    /// The client port; `None`: one the server picks and reports.
    pub port: Option<u16>,
    /// Environment variables of the server (the passwords a configuration file reads).
    pub env: Vec<(String, String)>,
    /// The probe's user.
    pub probe: ProbeUser,
    /// Where the server's log goes; `None`: discarded.
    pub log: Option<PathBuf>,
}

impl NatsServerSpec {
    /// An open server of `bin` on a port it picks, its store in `store`, synced every
    /// `sync_interval`.
    pub fn open(bin: &Path, store: &Path, sync_interval: &str) -> Self {
        Self {
            bin: bin.to_path_buf(),
            config: NatsConfig::Open { sync_interval: sync_interval.to_string() },
            store: store.to_path_buf(),
            port: None,
            env: Vec::new(),
            probe: ProbeUser::default(),
            log: None,
        }
    }
}

/// A running (or killed) nats-server of this process; killed when dropped.
#[derive(Debug)]
pub struct NatsServerProcess {
    spec: NatsServerSpec,
    child: Option<Child>,
    port: u16,
}

impl NatsServerProcess {
    /// Starts the server and waits (up to 10 seconds) until JetStream answers.
    ///
    /// # Errors
    /// The binary is missing (run `make tools`), the sync interval is malformed, the server
    /// cannot start, reports no port, or does not answer.
    pub async fn start(spec: NatsServerSpec) -> anyhow::Result<Self> {
        let mut me = Self { port: spec.port.unwrap_or(0), spec, child: None };
        me.spawn().await?;
        Ok(me)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id; 0 while killed.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills it and starts it again on the same port and store, waiting until JetStream
    /// answers.
    ///
    /// # Errors
    /// As [`Self::start`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let spec = &self.spec;
        if !spec.bin.exists() {
            bail!("{} is missing: run `make tools` (or set NATS_SERVER_BIN)", spec.bin.display());
        }
        std::fs::create_dir_all(&spec.store).with_context(|| format!("creating {}", spec.store.display()))?;
        let config = match &spec.config {
            NatsConfig::File(path) => path.clone(),
            NatsConfig::Open { sync_interval } => {
                if sync_interval.is_empty() || !sync_interval.chars().all(|c| c.is_ascii_alphanumeric()) {
                    bail!("sync interval {sync_interval:?}: `always` or a duration such as 2m");
                }
                // The interval has no command-line flag; the rest stays on the command line.
                let path = spec.store.join("onething-nats.conf");
                std::fs::write(&path, format!("jetstream {{\n  sync_interval: {sync_interval}\n}}\n"))
                    .with_context(|| format!("writing {}", path.display()))?;
                path
            }
        };
        // The port the server picked is in `<ports>/<binary name>_<pid>.ports`.
        let ports = spec.store.join("ports");
        std::fs::create_dir_all(&ports).with_context(|| format!("creating {}", ports.display()))?;
        let port = if self.port == 0 { "-1".to_string() } else { self.port.to_string() };
        let log = match &spec.log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let child = Command::new(&spec.bin)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .arg("-c")
            .arg(&config)
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(&spec.store)
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", spec.bin.display()))?;
        let pid = child.id();
        self.child = Some(child);
        for _ in 0..200 {
            if self.port == 0 {
                self.port = reported_port(&ports, pid).unwrap_or(0);
            }
            if self.port != 0 && self.answers().await {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!("nats-server exited at start ({status})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nats-server (pid {pid}) did not answer on port {}", self.port)
    }

    /// Whether JetStream answers (it does once the server has loaded its store).
    async fn answers(&self) -> bool {
        let probe = &self.spec.probe;
        let opts = if probe.user.is_empty() {
            async_nats::ConnectOptions::new()
        } else {
            async_nats::ConnectOptions::with_user_and_password(probe.user.clone(), probe.password.clone())
                .custom_inbox_prefix(super::nats::inbox_prefix(&probe.user))
        };
        match opts.connect(self.url()).await {
            Ok(c) => async_nats::jetstream::new(c).query_account().await.is_ok(),
            Err(_) => false,
        }
    }
}

impl Drop for NatsServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The client port server `pid` wrote to its ports file in `dir` (`<binary name>_<pid>.ports`).
fn reported_port(dir: &Path, pid: u32) -> Option<u16> {
    let suffix = format!("_{pid}.ports");
    let file = std::fs::read_dir(dir).ok()?.flatten().find(|e| e.file_name().to_string_lossy().ends_with(&suffix))?;
    let text = std::fs::read_to_string(file.path()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = v.get("nats")?.as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reported_port_is_read_from_the_ports_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nats-server_42.ports"), r#"{"nats":["nats://127.0.0.1:34985"]}"#).unwrap();
        assert_eq!(reported_port(dir.path(), 42), Some(34985));
        assert_eq!(reported_port(dir.path(), 43), None);
        std::fs::write(dir.path().join("nats-server_44.ports"), "{").unwrap();
        assert_eq!(reported_port(dir.path(), 44), None);
    }
}
