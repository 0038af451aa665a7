//! `onething household …`: a birth registered from the command line, a person looked up,
//! the development seed listed.

use super::{HOUSEHOLD, applicant, channel, explain, print_case};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use onething_proto::{
    common::{self as pb, case_service_client::CaseServiceClient},
    household::{self as hpb, household_service_client::HouseholdServiceClient},
};

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
        /// The certificate as an e-licence (`onething elicence issue`); without one a clerk
        /// decides.
        #[arg(long, default_value = "")]
        elicence: String,
    },
    /// Look up a person.
    Person {
        /// 18-digit ID number.
        id: String,
    },
    /// Print the synthetic persons seeded in development databases.
    Seed,
}

/// Runs `onething household …`.
///
/// # Errors
/// Connection failures and refused requests, explained.
pub async fn household(args: HouseholdArgs) -> anyhow::Result<()> {
    match args.command {
        HouseholdCommand::Birth { parent, parent_name, child_name, sex, birth_date, certificate, elicence } => {
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
                        elicence: elicence.clone(),
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
            let id = |(region, birth, seq): onething_household::store::SeedMember| {
                onething_household::store::seed_id(region, birth, seq).map(|id| id.expose().to_string())
            };
            for (person, relative, relation) in onething_household::store::SEED_KIN {
                if let (Some(p), Some(r)) = (id(*person), id(*relative)) {
                    println!("{r} is the {relation:?} of {p} (kin on record)");
                }
            }
        }
    }
    Ok(())
}
