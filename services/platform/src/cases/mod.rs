//! Cases of the shared lifecycle, served the same way by every department: the case record,
//! the [`MatterRules`] a department plugs in per matter ([`Department`]), and the generic `CaseService` ([`CaseApi`]).
//! Every state change is stored with its `CaseStateChanged` event in one transaction.

pub mod evidence;
mod record;
mod service;

pub use record::{ApplicantRecord, CaseRecord, Form, MAX_MATERIALS, MAX_URI_CHARS, MaterialRecord, timestamp};
pub use service::{CaseApi, PROCEDURE, evidence_of};

use crate::reason::Reason;
use crate::{
    catalog::{Matter, TimeUnit, form::FormCheck},
    error::Result,
    events::OutgoingEvent,
    lifecycle::State,
};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;
use std::{collections::BTreeMap, sync::Arc};

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

/// The rules of one matter (事项), plugged into the shared case engine under its catalog
/// code. A department registers one per matter in its [`Department`]; the case service
/// does not start unless they cover exactly the catalog's matters of that department. Every
/// method but [`MatterRules::on_approve`] has the default of a matter with no rule there.
#[async_trait::async_trait]
pub trait MatterRules: Send + Sync + 'static {
    /// The catalog code, e.g. `household.birth_registration`.
    fn code(&self) -> &'static str;

    /// Checks what the form's values mean beyond the catalog's declaration of the form
    /// (kinds, bounds, required fields, enumerations are checked there first; nothing is
    /// read or stored): a date not in the future at `now`, who may apply. Violations go to
    /// `form` and make the request INVALID_ARGUMENT. `applicant` is `None` when it was
    /// itself invalid; the form is checked all the same so the caller learns every problem
    /// at once.
    fn check_form(&self, _form: &mut FormCheck<'_>, _applicant: Option<&ApplicantRecord>, _now: DateTime<Utc>) {}

    /// What only another service can tell about a new case, asked before the case's
    /// transaction opens (no database work here): e.g. whether the applicant qualifies for a
    /// green channel. It may record what it learns on the case (priority, result fields);
    /// `Some` stores the case as NOT_ACCEPTED with that reason.
    ///
    /// # Errors
    /// UNAVAILABLE when the other service cannot be asked: nothing is stored; the caller
    /// retries.
    async fn verify(&self, _case: &mut CaseRecord) -> Result<Option<Refusal>> {
        Ok(None)
    }

    /// Intake conditions against the department's records. `Some` stores the case as
    /// NOT_ACCEPTED with that reason.
    ///
    /// # Errors
    /// A database failure (the request fails INTERNAL and nothing is stored).
    async fn check_intake(&self, _txn: &DatabaseTransaction, _case: &CaseRecord) -> Result<Option<Refusal>> {
        Ok(None)
    }

    /// The committed time of this case: the catalog's by default; a matter overrides it
    /// where a rule depends on the application (M15: the same day when extremely urgent).
    fn time_limit(&self, matter: &Matter, _case: &CaseRecord) -> (TimeUnit, u32) {
        (matter.time_unit, matter.time_limit)
    }

    /// Work done when an application passes intake at `now`, before it is stored (e.g.
    /// reserving a slot). Result fields set here are visible while it is handled.
    ///
    /// # Errors
    /// A database failure or a refused reservation; nothing is stored.
    async fn on_intake(&self, _txn: &DatabaseTransaction, _case: &mut CaseRecord, _now: DateTime<Utc>) -> Result<()> {
        Ok(())
    }

    /// Whether an accepted case of an automatic matter can be decided now. A case that is
    /// not ready stays accepted until [`CaseApi::advance`] finds it ready (e.g. when the
    /// fact it waits for arrives on the bus).
    ///
    /// # Errors
    /// A database failure.
    async fn ready(&self, _txn: &DatabaseTransaction, _case: &CaseRecord) -> Result<bool> {
        Ok(true)
    }

    /// Work done after every stored change of a case (`from` is the state it had), in the
    /// same transaction: e.g. releasing a booked slot when a booking is withdrawn.
    ///
    /// # Errors
    /// A database failure; the change rolls back.
    async fn after_change(&self, _txn: &DatabaseTransaction, _case: &CaseRecord, _from: State) -> Result<()> {
        Ok(())
    }

    /// What a decision needs beyond the lifecycle, checked before an approval: the
    /// decision's own steps (an on-site inspection recorded, a 交钥匙 inspection done).
    ///
    /// # Errors
    /// FAILED_PRECONDITION saying what is missing; nothing changes.
    async fn before_approve(&self, _txn: &DatabaseTransaction, _case: &CaseRecord) -> Result<()> {
        Ok(())
    }

    /// Undoes what the approval did, when it is revoked at `now` (an owed 容缺 material
    /// came too late, or the bundle's compensation): registry rows changed back in `txn`,
    /// facts appended to `events`. Only a matter the catalog marks `revocable` is
    /// compensated; the default undoes nothing (an approval that changed nothing).
    ///
    /// # Errors
    /// A database failure; the revocation rolls back and is tried again.
    async fn on_revoke(
        &self,
        _txn: &DatabaseTransaction,
        _events: &mut Vec<OutgoingEvent>,
        _case: &CaseRecord,
        _now: DateTime<Utc>,
    ) -> Result<()> {
        Ok(())
    }

    /// Applies the approval at `now`: registry changes in `txn`, and domain facts appended
    /// to `events` (written to the outbox with the case's own events, in causal order).
    /// Returns the result fields shown to the applicant.
    ///
    /// # Errors
    /// An [`crate::error::Error`] refuses the approval and rolls everything back, e.g.
    /// FAILED_PRECONDITION when the registry changed since intake.
    async fn on_approve(
        &self,
        txn: &DatabaseTransaction,
        events: &mut Vec<OutgoingEvent>,
        case: &CaseRecord,
        now: DateTime<Utc>,
    ) -> Result<CaseResult>;
}

/// The whole check of a case's form, as `CreateCase` makes it: the catalog's declaration of
/// `matter`'s form, then what `rules` say the values mean at `now` (one violation per field,
/// the catalog's first). Departments' unit tests check their forms through it too.
pub fn check_case_form(
    catalog: &crate::catalog::Catalog,
    matter: &Matter,
    rules: &dyn MatterRules,
    applicant: Option<&ApplicantRecord>,
    form: &Form,
    now: DateTime<Utc>,
) -> Vec<crate::error::FieldViolation> {
    let mut meaning = FormCheck::new(form);
    rules.check_form(&mut meaning, applicant, now);
    catalog.check_case_form(matter, form, meaning.finish())
}

/// The outcome of special procedure `name` recorded on `case`: `Some(true)` when it ended
/// passed, `Some(false)` failed, `None` when none ended.
pub fn procedure_outcome(case: &CaseRecord, name: &str) -> Option<bool> {
    case.result.get(&format!("{PROCEDURE}.{name}")).map(|v| v == "passed")
}

/// A department: its name (the catalog's `department`, the event namespace) and the rules
/// of each of its matters, by catalog code.
#[derive(Clone)]
pub struct Department {
    name: &'static str,
    rules: Vec<Arc<dyn MatterRules>>,
}

impl Department {
    /// Department `name` with no matters yet.
    pub fn new(name: &'static str) -> Self {
        Self { name, rules: Vec::new() }
    }

    /// Registers the rules of one matter.
    #[must_use]
    pub fn with(mut self, rules: impl MatterRules) -> Self {
        self.rules.push(Arc::new(rules));
        self
    }

    /// The department's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The codes registered, in registration order (a code twice is a deployment error
    /// that [`CaseApi::new`] reports).
    pub fn codes(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.rules.iter().map(|r| r.code())
    }

    /// The rules of the matter with `code`.
    pub fn rules(&self, code: &str) -> Option<&dyn MatterRules> {
        self.rules.iter().find(|r| r.code() == code).map(|r| &**r)
    }
}

impl std::fmt::Debug for Department {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Department")
            .field("name", &self.name)
            .field("matters", &self.codes().collect::<Vec<_>>())
            .finish()
    }
}
