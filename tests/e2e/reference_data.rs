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

use onething_proto::common::{
    ImportFormat, ImportMode, ImportRequest, ImportResponse, reference_data_service_client::ReferenceDataServiceClient,
};
use tonic_types::StatusExt as _;

/// Rows generated per kind.
const ROWS: u64 = 2000;

/// Imports `bytes` of `kind` into `kind`'s department as its registrar, sent in chunks.
async fn import(
    mesh: &TestMesh,
    dept: ServiceKind,
    kind: &str,
    format: ImportFormat,
    mode: ImportMode,
    bytes: Vec<u8>,
) -> Result<ImportResponse, tonic::Status> {
    let channel = mesh.channel(dept, &staff(dept.name(), &["registrar"])).await;
    let mut client = ReferenceDataServiceClient::new(channel);
    let first = ImportRequest { kind: kind.into(), format: format as i32, mode: mode as i32, data: Vec::new() };
    let chunks: Vec<ImportRequest> = std::iter::once(first)
        .chain(bytes.chunks(64 * 1024).map(|c| ImportRequest { data: c.to_vec(), ..Default::default() }))
        .collect();
    client.import(futures::stream::iter(chunks)).await.map(tonic::Response::into_inner)
}

fn csv(header: &str, rows: impl Iterator<Item = String>) -> Vec<u8> {
    let mut out = format!("{header}\n");
    for r in rows {
        out.push_str(&r);
        out.push('\n');
    }
    out.into_bytes()
}

fn person_id(n: u64) -> String {
    let born = chrono::NaiveDate::from_ymd_opt(1950, 1, 1).unwrap() + chrono::Days::new(n % 20_000);
    onething_platform::ids::CitizenId::assign("371002", born, u16::try_from(n / 20_000 * 2 + 201).unwrap())
        .unwrap()
        .expose()
        .to_string()
}

fn credit(n: u64) -> String {
    onething_platform::ids::CreditCode::complete(&format!("91371002MA{n:07}")).unwrap().to_string()
}

/// A file of `ROWS` good rows of each kind, as (department, kind, format, file).
fn files() -> Vec<(ServiceKind, &'static str, ImportFormat, Vec<u8>)> {
    let n = 0..ROWS;
    let born = |i: u64| onething_platform::ids::CitizenId::parse(&person_id(i)).unwrap();
    vec![
        (
            HOUSEHOLD,
            "households",
            ImportFormat::Csv,
            csv("household_number,region_code,address", n.clone().map(|i| format!("37100290{i:04},371002,\"威海市环翠区导入路{i}号\""))),
        ),
        (
            HOUSEHOLD,
            "persons",
            ImportFormat::JsonLines,
            n.clone()
                .map(|i| {
                    let id = born(i);
                    let sex = if id.sex() == onething_platform::ids::Sex::Male { "M" } else { "F" };
                    format!(
                        "{{\"id_number\":\"{}\",\"name\":\"导入人{i}\",\"birth_date\":\"{}\",\"sex\":\"{sex}\",\"household_number\":\"37100290{i:04}\"}}\n",
                        id.expose(),
                        id.birth_date()
                    )
                })
                .collect::<String>()
                .into_bytes(),
        ),
        (
            HOUSEHOLD,
            "kin",
            ImportFormat::Csv,
            csv("id_number,relative_id_number,relation", n.clone().map(|i| format!("{},{},sibling", person_id(i), person_id(i + ROWS)))),
        ),
        (
            VEHICLE,
            "vehicles",
            ImportFormat::Csv,
            csv(
                "plate,owner_kind,owner,vehicle_type,inspection_due",
                n.clone().map(|i| format!("鲁M{i:05},citizen,{},small_car,2027-05-01", person_id(i))),
            ),
        ),
        (VEHICLE, "driving_licences", ImportFormat::Csv, csv("id_number,class", n.clone().map(|i| format!("{},C1", person_id(i))))),
        (
            VEHICLE,
            "stations",
            ImportFormat::Csv,
            csv(
                "station_id,name,opens,closes,slot_minutes,capacity_per_slot",
                n.clone().map(|i| format!("IMP-{i:05},导入检测站{i},08:30,17:00,30,2")),
            ),
        ),
        (
            VEHICLE,
            "slots",
            ImportFormat::Csv,
            csv("station_id,date,time,capacity", n.clone().map(|i| format!("IMP-{:05},2027-01-{:02},{:02}:00,3", i % 100, i / 100 % 28 + 1, i % 24))),
        ),
        (
            LIAISON,
            "enterprises",
            ImportFormat::JsonLines,
            n.clone()
                .map(|i| format!("{{\"credit_code\":\"{}\",\"name\":\"导入企业{i}\",\"legal_representative\":\"法人{i}\",\"address\":\"威海市{i}号\",\"ownership\":\"private\"}}\n", credit(i)))
                .collect::<String>()
                .into_bytes(),
        ),
        (
            EXIT_ENTRY,
            "permits",
            ImportFormat::Csv,
            csv("permit_number,passport_number,valid_from,valid_until", n.clone().map(|i| format!("WRIMP{i:06},P{i:08},2023-01-01,2024-12-31"))),
        ),
        (
            EXIT_ENTRY,
            "violations",
            ImportFormat::Csv,
            csv("passport_number,date,summary", n.clone().map(|i| format!("P{i:08},2024-03-0{},逾期居留{i}日", i % 9 + 1))),
        ),
        (
            EXIT_ENTRY,
            "enterprise_staff",
            ImportFormat::Csv,
            csv("credit_code,id_number", n.clone().map(|i| format!("{},{}", credit(i % 50), person_id(i)))),
        ),
        (
            EXIT_ENTRY,
            "commissioners",
            ImportFormat::Csv,
            csv("officer_id,name", n.clone().map(|i| format!("IMP{i:05},专员{i}"))),
        ),
        (
            LIAISON,
            "employees",
            ImportFormat::Csv,
            csv("credit_code,id_number,since", n.clone().map(|i| format!("{},{},2020-01-01", credit(i % 50), person_id(i)))),
        ),
        (
            EXIT_ENTRY,
            "travel_documents",
            ImportFormat::Csv,
            csv(
                "document_number,id_number,kind,valid_until",
                n.map(|i| format!("EIMP{i:06},{},passport,2031-01-01", person_id(i))),
            ),
        ),
    ]
}

/// Every kind of every department: a few thousand rows stored, a second import changes
/// nothing, a changed row updates one record, a file with bad rows stores nothing and names
/// them by line (or, skipping them, stores the rest); a malformed file is refused whole.
async fn reference_data_is_imported_checked_and_idempotent(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).departments().unseeded().start().await else { return };
    let table = |kind: &str| {
        match kind {
            "driving_licences" => "driving_licences",
            "permits" => "foreigner_permits",
            "violations" => "foreigner_violations",
            "commissioners" => "service_commissioners",
            other => other,
        }
        .to_string()
    };
    for (dept, kind, format, file) in files() {
        let report = import(&mesh, dept, kind, format, ImportMode::AllOrNothing, file.clone()).await.unwrap();
        assert_eq!((report.rows, report.added, report.rejected_count, report.stored), (ROWS, ROWS, 0, true), "{kind}");
        let stored = count(mesh.db(dept), &table(kind)).await;
        let expected = if kind == "kin" { 2 * ROWS } else { ROWS };
        assert_eq!(stored, i64::try_from(expected).unwrap(), "{kind}");
        let again = import(&mesh, dept, kind, format, ImportMode::AllOrNothing, file).await.unwrap();
        assert_eq!(
            (again.added, again.updated, again.unchanged),
            (0, 0, ROWS),
            "{kind}: a second import changes nothing"
        );
    }
    // A changed row updates its record.
    let moved =
        csv("household_number,region_code,address", std::iter::once("371002900007,371002,威海市新地址7号".to_string()));
    let r = import(&mesh, HOUSEHOLD, "households", ImportFormat::Csv, ImportMode::AllOrNothing, moved).await.unwrap();
    assert_eq!((r.added, r.updated, r.unchanged), (0, 1, 0));
    // Bad rows: all or nothing names each by line and stores nothing.
    let before = count(mesh.db(HOUSEHOLD), "persons").await;
    let good = |i: u64| {
        let id = onething_platform::ids::CitizenId::parse(&person_id(i)).unwrap();
        let sex = if id.sex() == onething_platform::ids::Sex::Male { "M" } else { "F" };
        format!("{},新人{i},{},{sex},371002900001", id.expose(), id.birth_date())
    };
    let mut wrong_check = person_id(5000);
    wrong_check.replace_range(17..18, if wrong_check.ends_with('1') { "2" } else { "1" });
    let rows = vec![
        good(5001),
        format!("{wrong_check},坏人,1960-01-01,M,371002900001"),
        good(5002),
        format!("{},错日,1901-01-01,M,371002900001", person_id(5003)),
        good(5001),
    ];
    let header = "id_number,name,birth_date,sex,household_number";
    let bad = csv(header, rows.into_iter());
    let r =
        import(&mesh, HOUSEHOLD, "persons", ImportFormat::Csv, ImportMode::AllOrNothing, bad.clone()).await.unwrap();
    assert!(!r.stored);
    let lines: Vec<(u64, String)> = r.rejected.iter().map(|b| (b.line, b.reason.clone())).collect();
    assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [3, 5, 6], "{lines:?}");
    assert!(lines[0].1.starts_with("id_number: not a citizen ID number"), "{lines:?}");
    assert!(lines[1].1.starts_with("birth_date"), "{lines:?}");
    assert_eq!(lines[2].1, "the same record as line 2");
    assert!(!format!("{lines:?}").contains(&person_id(5003)), "no value in a reason");
    assert_eq!(count(mesh.db(HOUSEHOLD), "persons").await, before, "nothing of the file stored");
    let r = import(&mesh, HOUSEHOLD, "persons", ImportFormat::Csv, ImportMode::SkipBad, bad).await.unwrap();
    assert_eq!((r.stored, r.added, r.rejected_count), (true, 2, 3));
    assert_eq!(count(mesh.db(HOUSEHOLD), "persons").await, before + 2);
    // A malformed file: refused whole, naming the line.
    let short = format!("{header}\n{}\n{},x", good(5004), person_id(5005));
    let malformed: [(Vec<u8>, &str, &str); 4] = [
        (b"id_number,nickname\n".to_vec(), "line 1", "column 2 is not one of this kind's columns"),
        (format!("{header}\n\u{1}").into_bytes().into_iter().chain(*b"\xff\xfe\n").collect(), "line 2", "not UTF-8"),
        (short.into_bytes(), "line 3", "2 values for 5 columns"),
        (vec![b'a'; 1_100_000], "line 1", "longer than"),
    ];
    for (bytes, line, why) in malformed {
        let err =
            import(&mesh, HOUSEHOLD, "persons", ImportFormat::Csv, ImportMode::AllOrNothing, bytes).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let v = err.get_error_details().bad_request().unwrap().field_violations[0].clone();
        assert_eq!(v.field, line, "{err:?}");
        assert!(v.description.starts_with(why), "{err:?}");
    }
    assert_eq!(count(mesh.db(HOUSEHOLD), "persons").await, before + 2, "nothing stored");
    // An unknown kind (however long its name), and a caller who is no registrar.
    let err =
        import(&mesh, HOUSEHOLD, &"长".repeat(3000), ImportFormat::Csv, ImportMode::AllOrNothing, Vec::new()).await;
    assert_eq!(err.unwrap_err().code(), tonic::Code::InvalidArgument);
    let mut clerk = ReferenceDataServiceClient::new(mesh.channel(HOUSEHOLD, &staff("household", &["clerk"])).await);
    let chunk = ImportRequest { kind: "persons".into(), format: ImportFormat::Csv as i32, ..Default::default() };
    let denied = clerk.import(futures::stream::iter([chunk])).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    mesh.stop_all().await;
}
both_backends!(reference_data_is_imported_checked_and_idempotent);

/// 公民身后 on a registry that holds only what was imported (no development data): a
/// grandmother, her granddaughter in another household, their relation, her driving licence
/// and her passport; the granddaughter's verified report completes every step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_runs_on_imported_data_only() {
    let Some(w) = TestMesh::with(Backend::Sqlite).departments().coordinators(1).unseeded().start().await else {
        return;
    };
    for dept in [HOUSEHOLD, VEHICLE, EXIT_ENTRY] {
        assert_eq!(
            count(
                w.db(dept),
                if dept == HOUSEHOLD {
                    "persons"
                } else if dept == VEHICLE {
                    "driving_licences"
                } else {
                    "travel_documents"
                }
            )
            .await,
            0
        );
    }
    let born = |d: (i32, u32, u32), seq| {
        onething_platform::ids::CitizenId::assign(
            "371083",
            chrono::NaiveDate::from_ymd_opt(d.0, d.1, d.2).unwrap(),
            seq,
        )
        .unwrap()
    };
    let (grandmother, granddaughter) = (born((1940, 5, 6), 12), born((1998, 8, 9), 24));
    let files = [
        (HOUSEHOLD, "households", "household_number,region_code,address\n371083100001,371083,乳山市导入路1号\n371083100002,371083,乳山市导入路2号\n".to_string()),
        (
            HOUSEHOLD,
            "persons",
            format!(
                "id_number,name,birth_date,sex,household_number\n{},孙秀兰,1940-05-06,F,371083100001\n{},孙晓雨,1998-08-09,F,371083100002\n",
                grandmother.expose(),
                granddaughter.expose()
            ),
        ),
        (HOUSEHOLD, "kin", format!("id_number,relative_id_number,relation\n{},{},grandchild\n", grandmother.expose(), granddaughter.expose())),
        (VEHICLE, "driving_licences", format!("id_number,class\n{},C1\n", grandmother.expose())),
        (EXIT_ENTRY, "travel_documents", format!("document_number,id_number,kind,valid_until\nE77770001,{},passport,2030-01-01\n", grandmother.expose())),
    ];
    for (dept, kind, file) in files.clone() {
        let r = import(&w, dept, kind, ImportFormat::Csv, ImportMode::AllOrNothing, file.into_bytes()).await.unwrap();
        assert!(r.stored && r.rejected_count == 0, "{kind}: {r:?}");
    }
    let mut as_granddaughter = w.bundles_at(0, &citizen_token(granddaughter.expose())).await;
    let b = as_granddaughter
        .submit_bundle(crate::bundles::after_death(
            crate::bundles::citizen_applicant(granddaughter.expose()),
            grandmother.expose(),
            "SW-IMP-1",
            "imported",
        ))
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let b = crate::bundles::finished(&mut as_granddaughter, &b.bundle_id).await;
    assert_eq!(b.state(), onething_proto::coordinator::BundleState::Completed, "{:?}", b.steps);
    assert_eq!(
        (b.steps[1].result["cancelled_count"].as_str(), b.steps[2].result["cancelled_count"].as_str()),
        ("1", "1")
    );
    // The same files again: what the departments recorded (a death, a cancelled licence and
    // passport) stands.
    for (dept, kind, file) in files {
        let r = import(&w, dept, kind, ImportFormat::Csv, ImportMode::AllOrNothing, file.into_bytes()).await.unwrap();
        assert!(r.stored && r.added == 0, "{kind}: {r:?}");
    }
    let gm = grandmother.expose();
    assert_eq!(count(w.db(HOUSEHOLD), &format!("persons WHERE id_number = '{gm}' AND status = 'deceased'")).await, 1);
    let licence = format!("driving_licences WHERE id_number = '{gm}' AND status = 'cancelled'");
    assert_eq!(count(w.db(VEHICLE), &licence).await, 1);
    let passport = format!("travel_documents WHERE id_number = '{gm}' AND status = 'cancelled'");
    assert_eq!(count(w.db(EXIT_ENTRY), &passport).await, 1);
    w.stop_all().await;
}

/// docs/reference-data.md is generated from the departments' import kinds.
#[test]
fn the_import_kinds_are_documented() {
    let departments: Vec<(&str, Vec<Box<dyn onething_platform::import::ImportKind>>)> = vec![
        ("household", onething_household::store::import::kinds()),
        ("exit_entry", onething_exit_entry::store::import::kinds()),
        ("vehicle", onething_vehicle::store::import::kinds()),
        ("liaison", onething_liaison::store::import::kinds()),
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let on_disk = std::fs::read_to_string(root.join("docs/reference-data.md")).expect("docs/reference-data.md");
    assert!(
        on_disk == onething_platform::import::markdown(&departments),
        "docs/reference-data.md is stale: run `make docs`"
    );
}
