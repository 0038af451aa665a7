//! Reference data (issue 25): a production start migrates tables and holds no invented
//! person, vehicle or enterprise; development data comes only from `onething seed` (and
//! `onething dev`), idempotently, and `--remove` deletes exactly it.

use crate::common::*;
use onething_platform::store::dev_data::apply;

/// The tables each department's development data fills.
const TABLES: [(&str, &[&str]); 4] = [
    ("household", &["households", "persons", "kin"]),
    (
        "exit_entry",
        &["foreigner_permits", "foreigner_violations", "travel_documents", "enterprise_staff", "service_commissioners"],
    ),
    ("vehicle", &["stations", "vehicles", "driving_licences"]),
    ("liaison", &["enterprises", "seals", "employees"]),
];

async fn rows(db: &sea_orm::DatabaseConnection, tables: &[&str]) -> Vec<i64> {
    let mut out = Vec::new();
    for t in tables {
        out.push(count(db, t).await);
    }
    out
}

async fn a_production_start_holds_no_development_data(backend: Backend) {
    let nats = NatsServer::start().await;
    for (name, tables) in TABLES {
        let Some(db) = TestDb::fresh(backend).await else { return };
        let settings = test_settings(&db.url, &nats.url());
        let built = match name {
            "household" => onething_household::build(settings).await,
            "exit_entry" => onething_exit_entry::build(settings).await,
            "vehicle" => onething_vehicle::build(settings).await,
            _ => onething_liaison::build(settings).await,
        };
        let running = start_service_unseeded(std::future::ready(built)).await;
        assert!(rows(&running.db, tables).await.iter().all(|n| *n == 0), "{name}: empty after migrating");
        // Development data on demand, once however often it is asked for.
        let data = dev_data(name).unwrap();
        let added = apply(&running.db, data, false).await.unwrap();
        let seeded = rows(&running.db, tables).await;
        assert_eq!(seeded.iter().sum::<i64>(), i64::try_from(added).unwrap(), "{name}: {seeded:?}");
        assert!(seeded.iter().all(|n| *n > 0), "{name}: every table gets rows: {seeded:?}");
        assert_eq!(apply(&running.db, data, false).await.unwrap(), 0, "{name}: a second seeding adds nothing");
        assert_eq!(rows(&running.db, tables).await, seeded);
        // Removed: exactly what was put in.
        assert_eq!(apply(&running.db, data, true).await.unwrap(), added, "{name}");
        assert!(rows(&running.db, tables).await.iter().all(|n| *n == 0), "{name}: nothing of it left");
        running.stop().await;
    }
}
both_backends!(a_production_start_holds_no_development_data);

/// `onething seed` on a database named by the service's settings, as an operator runs it:
/// what the registry learnt besides the development data stays when it is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onething_seed_puts_in_and_takes_out_exactly_the_development_data() {
    let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
    let seed = |remove: bool| {
        let mut cmd = std::process::Command::new(crate::bench::onething_binary());
        cmd.args(["seed", "household"]).env("ONETHING_DATABASE_URL", &db.url).env_remove("ONETHING_CONFIG");
        if remove {
            cmd.arg("--remove");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(seed(false).contains("development rows added"));
    assert!(seed(false).contains(": 0 development rows added"), "idempotent");
    let conn = onething_platform::db::connect(&db.url).await.unwrap();
    let seeded = count(&conn, "persons").await;
    assert!(seeded > 0);
    // A person registered since (a birth) and the kinship it recorded stay.
    use onething_household::store::{kin, person};
    use sea_orm::{ActiveValue::Set, EntityTrait as _};
    let child = onething_household::store::seed_id("371002", "2026-11-20", 2).unwrap().expose().to_string();
    let now = chrono::Utc::now();
    person::Entity::insert(person::ActiveModel {
        id_number: Set(child.clone()),
        name: Set("王小雨".into()),
        birth_date: Set("2026-11-20".into()),
        sex: Set("F".into()),
        household_number: Set("371002000001".into()),
        status: Set(person::PersonStatus::Active),
        death_date: Set(None),
        birth_certificate_number: Set(Some("Q371002000777".into())),
        created_at: Set(now),
    })
    .exec_without_returning(&conn)
    .await
    .unwrap();
    kin::Entity::insert_many(kin::both_ways(&child, &seeded_parent(), kin::Kinship::Parent, "case-1", now))
        .exec_without_returning(&conn)
        .await
        .unwrap();
    let removed = seed(true);
    assert!(removed.contains("development rows deleted"), "{removed}");
    assert_eq!(count(&conn, "persons").await, 1, "only the person registered since");
    assert_eq!(count(&conn, "kin").await, 2, "only the kinship recorded since");
    assert_eq!(count(&conn, "households").await, 0);
}
