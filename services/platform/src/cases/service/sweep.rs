//! What runs on the clock: provisional approvals revoked (their effects undone) when owed
//! materials are overdue, supplements not given in time closing their cases, and the case
//! gauges.

use super::*;

impl CaseApi {
    /// Revokes provisional approvals whose owed material is overdue at `now` (each with its
    /// event and reason `CASE_OWED_MATERIAL_OVERDUE`). Returns how many. The runtime calls
    /// it periodically; tests call it with a chosen `now`. A case that fails (a row that does
    /// not read, a write that fails) is logged and skipped; it holds up no other case.
    ///
    /// # Errors
    /// A database failure listing the overdue cases.
    pub async fn revoke_overdue(&self, now: DateTime<Utc>) -> Result<usize> {
        let overdue = self.ids_where(State::ApprovedProvisionally, row::Column::DueAt, now).await?;
        let revoked =
            crate::sweep::each(
                overdue,
                "revoking an overdue case",
                |id| async move { self.revoke_one(&id, now).await },
            )
            .await;
        if revoked > 0 {
            self.inner.outbox.wake();
        }
        Ok(revoked)
    }

    /// Revokes one case if it is still provisional and overdue at `now`; whether it did.
    async fn revoke_one(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let txn = crate::db::begin_write(&self.inner.db).await?;
        let mut case = load(&txn, id).await?;
        if case.state != State::ApprovedProvisionally || case.due_at.is_none_or(|d| d >= now) {
            return Ok(false); // Supplied meanwhile.
        }
        let before = (case.version, case.state);
        let mut events = Pending::new();
        let text = format!("owed materials not supplied in time: {}", case.missing_materials.join(", "));
        self.revoke(&txn, &mut case, (Reason::CaseOwedMaterialOverdue.as_str(), text), now, &mut events).await?;
        self.store_in(&txn, &case, before, events).await?;
        txn.commit().await?;
        tracing::info!(case_id = %case.id, "provisional approval revoked: owed material overdue");
        Ok(true)
    }

    /// Closes the cases whose asked-for supplement did not come by its deadline at `now`:
    /// not accepted before acceptance, rejected after, each with `CASE_SUPPLEMENT_OVERDUE`
    /// and its event. Returns how many. A case that fails is logged and skipped.
    ///
    /// # Errors
    /// A database failure listing the overdue cases.
    pub async fn close_overdue_supplements(&self, now: DateTime<Utc>) -> Result<usize> {
        let overdue = self.ids_where(State::AwaitingSupplement, row::Column::SupplementDueAt, now).await?;
        let closed = crate::sweep::each(overdue, "closing a case past its supplement deadline", |id| async move {
            self.close_one(&id, now).await
        })
        .await;
        if closed > 0 {
            self.inner.outbox.wake();
        }
        Ok(closed)
    }

    /// Closes one case if it still awaits a supplement overdue at `now`; whether it did.
    async fn close_one(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let txn = crate::db::begin_write(&self.inner.db).await?;
        let mut case = load(&txn, id).await?;
        if case.state != State::AwaitingSupplement || case.supplement_due_at.is_none_or(|d| d >= now) {
            return Ok(false); // Supplied meanwhile.
        }
        let before = (case.version, case.state);
        let mut events = Pending::new();
        case.reason_code = Reason::CaseSupplementOverdue.into();
        case.reason_text = format!("not supplied in time: {}", case.missing_materials.join(", "));
        let action = if case.accepted_at.is_some() { Action::Reject } else { Action::NotAccept };
        self.step(&mut case, action, now, &mut events)?;
        self.store_in(&txn, &case, before, events).await?;
        txn.commit().await?;
        tracing::info!(case_id = %case.id, state = %case.state, "supplement overdue: case closed");
        Ok(true)
    }

    /// Ids of this department's cases in `state` whose `deadline` column is before `now`;
    /// ids only, so a row that does not read holds up no other case.
    async fn ids_where(&self, state: State, deadline: row::Column, now: DateTime<Utc>) -> Result<Vec<String>> {
        use sea_orm::QuerySelect;
        Ok(row::Entity::find()
            .select_only()
            .column(row::Column::Id)
            .filter(row::Column::Department.eq(self.inner.dept.name()))
            .filter(row::Column::State.eq(state))
            .filter(deadline.lt(now))
            .into_tuple()
            .all(&self.inner.db)
            .await?)
    }

    /// Sets the case gauges of this department: cases by state, and open cases whose
    /// running clock is past the due time at `now`. The runtime calls it periodically.
    ///
    /// # Errors
    /// A database failure.
    pub async fn record_gauges(&self, now: DateTime<Utc>) -> Result<()> {
        use sea_orm::{PaginatorTrait, QuerySelect};
        let dept = self.inner.dept.name();
        let counts: Vec<(String, i64)> = row::Entity::find()
            .select_only()
            .column(row::Column::State)
            .column_as(row::Column::Id.count(), "n")
            .filter(row::Column::Department.eq(dept))
            .group_by(row::Column::State)
            .into_tuple()
            .all(&self.inner.db)
            .await?;
        let overdue = row::Entity::find()
            .filter(row::Column::Department.eq(dept))
            .filter(row::Column::State.is_in(State::ALL.iter().filter(|s| s.is_open()).copied()))
            .filter(row::Column::PausedSince.is_null())
            .filter(row::Column::DueAt.lt(now))
            .count(&self.inner.db)
            .await?;
        let m = crate::metrics::metrics();
        // Every state, so a state that emptied reads 0 rather than its last count.
        for state in State::ALL {
            let n = counts.iter().find(|(s, _)| s == state.as_str()).map_or(0, |(_, n)| *n);
            m.cases
                .get_or_create(&crate::metrics::CaseStateLabels {
                    department: dept.into(),
                    state: state.as_str().into(),
                })
                .set(n);
        }
        m.cases_overdue
            .get_or_create(&crate::metrics::DepartmentLabels { department: dept.into() })
            .set(overdue as i64);
        Ok(())
    }

    /// Keeps the case gauges current until `stop`: within five seconds of cases changing (so
    /// a burst costs one refresh; each refresh counts the department's whole table, which
    /// once a second was a full scan per second under load), and every 15 seconds, as the
    /// clock makes cases overdue.
    pub async fn run_gauges(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.record_gauges(self.clock().now()).await {
                tracing::warn!(error = %e, "refreshing the case gauges failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.inner.changed.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(15)) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        }
    }
}
