//! `onething seed <service>`: a development database gets the service's synthetic data
//! (`--remove`: exactly those rows are deleted, e.g. from a database an earlier release's seed
//! migration filled). The database comes from the service's settings, as `onething serve`
//! reads them; it is migrated first. Production databases hold only what was imported
//! (docs/reference-data.md).

use clap::Args;
use onething_platform::{
    service_kind::ServiceKind,
    store::dev_data::{DevData, apply},
};

/// Options of `onething seed`.
#[derive(Args)]
pub struct SeedArgs {
    /// The service whose database gets its development data.
    #[arg(value_enum)]
    service: ServiceKind,
    /// Delete exactly the development data instead.
    #[arg(long)]
    remove: bool,
}

/// The development data of `kind`, if it keeps any: the one place that maps a kind to it.
pub fn dev_data(kind: ServiceKind) -> Option<&'static dyn DevData> {
    match kind {
        ServiceKind::Household => Some(&onething_household::store::DevRegistry),
        ServiceKind::ExitEntry => Some(&onething_exit_entry::store::DevRecords),
        ServiceKind::Vehicle => Some(&onething_vehicle::store::DevRecords),
        ServiceKind::Liaison => Some(&onething_liaison::store::DevRecords),
        ServiceKind::Coordinator | ServiceKind::Supervision => None,
    }
}

/// Runs `onething seed`.
///
/// # Errors
/// Invalid configuration, an unreachable database, a failed migration or write (nothing
/// changed then).
pub async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let kind = args.service;
    let Some(data) = dev_data(kind) else {
        println!("{kind}: keeps no reference data; nothing to do");
        return Ok(());
    };
    let settings = crate::dev::service_settings(kind)?;
    let db = migrated(kind, &settings).await?;
    let n = apply(&db, data, args.remove).await?;
    if args.remove {
        println!("{kind}: {n} development rows deleted");
    } else {
        println!("{kind}: {n} development rows added (those already there kept)");
    }
    Ok(())
}

/// The database of `kind` from `settings`, migrated.
async fn migrated(
    kind: ServiceKind,
    settings: &onething_platform::config::Settings,
) -> anyhow::Result<sea_orm::DatabaseConnection> {
    use onething_platform::db::connect_and_migrate_with as migrate;
    let (url, s) = (settings.database_url.as_str(), &settings.database);
    match kind {
        ServiceKind::Household => migrate::<onething_household::store::Migrator>(url, s).await,
        ServiceKind::ExitEntry => migrate::<onething_exit_entry::store::Migrator>(url, s).await,
        ServiceKind::Vehicle => migrate::<onething_vehicle::store::Migrator>(url, s).await,
        ServiceKind::Liaison => migrate::<onething_liaison::store::Migrator>(url, s).await,
        ServiceKind::Coordinator => migrate::<onething_coordinator::store::Migrator>(url, s).await,
        ServiceKind::Supervision => migrate::<onething_supervision::store::Migrator>(url, s).await,
    }
}
