//! Client commands: cases of any department through the shared CaseService, and the
//! household registry. Output is for people; errors show the gRPC code, the stable reason
//! and the field violations.

mod case;
mod household;

pub use case::{CaseArgs, case};
pub use household::{HouseholdArgs, household};

use anyhow::{Context as _, bail};
use clap::Args;
use onething_proto::common as pb;
use tonic::{Status, transport::Channel};
use tonic_types::StatusExt;

/// Default address of household in `onething dev`.
const HOUSEHOLD: &str = "http://127.0.0.1:18061";

fn pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got {s}"))
}

fn material(s: &str) -> Result<(String, String), String> {
    Ok(match s.split_once('=') {
        Some((c, u)) => (c.to_string(), u.to_string()),
        None => (s.to_string(), format!("elicence://{s}")),
    })
}

/// Adds the bearer token and the current trace context to every request.
#[derive(Clone)]
pub(crate) struct Outgoing(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Outgoing {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        let mut req = onething_platform::telemetry::inject_grpc(req)?;
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub(crate) type Client = tonic::service::interceptor::InterceptedService<Channel, Outgoing>;

pub(crate) async fn channel(addr: &str, token: Option<&str>) -> anyhow::Result<Client> {
    let channel =
        Channel::from_shared(addr.to_string())?.connect().await.with_context(|| format!("connecting to {addr}"))?;
    let header = match token {
        Some(t) => Some(format!("Bearer {}", t.trim()).parse().context("the token is not ASCII")?),
        None => None,
    };
    Ok(tonic::service::interceptor::InterceptedService::new(channel, Outgoing(header)))
}

/// Turns a status into a readable error: code, reason, field violations.
pub(crate) fn explain(s: Status) -> anyhow::Error {
    let d = s.get_error_details();
    let mut msg = format!("{:?}: {}", s.code(), s.message());
    if let Some(info) = d.error_info() {
        msg.push_str(&format!(" [{}]", info.reason));
    }
    if let Some(br) = d.bad_request() {
        for v in &br.field_violations {
            msg.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    anyhow::anyhow!(msg)
}

fn print_case(c: &pb::Case) {
    println!("case      {}", c.case_id);
    println!("matter    {}", c.matter_code);
    println!("state     {}", c.state().as_str_name().trim_start_matches("CASE_STATE_").to_lowercase());
    println!("version   {}", c.version);
    if !c.reason_code.is_empty() {
        println!("reason    {} {}", c.reason_code, c.reason_text);
    }
    if !c.missing_materials.is_empty() {
        println!("missing   {}", c.missing_materials.join(", "));
    }
    if let Some(due) = c.time_rule.as_ref().and_then(|t| t.due_time.as_ref()) {
        let at = chrono::DateTime::from_timestamp(due.seconds, 0).unwrap_or_default();
        let provisional = if c.time_rule.as_ref().is_some_and(|t| t.provisional) { " (provisional)" } else { "" };
        println!("due       {}{provisional}", at.with_timezone(&onething_platform::calendar::china()));
    }
    let mut result: Vec<_> = c.result.iter().collect();
    result.sort();
    for (k, v) in result {
        println!("result    {k} = {v}");
    }
}

fn applicant(kind: &str, id: &str, name: &str, phone: &str) -> anyhow::Result<pb::Applicant> {
    let kind = match kind {
        "citizen" => pb::ApplicantKind::Citizen,
        "enterprise" => pb::ApplicantKind::Enterprise,
        "foreigner" => pb::ApplicantKind::Foreigner,
        other => bail!("applicant kind is citizen, enterprise or foreigner, not {other}"),
    };
    Ok(pb::Applicant { kind: kind as i32, identifier: id.into(), name: name.into(), phone: phone.into() })
}

fn to_materials(pairs: Vec<(String, String)>) -> Vec<pb::Material> {
    pairs.into_iter().map(|(code, document_uri)| pb::Material { code, document_uri, ..Default::default() }).collect()
}

fn fresh_key() -> String {
    format!("cli-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

/// `onething key …`
#[derive(Args)]
pub struct KeyArgs {
    /// The service that signs with the key (coordinator, supervision): its JWK may sign
    /// that service and nothing else.
    #[arg(long, value_enum)]
    service: onething_platform::service_kind::ServiceKind,
    /// Where to write the private key (PKCS#8 PEM, mode 0600); refused if it exists.
    #[arg(long)]
    out: std::path::PathBuf,
}

/// Runs `onething key …`: writes a new signing key for a service and prints its JWK,
/// scoped to that service, for the JWKS.
///
/// # Errors
/// An unknown service, an existing file, or no randomness.
pub fn key(args: KeyArgs) -> anyhow::Result<()> {
    let minter = onething_platform::auth::new_signing_key(&args.out, Default::default())?;
    println!("{}", minter.jwk(&serde_json::json!({ "services": [args.service.name()] })));
    Ok(())
}

/// `onething token …`
#[derive(Args)]
pub struct TokenArgs {
    /// staff, citizen, enterprise, foreigner or service.
    #[arg(long, default_value = "staff")]
    kind: String,
    /// Department of staff or a service (e.g. household, supervision, coordinator).
    #[arg(long, default_value = "")]
    dept: String,
    /// Roles, comma separated (clerk, approver, inspector).
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Citizen ID number (citizens).
    #[arg(long, default_value = "")]
    id_number: String,
    /// Unified social credit code (enterprises).
    #[arg(long, default_value = "")]
    credit_code: String,
    /// Passport number (foreigners).
    #[arg(long, default_value = "")]
    passport_number: String,
    /// Subject id; derived from the rest when omitted.
    #[arg(long)]
    sub: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 8 * 3600)]
    ttl: u64,
    /// Signing key made by `onething dev`.
    #[arg(long, default_value = ".data/keys/dev-signing-key.pem")]
    key: std::path::PathBuf,
    /// The service a service token is for (required with `--kind service`: service tokens
    /// are addressed to one callee).
    #[arg(long)]
    to: Option<String>,
}

/// Runs `onething token …`: prints a token.
///
/// # Errors
/// An unknown kind, or no development key (run `make run` once).
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    use onething_platform::auth::{AuthSettings, Minter, Principal, SubjectKind};
    let kind = match args.kind.as_str() {
        "staff" => SubjectKind::Staff,
        "citizen" => SubjectKind::Citizen,
        "enterprise" => SubjectKind::Enterprise,
        "service" => SubjectKind::Service,
        "foreigner" => SubjectKind::Foreigner,
        other => bail!("kind is staff, citizen, enterprise, foreigner or service, not {other}"),
    };
    let sub = args.sub.unwrap_or_else(|| match kind {
        SubjectKind::Staff => format!("{}-dev-staff", args.dept),
        SubjectKind::Service => args.dept.clone(),
        SubjectKind::Citizen => format!("dev-citizen-{}", args.id_number.chars().rev().take(4).collect::<String>()),
        SubjectKind::Enterprise => format!("dev-enterprise-{}", args.credit_code),
        SubjectKind::Foreigner => {
            format!("dev-foreigner-{}", args.passport_number.chars().rev().take(4).collect::<String>())
        }
    });
    let minter = Minter::load(&args.key, AuthSettings::default())
        .with_context(|| "no development key: run `make run` once, or pass --key")?;
    let principal = Principal {
        sub,
        kind,
        dept: args.dept,
        roles: args.roles,
        id_number: args.id_number,
        credit_code: args.credit_code,
        passport_number: args.passport_number,
        actor: None,
    };
    let token = match (kind, args.to) {
        (SubjectKind::Service, Some(callee)) => minter.mint_to(principal, &callee, args.ttl)?,
        (SubjectKind::Service, None) => bail!("a service token needs --to <callee>"),
        (_, Some(_)) => bail!("--to is for service tokens"),
        _ => minter.mint(principal, args.ttl)?,
    };
    println!("{token}");
    Ok(())
}
