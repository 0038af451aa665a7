//! Who may call what: one row per RPC of the mesh, one column per kind of caller. The
//! services enforce these rules in their handlers; this table states them once, so that
//! docs/security.md is written from it (`cargo run --bin onething -- docs security`, checked
//! by a test) and the authorisation matrix test calls every RPC of every service as each
//! caller a row refuses (a refusal comes before the request is looked at, so any request
//! will do) — an RPC without a row, or a handler that lets a refused caller through, fails it.

/// A caller's right to one RPC: `None` refused whatever the request (PERMISSION_DENIED,
/// nothing written); `Some(text)` allowed, within what the text says.
pub type Right = Option<&'static str>;

/// The rights of one RPC.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `package.Service/Method`, e.g. `onething.common.v1.CaseService/GetCase`.
    pub rpc: &'static str,
    /// Citizens, enterprises and foreign nationals (and a service acting for one).
    pub applicant: Right,
    /// Staff of the department that serves the RPC (for the coordinator: the staff of a
    /// department with a step in the bundle; for supervision: supervision staff).
    pub own_staff: Right,
    /// Staff of any other department (supervision's staff excluded).
    pub other_staff: Right,
    /// Supervision staff, reading across departments.
    pub supervision: Right,
    /// The services that may call it on their own account; none when empty.
    pub services: &'static [&'static str],
    /// What the services may do, when `services` is not empty.
    pub services_note: &'static str,
}

macro_rules! rule {
    ($rpc:expr, $a:expr, $own:expr, $other:expr, $sup:expr, [$($s:expr),*], $note:expr) => {
        Rule { rpc: $rpc, applicant: $a, own_staff: $own, other_staff: $other, supervision: $sup, services: &[$($s),*], services_note: $note }
    };
}

const OWN: Right = Some("their own");
const ANYONE: Right = Some("yes");
const MASKED: Right = Some("masked, unless `personal_data`");
const REGISTER: Right = Some("with `personal_data`");

/// Every RPC of the mesh (health and reflection aside: open to all, they tell nothing).
pub const RULES: &[Rule] = &[
    // The shared case service of household, exit-entry, vehicle and liaison.
    rule!(
        "onething.common.v1.CaseService/CreateCase",
        Some("for themselves"),
        Some("`clerk`"),
        None,
        None,
        ["coordinator"],
        "a bundle's steps; alone may set `bundle_id` or a `bundle:` key"
    ),
    rule!("onething.common.v1.CaseService/GetCase", OWN, ANYONE, None, MASKED, ["coordinator"], "cases of bundles"),
    rule!("onething.common.v1.CaseService/ListCases", OWN, ANYONE, None, MASKED, [], ""),
    rule!("onething.common.v1.CaseService/AcceptCase", None, Some("`clerk`"), None, None, [], ""),
    rule!("onething.common.v1.CaseService/ListNotices", None, ANYONE, None, ANYONE, [], ""),
    rule!("onething.common.v1.CaseService/RequestSupplement", None, Some("`clerk`"), None, None, [], ""),
    rule!(
        "onething.common.v1.CaseService/SupplyMaterials",
        OWN,
        Some("`clerk`"),
        None,
        None,
        ["coordinator"],
        "a bundle's steps"
    ),
    rule!("onething.common.v1.CaseService/StartSpecialProcedure", None, Some("`clerk`"), None, None, [], ""),
    rule!("onething.common.v1.CaseService/EndSpecialProcedure", None, Some("`clerk`"), None, None, [], ""),
    rule!("onething.common.v1.CaseService/ApproveCase", None, Some("`approver`"), None, None, [], ""),
    rule!("onething.common.v1.CaseService/RejectCase", None, Some("`approver`"), None, None, [], ""),
    rule!(
        "onething.common.v1.CaseService/WithdrawCase",
        OWN,
        None,
        None,
        None,
        ["coordinator"],
        "a withdrawn bundle's steps"
    ),
    rule!(
        "onething.common.v1.CaseService/CancelCase",
        None,
        None,
        None,
        None,
        ["coordinator"],
        "compensation of a failed or withdrawn bundle: an open case cancelled, an approved revocable one revoked"
    ),
    // The coordinator.
    rule!(
        "onething.coordinator.v1.BundleService/SubmitBundle",
        Some("for themselves"),
        Some("`clerk`, for anyone"),
        Some("`clerk`, for anyone"),
        None,
        [],
        ""
    ),
    rule!(
        "onething.coordinator.v1.BundleService/GetBundle",
        OWN,
        Some("their steps; the others' states; applicant masked"),
        None,
        MASKED,
        [],
        ""
    ),
    rule!(
        "onething.coordinator.v1.BundleService/ListBundles",
        OWN,
        Some("bundles with a step of theirs, as GetBundle"),
        Some("an empty list"),
        MASKED,
        [],
        ""
    ),
    rule!(
        "onething.coordinator.v1.BundleService/WatchBundle",
        OWN,
        Some("their steps; the others' states; applicant masked"),
        None,
        MASKED,
        [],
        ""
    ),
    rule!("onething.coordinator.v1.BundleService/WithdrawBundle", OWN, None, None, None, [], ""),
    rule!("onething.coordinator.v1.CatalogService/ListMatters", ANYONE, ANYONE, ANYONE, ANYONE, ["*"], "yes"),
    rule!("onething.coordinator.v1.CatalogService/GetMatter", ANYONE, ANYONE, ANYONE, ANYONE, ["*"], "yes"),
    rule!("onething.coordinator.v1.CatalogService/ListBundleDefinitions", ANYONE, ANYONE, ANYONE, ANYONE, ["*"], "yes"),
    rule!("onething.coordinator.v1.CatalogService/GetBundleDefinition", ANYONE, ANYONE, ANYONE, ANYONE, ["*"], "yes"),
    // Reference data (docs/reference-data.md): each department's registrars import its
    // records from the systems of record.
    rule!("onething.common.v1.ReferenceDataService/Import", None, Some("`registrar`"), None, None, [], ""),
    rule!("onething.common.v1.ReferenceDataService/ListImportKinds", None, Some("`registrar`"), None, None, [], ""),
    // Registers: personal data through and through, nothing to show masked.
    rule!("onething.household.v1.HouseholdService/CorrectPerson", None, Some("`registrar`"), None, None, [], ""),
    rule!("onething.exit_entry.v1.ExitEntryService/RecordViolation", None, Some("`registrar`"), None, None, [], ""),
    rule!(
        "onething.household.v1.HouseholdService/GetPerson",
        Some("citizens: their own"),
        ANYONE,
        None,
        REGISTER,
        [],
        ""
    ),
    rule!(
        "onething.household.v1.HouseholdService/GetHousehold",
        Some("citizens: their own household"),
        ANYONE,
        None,
        REGISTER,
        [],
        ""
    ),
    rule!(
        "onething.exit_entry.v1.ExitEntryService/GetPermitHistory",
        Some("foreign nationals: their own"),
        ANYONE,
        None,
        REGISTER,
        [],
        ""
    ),
    rule!(
        "onething.exit_entry.v1.ExitEntryService/ListTravelDocuments",
        Some("citizens: their own"),
        ANYONE,
        None,
        REGISTER,
        [],
        ""
    ),
    rule!(
        "onething.liaison.v1.LiaisonService/GetEnterprise",
        Some("enterprises: their own"),
        ANYONE,
        None,
        REGISTER,
        [],
        ""
    ),
    rule!(
        "onething.liaison.v1.LiaisonService/CheckEmployment",
        None,
        ANYONE,
        None,
        None,
        ["household"],
        "its green channels for private-enterprise employees (M12)"
    ),
    // Liaison's 办评访督责 loop.
    rule!(
        "onething.liaison.v1.LiaisonService/SubmitRequest",
        Some("enterprises: for themselves"),
        Some("`clerk`"),
        None,
        None,
        [],
        ""
    ),
    rule!(
        "onething.liaison.v1.LiaisonService/GetRequest",
        Some("enterprises: their own, without internal notes"),
        ANYONE,
        None,
        ANYONE,
        [],
        ""
    ),
    rule!("onething.liaison.v1.LiaisonService/HandleRequest", None, Some("`clerk`"), None, None, [], ""),
    rule!("onething.liaison.v1.LiaisonService/EscalateRequest", None, Some("`clerk`"), None, None, [], ""),
    rule!("onething.liaison.v1.LiaisonService/RateRequest", Some("enterprises: their own"), None, None, None, [], ""),
    rule!("onething.liaison.v1.LiaisonService/RecordVisit", None, ANYONE, None, None, [], ""),
    rule!("onething.liaison.v1.LiaisonService/AssignResponsibility", None, Some("`approver`"), None, ANYONE, [], ""),
    rule!("onething.liaison.v1.LiaisonService/GetCompletionRate", None, ANYONE, None, ANYONE, [], ""),
    // Vehicle's stations and bookings.
    rule!("onething.vehicle.v1.VehicleService/ListStations", ANYONE, ANYONE, ANYONE, ANYONE, ["*"], "yes"),
    rule!("onething.vehicle.v1.VehicleService/GetAvailability", ANYONE, ANYONE, ANYONE, ANYONE, ["*"], "yes"),
    rule!(
        "onething.vehicle.v1.VehicleService/ListVehicles",
        Some("their own, of their kind"),
        ANYONE,
        None,
        REGISTER,
        [],
        ""
    ),
    rule!("onething.vehicle.v1.VehicleService/RescheduleBooking", OWN, Some("`clerk`"), None, None, [], ""),
    rule!("onething.vehicle.v1.VehicleService/AdvanceProxyInspection", None, ANYONE, None, None, [], ""),
    rule!("onething.vehicle.v1.VehicleService/RecordInspectionResult", None, Some("`approver`"), None, None, [], ""),
    // Supervision (its own staff are `own_staff` and `supervision` alike).
    rule!("onething.supervision.v1.SupervisionService/ListDeadlines", None, ANYONE, None, ANYONE, [], ""),
    rule!(
        "onething.supervision.v1.SupervisionService/SubmitComplaint",
        Some("online; their own answer, contact masked, no staff notes"),
        Some("any channel"),
        None,
        Some("any channel; the contact masked, unless `personal_data`"),
        [],
        ""
    ),
    rule!(
        "onething.supervision.v1.SupervisionService/AdvanceComplaint",
        None,
        ANYONE,
        None,
        Some("any; the contact masked, unless `personal_data`"),
        [],
        ""
    ),
    rule!(
        "onething.supervision.v1.SupervisionService/Rate",
        Some("what they applied for, as its owner says"),
        None,
        None,
        None,
        [],
        ""
    ),
    rule!(
        "onething.supervision.v1.SupervisionService/RecordFix",
        None,
        ANYONE,
        Some("of the rated department"),
        ANYONE,
        [],
        ""
    ),
    rule!("onething.supervision.v1.SupervisionService/ListUnresolved", None, ANYONE, None, ANYONE, [], ""),
    rule!("onething.supervision.v1.SupervisionService/ResolveItem", None, ANYONE, None, ANYONE, [], ""),
    rule!("onething.supervision.v1.SupervisionService/GetKpis", None, ANYONE, None, ANYONE, [], ""),
    rule!("onething.supervision.v1.SupervisionService/DrawInspections", None, ANYONE, None, ANYONE, [], ""),
];

/// RPCs every server answers besides those of [`RULES`]: health and reflection.
const OPEN_RPCS: &[&str] = &[
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The `(service, method)` of a request path (`/package.Service/Method`) when it names an
/// RPC of the mesh, else `("unknown", "unknown")`: metric labels and span names come only
/// from this fixed set, so no caller can mint new series by inventing paths.
pub fn rpc_labels(path: &str) -> (&'static str, &'static str) {
    let path = path.trim_start_matches('/');
    RULES
        .iter()
        .map(|r| r.rpc)
        .chain(OPEN_RPCS.iter().copied())
        .find(|rpc| *rpc == path)
        .and_then(|rpc| rpc.split_once('/'))
        .unwrap_or(("unknown", "unknown"))
}

/// The rule of `rpc` (`package.Service/Method`).
pub fn rule(rpc: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.rpc == rpc)
}

/// Which departments serve an RPC's service: the case service is served by all four.
pub fn served_by(rpc: &str) -> &'static [&'static str] {
    match rpc.split('/').next().unwrap_or_default() {
        "onething.common.v1.CaseService" | "onething.common.v1.ReferenceDataService" => {
            &crate::service_kind::DEPARTMENT_NAMES
        }
        s if s.starts_with("onething.coordinator.") => &["coordinator"],
        s if s.starts_with("onething.household.") => &["household"],
        s if s.starts_with("onething.exit_entry.") => &["exit_entry"],
        s if s.starts_with("onething.liaison.") => &["liaison"],
        s if s.starts_with("onething.vehicle.") => &["vehicle"],
        s if s.starts_with("onething.supervision.") => &["supervision"],
        _ => &[],
    }
}

fn cell(r: Right) -> &'static str {
    r.unwrap_or("—")
}

/// The table as Markdown, for docs/security.md.
pub fn markdown() -> String {
    let mut out = String::from(
        "| RPC | Applicant | Staff of the department | Staff of other departments | Supervision | Services |\n\
         |---|---|---|---|---|---|\n",
    );
    for r in RULES {
        let services = match r.services {
            [] => "—".to_string(),
            ["*"] => r.services_note.to_string(),
            names => format!("{}: {}", names.join(", "), r.services_note),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            r.rpc.trim_start_matches("onething."),
            cell(r.applicant),
            cell(r.own_staff),
            cell(r.other_staff),
            cell(r.supervision),
            services
        ));
    }
    out
}

/// The line before the generated table in docs/security.md.
pub const BEGIN: &str = "<!-- authorisation table: generated from services/platform/src/policy.rs, `make docs` -->";
/// The line after it.
pub const END: &str = "<!-- end of the generated authorisation table -->";

/// `doc` with the text between [`BEGIN`] and [`END`] replaced by [`markdown`]; `None` when
/// the markers are missing.
pub fn splice(doc: &str) -> Option<String> {
    let (head, rest) = doc.split_once(BEGIN)?;
    let (_, tail) = rest.split_once(END)?;
    Some(format!("{head}{BEGIN}\n{}{END}{tail}", markdown()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_only_from_known_rpcs() {
        assert_eq!(
            rpc_labels("/onething.common.v1.CaseService/GetCase"),
            ("onething.common.v1.CaseService", "GetCase")
        );
        assert_eq!(rpc_labels("/grpc.health.v1.Health/Check"), ("grpc.health.v1.Health", "Check"));
        assert_eq!(rpc_labels("/x/\u{4e00}-made-up-1234"), ("unknown", "unknown"));
        assert_eq!(rpc_labels("/onething.common.v1.CaseService/GetCaseX"), ("unknown", "unknown"));
    }

    #[test]
    fn every_rpc_has_one_row() {
        let mut seen = std::collections::BTreeSet::new();
        for r in RULES {
            assert!(seen.insert(r.rpc), "{} twice", r.rpc);
            assert!(!served_by(r.rpc).is_empty(), "{} is served by no one", r.rpc);
            assert_eq!(r.services.is_empty(), r.services_note.is_empty(), "{}: services and their note", r.rpc);
        }
    }
}
