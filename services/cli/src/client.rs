//! Client commands: cases of any department through the shared CaseService, and the
//! household registry. Output is for people; errors show the gRPC code, the stable reason
//! and the field violations.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use onething_proto::{
    common::{self as pb, case_service_client::CaseServiceClient},
    household::{self as hpb, household_service_client::HouseholdServiceClient},
};
use tonic::{Status, transport::Channel};
use tonic_types::StatusExt;

/// Default address of household in `onething dev`.
const HOUSEHOLD: &str = "http://127.0.0.1:18061";

/// `onething case …`
#[derive(Args)]
pub struct CaseArgs {
    /// gRPC address of the department.
    #[arg(long, global = true, default_value = HOUSEHOLD, env = "ONETHING_ADDR")]
    addr: String,
    /// Bearer token (see `onething token`).
    #[arg(long, global = true, env = "ONETHING_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: CaseCommand,
}

#[derive(Subcommand)]
enum CaseCommand {
    /// Create a case.
    Create {
        /// Matter code, e.g. household.certificate.
        #[arg(long)]
        matter: String,
        /// `citizen` or `enterprise`.
        #[arg(long, default_value = "citizen")]
        applicant_kind: String,
        /// ID number or credit code of the applicant.
        #[arg(long)]
        applicant_id: String,
        /// Applicant name.
        #[arg(long)]
        applicant_name: String,
        /// Applicant phone.
        #[arg(long, default_value = "")]
        phone: String,
        /// Form field, `name=value`; repeat.
        #[arg(long = "field", value_parser = pair)]
        fields: Vec<(String, String)>,
        /// Material, `code=document-uri` (or just `code`); repeat.
        #[arg(long = "material", value_parser = material)]
        materials: Vec<(String, String)>,
        /// Idempotency key; a fresh one when omitted.
        #[arg(long)]
        key: Option<String>,
    },
    /// Show a case.
    Get {
        /// Case id.
        id: String,
    },
    /// List cases (green channel first, then newest).
    List {
        /// Only this state, e.g. accepted.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// Clerk accepts a submitted case.
    Accept {
        /// Case id.
        id: String,
    },
    /// Clerk approves an accepted case.
    Approve {
        /// Case id.
        id: String,
    },
    /// Clerk rejects an accepted case.
    Reject {
        /// Case id.
        id: String,
        /// Reason code, UPPER_SNAKE_CASE.
        #[arg(long)]
        reason: String,
        /// Explanation for the applicant.
        #[arg(long, default_value = "")]
        text: String,
    },
    /// Clerk asks for materials (补正).
    Supplement {
        /// Case id.
        id: String,
        /// Material code; repeat.
        #[arg(long = "material", required = true)]
        materials: Vec<String>,
        /// What to fix.
        #[arg(long, default_value = "")]
        text: String,
    },
    /// Applicant supplies materials.
    Supply {
        /// Case id.
        id: String,
        /// Material, `code=document-uri`; repeat.
        #[arg(long = "material", value_parser = material, required = true)]
        materials: Vec<(String, String)>,
    },
    /// Applicant withdraws a case.
    Withdraw {
        /// Case id.
        id: String,
    },
}

/// `onething household …`
#[derive(Args)]
pub struct HouseholdArgs {
    /// gRPC address of household.
    #[arg(long, global = true, default_value = HOUSEHOLD, env = "ONETHING_ADDR")]
    addr: String,
    /// Bearer token (see `onething token`).
    #[arg(long, global = true, env = "ONETHING_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: HouseholdCommand,
}

#[derive(Subcommand)]
enum HouseholdCommand {
    /// Register a birth (出生登记) and print the new ID number.
    Birth {
        /// ID number of the registered parent.
        #[arg(long)]
        parent: String,
        /// Parent's name (the applicant).
        #[arg(long, default_value = "申请人")]
        parent_name: String,
        /// Child's name.
        #[arg(long)]
        child_name: String,
        /// `M` or `F`.
        #[arg(long)]
        sex: String,
        /// YYYY-MM-DD.
        #[arg(long)]
        birth_date: String,
        /// Birth medical certificate number.
        #[arg(long)]
        certificate: String,
    },
    /// Look up a person.
    Person {
        /// 18-digit ID number.
        id: String,
    },
    /// Print the synthetic persons seeded in development databases.
    Seed,
}

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
    pairs.into_iter().map(|(code, document_uri)| pb::Material { code, document_uri }).collect()
}

fn fresh_key() -> String {
    format!("cli-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

/// Runs `onething case …`.
///
/// # Errors
/// Connection failures and refused requests, explained.
pub async fn case(args: CaseArgs) -> anyhow::Result<()> {
    let mut c = CaseServiceClient::new(channel(&args.addr, args.token.as_deref()).await?);
    let case = match args.command {
        CaseCommand::Create { matter, applicant_kind, applicant_id, applicant_name, phone, fields, materials, key } => {
            c.create_case(pb::CreateCaseRequest {
                matter_code: matter,
                applicant: Some(applicant(&applicant_kind, &applicant_id, &applicant_name, &phone)?),
                form: fields.into_iter().collect(),
                materials: to_materials(materials),
                idempotency_key: key.unwrap_or_else(fresh_key),
                bundle_id: String::new(),
            })
            .await
            .map_err(explain)?
            .into_inner()
            .case
        }
        CaseCommand::Get { id } => {
            c.get_case(pb::GetCaseRequest { case_id: id }).await.map_err(explain)?.into_inner().case
        }
        CaseCommand::List { state, limit } => {
            let state = match state {
                Some(s) => onething_platform::lifecycle::State::from_str_name(&s)
                    .with_context(|| format!("unknown state {s}"))?
                    .to_proto() as i32,
                None => 0,
            };
            let list = c
                .list_cases(pb::ListCasesRequest { page_size: limit, state, ..Default::default() })
                .await
                .map_err(explain)?
                .into_inner();
            for k in &list.cases {
                let s = k.state().as_str_name().trim_start_matches("CASE_STATE_").to_lowercase();
                println!("{}  {:<24} {:<34} v{}", k.case_id, s, k.matter_code, k.version);
            }
            return Ok(());
        }
        CaseCommand::Accept { id } => {
            c.accept_case(pb::AcceptCaseRequest { case_id: id, expected_version: 0 })
                .await
                .map_err(explain)?
                .into_inner()
                .case
        }
        CaseCommand::Approve { id } => {
            c.approve_case(pb::ApproveCaseRequest { case_id: id, expected_version: 0 })
                .await
                .map_err(explain)?
                .into_inner()
                .case
        }
        CaseCommand::Reject { id, reason, text } => {
            c.reject_case(pb::RejectCaseRequest {
                case_id: id,
                reason_code: reason,
                reason_text: text,
                expected_version: 0,
            })
            .await
            .map_err(explain)?
            .into_inner()
            .case
        }
        CaseCommand::Supplement { id, materials, text } => {
            c.request_supplement(pb::RequestSupplementRequest {
                case_id: id,
                material_codes: materials,
                reason_text: text,
                expected_version: 0,
            })
            .await
            .map_err(explain)?
            .into_inner()
            .case
        }
        CaseCommand::Supply { id, materials } => {
            c.supply_materials(pb::SupplyMaterialsRequest {
                case_id: id,
                materials: to_materials(materials),
                expected_version: 0,
            })
            .await
            .map_err(explain)?
            .into_inner()
            .case
        }
        CaseCommand::Withdraw { id } => {
            c.withdraw_case(pb::WithdrawCaseRequest { case_id: id, reason_text: String::new() })
                .await
                .map_err(explain)?
                .into_inner()
                .case
        }
    };
    print_case(&case.context("the server returned no case")?);
    Ok(())
}

/// Runs `onething household …`.
///
/// # Errors
/// Connection failures and refused requests, explained.
pub async fn household(args: HouseholdArgs) -> anyhow::Result<()> {
    match args.command {
        HouseholdCommand::Birth { parent, parent_name, child_name, sex, birth_date, certificate } => {
            let mut c = CaseServiceClient::new(channel(&args.addr, args.token.as_deref()).await?);
            let form = [
                ("child_name", child_name),
                ("child_sex", sex),
                ("birth_date", birth_date),
                ("parent_id_number", parent.clone()),
                ("birth_certificate_number", certificate.clone()),
            ];
            let case = c
                .create_case(pb::CreateCaseRequest {
                    matter_code: "household.birth_registration".into(),
                    applicant: Some(applicant("citizen", &parent, &parent_name, "")?),
                    form: form.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                    materials: vec![pb::Material {
                        code: "birth_medical_certificate".into(),
                        document_uri: format!("elicence://birth_medical_certificate/{certificate}"),
                    }],
                    // The certificate identifies the birth, so a retried command is the same request.
                    idempotency_key: format!("cli-birth-{certificate}"),
                    bundle_id: String::new(),
                })
                .await
                .map_err(explain)?
                .into_inner()
                .case
                .context("the server returned no case")?;
            print_case(&case);
            match case.result.get("new_id_number") {
                Some(id) => println!("new ID number: {id}"),
                None => bail!("the birth was not registered ({})", case.reason_code),
            }
        }
        HouseholdCommand::Person { id } => {
            let mut c = HouseholdServiceClient::new(channel(&args.addr, args.token.as_deref()).await?);
            let p = c
                .get_person(hpb::GetPersonRequest { id_number: id })
                .await
                .map_err(explain)?
                .into_inner()
                .person
                .context("the server returned no person")?;
            let status = p.status().as_str_name().trim_start_matches("PERSON_STATUS_").to_lowercase();
            println!(
                "{}  {}  {}  {}  household {}  {status}",
                p.id_number, p.name, p.sex, p.birth_date, p.household_number
            );
        }
        HouseholdCommand::Seed => {
            for (number, region, _, members) in onething_household::store::SEED {
                for (name, birth, sex, seq) in members.iter() {
                    if let Some(id) = onething_household::store::seed_id(region, birth, *seq) {
                        println!("{}  {name}  {sex}  {birth}  household {number}", id.expose());
                    }
                }
            }
        }
    }
    Ok(())
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
