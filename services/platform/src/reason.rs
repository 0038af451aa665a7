//! Every stable reason code of the mesh, in one enum: the `google.rpc.ErrorInfo.reason` of
//! an error and the `reason_code` a service gives a case it refuses, holds or closes.
//! Clients, the coordinator and subscribing departments branch on these codes, so they are
//! declared here once, each with what it means and how it is used, and `docs/errors.md` is
//! generated from this table (`onething errors-doc`, `make docs`; a test keeps it current).
//!
//! A clerk's own refusal or cancellation code (RejectCase, CancelCase) is the clerk's word,
//! checked for shape only; it is not one of these.

use crate::error::Kind;

/// How a reason is used: as the reason of an error answered with a gRPC code, or as the
/// `reason_code` of a case (a refusal, a hold or a closing, seen in events and queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The reason of an error of this kind.
    Error(Kind),
    /// A case's `reason_code`.
    Case,
}

macro_rules! reasons {
    ($( $(#[doc = $doc:literal])+ $name:ident = $code:literal [$($use:ident),+]; )+) => {
        /// A stable reason code; see the module header and `docs/errors.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $( $(#[doc = $doc])+ $name, )+
        }

        impl Reason {
            /// Every reason, in declaration order (grouped by service).
            pub const ALL: &[Reason] = &[$(Reason::$name),+];

            /// The code on the wire, e.g. `HOUSEHOLD_PERSON_NOT_FOUND`.
            pub const fn as_str(self) -> &'static str {
                match self { $(Reason::$name => $code),+ }
            }

            /// How the reason may be used.
            pub fn uses(self) -> &'static [Use] {
                match self { $(Reason::$name => &[$(reasons!(@use $use)),+]),+ }
            }

            /// What the reason means, for the documentation.
            pub fn meaning(self) -> &'static str {
                match self { $(Reason::$name => concat!($($doc),+)),+ }
            }
        }
    };
    (@use Case) => { Use::Case };
    (@use $kind:ident) => { Use::Error(Kind::$kind) };
}

reasons! {
    /// A request field is longer, larger or more numerous than its bound allows; the
    /// violation names the field and the bound.
    RequestFieldTooLarge = "REQUEST_FIELD_TOO_LARGE" [InvalidArgument];
    /// The request body does not decode as its message.
    RequestMalformed = "REQUEST_MALFORMED" [InvalidArgument];
    /// The request was compressed; the mesh takes uncompressed requests only.
    RequestCompressed = "REQUEST_COMPRESSED" [InvalidArgument];
    /// The change would make an event larger than the broker takes; nothing was written.
    EventTooLarge = "EVENT_TOO_LARGE" [InvalidArgument];
    /// An import file cannot be read as its kind's rows (wrong header, not UTF-8, a line
    /// over 1 MiB, not a JSON object, too large) or names no format; the violation names the
    /// line. Nothing was stored.
    ImportUnreadable = "IMPORT_UNREADABLE" [InvalidArgument];
    /// The department imports no such kind; the violation lists the kinds it does.
    ImportUnknownKind = "IMPORT_UNKNOWN_KIND" [InvalidArgument];
    /// The database is unreachable or busy; try again.
    DatabaseUnavailable = "DATABASE_UNAVAILABLE" [Unavailable];
    /// A concurrent transaction won (serialization failure, deadlock); try again.
    DatabaseConflict = "DATABASE_CONFLICT" [Aborted];
    /// An unexpected failure; the cause is logged for operators, never sent.
    Internal = "INTERNAL" [Internal];

    /// No bearer token was sent.
    AuthTokenMissing = "AUTH_TOKEN_MISSING" [Unauthenticated];
    /// The token does not parse or its signature does not verify.
    AuthTokenInvalid = "AUTH_TOKEN_INVALID" [Unauthenticated];
    /// The token has expired.
    AuthTokenExpired = "AUTH_TOKEN_EXPIRED" [Unauthenticated];
    /// The token's `nbf` is in the future.
    AuthTokenNotYetValid = "AUTH_TOKEN_NOT_YET_VALID" [Unauthenticated];
    /// The token is valid for longer than the mesh allows.
    AuthTokenLifetimeTooLong = "AUTH_TOKEN_LIFETIME_TOO_LONG" [Unauthenticated];
    /// The token was not issued by a trusted issuer.
    AuthTokenWrongIssuer = "AUTH_TOKEN_WRONG_ISSUER" [Unauthenticated];
    /// The token is addressed to another service.
    AuthTokenWrongAudience = "AUTH_TOKEN_WRONG_AUDIENCE" [Unauthenticated];
    /// The signing key may not sign tokens for this kind of subject or department.
    AuthTokenOutOfScope = "AUTH_TOKEN_OUT_OF_SCOPE" [Unauthenticated];
    /// The caller is authenticated but not allowed this call or this record.
    AuthPermissionDenied = "AUTH_PERMISSION_DENIED" [PermissionDenied];

    /// A field of a case request is wrong; the violations say which.
    CaseInvalidRequest = "CASE_INVALID_REQUEST" [InvalidArgument];
    /// The applicant's citizen ID number is not valid.
    CaseInvalidIdNumber = "CASE_INVALID_ID_NUMBER" [InvalidArgument];
    /// The matter code is not in the catalog.
    CaseUnknownMatter = "CASE_UNKNOWN_MATTER" [InvalidArgument];
    /// The matter belongs to another department.
    CaseWrongDepartment = "CASE_WRONG_DEPARTMENT" [InvalidArgument];
    /// Materials the matter requires are still missing.
    CaseMaterialsStillMissing = "CASE_MATERIALS_STILL_MISSING" [InvalidArgument];
    /// No such case (or not one the caller may see).
    CaseNotFound = "CASE_NOT_FOUND" [NotFound];
    /// The case is not in a state that allows this step.
    CaseIllegalTransition = "CASE_ILLEGAL_TRANSITION" [FailedPrecondition];
    /// 一次性告知: a clerk asks for a supplement once, naming everything at once; a case
    /// asked once is decided on what it has.
    CaseSupplementAlreadyAsked = "CASE_SUPPLEMENT_ALREADY_ASKED" [FailedPrecondition];
    /// The case is not waiting for materials.
    CaseNotAwaitingMaterials = "CASE_NOT_AWAITING_MATERIALS" [FailedPrecondition];
    /// The case waits for a fact from elsewhere (a death confirmed by household); it is
    /// decided when that comes, not by hand before.
    CaseNotReady = "CASE_NOT_READY" [FailedPrecondition];
    /// An e-licence whose signature verified is about something else than the application
    /// (another person, another certificate number, another kind); the message names the
    /// fields that do not match. Nothing is stored.
    CaseElicenceMismatch = "CASE_ELICENCE_MISMATCH" [FailedPrecondition];
    /// A material the catalog requires as a verified e-licence is not one (not an
    /// e-licence, a signature or issuer not trusted, expired, revoked); the text says which
    /// and why. At intake the case is not accepted; a supplement of such a material is
    /// refused (FAILED_PRECONDITION) and the case keeps waiting for a verified one.
    CaseElicenceNotVerified = "CASE_ELICENCE_NOT_VERIFIED" [Case, FailedPrecondition];
    /// The matter's approval cannot be revoked (the catalog does not mark it revocable): what
    /// it did stands.
    CaseNotRevocable = "CASE_NOT_REVOCABLE" [FailedPrecondition];
    /// The idempotency key was used before for a different application.
    CaseIdempotencyKeyReused = "CASE_IDEMPOTENCY_KEY_REUSED" [FailedPrecondition];
    /// The case changed since the caller read it (expected version); reload and retry.
    CaseVersionMismatch = "CASE_VERSION_MISMATCH" [Aborted];
    /// The case changed concurrently; retry.
    CaseConcurrentUpdate = "CASE_CONCURRENT_UPDATE" [Aborted];
    /// Required materials are missing: the case waits for a supplement that lists every one
    /// (一次性告知), by its own deadline.
    CaseSupplementRequested = "CASE_SUPPLEMENT_REQUESTED" [Case];
    /// The supplement asked for did not come by its deadline: not accepted (before
    /// acceptance) or rejected (after).
    CaseSupplementOverdue = "CASE_SUPPLEMENT_OVERDUE" [Case];
    /// Given before 2026-12 to a case refused at intake for missing materials; now they are
    /// asked for in a supplement (`CASE_SUPPLEMENT_REQUESTED`). Still found in older cases.
    CaseMissingMaterials = "CASE_MISSING_MATERIALS" [Case];
    /// A material owed under 容缺受理 was not handed in by its due date; the case is closed.
    CaseOwedMaterialOverdue = "CASE_OWED_MATERIAL_OVERDUE" [Case];
    /// The applicant withdrew the case.
    WithdrawnByApplicant = "WITHDRAWN_BY_APPLICANT" [Case];
    /// The coordinator cancelled this step, or revoked its approval and undid its effects,
    /// because another step of its bundle was refused and this one may not stand alone.
    BundleStepRefused = "BUNDLE_STEP_REFUSED" [Case];
    /// The applicant withdrew the bundle: this step's case was withdrawn, or its approval
    /// revoked where it may not stand without the rest of the bundle.
    BundleWithdrawn = "BUNDLE_WITHDRAWN" [Case];

    /// A field of a bundle request is wrong; the violations say which.
    CoordinatorInvalidRequest = "COORDINATOR_INVALID_REQUEST" [InvalidArgument];
    /// The bundle code of a submission is not in the catalog.
    CoordinatorUnknownBundle = "COORDINATOR_UNKNOWN_BUNDLE" [InvalidArgument];
    /// No bundle of the catalog has this code (DescribeBundle).
    CoordinatorNoSuchBundle = "COORDINATOR_NO_SUCH_BUNDLE" [NotFound];
    /// No matter of the catalog has this code (DescribeMatter).
    CoordinatorUnknownMatter = "COORDINATOR_UNKNOWN_MATTER" [NotFound];
    /// No such bundle application (or not one the caller may see).
    CoordinatorBundleNotFound = "COORDINATOR_BUNDLE_NOT_FOUND" [NotFound];
    /// The bundle has finished; it can no longer be changed.
    CoordinatorBundleFinished = "COORDINATOR_BUNDLE_FINISHED" [FailedPrecondition];
    /// The idempotency key was used before for a different application.
    CoordinatorIdempotencyKeyReused = "COORDINATOR_IDEMPOTENCY_KEY_REUSED" [FailedPrecondition];
    /// The bundle changed concurrently; retry.
    CoordinatorConcurrentUpdate = "COORDINATOR_CONCURRENT_UPDATE" [Aborted];
    /// The bundle has as many watchers as it may; close one.
    CoordinatorTooManyWatchers = "COORDINATOR_TOO_MANY_WATCHERS" [ResourceExhausted];

    /// The citizen ID number is not valid.
    HouseholdInvalidIdNumber = "HOUSEHOLD_INVALID_ID_NUMBER" [InvalidArgument];
    /// A household number is not 12 digits.
    HouseholdInvalidNumber = "HOUSEHOLD_INVALID_NUMBER" [InvalidArgument];
    /// No such household.
    HouseholdNotFound = "HOUSEHOLD_NOT_FOUND" [NotFound, FailedPrecondition];
    /// A registry correction that breaks a rule an import checks (a date, a status, a
    /// household number); the violation names the field.
    HouseholdInvalidCorrection = "HOUSEHOLD_INVALID_CORRECTION" [InvalidArgument];
    /// A registry correction that changes nothing.
    HouseholdNothingToCorrect = "HOUSEHOLD_NOTHING_TO_CORRECT" [FailedPrecondition];
    /// The person is not in the household registry.
    HouseholdPersonNotFound = "HOUSEHOLD_PERSON_NOT_FOUND" [NotFound, FailedPrecondition, Case];
    /// The person's registration was cancelled (deceased).
    HouseholdPersonDeceased = "HOUSEHOLD_PERSON_DECEASED" [FailedPrecondition, Case];
    /// Registry facts are given to the person or a member of their household only.
    HouseholdNotSameHousehold = "HOUSEHOLD_NOT_SAME_HOUSEHOLD" [FailedPrecondition, Case];
    /// A death is reported online by a member of the person's household or a close
    /// relative on record (or at a household window); the applicant is neither. Said the
    /// same whether the person exists or not.
    HouseholdNotRelative = "HOUSEHOLD_NOT_RELATIVE" [Case];
    /// This birth certificate was registered already.
    HouseholdBirthAlreadyRegistered = "HOUSEHOLD_BIRTH_ALREADY_REGISTERED" [FailedPrecondition, Case];
    /// The date of death is before the date of birth.
    HouseholdDeathBeforeBirth = "HOUSEHOLD_DEATH_BEFORE_BIRTH" [FailedPrecondition, Case];
    /// The enterprise is not registered in Weihai.
    HouseholdEnterpriseNotLocal = "HOUSEHOLD_ENTERPRISE_NOT_LOCAL" [FailedPrecondition, Case];
    /// The enterprise already has a collective household.
    HouseholdCollectiveExists = "HOUSEHOLD_COLLECTIVE_EXISTS" [FailedPrecondition, Case];
    /// A resident registered in Weihai needs no residence permit.
    HouseholdAlreadyLocal = "HOUSEHOLD_ALREADY_LOCAL" [FailedPrecondition, Case];
    /// The green channel (M12) is for employees of a private enterprise on record, applying
    /// for themselves: the enterprise is not one, or did not report the person among its
    /// staff (one answer whichever it is), or the card is not the applicant's own.
    HouseholdNotGreenChannel = "HOUSEHOLD_NOT_GREEN_CHANNEL" [Case];
    /// The enterprise register could not be asked whether the applicant qualifies for the
    /// green channel; retry.
    HouseholdRegisterUnavailable = "HOUSEHOLD_REGISTER_UNAVAILABLE" [Unavailable];
    /// A residence permit needs six months of residence.
    HouseholdResidenceTooShort = "HOUSEHOLD_RESIDENCE_TOO_SHORT" [FailedPrecondition, Case];
    /// No sequence code is left for this region and birth date.
    HouseholdIdSequenceExhausted = "HOUSEHOLD_ID_SEQUENCE_EXHAUSTED" [FailedPrecondition];
    /// A concurrent registration took the same number; retry.
    HouseholdConcurrentAssignment = "HOUSEHOLD_CONCURRENT_ASSIGNMENT" [Aborted];

    /// The citizen ID number is not valid.
    ExitEntryInvalidIdNumber = "EXIT_ENTRY_INVALID_ID_NUMBER" [InvalidArgument];
    /// The passport number is not valid.
    ExitEntryInvalidPassport = "EXIT_ENTRY_INVALID_PASSPORT" [InvalidArgument];
    /// A violation to record with a date not YYYY-MM-DD or after today, or an empty or long
    /// summary or ground; the violation names the field.
    ExitEntryInvalidViolation = "EXIT_ENTRY_INVALID_VIOLATION" [InvalidArgument];
    /// The foreign applicant's work permit has expired.
    ExitEntryWorkPermitExpired = "EXIT_ENTRY_WORK_PERMIT_EXPIRED" [Case];
    /// The applicant is not on record as staff of the enterprise.
    ExitEntryNotEmployedByEnterprise = "EXIT_ENTRY_NOT_EMPLOYED_BY_ENTERPRISE" [Case];
    /// The case waits for household registration to confirm a death before it is approved.
    ExitEntryAwaitingDeathConfirmation = "EXIT_ENTRY_AWAITING_DEATH_CONFIRMATION" [Case];

    /// A field of a vehicle request is wrong; the violations say which.
    VehicleInvalidRequest = "VEHICLE_INVALID_REQUEST" [InvalidArgument];
    /// No such inspection station.
    VehicleUnknownStation = "VEHICLE_UNKNOWN_STATION" [InvalidArgument];
    /// The slot is in the past.
    VehicleSlotInPast = "VEHICLE_SLOT_IN_PAST" [InvalidArgument];
    /// The slot is outside the station's opening hours.
    VehicleSlotOutsideHours = "VEHICLE_SLOT_OUTSIDE_HOURS" [InvalidArgument];
    /// Every place of this slot is booked.
    VehicleSlotFull = "VEHICLE_SLOT_FULL" [ResourceExhausted];
    /// No walk-in place is left today; book a later day.
    VehicleNoWalkInCapacity = "VEHICLE_NO_WALK_IN_CAPACITY" [ResourceExhausted];
    /// Only an accepted booking can move.
    VehicleNotReschedulable = "VEHICLE_NOT_RESCHEDULABLE" [FailedPrecondition];
    /// The proxy inspection's steps were taken out of order.
    VehicleProxyOutOfOrder = "VEHICLE_PROXY_OUT_OF_ORDER" [FailedPrecondition];
    /// This booking is not a proxy inspection.
    VehicleNoProxyInspection = "VEHICLE_NO_PROXY_INSPECTION" [NotFound];
    /// The case is not an inspection booking: only a booking has an inspection result.
    VehicleNotABooking = "VEHICLE_NOT_A_BOOKING" [FailedPrecondition];
    /// No vehicle with this plate is registered to the applicant.
    VehicleNotOwner = "VEHICLE_NOT_OWNER" [Case];
    /// The case waits for household registration to confirm a death before it is approved.
    VehicleAwaitingDeathConfirmation = "VEHICLE_AWAITING_DEATH_CONFIRMATION" [Case];
    /// A 交钥匙 booking is decided only after the station has inspected the vehicle (the
    /// proxy steps in order up to `INSPECTED`).
    VehicleProxyNotInspected = "VEHICLE_PROXY_NOT_INSPECTED" [FailedPrecondition];
    /// The vehicle failed its inspection; the reason text lists the defects.
    VehicleInspectionFailed = "VEHICLE_INSPECTION_FAILED" [Case];
    /// An inspection booking is approved by the station's recorded result
    /// (`RecordInspectionResult`), not by a bare approval.
    VehicleInspectionNotRecorded = "VEHICLE_INSPECTION_NOT_RECORDED" [FailedPrecondition];

    /// A field of a liaison request is wrong; the violations say which.
    LiaisonInvalidRequest = "LIAISON_INVALID_REQUEST" [InvalidArgument];
    /// The unified social credit code is not valid.
    LiaisonInvalidCreditCode = "LIAISON_INVALID_CREDIT_CODE" [InvalidArgument];
    /// A rating is from 1 to 5.
    LiaisonInvalidRating = "LIAISON_INVALID_RATING" [InvalidArgument];
    /// No such enterprise on record.
    LiaisonEnterpriseNotFound = "LIAISON_ENTERPRISE_NOT_FOUND" [NotFound];
    /// No such liaison request.
    LiaisonRequestNotFound = "LIAISON_REQUEST_NOT_FOUND" [NotFound];
    /// The request is not in a state that allows this step.
    LiaisonRequestWrongState = "LIAISON_REQUEST_WRONG_STATE" [FailedPrecondition];
    /// The idempotency key was used before for a different request.
    LiaisonIdempotencyKeyReused = "LIAISON_IDEMPOTENCY_KEY_REUSED" [FailedPrecondition];
    /// A concurrent submission with the same key won; retry.
    LiaisonConcurrentSubmit = "LIAISON_CONCURRENT_SUBMIT" [Aborted];
    /// The request changed concurrently; retry.
    LiaisonConcurrentUpdate = "LIAISON_CONCURRENT_UPDATE" [Aborted];
    /// A seal of this kind is already filed and active.
    LiaisonSealAlreadyFiled = "LIAISON_SEAL_ALREADY_FILED" [Case];
    /// The enterprise has no active seal on file.
    LiaisonNoActiveSeals = "LIAISON_NO_ACTIVE_SEALS" [Case];
    /// The enterprise holds no precursor chemical qualification.
    LiaisonNotQualified = "LIAISON_NOT_QUALIFIED" [Case];
    /// A hotel licence is granted only after an on-site inspection recorded as passed (a
    /// special procedure `on_site_inspection`); after a failed one, the application is
    /// rejected.
    LiaisonOnSiteInspectionRequired = "LIAISON_ON_SITE_INSPECTION_REQUIRED" [FailedPrecondition];

    /// A field of a supervision request is wrong; the violations say which.
    SupervisionInvalidRequest = "SUPERVISION_INVALID_REQUEST" [InvalidArgument];
    /// A rating is from 1 to 5.
    SupervisionInvalidRating = "SUPERVISION_INVALID_RATING" [InvalidArgument];
    /// No such department.
    SupervisionUnknownDepartment = "SUPERVISION_UNKNOWN_DEPARTMENT" [InvalidArgument];
    /// No such complaint.
    SupervisionComplaintNotFound = "SUPERVISION_COMPLAINT_NOT_FOUND" [NotFound];
    /// No such rating.
    SupervisionRatingNotFound = "SUPERVISION_RATING_NOT_FOUND" [NotFound];
    /// No such case or bundle to rate.
    SupervisionTargetNotFound = "SUPERVISION_TARGET_NOT_FOUND" [NotFound];
    /// No such item.
    SupervisionItemNotFound = "SUPERVISION_ITEM_NOT_FOUND" [NotFound];
    /// It was rated already.
    SupervisionAlreadyRated = "SUPERVISION_ALREADY_RATED" [AlreadyExists];
    /// Only a finished case or bundle is rated.
    SupervisionNotFinished = "SUPERVISION_NOT_FINISHED" [FailedPrecondition];
    /// Only an unfixed bad review takes a fix.
    SupervisionNothingToFix = "SUPERVISION_NOTHING_TO_FIX" [FailedPrecondition];
    /// A complaint's steps follow 受理 → 核查 → 处置 → 反馈 → 整改.
    SupervisionComplaintOutOfOrder = "SUPERVISION_COMPLAINT_OUT_OF_ORDER" [FailedPrecondition];
    /// The idempotency key was used before for a different complaint.
    SupervisionIdempotencyKeyReused = "SUPERVISION_IDEMPOTENCY_KEY_REUSED" [FailedPrecondition];
    /// The service owning the rated case or bundle did not answer; retry.
    SupervisionOwnerUnavailable = "SUPERVISION_OWNER_UNAVAILABLE" [Unavailable];
}

impl Reason {
    /// The reason with this wire code, if it is one of ours.
    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.as_str() == code)
    }

    /// Whether the reason may stand for an error of `kind`.
    pub fn allows(self, kind: Kind) -> bool {
        self.uses().contains(&Use::Error(kind))
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.as_str().to_string()
    }
}

impl PartialEq<Reason> for String {
    fn eq(&self, r: &Reason) -> bool {
        self == r.as_str()
    }
}

impl PartialEq<Reason> for &str {
    fn eq(&self, r: &Reason) -> bool {
        *self == r.as_str()
    }
}

/// `docs/errors.md`: every reason, grouped by its prefix, with how it is used.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Reason codes\n\n\
         Generated by `onething errors-doc` (`make docs`) from `services/platform/src/reason.rs`; do not edit.\n\n\
         Every error of the mesh carries one of these codes in `google.rpc.ErrorInfo.reason`\n\
         (domain `onething.gov.cn`), with field problems in `google.rpc.BadRequest`. A case's\n\
         `reason_code` (in queries and in `case.*` events) is one of the codes marked *case*, or\n\
         a clerk's own code given to RejectCase or CancelCase. Codes are stable: a code is never\n\
         reused for another meaning; a new one may be added.\n",
    );
    let mut group = None;
    for r in Reason::ALL {
        let g = prefix(r.as_str());
        if group != Some(g) {
            group = Some(g);
            out.push_str(&format!("\n## {}\n\n| Reason | Used as | Meaning |\n|---|---|---|\n", heading(g)));
        }
        let uses: Vec<String> = r
            .uses()
            .iter()
            .map(|u| match u {
                Use::Error(k) => format!("`{}`", grpc_name(k.code())),
                Use::Case => "*case*".to_string(),
            })
            .collect();
        out.push_str(&format!("| `{}` | {} | {} |\n", r.as_str(), uses.join(", "), r.meaning().trim()));
    }
    out
}

fn prefix(code: &str) -> &'static str {
    const GROUPS: [&str; 9] =
        ["AUTH", "CASE", "COORDINATOR", "HOUSEHOLD", "EXIT_ENTRY", "VEHICLE", "LIAISON", "SUPERVISION", "BUNDLE"];
    match GROUPS.into_iter().find(|g| code.starts_with(&format!("{g}_"))) {
        Some("BUNDLE") => "CASE",
        Some(g) => g,
        None if code == "WITHDRAWN_BY_APPLICANT" => "CASE",
        None => "",
    }
}

fn heading(group: &str) -> &'static str {
    match group {
        "AUTH" => "Authentication and authorisation (every service)",
        "CASE" => "Cases (every department's case service)",
        "COORDINATOR" => "Bundles (coordinator)",
        "HOUSEHOLD" => "Household registration",
        "EXIT_ENTRY" => "Exit and entry",
        "VEHICLE" => "Vehicle inspection",
        "LIAISON" => "Enterprise liaison",
        "SUPERVISION" => "Supervision",
        _ => "Every request",
    }
}

fn grpc_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::Unauthenticated => "UNAUTHENTICATED",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::Unavailable => "UNAVAILABLE",
        _ => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_upper_snake_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            let c = r.as_str();
            assert!(seen.insert(c), "{c} declared twice");
            assert!(c.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_'), "{c}");
            assert_eq!(Reason::parse(c), Some(*r));
            assert!(!r.meaning().trim().is_empty(), "{c} says nothing");
            assert!(!prefix(c).is_empty() || r.uses().iter().all(|u| matches!(u, Use::Error(_))), "{c}");
        }
        assert_eq!(Reason::parse("NOT_A_REASON"), None);
    }

    #[test]
    fn every_group_has_a_table() {
        let doc = markdown();
        for h in ["Every request", "Cases", "Bundles", "Household", "Supervision"] {
            assert!(doc.contains(&format!("## {h}")), "{h}");
        }
        assert!(doc.contains("| `HOUSEHOLD_PERSON_NOT_FOUND` | `NOT_FOUND`, `FAILED_PRECONDITION`, *case* |"));
    }
}
