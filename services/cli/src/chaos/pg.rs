//! A PostgreSQL server of the chaos run's own: `initdb` in a temporary folder, its own
//! port, trust authentication on loopback, so it can be crashed and restarted without
//! touching the machine's shared server. As root, the server runs as the `postgres` user
//! (PostgreSQL refuses to run as root).

use anyhow::{Context as _, bail};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// The server; stopped (immediately) on drop.
pub struct PgServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    user: Option<(u32, u32)>,
    log: PathBuf,
    child: Option<Child>,
}

/// The newest installed PostgreSQL's binaries (Debian's `/usr/lib/postgresql/<major>/bin`).
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL under /usr/lib/postgresql (apt-get install postgresql)")?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).context("no initdb found")
}

/// The uid and gid of `name`, from `id`.
fn ids_of(name: &str) -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let out = Command::new("id").arg(flag).arg(name).output()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().with_context(|| format!("no user {name}"))
    };
    Ok((id("-u")?, id("-g")?))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl PgServer {
    /// Makes a cluster and starts it on a free port, logging to `log`.
    ///
    /// # Errors
    /// No PostgreSQL installed, initdb failing, or a server not answering in 30 seconds.
    pub async fn start(log: &Path) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = tempfile::tempdir().context("a folder for the cluster")?;
        let user = if is_root() { Some(ids_of("postgres")?) } else { None };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let data = dir.path().join("data");
        let out = Self::command(&bin, user, "initdb")
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = crate::bench::mesh::free_port()?;
        let mut me = Self { bin, dir, port, user, log: log.to_path_buf(), child: None };
        me.spawn().await?;
        Ok(me)
    }

    fn command(bin: &Path, user: Option<(u32, u32)>, program: &str) -> Command {
        match user {
            Some((uid, gid)) => {
                let mut c = Command::new("/usr/bin/setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(bin.join(program));
                c
            }
            None => Command::new(bin.join(program)),
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Self::command(&self.bin, self.user, "postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"])
            .arg("-k")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting postgres")?;
        self.child = Some(child);
        for _ in 0..300 {
            if onething_platform::db::connect(&self.admin_url()).await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("postgres did not answer on port {}; see {}", self.port, self.log.display())
    }

    /// The maintenance database's URL.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it at once (SIGQUIT: no checkpoint, recovery from the WAL at the next start,
    /// as after a crash) and waits for it to end.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-QUIT").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// Crashes it (immediate shutdown) and starts it again on its port and data.
    ///
    /// # Errors
    /// As [`PgServer::start`].
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn().await
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}
