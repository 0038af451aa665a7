//! Authorisation, deny by default: each RPC states who may call it (see docs/security.md
//! for the tables). A denial is PERMISSION_DENIED with reason `AUTH_PERMISSION_DENIED`
//! and one audit line naming the subject, the RPC and the resource — never personal data.

use crate::reason::Reason;
use crate::{
    auth::{Principal, SubjectKind},
    error::{Error, Kind},
};

/// Role of a window clerk: intake, supplement requests, materials received at the window.
pub const ROLE_CLERK: &str = "clerk";
/// Role of an approving officer: approve and reject.
pub const ROLE_APPROVER: &str = "approver";
/// Role of a department's registrar: imports reference data from the systems of record and
/// corrects the department's records.
pub const ROLE_REGISTRAR: &str = "registrar";
/// Department of supervision staff, who read across departments but decide nothing.
pub const SUPERVISION: &str = "supervision";
/// Service name of the coordinator, which acts for applicants and compensates.
pub const COORDINATOR: &str = "coordinator";
/// Role of supervision staff who need applicants' personal data (an investigator of a
/// complaint); other supervision staff read cases and bundles masked.
pub const ROLE_PERSONAL_DATA: &str = "personal_data";
/// The services that may call others acting for an applicant (the `act` claim): only
/// supervision, which asks the owning service whether a rater owns what they rate.
pub const ACTS_FOR_APPLICANTS: &[&str] = &["supervision"];

/// The authenticated principal of a request.
///
/// # Errors
/// UNAUTHENTICATED when the request did not pass the [`crate::auth::Authenticator`]
/// (a wiring mistake: every service is built with it).
pub fn principal<T>(req: &tonic::Request<T>) -> Result<Principal, Error> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Error::new(Kind::Unauthenticated, Reason::AuthTokenMissing, "a bearer token is required"))
}

/// Whether `p` is a registrar of `department`: imports its reference data and corrects its
/// records.
pub fn is_registrar(p: &Principal, department: &str) -> bool {
    p.is_staff_of(department) && p.has_role(ROLE_REGISTRAR)
}

/// Refuses `p` on `rpc` for `resource`, writing the audit line.
pub fn deny(p: &Principal, rpc: &str, resource: &str) -> Error {
    tracing::warn!(
        target: "audit",
        subject = %p.sub,
        kind = ?p.kind,
        dept = %p.dept,
        rpc,
        resource,
        "permission denied"
    );
    Error::new(Kind::PermissionDenied, Reason::AuthPermissionDenied, "not allowed for this caller")
}

/// `loaded`, except that a record that does not exist answers `p` as one it may not see
/// ([`deny`]) unless `reveals` (`p` may read every such record anyway): no one learns
/// whether another person's record exists.
///
/// # Errors
/// PERMISSION_DENIED for a missing record not revealed; any other error of `loaded`.
pub fn hide_missing<T>(
    loaded: Result<T, Error>,
    reveals: bool,
    p: &Principal,
    rpc: &str,
    id: &str,
) -> Result<T, Error> {
    match loaded {
        Err(e) if e.kind() == Kind::NotFound && !reveals => Err(deny(p, rpc, id)),
        other => other,
    }
}

/// `Ok` when `allowed`, else [`deny`].
///
/// # Errors
/// PERMISSION_DENIED.
pub fn check(allowed: bool, p: &Principal, rpc: &str, resource: &str) -> Result<(), Error> {
    if allowed { Ok(()) } else { Err(deny(p, rpc, resource)) }
}

/// Whether `p` is the applicant `identifier` of kind `applicant_kind`.
pub fn is_applicant(p: &Principal, applicant_kind: onething_proto::common::ApplicantKind, identifier: &str) -> bool {
    use onething_proto::common::ApplicantKind as A;
    match (p.kind, applicant_kind) {
        (SubjectKind::Citizen, A::Citizen) => p.id_number == identifier,
        (SubjectKind::Enterprise, A::Enterprise) => p.credit_code == identifier,
        (SubjectKind::Foreigner, A::Foreigner) => p.passport_number == identifier,
        _ => false,
    }
}

/// The applicant a service acts for, when it is one of [`ACTS_FOR_APPLICANTS`]: the callee
/// decides as for that applicant. Anyone else's `act` claim counts for nothing.
pub fn acting_for(p: &Principal) -> Option<&Principal> {
    let may = p.kind == SubjectKind::Service && ACTS_FOR_APPLICANTS.contains(&p.sub.as_str());
    p.actor.as_deref().filter(|_| may)
}

/// Whether `p`, reading across departments, sees applicants' personal data unmasked: all
/// but supervision staff without [`ROLE_PERSONAL_DATA`] (the others who read a case are its
/// applicant, its department and the coordinator, which need it).
pub fn sees_personal_data(p: &Principal) -> bool {
    !is_supervision(p) || p.has_role(ROLE_PERSONAL_DATA)
}

/// Readers of a department's records of persons and enterprises (registers that are
/// personal data through and through, so nothing is left to show masked): that department's
/// staff and supervision staff with [`ROLE_PERSONAL_DATA`]. No service reads them.
pub fn reads_register(p: &Principal, department: &str) -> bool {
    p.is_staff_of(department) || (is_supervision(p) && p.has_role(ROLE_PERSONAL_DATA))
}

/// Supervision staff: read everything, decide nothing.
pub fn is_supervision(p: &Principal) -> bool {
    p.kind == SubjectKind::Staff && p.dept == SUPERVISION
}
