//! The authorisation matrix: every RPC of every service — found by each port's reflection,
//! so a new RPC without a row in `onething_platform::policy` fails here — is called with no
//! token, an expired one, one not yet valid and ones signed outside their key's scope
//! (UNAUTHENTICATED), and as every caller its row refuses — applicants, the department's
//! staff, other departments' staff, supervision, services, each with every role, and staff
//! lacking the one role a cell names (PERMISSION_DENIED, whatever the request: refusals
//! come before the request is looked at). Afterwards every row of every service database
//! is as it was. docs/security.md's table is checked to be the policy's.

use crate::common::*;
use onething_platform::{
    auth::{Claims, Minter, Principal, SubjectKind},
    policy::{self, Right},
};
use prost::Message as _;
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult as _, Statement};
use std::collections::BTreeMap;
use tonic::Code;

const SERVICES: [&str; 6] = onething_platform::service_kind::SERVICE_NAMES;

/// The test's keys: the development key (signs everyone), an SSO's key as an SSO publishes
/// it (no scope: people only) and the coordinator's own key (the coordinator only).
struct Keys {
    _dir: tempfile::TempDir,
    jwks: std::path::PathBuf,
    sso: Minter,
    coordinator: Minter,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str| {
        let k = onething_platform::auth::ensure_dev_keys(&dir.path().join(name)).unwrap();
        Minter::load(&k.signing_key, auth_settings()).unwrap()
    };
    let (sso, coordinator) = (load("sso"), load("coordinator"));
    let dev: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&dev_keys().jwks).unwrap()).unwrap();
    let mut all = dev["keys"].as_array().unwrap().clone();
    let mut published = sso.jwk(&serde_json::json!({}));
    published.as_object_mut().unwrap().remove("signs");
    all.push(published);
    all.push(coordinator.jwk(&serde_json::json!({"services": ["coordinator"]})));
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": all }).to_string()).unwrap();
    Keys { _dir: dir, jwks, sso, coordinator }
}

fn with_roles(p: Principal, roles: &[&str]) -> Principal {
    Principal { roles: roles.iter().map(|r| (*r).to_string()).collect(), ..p }
}

/// Staff of `dept` with every role there is.
fn all_roles(dept: &str) -> String {
    staff(dept, &ROLES)
}

const ROLES: [&str; 3] = ["clerk", "approver", "personal_data"];

/// Staff of `dept` with every role but the one `right` needs (a cell naming a role in
/// backticks, e.g. "`clerk`"; "masked, unless `personal_data`" needs none): the wrong role,
/// refused whatever the request.
fn wrong_role(right: Right, dept: &str) -> Option<(String, String)> {
    let text = right.filter(|t| !t.contains("unless"))?;
    let needed = ROLES.into_iter().find(|r| text.contains(&format!("`{r}`")))?;
    let others: Vec<&str> = ROLES.into_iter().filter(|r| *r != needed).collect();
    Some((format!("{dept} staff without `{needed}`"), staff(dept, &others)))
}

/// Tokens that must be refused as UNAUTHENTICATED by every RPC, with what each is.
fn unauthenticated(keys: &Keys) -> Vec<(&'static str, Option<String>)> {
    let settings = auth_settings();
    let coordinator = Principal { dept: "coordinator".into(), ..Principal::bare("coordinator", SubjectKind::Service) };
    let mut expired: Claims = coordinator.clone().into_claims(&settings, 10);
    expired.exp -= 3600;
    expired.iat -= 3600;
    let mut forever: Claims = with_roles(staff_principal("household", &[]), &["approver"]).into_claims(&settings, 10);
    forever.exp = 32_503_680_000; // the year 3000
    let mut early: Claims = with_roles(staff_principal("household", &[]), &["approver"]).into_claims(&settings, 7200);
    early.nbf = Some(early.iat + 3600);
    let approver = with_roles(staff_principal("household", &[]), &["approver"]);
    let supervision = Principal { dept: "supervision".into(), ..Principal::bare("supervision", SubjectKind::Service) };
    vec![
        ("no token", None),
        ("expired", Some(minter().sign(&expired).unwrap())),
        ("nbf an hour ahead", Some(minter().sign(&early).unwrap())),
        ("valid until the year 3000", Some(minter().sign(&forever).unwrap())),
        ("the SSO's key signing a service", Some(keys.sso.mint(coordinator.clone(), 600).unwrap())),
        ("the coordinator's key signing an approver", Some(keys.coordinator.mint(approver, 600).unwrap())),
        ("the coordinator's key signing a citizen", Some(keys.coordinator.mint(citizen_principal(), 600).unwrap())),
        ("the coordinator's key signing supervision", Some(keys.coordinator.mint(supervision, 600).unwrap())),
        ("a coordinator token addressed to another service", Some(service("coordinator", "elsewhere"))),
        ("a coordinator token addressed to no service", Some(token(coordinator.clone()))),
        ("garbage", Some("not.a.jwt".into())),
    ]
}

fn citizen_principal() -> Principal {
    Principal { id_number: seeded_person(), ..Principal::bare("citizen-matrix", SubjectKind::Citizen) }
}

/// Supervision's own token, addressed to `callee`, acting for a citizen (an applicant in
/// the `act` claim).
fn supervision_for_citizen(callee: &str) -> String {
    let p = Principal {
        dept: "supervision".into(),
        actor: Some(Box::new(citizen_principal())),
        ..Principal::bare("supervision", SubjectKind::Service)
    };
    minter().mint_to(p, callee, 600).unwrap()
}

/// The callers `rule` refuses whatever they send, when served by `dept`.
fn refused(rule: &policy::Rule, dept: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |right: Right, who: &[(String, String)]| {
        if right.is_none() {
            out.extend(who.iter().cloned());
        }
    };
    add(
        rule.applicant,
        &[
            ("a citizen".into(), citizen_token(&seeded_person())),
            ("an enterprise".into(), enterprise_token(onething_vehicle::store::seed_fleet_owner().as_str())),
            ("a foreign national".into(), foreigner_token("E12345678")),
            ("supervision acting for a citizen".into(), supervision_for_citizen(dept)),
        ],
    );
    // The coordinator's "own" staff are those of a department with steps; supervision's are its own.
    let own = if dept == "coordinator" { "household" } else { dept };
    let other = if own == "vehicle" { "household" } else { "vehicle" };
    add(rule.own_staff, &[(format!("{own} staff with every role"), all_roles(own))]);
    add(rule.other_staff, &[(format!("{other} staff with every role"), all_roles(other))]);
    add(rule.supervision, &[("supervision staff with every role".into(), all_roles("supervision"))]);
    for (right, who) in [(rule.own_staff, own), (rule.other_staff, other), (rule.supervision, "supervision")] {
        out.extend(wrong_role(right, who));
    }
    if rule.services != ["*"] {
        for s in ["coordinator", "supervision", "household", "vehicle"] {
            if !rule.services.contains(&s) {
                out.push((format!("the {s} service"), service(s, dept)));
            }
        }
    }
    out
}

/// Every method of every onething API: `(service full name, method, server streaming)`.
fn methods() -> Vec<(String, String, bool)> {
    let set = prost_types::FileDescriptorSet::decode(onething_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = Vec::new();
    for file in set.file {
        for s in &file.service {
            for m in &s.method {
                out.push((format!("{}.{}", file.package(), s.name()), m.name().to_string(), m.server_streaming()));
            }
        }
    }
    out
}

/// The status of `/path` called with an empty message as `token`.
async fn call(channel: &tonic::transport::Channel, path: &str, streaming: bool, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(());
    if let Some(t) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let path: tonic::codegen::http::uri::PathAndQuery = path.parse().unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    if streaming {
        match grpc.server_streaming(request, path, codec).await {
            Ok(mut s) => match s.get_mut().message().await {
                Ok(_) => Code::Ok,
                Err(e) => e.code(),
            },
            Err(e) => e.code(),
        }
    } else {
        match grpc.unary(request, path, codec).await {
            Ok(_) => Code::Ok,
            Err(e) => e.code(),
        }
    }
}

/// Every row of every table of a service's SQLite database, as JSON: a refused call that
/// updated a row would show here as well as one that inserted or deleted.
async fn rows(db: &DatabaseConnection) -> BTreeMap<String, Vec<serde_json::Value>> {
    let tables = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'".to_string(),
        ))
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let name: String = t.try_get("", "name").unwrap();
        let all = Statement::from_string(db.get_database_backend(), format!("SELECT * FROM \"{name}\" ORDER BY 1"));
        let rows = serde_json::Value::find_by_statement(all).all(db).await.unwrap();
        out.insert(name, rows);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_whom_its_row_refuses() {
    let nats = NatsServer::start().await;
    let keys = keys();
    let mut running = Vec::new();
    for name in SERVICES {
        let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
        let mut s = test_settings(&db.url, &nats.url());
        s.auth.jwks_file = keys.jwks.display().to_string();
        running.push((name, start_named(name, s).await, db));
    }
    let apis = methods();
    let bad_tokens = unauthenticated(&keys);
    let mut before = Vec::new();
    for (name, r, _) in &running {
        // Whatever a service publishes at start is sent first, so the relay changes nothing later.
        let unsent = || async { (count(&r.db, "outbox WHERE sent_at IS NULL").await == 0).then_some(()) };
        eventually(std::time::Duration::from_secs(30), name, unsent).await.unwrap();
        before.push(rows(&r.db).await);
    }
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (name, r, _) in &running {
        let channel = tonic::transport::Channel::from_shared(r.endpoint()).unwrap().connect().await.unwrap();
        let listed = crate::reflection::listed(channel.clone()).await;
        for (api, method, streaming) in apis.iter().filter(|(api, _, _)| listed.contains(api)) {
            let rpc = format!("{api}/{method}");
            let Some(rule) = policy::rule(&rpc) else {
                wrong.push(format!("{name}: {rpc} has no row in the policy"));
                continue;
            };
            assert!(policy::served_by(&rpc).contains(name), "{name} serves {rpc}, which the policy gives others");
            let path = format!("/{rpc}");
            for (what, t) in &bad_tokens {
                let code = call(&channel, &path, *streaming, t.as_deref()).await;
                if code != Code::Unauthenticated {
                    wrong.push(format!("{name} {rpc}, {what}: {code:?}, not Unauthenticated"));
                }
                checked += 1;
            }
            for (who, t) in refused(rule, name) {
                let code = call(&channel, &path, *streaming, Some(&t)).await;
                if code != Code::PermissionDenied {
                    wrong.push(format!("{name} {rpc}, {who}: {code:?}, not PermissionDenied"));
                }
                checked += 1;
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {checked} calls answered wrongly:\n{}", wrong.len(), wrong.join("\n"));
    assert!(checked > 1000, "only {checked} calls");
    for ((name, r, _), was) in running.iter().zip(&before) {
        assert_eq!(&rows(&r.db).await, was, "{name} changed under refused calls");
    }
    // Within its scope the coordinator's own key is accepted.
    let coordinator = &running.iter().find(|(n, _, _)| *n == "coordinator").unwrap().1;
    let channel = tonic::transport::Channel::from_shared(coordinator.endpoint()).unwrap().connect().await.unwrap();
    let own = Principal { dept: "coordinator".into(), ..Principal::bare("coordinator", SubjectKind::Service) };
    let t = keys.coordinator.mint_to(own, "coordinator", 600).unwrap();
    let code = call(&channel, "/onething.coordinator.v1.CatalogService/ListMatters", false, Some(&t)).await;
    assert_eq!(code, Code::Ok);
    for (_, r, _) in running {
        r.stop().await;
    }
}

#[test]
fn the_security_doc_shows_the_policy() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md");
    let on_disk = std::fs::read_to_string(path).unwrap();
    let fresh = policy::splice(&on_disk).expect("docs/security.md has the table's markers");
    assert!(fresh == on_disk, "docs/security.md's authorisation table is stale: run `make docs`");
}
