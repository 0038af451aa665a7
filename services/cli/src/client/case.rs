//! `onething case …`: any department's cases through the shared CaseService.

use super::{Client, HOUSEHOLD, applicant, channel, explain, fresh_key, material, pair, print_case, to_materials};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use onething_proto::common::{self as pb, case_service_client::CaseServiceClient};

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
        CaseCommand::List { state, limit } => return list(&mut c, state, limit).await,
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

/// Prints the department's cases (in `state`, at most `limit`), one a line.
async fn list(c: &mut CaseServiceClient<Client>, state: Option<String>, limit: i32) -> anyhow::Result<()> {
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
    Ok(())
}
