//! Helpers shared by the test modules: clients, sample requests, JetStream reading.

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use onething_proto::common as pb;
pub use onething_proto::{
    common::case_service_client::CaseServiceClient, household::household_service_client::HouseholdServiceClient,
};
use std::time::Duration;

pub use onething_tests::*;

/// Generates a SQLite and a PostgreSQL variant of an async test taking a [`Backend`].
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(onething_tests::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(onething_tests::Backend::Postgres).await
            }
        }
    };
}
pub(crate) use both_backends;

/// The services by kind, as tests name them.
pub const HOUSEHOLD: ServiceKind = ServiceKind::Household;
/// Exit-entry.
pub const EXIT_ENTRY: ServiceKind = ServiceKind::ExitEntry;
/// Vehicle.
pub const VEHICLE: ServiceKind = ServiceKind::Vehicle;
/// Liaison.
pub const LIAISON: ServiceKind = ServiceKind::Liaison;
/// The coordinator.
pub const COORDINATOR: ServiceKind = ServiceKind::Coordinator;

/// Household's registry as `token`.
pub async fn registry(mesh: &TestMesh, token: &str) -> HouseholdServiceClient<Authed> {
    HouseholdServiceClient::new(mesh.channel(HOUSEHOLD, token).await)
}

/// Clients of a running service started alone.
pub struct CaseServiceClientExt;

impl CaseServiceClientExt {
    /// The case service of `running` as the coordinator.
    pub async fn coordinator(running: &Running) -> CaseServiceClient<Authed> {
        CaseServiceClient::new(connect_as(&running.endpoint(), Some(&service("coordinator", running.name))).await)
    }
}

/// The seeded parent of household 371002000001 (王建国).
pub fn seeded_parent() -> String {
    onething_household::store::seed_id("371002", "1990-03-15", 11).expect("seed id").expose().to_string()
}

/// The parent's spouse, same household (李秀英).
pub fn seeded_spouse() -> String {
    onething_household::store::seed_id("371002", "1991-07-02", 22).expect("seed id").expose().to_string()
}

/// A seeded living person of another household (赵海燕).
pub fn seeded_person() -> String {
    onething_household::store::seed_id("371002", "1985-11-30", 42).expect("seed id").expose().to_string()
}

/// A seeded elderly person (刘桂兰), whose death the tests confirm.
pub fn seeded_elder() -> String {
    onething_household::store::seed_id("371003", "1949-09-09", 62).expect("seed id").expose().to_string()
}

/// 周强, who lives in [`seeded_elder`]'s household and reports her death.
pub fn elders_son() -> String {
    onething_household::store::seed_id("371003", "1976-12-12", 71).expect("seed id").expose().to_string()
}

/// The deregistration of `subject` after a death (2026-11-20), asked by [`seeded_person`].
pub fn deregistration(subject: &str, certificate: &str, key: &str, bundle_id: &str) -> pb::CreateCaseRequest {
    pb::CreateCaseRequest {
        matter_code: "household.deregistration".into(),
        // A member of the elder's household: online, only they may report the death.
        applicant: citizen(&elders_son()),
        form: form(&[
            ("subject_id_number", subject),
            ("death_date", "2026-11-20"),
            ("death_certificate_number", certificate),
        ]),
        materials: vec![pb::Material {
            elicence: death_elicence(subject, certificate, "2026-11-20"),
            ..material("death_certificate")
        }],
        idempotency_key: key.into(),
        bundle_id: bundle_id.into(),
    }
}

pub fn citizen(id: &str) -> Option<pb::Applicant> {
    Some(pb::Applicant {
        kind: pb::ApplicantKind::Citizen as i32,
        identifier: id.to_string(),
        name: "王建国".into(),
        phone: "13800001111".into(),
    })
}

pub fn material(code: &str) -> pb::Material {
    pb::Material { code: code.into(), document_uri: format!("elicence://{code}/1"), ..Default::default() }
}

pub fn form(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

/// A complete birth registration by the seeded parent.
pub fn birth_request(key: &str, certificate: &str) -> pb::CreateCaseRequest {
    pb::CreateCaseRequest {
        matter_code: "household.birth_registration".into(),
        applicant: citizen(&seeded_parent()),
        form: form(&[
            ("child_name", "王小明"),
            ("child_sex", "M"),
            ("birth_date", "2026-11-01"),
            ("parent_id_number", &seeded_parent()),
            ("birth_certificate_number", certificate),
        ]),
        materials: vec![pb::Material {
            elicence: birth_elicence(certificate, ("王小明", "M"), "2026-11-01", &seeded_parent(), ""),
            ..material("birth_medical_certificate")
        }],
        idempotency_key: key.into(),
        bundle_id: String::new(),
    }
}

/// The non-local resident (a Beijing ID number) of the residence permit requests.
pub const OUTSIDER: &str = "11010519491231002X";

/// A complete residence permit application by [`OUTSIDER`], the photo owed (容缺).
pub fn residence_request(key: &str) -> pb::CreateCaseRequest {
    pb::CreateCaseRequest {
        matter_code: "household.residence_permit".into(),
        applicant: Some(pb::Applicant {
            kind: pb::ApplicantKind::Citizen as i32,
            identifier: OUTSIDER.into(),
            name: "张三".into(),
            phone: String::new(),
        }),
        form: form(&[("residence_address", "威海市环翠区某处"), ("residence_since", "2025-01-01")]),
        materials: vec![material("id_card"), material("residence_proof")],
        idempotency_key: key.into(),
        bundle_id: String::new(),
    }
}

/// A household certificate (即办) for the seeded person.
pub fn certificate_request(key: &str) -> pb::CreateCaseRequest {
    pb::CreateCaseRequest {
        matter_code: "household.certificate".into(),
        applicant: citizen(&seeded_person()),
        form: form(&[("subject_id_number", &seeded_person()), ("purpose", "就业")]),
        materials: vec![],
        idempotency_key: key.into(),
        bundle_id: String::new(),
    }
}

/// Every message on `subjects` in household's stream, read by an ephemeral consumer,
/// once at least `expect` have arrived.
pub async fn read_stream(js: &jetstream::Context, expect: usize) -> Vec<jetstream::Message> {
    eventually(Duration::from_secs(30), "events on the stream", || async {
        let stream = js.get_stream("ONETHING_HOUSEHOLD").await.ok()?;
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .ok()?;
        let info = stream.get_info().await.ok()?;
        let total = info.state.messages as usize;
        if total < expect {
            return None;
        }
        let mut batch = consumer.fetch().max_messages(total).messages().await.ok()?;
        let mut out = Vec::new();
        while let Some(Ok(m)) = batch.next().await {
            out.push(m);
        }
        (out.len() >= total).then_some(out)
    })
    .await
    .expect("events arrive on JetStream")
}

/// The payloads of every message now on `subject` in `stream` (none when the stream is not
/// there yet), read by an ephemeral consumer.
pub async fn on_subject(js: &jetstream::Context, stream: &str, subject: &str) -> Vec<bytes::Bytes> {
    let Ok(stream) = js.get_stream(stream).await else { return Vec::new() };
    let config = pull::Config { filter_subject: subject.into(), ..Default::default() };
    let Ok(mut consumer) = stream.create_consumer(config).await else { return Vec::new() };
    let pending = match consumer.info().await {
        Ok(info) => info.num_pending as usize,
        Err(_) => return Vec::new(),
    };
    if pending == 0 {
        return Vec::new();
    }
    let Ok(mut batch) = consumer.fetch().max_messages(pending).messages().await else { return Vec::new() };
    let mut out = Vec::new();
    while let Some(Ok(m)) = batch.next().await {
        out.push(m.payload.clone());
    }
    out
}

/// Counts the rows of `table` in a service database.
pub async fn count(db: &sea_orm::DatabaseConnection, table: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), format!("SELECT COUNT(*) AS n FROM {table}")))
        .await
        .expect("count query")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("count column")
}

/// The (field, description) of every field violation `s` carries.
pub fn violations(s: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    s.get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| (v.field.clone(), v.description.clone())).collect())
        .unwrap_or_default()
}

/// The fields `s` says are invalid, in order.
pub fn fields(s: &tonic::Status) -> Vec<String> {
    violations(s).into_iter().map(|(field, _)| field).collect()
}
