//! `onething apply` and `onething bundle`: apply once for a bundle and follow its steps.

use crate::client::{channel, explain};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use onething_proto::{
    common as cpb,
    coordinator::{self as pb, bundle_service_client::BundleServiceClient},
};
use serde::Deserialize;
use std::collections::HashMap;

const COORDINATOR: &str = "http://127.0.0.1:18060";

/// `onething apply <bundle> --file form.json`
#[derive(Args)]
pub struct ApplyArgs {
    /// Bundle code, e.g. after_death.
    code: String,
    /// JSON: {"applicant": {"kind": "citizen", "identifier": …, "name": …, "phone": …},
    /// "form": {…}, "materials": [{"code": …, "document_uri": …}], "optional_steps": […]}.
    #[arg(long)]
    file: std::path::PathBuf,
    /// Idempotency key; a fresh one when omitted.
    #[arg(long)]
    key: Option<String>,
    /// Follow the bundle until it finishes.
    #[arg(long)]
    watch: bool,
    /// gRPC address of the coordinator.
    #[arg(long, default_value = COORDINATOR, env = "ONETHING_COORDINATOR")]
    addr: String,
    /// Bearer token (see `onething token`).
    #[arg(long, env = "ONETHING_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// `onething bundle status|watch <id>`
#[derive(Args)]
pub struct BundleArgs {
    /// gRPC address of the coordinator.
    #[arg(long, global = true, default_value = COORDINATOR, env = "ONETHING_COORDINATOR")]
    addr: String,
    /// Bearer token (see `onething token`).
    #[arg(long, global = true, env = "ONETHING_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: BundleCommand,
}

#[derive(Subcommand)]
enum BundleCommand {
    /// The bundle and each step now.
    Status {
        /// Bundle id.
        id: String,
    },
    /// Every change of the bundle until it finishes.
    Watch {
        /// Bundle id.
        id: String,
    },
}

#[derive(Deserialize)]
struct FormFile {
    applicant: ApplicantFile,
    #[serde(default)]
    form: HashMap<String, String>,
    #[serde(default)]
    materials: Vec<MaterialFile>,
    #[serde(default)]
    optional_steps: Vec<String>,
}

#[derive(Deserialize)]
struct ApplicantFile {
    kind: String,
    identifier: String,
    name: String,
    #[serde(default)]
    phone: String,
}

#[derive(Deserialize)]
struct MaterialFile {
    code: String,
    document_uri: String,
    /// The material as an e-licence (`onething elicence issue`), if it is one.
    #[serde(default)]
    elicence: String,
}

fn short(s: &str, prefix: &str) -> String {
    s.trim_start_matches(prefix).to_lowercase()
}

fn print(b: &pb::Bundle) {
    println!("bundle    {}  {}  {}", b.bundle_id, b.code, short(b.state().as_str_name(), "BUNDLE_STATE_"));
    if let Some(due) = &b.due_time {
        let at = chrono::DateTime::from_timestamp(due.seconds, 0).unwrap_or_default();
        println!("due       {}", at.with_timezone(&onething_platform::calendar::china()));
    }
    for s in &b.steps {
        let mut line =
            format!("  {:<22} {:<12} {:<12}", s.step_id, s.department, short(s.state().as_str_name(), "STEP_STATE_"));
        if !s.reason.is_empty() {
            line.push_str(&format!("  ({})", s.reason));
        }
        println!("{line}");
        let mut result: Vec<_> = s.result.iter().collect();
        result.sort();
        for (k, v) in result {
            println!("  {:<22} {k} = {v}", "");
        }
    }
}

async fn watch(c: &mut BundleServiceClient<crate::client::Client>, id: &str) -> anyhow::Result<()> {
    let mut stream =
        c.watch_bundle(pb::WatchBundleRequest { bundle_id: id.into() }).await.map_err(explain)?.into_inner();
    while let Some(update) = stream.message().await.map_err(explain)? {
        if let Some(b) = update.bundle {
            println!("--- version {}", b.version);
            print(&b);
        }
    }
    Ok(())
}

/// Runs `onething apply`.
///
/// # Errors
/// An unreadable form file, a connection failure, or a refused application (explained).
pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let f: FormFile = serde_json::from_str(&text).context("the form file is not valid JSON of the expected shape")?;
    let kind = match f.applicant.kind.as_str() {
        "enterprise" => cpb::ApplicantKind::Enterprise,
        "foreigner" => cpb::ApplicantKind::Foreigner,
        _ => cpb::ApplicantKind::Citizen,
    };
    let mut c = BundleServiceClient::new(channel(&args.addr, args.token.as_deref()).await?);
    let b = c
        .submit_bundle(pb::SubmitBundleRequest {
            code: args.code,
            applicant: Some(cpb::Applicant {
                kind: kind as i32,
                identifier: f.applicant.identifier,
                name: f.applicant.name,
                phone: f.applicant.phone,
            }),
            form: f.form,
            materials: f
                .materials
                .into_iter()
                .map(|m| cpb::Material { code: m.code, document_uri: m.document_uri, elicence: m.elicence })
                .collect(),
            optional_steps: f.optional_steps,
            idempotency_key: args
                .key
                .unwrap_or_else(|| format!("cli-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())),
        })
        .await
        .map_err(explain)?
        .into_inner()
        .bundle
        .context("the coordinator returned no bundle")?;
    print(&b);
    if args.watch {
        watch(&mut c, &b.bundle_id).await?;
    }
    Ok(())
}

/// Runs `onething bundle`.
///
/// # Errors
/// A connection failure or a refused request (explained).
pub async fn bundle(args: BundleArgs) -> anyhow::Result<()> {
    let mut c = BundleServiceClient::new(channel(&args.addr, args.token.as_deref()).await?);
    match args.command {
        BundleCommand::Status { id } => {
            let b = c.get_bundle(pb::GetBundleRequest { bundle_id: id }).await.map_err(explain)?.into_inner().bundle;
            print(&b.context("the coordinator returned no bundle")?);
        }
        BundleCommand::Watch { id } => watch(&mut c, &id).await?,
    }
    Ok(())
}
