//! `onething elicence`: development e-licences (M24). `issue` signs one with a development
//! issuer's key (made by `onething dev` under `.data/keys/elicence`), `revoke` writes that
//! issuer's revocation list anew, `verify` checks one against a trust list, as intake does.
//! Production licences come from their issuing authorities; a production deployment trusts
//! only the issuers its trust list names.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use onething_platform::elicence::{Licence, Trust, ensure_dev_issuers};
use std::path::PathBuf;

/// Options of `onething elicence`.
#[derive(Args)]
pub struct ElicenceArgs {
    /// The development keys folder (`onething dev`'s `<data>/keys`).
    #[arg(long, default_value = ".data/keys", global = true)]
    keys: PathBuf,
    #[command(subcommand)]
    command: ElicenceCommand,
}

#[derive(Subcommand)]
enum ElicenceCommand {
    /// Sign an e-licence with a development issuer and print it.
    Issue {
        /// The issuer: dev.wjw (卫健: birth and death medical certificates), dev.scjg
        /// (市场监管: business licences, deregistration notices), dev.ga (公安: ID cards,
        /// vehicle licences), dev.bdc (不动产登记: property certificates), dev.court (法院:
        /// bankruptcy rulings) or dev.kj (科技: work permits).
        #[arg(long, default_value = "dev.wjw")]
        issuer: String,
        /// Kind, e.g. death_medical_certificate, birth_medical_certificate, business_licence.
        #[arg(long)]
        kind: String,
        /// Licence number (证照编号).
        #[arg(long)]
        number: String,
        /// The subject's identifier (the deceased's ID number, an enterprise's credit code).
        #[arg(long, default_value = "")]
        subject: String,
        /// A field of the licence, NAME=VALUE (repeatable), e.g. death_date=2026-11-20.
        #[arg(long = "field", value_parser = pair)]
        fields: Vec<(String, String)>,
        /// Days it is valid; 0: without end.
        #[arg(long, default_value_t = 0)]
        valid_days: i64,
    },
    /// Revoke licence numbers (or keys) of a development issuer: added to its list, which is
    /// signed anew.
    Revoke {
        /// The issuer.
        #[arg(long, default_value = "dev.wjw")]
        issuer: String,
        /// A key id (`kid`) to revoke: nothing it signed verifies any more (repeatable).
        #[arg(long = "key")]
        keys: Vec<String>,
        /// Licence numbers.
        numbers: Vec<String>,
    },
    /// Check an e-licence against the development trust list (or `--trust-list`).
    Verify {
        /// The e-licence.
        elicence: String,
        /// A trust list file; default the development one.
        #[arg(long)]
        trust_list: Option<PathBuf>,
    },
}

fn pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| "NAME=VALUE".to_string())
}

/// Runs `onething elicence …`.
///
/// # Errors
/// No such development issuer, unreadable keys or trust list, a malformed e-licence.
pub fn elicence(args: ElicenceArgs) -> anyhow::Result<()> {
    // The development issuers are made only where they are used: verifying against another
    // trust list leaves the keys folder alone.
    let dev = || ensure_dev_issuers(&args.keys);
    match args.command {
        ElicenceCommand::Issue { issuer, kind, number, subject, fields, valid_days } => {
            let now = chrono::Utc::now().timestamp();
            let licence = Licence {
                jti: number,
                kind,
                sub: subject,
                iat: now,
                nbf: now - 60,
                exp: (valid_days > 0).then(|| now.saturating_add(valid_days.saturating_mul(86_400))),
                fields: fields.into_iter().collect(),
                ..Default::default()
            };
            println!("{}", dev()?.key(&issuer)?.issue(&licence)?);
        }
        ElicenceCommand::Revoke { issuer, keys, numbers } => {
            dev()?.revoke(&issuer, &numbers, &keys)?;
            println!(
                "{issuer}: {} licence(s) and {} key(s) revoked; services read the list within its refresh interval",
                numbers.len(),
                keys.len()
            );
        }
        ElicenceCommand::Verify { elicence, trust_list } => {
            let path = match trust_list {
                Some(p) => p,
                None => dev()?.trust_list,
            };
            let trust = Trust::load(&path.display().to_string())?;
            let (licence, why) = trust.verify(&elicence, chrono::Utc::now()).context("not an e-licence")?;
            match why {
                None => println!("verified: {} {} issued by {}", licence.kind, licence.jti, licence.iss),
                Some(u) => anyhow::bail!("not verified: {} ({})", u.says(), u.as_str()),
            }
        }
    }
    Ok(())
}
