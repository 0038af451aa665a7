//! The supervision process: configuration, telemetry, run until SIGTERM.

use onething_platform::{config, shutdown, telemetry};
use onething_supervision::{SERVICE, build, default_settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = config::load_settings(default_settings(std::path::Path::new(".data")), None)?;
    let _telemetry = telemetry::init(SERVICE, &settings.log);
    build(settings).await?.run_until_stopped(shutdown::on_signal()).await
}
