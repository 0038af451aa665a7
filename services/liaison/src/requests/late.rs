//! 督 and 上下贯通: requests not handled in time flagged and, from a district bureau, handed
//! up to the city bureau with the city's deadline (by the sweep or by a clerk).

use super::*;
use sea_orm::QuerySelect;

impl Requests {
    /// 上下贯通: a district bureau's clerk hands a submitted request up to the city bureau,
    /// which has its own (city) deadline from now.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but a liaison clerk; INVALID_ARGUMENT without a note;
    /// FAILED_PRECONDITION unless it is a submitted district request.
    pub async fn escalate(&self, p: &Principal, id: &str, text: &str) -> Result<request::Model> {
        let text = note(text, "note");
        let now = self.clock.now();
        authz::check(liaison_staff(p, ROLE_CLERK), p, "EscalateRequest", id)?;
        let txn = begin_write(&self.db).await?;
        let reads = p.is_staff_of(crate::matters::DEPARTMENT);
        let mut m = authz::hide_missing(self.load(&txn, id).await, reads, p, "EscalateRequest", id)?;
        if state_of(&m) != RequestState::Submitted || m.tier != Tier::District.as_str_name() {
            return Err(Error::failed_precondition(
                Reason::LiaisonRequestWrongState,
                "only a submitted request of a district bureau is handed up",
            ));
        }
        let was_flagged = m.flagged;
        self.hand_up(&mut m, text?, now);
        self.store_as(&txn, m.clone(), was_flagged, Some("escalated")).await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(m)
    }

    /// Hands `m` up to the city bureau at `now`, with its city deadline.
    fn hand_up(&self, m: &mut request::Model, why: String, now: DateTime<Utc>) {
        m.tier = Tier::City.as_str_name().into();
        m.unit = domain::CITY_UNIT.into();
        m.due_at = self.calendar.add_working_days(now, domain::handling_days(Tier::City)).at;
        m.escalated = true;
        m.escalation_note = why;
    }

    /// 督 for lateness, at `now`: a district request not handled by its due time is handed up
    /// to the city bureau with its own deadline (上下贯通) and flagged; a city request flagged.
    /// Returns how many. Runs on every sweep.
    ///
    /// # Errors
    /// A database failure listing the late requests (one that fails alone is logged and skipped).
    pub async fn flag_overdue(&self, now: DateTime<Utc>) -> Result<usize> {
        let late: Vec<String> = request::Entity::find()
            .select_only()
            .column(request::Column::Id)
            .filter(request::Column::State.eq(RequestState::Submitted.as_str_name()))
            .filter(request::Column::Flagged.eq(false))
            .filter(request::Column::DueAt.lt(now))
            .into_tuple()
            .all(&self.db)
            .await?;
        let n = onething_platform::sweep::each(late, "flagging a late request", |id| async move {
            self.flag_one(&id, now).await
        })
        .await;
        if n > 0 {
            self.outbox.wake();
        }
        Ok(n)
    }

    /// Flags one request (and hands it up from a district) if it is still submitted,
    /// unflagged and late; whether it did.
    async fn flag_one(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let txn = begin_write(&self.db).await?;
        let mut m = self.load(&txn, id).await?;
        if m.flagged || state_of(&m) != RequestState::Submitted || m.due_at >= now {
            return Ok(false);
        }
        m.flagged = true;
        let happened = if m.tier == Tier::District.as_str_name() {
            m.flag_reason = "not handled in time by the district bureau: handed up to the city bureau".into();
            self.hand_up(&mut m, "not handled in time by the district bureau".into(), now);
            Some("escalated")
        } else {
            m.flag_reason = "not handled in time".into();
            None
        };
        self.store_as(&txn, m, false, happened).await?;
        txn.commit().await?;
        Ok(true)
    }
}
