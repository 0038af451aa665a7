//! The events of supervision's own (notices, complaints, ratings, the 办不成事 window, draws)
//! and liaison's enterprise requests: one method each, and what each puts under watch.

use super::*;

/// The events of supervision's own and of liaison, one method each.
impl Projection {
    /// An enterprise request changed: counted for liaison, and into the 办不成事 window when
    /// flagged or when responsibility was assigned.
    pub(super) async fn enterprise_request(&self, txn: &DatabaseTransaction, e: &Envelope) -> anyhow::Result<()> {
        let r: liaison::EnterpriseRequestChanged = e.decode()?;
        let state = liaison::RequestState::try_from(r.state).unwrap_or(liaison::RequestState::Unspecified);
        let at = ts(r.occur_time).unwrap_or(e.time);
        let existing = request::Entity::find_by_id(r.request_id.clone()).one(txn).await?;
        let handled = !matches!(state, liaison::RequestState::Submitted | liaison::RequestState::Unspecified);
        let responsibility = state == liaison::RequestState::ResponsibilityAssigned;
        match existing {
            None => {
                request::Entity::insert(request::ActiveModel {
                    id: Set(r.request_id.clone()),
                    unit: Set(r.unit.clone()),
                    received_at: Set(at),
                    handled: Set(handled),
                    responsibility: Set(responsibility),
                })
                .exec_without_returning(txn)
                .await?;
            }
            Some(m) => {
                let mut am: request::ActiveModel = m.clone().into();
                am.handled = Set(m.handled || handled);
                am.responsibility = Set(m.responsibility || responsibility);
                am.update(txn).await?;
            }
        }
        if r.flagged || responsibility {
            let tier = if r.tier == liaison::Tier::City as i32 { "city" } else { "district" };
            let why = if responsibility { "unresolved: responsibility assigned" } else { r.flag_reason.as_str() };
            window(
                txn,
                &self.calendar,
                Arrival {
                    source: "enterprise_request",
                    ref_id: &r.request_id,
                    department: "liaison",
                    tier,
                    reason: why,
                    at,
                },
            )
            .await?;
        }
        // Under watch until handled: its deadline (the city's, once handed up) gets a 督办
        // notice when it passes.
        track(txn, "request", &r.request_id, |m| {
            // An older change delivered late moves nothing (events before versions carry 0).
            if r.version != 0 {
                if r.version <= m.version {
                    return;
                }
                m.version = r.version;
            }
            m.department = "liaison".into();
            m.code = r.category.clone();
            set_due(m, ts(r.due_time), at);
            m.last_state = state.as_str_name().into();
            if handled && !m.closed {
                m.closed = true;
                m.closed_at = Some(at);
            }
        })
        .await?;
        Ok(())
    }

    /// A complaint was received or moved a step: the complaint rebuilt from its event (the
    /// personal part opened from its seal), and its next step's deadline under watch.
    pub(super) async fn complaint_changed(&self, txn: &DatabaseTransaction, e: &Envelope) -> anyhow::Result<()> {
        let c: pb::ComplaintChanged = e.decode()?;
        let personal: pb::SealedComplaint = match self.sealer.open(&c.sealed) {
            Ok(bytes) => prost::Message::decode(bytes.as_slice())?,
            Err(_) => {
                // Sealed under another key (a rotated one not kept, see docs/operations.md):
                // the rest is rebuilt, the personal part stays as it was.
                tracing::warn!(complaint_id = %c.complaint_id, "a complaint's sealed part does not open");
                pb::SealedComplaint::default()
            }
        };
        let step = pb::ComplaintStep::try_from(c.step).unwrap_or(pb::ComplaintStep::Unspecified);
        let at = ts(c.occur_time).unwrap_or(e.time);
        let existing = complaint::Entity::find_by_id(c.complaint_id.clone()).one(txn).await?;
        // Steps only go forward: a step delivered again after a later one moves nothing.
        let rank = |name: &str| pb::ComplaintStep::from_str_name(name).map_or(0, |s| s as i32);
        if existing.as_ref().is_some_and(|m| rank(&m.step) > step as i32) {
            return Ok(());
        }
        let opened = !personal.summary.is_empty();
        let m = complaint::Model {
            id: c.complaint_id.clone(),
            // The caller's key is not in the event: a rebuilt complaint answers no resend.
            idempotency_key: existing
                .as_ref()
                .map_or_else(|| format!("replayed:{}", c.complaint_id), |m| m.idempotency_key.clone()),
            channel: pb::Channel::try_from(c.channel).unwrap_or(pb::Channel::Unspecified).as_str_name().into(),
            department: c.department.clone(),
            summary: if opened {
                personal.summary
            } else {
                existing.as_ref().map(|m| m.summary.clone()).unwrap_or_default()
            },
            step: step.as_str_name().into(),
            next_step_due: ts(c.next_step_due),
            notes: if opened {
                personal.notes.into()
            } else {
                existing.as_ref().map(|m| m.notes.clone()).unwrap_or_default()
            },
            created_at: ts(c.create_time).unwrap_or(at),
            contact: if opened {
                personal.contact
            } else {
                existing.as_ref().map(|m| m.contact.clone()).unwrap_or_default()
            },
        };
        // The API wrote the row already; a replay into an empty database makes it again.
        let am = complaint::ActiveModel::from(m).reset_all();
        if existing.is_some() {
            am.update(txn).await?;
        } else {
            complaint::Entity::insert(am).exec_without_returning(txn).await?;
        }
        track(txn, "complaint", &c.complaint_id, |m| {
            m.department = c.department.clone();
            m.code = step.as_str_name().into();
            set_due(m, ts(c.next_step_due), at);
            m.last_state = step.as_str_name().into();
            if m.due_at.is_none() && !m.closed {
                m.closed = true;
                m.closed_at = Some(at);
            }
        })
        .await?;
        Ok(())
    }

    /// A 督办 notice went out: the item marked, and the overdue case into the window.
    pub(super) async fn notice_issued(&self, txn: &DatabaseTransaction, e: &Envelope) -> anyhow::Result<()> {
        let n: pb::NoticeIssued = e.decode()?;
        let at = ts(n.occur_time).unwrap_or(e.time);
        track(txn, &n.kind, &n.id, |m| {
            m.notice_sent = true;
            m.noticed_due = ts(n.due_time).or(m.noticed_due);
            if m.department.is_empty() {
                m.department = n.department.clone();
            }
        })
        .await?;
        window(
            txn,
            &self.calendar,
            Arrival {
                source: &format!("{}_overdue", n.kind),
                ref_id: &n.id,
                department: &n.department,
                tier: "district",
                reason: "overdue: 督办 notice issued",
                at,
            },
        )
        .await?;
        Ok(())
    }

    /// A rating was given or its bad review fixed.
    pub(super) async fn rating_changed(&self, txn: &DatabaseTransaction, e: &Envelope) -> anyhow::Result<()> {
        let r: pb::RatingChanged = e.decode()?;
        let at = ts(r.occur_time).unwrap_or(e.time);
        let bad = r.score <= 2;
        rating::Entity::insert(rating::ActiveModel {
            id: Set(r.rating_id.clone()),
            target_kind: Set(r.target_kind.clone()),
            target_id: Set(r.target_id.clone()),
            department: Set(r.department.clone()),
            score: Set(i32::try_from(r.score).unwrap_or(0)),
            fix_due: Set(bad.then(|| self.calendar.add_working_days(at, crate::domain::FIX_WITHIN_WORKING_DAYS).at)),
            fix_note: Set(if r.fixed { "fixed".into() } else { String::new() }),
            created_at: Set(at),
        })
        .on_conflict(OnConflict::column(rating::Column::Id).do_nothing().to_owned())
        .exec_without_returning(txn)
        .await?;
        if r.fixed
            && let Some(m) = rating::Entity::find_by_id(r.rating_id.clone()).one(txn).await?
            && m.fix_note.is_empty()
        {
            let mut am: rating::ActiveModel = m.into();
            am.fix_note = Set("fixed".into());
            am.update(txn).await?;
        }
        // A bad review's fix is under watch until it is recorded.
        if bad {
            let due = self.calendar.add_working_days(at, crate::domain::FIX_WITHIN_WORKING_DAYS).at;
            track(txn, "rating", &r.rating_id, |m| {
                m.department = r.department.clone();
                m.code = r.target_kind.clone();
                if m.due_at.is_none() {
                    set_due(m, Some(due), at);
                }
                if r.fixed && !m.closed {
                    m.closed = true;
                    m.closed_at = Some(at);
                }
            })
            .await?;
        }
        Ok(())
    }

    /// A 办不成事 entry was resolved.
    pub(super) async fn unresolved_resolved(&self, txn: &DatabaseTransaction, e: &Envelope) -> anyhow::Result<()> {
        let u: pb::UnresolvedResolved = e.decode()?;
        if let Some(m) = unresolved::Entity::find_by_id(format!("{}:{}", u.source, u.ref_id)).one(txn).await? {
            let mut am: unresolved::ActiveModel = m.into();
            am.resolved = Set(true);
            am.update(txn).await?;
        }
        Ok(())
    }

    /// A random inspection draw was published.
    pub(super) async fn inspections_drawn(&self, txn: &DatabaseTransaction, e: &Envelope) -> anyhow::Result<()> {
        let d: pb::InspectionsDrawn = e.decode()?;
        for i in &d.inspections {
            drawn::Entity::insert(drawn::ActiveModel {
                draw_id: Set(d.draw_id.clone()),
                credit_code: Set(i.credit_code.clone()),
                year: Set(d.year),
            })
            .on_conflict(
                OnConflict::columns([drawn::Column::DrawId, drawn::Column::CreditCode]).do_nothing().to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        }

        Ok(())
    }
}
