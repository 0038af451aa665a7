//! Complaints: submitted once per key with the complainant's contact, then moved through
//! 受理 → 核查 → 处置 → 反馈 → 整改, each step with its deadline and its event. The event
//! carries the contact masked and the complaint's personal part sealed, so supervision
//! rebuilds complaints from its stream like everything else.

use super::*;

impl Supervision {
    /// Receives a complaint; the same caller's same key answers with the complaint it made.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but applicants (online) and supervision staff;
    /// INVALID_ARGUMENT for an unknown channel, an empty summary or key, a contact that is
    /// no phone number or e-mail address; FAILED_PRECONDITION
    /// (`SUPERVISION_IDEMPOTENCY_KEY_REUSED`) for the key of another complaint (any field
    /// different, the contact included).
    pub async fn submit_complaint(&self, p: &Principal, r: pb::SubmitComplaintRequest) -> Result<complaint::Model> {
        // Who may complain at all is decided before the request is looked at.
        authz::check(staff(p) || p.kind.is_applicant(), p, "SubmitComplaint", "complaints")?;
        let channel = pb::Channel::try_from(r.channel).unwrap_or(pb::Channel::Unspecified);
        let mut bad = Vec::new();
        let v = |f: &str, d: &str| onething_platform::error::FieldViolation { field: f.into(), description: d.into() };
        if channel == pb::Channel::Unspecified {
            bad.push(v("channel", "CHANNEL_110, CHANNEL_12389, CHANNEL_CONSULTATION_LINE or CHANNEL_ONLINE"));
        }
        if r.summary.trim().is_empty() || r.summary.chars().count() > 2000 {
            bad.push(v("summary", "required, at most 2000 characters"));
        }
        // A department of the mesh, not free text: an unbounded one made an event too large
        // to publish, which held up the stream behind it.
        if !crate::projection::STREAMS.contains(&r.department.trim()) || r.department.trim() == "coordinator" {
            bad.push(v("department", "household, exit_entry, vehicle, liaison or supervision"));
        }
        if r.idempotency_key.trim().is_empty() || r.idempotency_key.len() > 128 {
            bad.push(v("idempotency_key", "required, at most 128 characters"));
        }
        if !domain::is_contact(r.contact.trim()) {
            bad.push(v("contact", "a mobile or landline number or an e-mail address, at most 100 characters"));
        }
        if let Some(e) = Error::from_violations(Reason::SupervisionInvalidRequest, bad) {
            return Err(e);
        }
        // Online complaints come from citizens and enterprises; phone ones are entered by staff.
        authz::check(
            staff(p) || (channel == pb::Channel::Online && p.kind.is_applicant()),
            p,
            "SubmitComplaint",
            "complaints",
        )?;
        // The key is the caller's: another's same key finds nothing of theirs.
        let key = onething_platform::idempotency::scoped(p, &r.idempotency_key);
        if let Some(m) =
            complaint::Entity::find().filter(complaint::Column::IdempotencyKey.eq(key.clone())).one(&self.db).await?
        {
            // Every field the complainant gives: a corrected contact under the old key is
            // refused, not silently dropped.
            let same = m.channel == channel.as_str_name()
                && m.department == r.department.trim()
                && m.summary == r.summary.trim()
                && m.contact == domain::canonical_contact(&r.contact);
            if !same {
                return Err(Error::failed_precondition(
                    Reason::SupervisionIdempotencyKeyReused,
                    "the key was used for another complaint",
                ));
            }
            return Ok(m);
        }
        let now = self.clock.now();
        let m = complaint::Model {
            id: format!("TS{}", now.format("%Y%m%d%H%M%S%f")),
            idempotency_key: key,
            channel: channel.as_str_name().into(),
            department: r.department.trim().into(),
            summary: r.summary.trim().into(),
            step: pb::ComplaintStep::Accepted.as_str_name().into(),
            next_step_due: Some(self.calendar.add_working_days(now, domain::FIRST_STEP_DAYS).at),
            notes: Default::default(),
            created_at: now,
            contact: domain::canonical_contact(&r.contact),
        };
        let txn = begin_write(&self.db).await?;
        complaint::Entity::insert(complaint::ActiveModel::from(m.clone()).reset_all())
            .exec_without_returning(&txn)
            .await?;
        self.outbox.enqueue(&txn, self.complaint_event(&m, "accepted")).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(m)
    }

    pub(super) fn complaint_event(&self, m: &complaint::Model, step: &str) -> OutgoingEvent {
        let personal =
            pb::SealedComplaint { summary: m.summary.clone(), contact: m.contact.clone(), notes: m.notes.0.clone() };
        OutgoingEvent::new(
            format!("onething.supervision.v1.complaint.{step}"),
            format!("complaints/{}", m.id),
            &pb::ComplaintChanged {
                complaint_id: m.id.clone(),
                channel: pb::Channel::from_str_name(&m.channel).unwrap_or(pb::Channel::Unspecified) as i32,
                department: m.department.clone(),
                step: pb::ComplaintStep::from_str_name(&m.step).unwrap_or(pb::ComplaintStep::Unspecified) as i32,
                next_step_due: m.next_step_due.map(timestamp),
                occur_time: Some(timestamp(self.clock.now())),
                contact_masked: onething_platform::seal::mask_contact(&m.contact),
                sealed: self.sealer.seal(&prost::Message::encode_to_vec(&personal)),
                create_time: Some(timestamp(m.created_at)),
            },
        )
    }

    /// Moves a complaint to its next step (受理 → 核查 → 处置 → 反馈 → 整改).
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff; FAILED_PRECONDITION out of order.
    pub async fn advance_complaint(&self, p: &Principal, r: pb::AdvanceComplaintRequest) -> Result<complaint::Model> {
        authz::check(staff(p), p, "AdvanceComplaint", &r.complaint_id)?;
        if r.note.trim().is_empty() {
            return Err(Error::invalid_field(Reason::SupervisionInvalidRequest, "note", "required"));
        }
        let txn = begin_write(&self.db).await?;
        let m = complaint::Entity::find_by_id(r.complaint_id.clone())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found(Reason::SupervisionComplaintNotFound, "no such complaint"))?;
        let current = pb::ComplaintStep::from_str_name(&m.step).unwrap_or(pb::ComplaintStep::Unspecified);
        let wanted = pb::ComplaintStep::try_from(r.step).unwrap_or(pb::ComplaintStep::Unspecified);
        if domain::next_step(current).map(|(s, _)| s) != Some(wanted) {
            return Err(Error::failed_precondition(
                Reason::SupervisionComplaintOutOfOrder,
                "steps follow 受理 → 核查 → 处置 → 反馈 → 整改",
            ));
        }
        let mut notes = m.notes.clone();
        notes.0.push(format!(
            "{}: {}",
            wanted.as_str_name().trim_start_matches("COMPLAINT_STEP_").to_lowercase(),
            r.note.trim()
        ));
        let mut next = m.clone();
        next.step = wanted.as_str_name().into();
        next.notes = notes;
        next.next_step_due =
            domain::next_step(wanted).map(|(_, days)| self.calendar.add_working_days(self.clock.now(), days).at);
        complaint::ActiveModel::from(next.clone()).reset_all().update(&txn).await?;
        let step = wanted.as_str_name().trim_start_matches("COMPLAINT_STEP_").to_lowercase();
        self.outbox.enqueue(&txn, self.complaint_event(&next, &step)).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(next)
    }
}

/// The API message of a complaint as `reader` sees it: staff notes for supervision staff
/// only (a complainant sees the step and its deadline, not the investigators' notes); the
/// contact in full only to supervision staff with `personal_data` (who reply), masked to
/// everyone else.
pub fn complaint_pb(m: &complaint::Model, reader: &Principal) -> pb::Complaint {
    pb::Complaint {
        complaint_id: m.id.clone(),
        channel: pb::Channel::from_str_name(&m.channel).unwrap_or(pb::Channel::Unspecified) as i32,
        department: m.department.clone(),
        summary: m.summary.clone(),
        step: pb::ComplaintStep::from_str_name(&m.step).unwrap_or(pb::ComplaintStep::Unspecified) as i32,
        next_step_due: m.next_step_due.map(timestamp),
        notes: if staff(reader) { m.notes.0.clone() } else { Vec::new() },
        contact: if staff(reader) && onething_platform::authz::sees_personal_data(reader) {
            m.contact.clone()
        } else {
            onething_platform::seal::mask_contact(&m.contact)
        },
    }
}
