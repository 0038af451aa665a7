//! The event contract: docs/events.md is up to date; replaying a stream from a sequence
//! returns exactly the events after it; the Python example, as an outside department's
//! user (社保), receives and decodes a real fact a service published.

use crate::common::*;
use onething_platform::events::replay::{Start, replay};
use std::{path::PathBuf, process::Command, time::Duration};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_generated_doc_is_up_to_date() {
    let on_disk = std::fs::read_to_string(root().join("docs/events.md")).expect("docs/events.md");
    assert!(on_disk == onething_platform::events::contract::markdown(), "docs/events.md is stale: run `make docs`");
}

async fn replay_from_a_sequence(backend: Backend) {
    let Some(mesh) = TestMesh::with(backend).service(HOUSEHOLD).start().await else { return };
    let mut cases = mesh.coordinator_cases(HOUSEHOLD).await;
    for i in 0..3 {
        cases.create_case(certificate_request(&format!("replay-{i}"))).await.unwrap();
    }
    let js = mesh.nats.jetstream().await;
    let all = eventually(Duration::from_secs(30), "nine events", || async {
        let r = replay(&js, "ONETHING_HOUSEHOLD", ">", Start::All, 100).await.ok()?;
        (r.len() == 9).then_some(r)
    })
    .await
    .unwrap();
    let seqs: Vec<u64> = all.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, (1..=9).collect::<Vec<_>>());
    let after = replay(&js, "ONETHING_HOUSEHOLD", ">", Start::After(4), 100).await.unwrap();
    assert_eq!(after.iter().map(|r| r.sequence).collect::<Vec<_>>(), (5..=9).collect::<Vec<_>>());
    assert_eq!(
        after.iter().map(|r| r.event.id.clone()).collect::<Vec<_>>(),
        all[4..].iter().map(|r| r.event.id.clone()).collect::<Vec<_>>()
    );
    let approved =
        replay(&js, "ONETHING_HOUSEHOLD", "onething.household.v1.case.approved", Start::All, 100).await.unwrap();
    assert_eq!(approved.len(), 3);
    let since =
        replay(&js, "ONETHING_HOUSEHOLD", ">", Start::Since(all[0].event.time - chrono::Duration::seconds(5)), 100)
            .await
            .unwrap();
    assert_eq!(since.len(), 9);
    assert!(replay(&js, "ONETHING_HOUSEHOLD", ">", Start::After(9), 100).await.unwrap().is_empty());
    mesh.stop_all().await;
}
both_backends!(replay_from_a_sequence);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_decodes_real_events() {
    let python = std::env::var("PYTHON_BIN").map(PathBuf::from).unwrap_or_else(|_| root().join(".tools/py/bin/python"));
    assert!(python.exists(), "{} is missing: run `make tools`", python.display());
    let nats = NatsServer::start_secured().await;
    let (_db, household) = start_household_as_its_user(&nats).await;
    let mut cases = CaseServiceClientExt::coordinator(&household).await;
    let born = cases.create_case(birth_request("py-birth", "Q3710027777")).await.unwrap().into_inner().case.unwrap();
    let new_id = born.result["new_id_number"].clone();

    let generated = tempfile::tempdir().unwrap();
    let protos: Vec<PathBuf> = walk(&root().join("proto/onething"));
    let status = Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(root().join("proto"))
        .arg(format!("--python_out={}", generated.path().display()))
        .args(&protos)
        .status()
        .unwrap();
    assert!(status.success(), "protoc (grpcio-tools) generated the Python classes");
    let script = root().join("docs/examples/subscriber.py");
    let run = {
        let python = python.clone();
        let url = nats.url();
        let dir = generated.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            Command::new(python)
                .arg(script)
                .args(["--url", &url, "--user", "social_security", "--password", &nats_password("social_security")])
                .args([
                    "--stream",
                    "ONETHING_HOUSEHOLD",
                    "--subject",
                    "onething.household.v1.person.born",
                    "--subject",
                    "onething.household.v1.person.deceased",
                    "--count",
                    "1",
                    "--timeout",
                    "20",
                ])
                .arg("--generated")
                .arg(dir)
                .output()
                .unwrap()
        })
    };
    let out = run.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "subscriber failed: {}\n{}", stdout, String::from_utf8_lossy(&out.stderr));
    let events: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Only its entitled facts: the case events of the same birth are not for 社保.
    assert_eq!(events.len(), 1, "{stdout}");
    let born_event = &events[0];
    assert_eq!(born_event["type"], "onething.household.v1.PersonBorn");
    assert_eq!(born_event["subject"], "onething.household.v1.person.born");
    assert_eq!(born_event["payload"]["idNumber"], new_id.as_str());
    assert_eq!(born_event["source"], "/onething/household");
    household.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "proto") {
            out.push(p);
        }
    }
    out
}

/// docs/errors.md is generated from the one table of reason codes; no service spells a
/// code as a literal (each goes through `Reason`); every code the tests expect is declared.
#[test]
fn the_reason_codes_are_declared_once_and_documented() {
    use onething_platform::reason::{Reason, markdown};
    let on_disk = std::fs::read_to_string(root().join("docs/errors.md")).expect("docs/errors.md");
    assert!(on_disk == markdown(), "docs/errors.md is stale: run `make docs`");

    let literal = |s: &str| -> Vec<String> {
        let mut out = Vec::new();
        for piece in s.split('"').skip(1).step_by(2) {
            if piece.len() > 3 && piece.contains('_') && piece.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                out.push(piece.to_string());
            }
        }
        out
    };
    let mut spelt = Vec::new();
    let mut expected = std::collections::BTreeSet::new();
    for (dir, into) in [("services", true), ("tests/e2e", false)] {
        let mut stack = vec![root().join(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "rs") && !p.ends_with("platform/src/reason.rs") {
                    for code in literal(&std::fs::read_to_string(&p).unwrap()) {
                        if into && Reason::parse(&code).is_some() {
                            spelt.push(format!("{}: {code}", p.display()));
                        } else if !into {
                            expected.insert(code);
                        }
                    }
                }
            }
        }
    }
    assert!(spelt.is_empty(), "reason codes spelt as literals instead of `Reason`: {spelt:#?}");
    // What the tests expect of the mesh is a reason it declares; other capitals are names
    // that are no reason (variables, streams, gRPC codes) or a clerk's own refusal code.
    const GROUPS: [&str; 11] = [
        "AUTH_",
        "CASE_",
        "COORDINATOR_",
        "HOUSEHOLD_",
        "EXIT_ENTRY_",
        "VEHICLE_",
        "LIAISON_",
        "SUPERVISION_",
        "REQUEST_",
        "DATABASE_",
        "EVENT_",
    ];
    const CLERKS_OWN: [&str; 3] = ["HOUSEHOLD_PROOF_INVALID", "LIAISON_FIRE_SAFETY_FAILED", "VEHICLE_NO_SHOW"];
    let not_reasons = |c: &str| !GROUPS.iter().any(|g| c.starts_with(g)) || CLERKS_OWN.contains(&c);
    let undeclared: Vec<_> = expected.iter().filter(|c| Reason::parse(c).is_none() && !not_reasons(c)).collect();
    assert!(undeclared.is_empty(), "tests expect undeclared reason codes: {undeclared:?}");
}

/// Every error the services build names a reason declared for its kind (a debug build
/// panics on one that is not, which a request would find only when it takes that path):
/// `Error::failed_precondition(Reason::X…`, `Error::new(Kind::K, Reason::X…` and the like,
/// read from the sources.
#[test]
fn every_error_uses_a_reason_declared_for_its_kind() {
    use onething_platform::{error::Kind, reason::Reason};
    let kind_of_call = |call: &str| match call {
        "failed_precondition" => Some(Kind::FailedPrecondition),
        "not_found" => Some(Kind::NotFound),
        "invalid_field" | "from_violations" => Some(Kind::InvalidArgument),
        _ => None,
    };
    let kind_named = |name: &str| {
        [
            ("InvalidArgument", Kind::InvalidArgument),
            ("NotFound", Kind::NotFound),
            ("AlreadyExists", Kind::AlreadyExists),
            ("FailedPrecondition", Kind::FailedPrecondition),
            ("Aborted", Kind::Aborted),
            ("ResourceExhausted", Kind::ResourceExhausted),
            ("Unauthenticated", Kind::Unauthenticated),
            ("PermissionDenied", Kind::PermissionDenied),
            ("Unavailable", Kind::Unavailable),
            ("Internal", Kind::Internal),
        ]
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| k)
    };
    // `VehicleNoProxyInspection` → `VEHICLE_NO_PROXY_INSPECTION`.
    let code_of = |variant: &str| {
        let mut code = String::new();
        for (i, c) in variant.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                code.push('_');
            }
            code.push(c.to_ascii_uppercase());
        }
        code
    };
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut wrong = Vec::new();
    let mut seen = 0;
    let mut stack = vec![root().join("services")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for (at, _) in text.match_indices("Error::") {
                let rest = &text[at + "Error::".len()..];
                let call = ident(rest);
                let Some(args) = rest[call.len()..].strip_prefix('(') else { continue };
                // Arguments split at the top-level commas of the call's first two.
                let mut parts = args.splitn(3, ',').map(str::trim);
                let (first, second) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                // A path's last segment: `crate::error::Kind::NotFound` → ("…Kind", "NotFound").
                let last = |arg: &str| arg.rsplit_once("::").map(|(path, name)| (path.to_string(), ident(name)));
                let (kind, reason_arg) = match kind_of_call(&call) {
                    Some(k) => (Some(k), first),
                    None if call == "new" => match last(first) {
                        Some((path, name)) if path.ends_with("Kind") => (kind_named(&name), second),
                        _ => (None, second),
                    },
                    None => (None, first),
                };
                let reason = last(reason_arg).filter(|(path, _)| path.ends_with("Reason")).map(|(_, name)| name);
                let (Some(kind), Some(reason)) = (kind, reason) else { continue };
                let code = code_of(&reason);
                seen += 1;
                match Reason::parse(&code) {
                    Some(reason) if reason.allows(kind) => {}
                    _ => wrong.push(format!("{}: {code} as {kind:?}", p.display())),
                }
            }
        }
    }
    assert!(seen > 80, "the scan found only {seen} errors");
    assert!(wrong.is_empty(), "reasons used with a kind they do not declare: {wrong:#?}");
}
