//! Cases of the shared lifecycle, served the same way by every department: the case record,
//! the [`Department`] rules a service plugs in, and the generic `CaseService` ([`CaseApi`]).
//! Every state change is stored with its `CaseStateChanged` event in one transaction.

mod record;
mod service;

pub use record::{ApplicantRecord, CaseRecord, Form, MAX_MATERIALS, MAX_URI_CHARS, MaterialRecord, timestamp};
pub use service::CaseApi;

use crate::reason::Reason;
use crate::{
    catalog::{Matter, TimeUnit},
    error::{FieldViolation, Result},
    events::OutgoingEvent,
};
use sea_orm::DatabaseTransaction;
use std::{collections::BTreeMap, future::Future};

/// Why an application is not accepted (不予受理), stored on the case and told to the applicant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable reason code, e.g. `HOUSEHOLD_PERSON_NOT_FOUND`; one declared for cases.
    pub reason_code: Reason,
    /// Explanation for the applicant; no personal data.
    pub reason_text: String,
}

impl Refusal {
    /// A refusal with `code` and `text`.
    pub fn new(code: Reason, text: impl Into<String>) -> Self {
        debug_assert!(code.uses().contains(&crate::reason::Use::Case), "{code} is not declared for cases");
        Self { reason_code: code, reason_text: text.into() }
    }
}

/// What the approval of a case produced: result fields for the applicant.
pub type CaseResult = BTreeMap<String, String>;

/// The rules of one department, plugged into the shared case engine.
pub trait Department: Send + Sync + 'static {
    /// Department name, e.g. `household`; matters with this department are served.
    fn name(&self) -> &'static str;

    /// The catalog codes of the matters this department has rules for. The case service
    /// will not start unless they are exactly the catalog's matters of this department: a
    /// matter in the catalog with no rules, or rules for a matter the catalog lacks, is a
    /// deployment error found at start, not a request refused later.
    fn matters(&self) -> &'static [&'static str];

    /// Checks what the form fields of `matter` mean, beyond the catalog's declaration of
    /// the form (kinds, bounds, required fields, enumerations are checked there first;
    /// nothing is read or stored). Violations are reported as `form.<field>` (one per field:
    /// the catalog's comes first) and make the request INVALID_ARGUMENT.
    /// `applicant` is `None` when it was itself invalid; the form is checked all the same
    /// so the caller learns every problem at once.
    fn validate(&self, matter: &Matter, applicant: Option<&ApplicantRecord>, form: &Form) -> Vec<FieldViolation>;

    /// Intake conditions against the department's records. `Some` stores the case as
    /// NOT_ACCEPTED with that reason.
    ///
    /// # Errors
    /// A database failure (the request fails INTERNAL and nothing is stored).
    fn check_intake(
        &self,
        txn: &DatabaseTransaction,
        case: &CaseRecord,
    ) -> impl Future<Output = Result<Option<Refusal>>> + Send;

    /// The committed time of this case: the catalog's by default; a department overrides it
    /// where a rule depends on the application (M15: the same day when extremely urgent).
    fn time_limit(&self, matter: &Matter, _case: &CaseRecord) -> (TimeUnit, u32) {
        (matter.time_unit, matter.time_limit)
    }

    /// Work done when an application passes intake, before it is stored (e.g. assigning a
    /// service commissioner, M13). Result fields set here are visible while it is handled.
    ///
    /// # Errors
    /// A database failure; nothing is stored.
    fn on_intake(&self, _txn: &DatabaseTransaction, _case: &mut CaseRecord) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Whether an accepted case of an automatic matter can be decided now. A case that is
    /// not ready stays accepted until [`CaseApi::advance`] finds it ready (e.g. when the
    /// fact it waits for arrives on the bus).
    ///
    /// # Errors
    /// A database failure.
    fn ready(&self, _txn: &DatabaseTransaction, _case: &CaseRecord) -> impl Future<Output = Result<bool>> + Send {
        async { Ok(true) }
    }

    /// Work done after every stored change of a case (`from` is the state it had), in the
    /// same transaction: e.g. releasing a booked slot when a booking is withdrawn.
    ///
    /// # Errors
    /// A database failure; the change rolls back.
    fn after_change(
        &self,
        _txn: &DatabaseTransaction,
        _case: &CaseRecord,
        _from: crate::lifecycle::State,
    ) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Applies the approval: registry changes in `txn`, and domain facts appended to
    /// `events` (written to the outbox with the case's own events, in causal order).
    /// Returns the result fields shown to the applicant.
    ///
    /// # Errors
    /// An [`crate::error::Error`] refuses the approval and rolls everything back, e.g.
    /// FAILED_PRECONDITION when the registry changed since intake.
    fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
    ) -> impl Future<Output = Result<CaseResult>> + Send;
}
