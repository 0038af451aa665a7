//! Enterprise requests (企业诉求, M19, M26): received from the online channel, the liaison
//! room or the hotline; routed to the district or city bureau by category; taken through
//! 办 (handle) → 评 (rate) → 访 (visit after a bad rating) → 督 (flagged when late or badly
//! rated) → 责 (responsibility when unresolved). Every step is stored with its event in one
//! transaction; the completion rate is computed from the requests themselves.

mod completion;
mod late;

use crate::{domain, store::entities::request};
use chrono::{DateTime, Utc};
use onething_platform::clock::Clock;
use onething_platform::reason::Reason;
use onething_platform::{
    auth::{Principal, SubjectKind},
    authz::{self, ROLE_APPROVER, ROLE_CLERK},
    calendar::Calendar,
    cases::timestamp,
    db::{begin_write, is_unique_violation},
    error::{Error, Kind, Result},
    events::{Outbox, OutgoingEvent},
    ids::CreditCode,
};
use onething_proto::liaison::{self as pb, Channel, RequestState, Tier};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter};
use std::sync::Arc;

/// The enterprise request loop.
#[derive(Clone)]
pub struct Requests {
    db: DatabaseConnection,
    outbox: Outbox,
    calendar: Arc<Calendar>,
    clock: Clock,
}

fn state_of(m: &request::Model) -> RequestState {
    RequestState::from_str_name(&m.state).unwrap_or(RequestState::Unspecified)
}

/// The API message of a stored request as `reader` sees it: the enterprise gets the
/// answer to its request (the handling note) but not the department's internal records of
/// the loop (why it was flagged, the visit's note, the responsibility record).
pub fn to_proto(m: &request::Model, reader: &Principal) -> pb::EnterpriseRequest {
    let internal = reader.is_staff_of(crate::matters::DEPARTMENT) || authz::is_supervision(reader);
    let internal_text = |t: &str| if internal { t.to_string() } else { String::new() };
    pb::EnterpriseRequest {
        request_id: m.id.clone(),
        credit_code: m.credit_code.clone(),
        channel: Channel::from_str_name(&m.channel).unwrap_or(Channel::Unspecified) as i32,
        category: m.category.clone(),
        tier: Tier::from_str_name(&m.tier).unwrap_or(Tier::Unspecified) as i32,
        unit: m.unit.clone(),
        state: state_of(m) as i32,
        description: m.description.clone(),
        handling_note: m.handling_note.clone(),
        rating: u32::try_from(m.rating).unwrap_or(0),
        flagged: m.flagged,
        flag_reason: internal_text(&m.flag_reason),
        visit_note: internal_text(&m.visit_note),
        responsibility_note: internal_text(&m.responsibility_note),
        due_time: Some(timestamp(m.due_at)),
        create_time: Some(timestamp(m.created_at)),
        escalated: m.escalated,
        escalation_note: internal_text(&m.escalation_note),
    }
}

fn liaison_staff(p: &Principal, role: &str) -> bool {
    p.is_staff_of(crate::matters::DEPARTMENT) && p.has_role(role)
}

/// Who reads the completion rates: liaison staff and supervision.
pub(crate) fn reads_completion(p: &Principal) -> bool {
    p.is_staff_of(crate::matters::DEPARTMENT) || authz::is_supervision(p)
}

/// Whether `p` is the enterprise `code` itself.
pub(crate) fn is_enterprise(p: &Principal, code: &str) -> bool {
    p.kind == SubjectKind::Enterprise && p.credit_code == code
}

/// A submitted request, checked: its enterprise, channel, tier and handling unit, and key.
struct Valid {
    code: CreditCode,
    channel: Channel,
    tier: Tier,
    unit: String,
    key: String,
}

/// Checks a submitted request, reporting every malformed field at once.
fn validate(r: &pb::SubmitRequestRequest) -> Result<Valid> {
    let mut bad = Vec::new();
    let code = CreditCode::parse(&r.credit_code);
    if let Err(e) = &code {
        bad.push(("credit_code", format!("not a unified social credit code: {e}")));
    }
    let channel = Channel::try_from(r.channel).unwrap_or(Channel::Unspecified);
    if channel == Channel::Unspecified {
        bad.push(("channel", "ONLINE, LIAISON_ROOM or HOTLINE".into()));
    }
    let route = code.as_ref().ok().and_then(|c| domain::route(&r.category, c));
    if domain::CATEGORIES.iter().all(|(c, _)| *c != r.category) {
        bad.push((
            "category",
            format!("one of {}", domain::CATEGORIES.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")),
        ));
    }
    if r.description.trim().is_empty() || r.description.chars().count() > 2000 {
        bad.push(("description", "required, at most 2000 characters".into()));
    }
    let key = r.idempotency_key.trim();
    if key.is_empty() || key.len() > 128 {
        bad.push(("idempotency_key", "required, at most 128 characters".into()));
    }
    let violations = bad
        .into_iter()
        .map(|(f, d)| onething_platform::error::FieldViolation { field: f.into(), description: d })
        .collect();
    if let Some(e) = Error::from_violations(Reason::LiaisonInvalidRequest, violations) {
        return Err(e);
    }
    let (Ok(code), Some((tier, unit))) = (code, route) else {
        return Err(Error::internal(anyhow::anyhow!("validated request without a route")));
    };
    Ok(Valid { code, channel, tier, unit, key: key.to_string() })
}

fn note(s: &str, field: &str) -> Result<String> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > 2000 {
        return Err(Error::invalid_field(Reason::LiaisonInvalidRequest, field, "required, at most 2000 characters"));
    }
    Ok(s.to_string())
}

impl Requests {
    /// The loop over liaison's database, outbox, calendar and business clock.
    pub fn new(db: DatabaseConnection, outbox: Outbox, calendar: Arc<Calendar>, clock: Clock) -> Self {
        Self { db, outbox, calendar, clock }
    }

    /// The business clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn event(&self, m: &request::Model, happened: &str) -> OutgoingEvent {
        OutgoingEvent::new(
            format!("onething.liaison.v1.enterprise_request.{happened}"),
            format!("requests/{}", m.id),
            &pb::EnterpriseRequestChanged {
                request_id: m.id.clone(),
                credit_code: m.credit_code.clone(),
                category: m.category.clone(),
                tier: Tier::from_str_name(&m.tier).unwrap_or(Tier::Unspecified) as i32,
                unit: m.unit.clone(),
                state: state_of(m) as i32,
                rating: u32::try_from(m.rating).unwrap_or(0),
                flagged: m.flagged,
                flag_reason: m.flag_reason.clone(),
                due_time: Some(timestamp(m.due_at)),
                occur_time: Some(timestamp(self.clock.now())),
                escalated: m.escalated,
                version: m.version,
            },
        )
    }

    fn happened(s: RequestState) -> &'static str {
        match s {
            RequestState::Submitted => "submitted",
            RequestState::Handled => "handled",
            RequestState::BadlyRated => "badly_rated",
            RequestState::Visited => "visited",
            RequestState::ResponsibilityAssigned => "responsibility_assigned",
            RequestState::Closed => "closed",
            RequestState::Unspecified => "changed",
        }
    }

    /// Receives a request.
    ///
    /// # Errors
    /// INVALID_ARGUMENT for a malformed credit code, an unknown channel or category, or an
    /// empty description; PERMISSION_DENIED for an enterprise asking for another.
    pub async fn submit(&self, p: &Principal, r: pb::SubmitRequestRequest) -> Result<request::Model> {
        // Who may submit at all is decided before the request is looked at.
        let may = p.kind == SubjectKind::Enterprise || liaison_staff(p, ROLE_CLERK);
        authz::check(may, p, "SubmitRequest", "requests")?;
        let Valid { code, channel, tier, unit, key } = validate(&r)?;
        let allowed = is_enterprise(p, code.as_str()) || liaison_staff(p, ROLE_CLERK);
        authz::check(allowed, p, "SubmitRequest", code.as_str())?;
        // The key is the caller's: another's same key finds nothing of theirs.
        let key = onething_platform::idempotency::scoped(p, &key);
        if let Some(existing) =
            request::Entity::find().filter(request::Column::IdempotencyKey.eq(key.clone())).one(&self.db).await?
        {
            return if existing.credit_code == code.as_str() {
                Ok(existing)
            } else {
                Err(Error::failed_precondition(
                    Reason::LiaisonIdempotencyKeyReused,
                    "the key was used for another request",
                ))
            };
        }
        let now = self.clock.now();
        let m = request::Model {
            id: uuid::Uuid::now_v7().to_string(),
            idempotency_key: key,
            credit_code: code.as_str().into(),
            channel: channel.as_str_name().into(),
            category: r.category.clone(),
            tier: tier.as_str_name().into(),
            unit,
            state: RequestState::Submitted.as_str_name().into(),
            description: r.description.trim().into(),
            handling_note: String::new(),
            rating: 0,
            flagged: false,
            flag_reason: String::new(),
            visit_note: String::new(),
            responsibility_note: String::new(),
            due_at: self.calendar.add_working_days(now, domain::handling_days(tier)).at,
            handled_at: None,
            created_at: now,
            version: 1,
            escalated: false,
            escalation_note: String::new(),
        };
        let txn = begin_write(&self.db).await?;
        let am: request::ActiveModel = m.clone().into();
        if let Err(e) = request::Entity::insert(am).exec_without_returning(&txn).await {
            txn.rollback().await?;
            if is_unique_violation(&e) {
                return Err(Error::new(Kind::Aborted, Reason::LiaisonConcurrentSubmit, "retry the submit"));
            }
            return Err(e.into());
        }
        self.outbox.enqueue(&txn, self.event(&m, "submitted")).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(m)
    }

    /// Reads a request.
    ///
    /// # Errors
    /// NOT_FOUND; PERMISSION_DENIED for another enterprise.
    pub async fn get(&self, p: &Principal, id: &str) -> Result<request::Model> {
        let reads = p.is_staff_of(crate::matters::DEPARTMENT) || authz::is_supervision(p);
        authz::check(reads || p.kind == SubjectKind::Enterprise, p, "GetRequest", id)?;
        // An unknown id and another enterprise's request answer alike to an enterprise.
        let m = authz::hide_missing(self.load(&self.db, id).await, reads, p, "GetRequest", id)?;
        authz::check(reads || is_enterprise(p, &m.credit_code), p, "GetRequest", id)?;
        Ok(m)
    }

    async fn load<C: sea_orm::ConnectionTrait>(&self, db: &C, id: &str) -> Result<request::Model> {
        request::Entity::find_by_id(id.to_string())
            .one(db)
            .await?
            .ok_or_else(|| Error::not_found(Reason::LiaisonRequestNotFound, "no such request"))
    }

    /// One step of the loop: checks the caller and the state, applies `f`, stores the
    /// request with its event (and a `flagged` event when the step flags it).
    async fn step(
        &self,
        (p, rpc, id): (&Principal, &str, &str),
        allowed: impl Fn(&Principal, Option<&request::Model>) -> bool,
        from: &[RequestState],
        f: impl FnOnce(&mut request::Model) -> Result<()>,
    ) -> Result<request::Model> {
        // Who may take this step at all is decided before anything is looked up (`None`).
        authz::check(allowed(p, None), p, rpc, id)?;
        let txn = begin_write(&self.db).await?;
        // An unknown id and another enterprise's request answer alike to an enterprise.
        let reads = p.is_staff_of(crate::matters::DEPARTMENT) || authz::is_supervision(p);
        let mut m = authz::hide_missing(self.load(&txn, id).await, reads, p, rpc, id)?;
        authz::check(allowed(p, Some(&m)), p, rpc, id)?;
        if !from.contains(&state_of(&m)) {
            return Err(Error::failed_precondition(
                Reason::LiaisonRequestWrongState,
                format!("{rpc} is not possible in {}", m.state.trim_start_matches("REQUEST_STATE_").to_lowercase()),
            ));
        }
        let was_flagged = m.flagged;
        f(&mut m)?;
        self.store(&txn, m.clone(), was_flagged).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(m)
    }

    async fn store(&self, txn: &DatabaseTransaction, m: request::Model, was_flagged: bool) -> Result<()> {
        self.store_as(txn, m, was_flagged, None).await
    }

    /// [`Self::store`], the change's event named `happened` rather than after the state.
    async fn store_as(
        &self,
        txn: &DatabaseTransaction,
        mut m: request::Model,
        was_flagged: bool,
        happened: Option<&str>,
    ) -> Result<()> {
        let before = m.version;
        m.version += 1;
        // From a model every column is "unchanged"; reset marks them all to be written.
        let am = request::ActiveModel::from(m.clone()).reset_all();
        let n = request::Entity::update_many()
            .set(am)
            .filter(request::Column::Id.eq(m.id.clone()))
            .filter(request::Column::Version.eq(before))
            .exec(txn)
            .await?;
        if n.rows_affected != 1 {
            return Err(Error::new(Kind::Aborted, Reason::LiaisonConcurrentUpdate, "the request changed; retry"));
        }
        self.outbox.enqueue(txn, self.event(&m, happened.unwrap_or(Self::happened(state_of(&m))))).await?;
        if m.flagged && !was_flagged {
            // 督: supervision follows this subject.
            self.outbox.enqueue(txn, self.event(&m, "flagged")).await?;
        }
        Ok(())
    }

    /// 办.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but a liaison clerk; FAILED_PRECONDITION unless submitted.
    pub async fn handle(&self, p: &Principal, id: &str, text: &str) -> Result<request::Model> {
        // Checked after the caller: a stranger learns nothing from a validation answer.
        let text = note(text, "note");
        let now = self.clock.now();
        self.step(
            (p, "HandleRequest", id),
            |p, _| liaison_staff(p, ROLE_CLERK),
            &[RequestState::Submitted],
            |m| {
                m.handling_note = text?;
                m.state = RequestState::Handled.as_str_name().into();
                m.handled_at = Some(now);
                Ok(())
            },
        )
        .await
    }

    /// 评: the enterprise rates; 1 and 2 flag the request and call for a visit.
    ///
    /// # Errors
    /// INVALID_ARGUMENT outside 1–5; PERMISSION_DENIED for anyone but the enterprise;
    /// FAILED_PRECONDITION unless handled.
    pub async fn rate(&self, p: &Principal, id: &str, rating: u32) -> Result<request::Model> {
        authz::check(p.kind == SubjectKind::Enterprise, p, "RateRequest", id)?;
        if !(1..=5).contains(&rating) {
            return Err(Error::invalid_field(Reason::LiaisonInvalidRating, "rating", "from 1 to 5"));
        }
        self.step(
            (p, "RateRequest", id),
            |p, m| m.map_or(p.kind == SubjectKind::Enterprise, |m| is_enterprise(p, &m.credit_code)),
            &[RequestState::Handled],
            |m| {
                m.rating = i32::try_from(rating).unwrap_or(0);
                let next = domain::after_rating(rating);
                m.state = next.as_str_name().into();
                if next == RequestState::BadlyRated {
                    m.flagged = true;
                    m.flag_reason = format!("bad rating ({rating})");
                }
                Ok(())
            },
        )
        .await
    }

    /// 访: the follow-up visit after a bad rating.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but liaison staff; FAILED_PRECONDITION unless badly rated.
    pub async fn visit(&self, p: &Principal, id: &str, resolved: bool, text: &str) -> Result<request::Model> {
        // Checked after the caller: a stranger learns nothing from a validation answer.
        let text = note(text, "note");
        self.step(
            (p, "RecordVisit", id),
            |p, _| p.is_staff_of(crate::matters::DEPARTMENT),
            &[RequestState::BadlyRated],
            |m| {
                m.visit_note = text?;
                m.state = if resolved { RequestState::Closed } else { RequestState::Visited }.as_str_name().into();
                Ok(())
            },
        )
        .await
    }

    /// 责: a responsibility record for a request still unresolved after the visit.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision or a liaison approver; FAILED_PRECONDITION
    /// unless visited and unresolved.
    pub async fn assign_responsibility(&self, p: &Principal, id: &str, text: &str) -> Result<request::Model> {
        let text = note(text, "note");
        let may =
            |p: &Principal, _: Option<&request::Model>| authz::is_supervision(p) || liaison_staff(p, ROLE_APPROVER);
        self.step((p, "AssignResponsibility", id), may, &[RequestState::Visited], |m| {
            m.responsibility_note = text?;
            m.state = RequestState::ResponsibilityAssigned.as_str_name().into();
            Ok(())
        })
        .await
    }
}
