//! Deadlines and 督办: which tracked items are late, and the notices issued for them
//! (once across replicas).

use super::*;

impl Supervision {
    /// Cases and bundles in warning or overdue at `at`.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff.
    pub async fn deadlines(&self, p: &Principal, at: DateTime<Utc>) -> Result<Vec<pb::TrackedItem>> {
        authz::check(staff(p), p, "ListDeadlines", "tracked")?;
        self.late(at).await
    }

    /// Items in warning or overdue at `at`, oldest due first.
    ///
    /// # Errors
    /// A database failure.
    pub async fn late(&self, at: DateTime<Utc>) -> Result<Vec<pb::TrackedItem>> {
        let open = tracked::Entity::find()
            .filter(tracked::Column::Closed.eq(false))
            .order_by_asc(tracked::Column::DueAt)
            .all(&self.db)
            .await?;
        Ok(open.iter().filter(|m| deadline(m, at) != pb::DeadlineState::Normal).map(|m| item(m, at)).collect())
    }

    /// Issues a 督办 notice for every item that turned overdue by `now` and has none for its
    /// present due time: a case, a bundle, a complaint's next step, a bad review's fix, an
    /// enterprise request (a deadline that moves is noticed again when it passes). Returns
    /// how many. Runs on every sweep.
    ///
    /// # Errors
    /// A database failure.
    pub async fn issue_notices(&self, now: DateTime<Utc>) -> Result<usize> {
        // Not noticed yet for this due time: none yet, or one for a deadline that has moved.
        let unnoticed = || {
            sea_orm::Condition::any().add(tracked::Column::NoticedDue.is_null()).add(sea_orm::sea_query::ExprTrait::ne(
                Expr::col(tracked::Column::NoticedDue),
                Expr::col(tracked::Column::DueAt),
            ))
        };
        let due = tracked::Entity::find()
            .filter(tracked::Column::Closed.eq(false))
            .filter(tracked::Column::Paused.eq(false))
            .filter(unnoticed())
            .filter(tracked::Column::DueAt.lt(now))
            .all(&self.db)
            .await?;
        let mut n = 0;
        for m in due {
            let txn = begin_write(&self.db).await?;
            // Claimed by one conditional update: of two replicas (or two runs) reaching the
            // same item at once, the second finds it claimed (PostgreSQL re-checks the
            // condition once the first commits) and issues nothing.
            let claimed = tracked::Entity::update_many()
                .col_expr(tracked::Column::NoticeSent, Expr::value(true))
                .col_expr(tracked::Column::NoticedDue, Expr::col(tracked::Column::DueAt))
                .filter(tracked::Column::Kind.eq(m.kind.clone()))
                .filter(tracked::Column::Id.eq(m.id.clone()))
                .filter(unnoticed())
                .filter(tracked::Column::Closed.eq(false))
                .filter(tracked::Column::Paused.eq(false))
                .filter(tracked::Column::DueAt.lt(now))
                .exec(&txn)
                .await?
                .rows_affected;
            if claimed == 0 {
                continue;
            }
            let Some(fresh) = tracked::Entity::find_by_id((m.kind.clone(), m.id.clone())).one(&txn).await? else {
                continue;
            };
            window(
                &txn,
                &self.calendar,
                Arrival {
                    source: &format!("{}_overdue", fresh.kind),
                    ref_id: &fresh.id,
                    department: &fresh.department,
                    tier: "district",
                    reason: "overdue: 督办 notice issued",
                    at: now,
                },
            )
            .await
            .map_err(Error::internal)?;
            self.outbox
                .enqueue(
                    &txn,
                    OutgoingEvent::new(
                        "onething.supervision.v1.notice.issued",
                        format!("{}s/{}", fresh.kind, fresh.id),
                        &pb::NoticeIssued {
                            kind: fresh.kind.clone(),
                            id: fresh.id.clone(),
                            department: fresh.department.clone(),
                            due_time: fresh.due_at.map(timestamp),
                            occur_time: Some(timestamp(now)),
                        },
                    ),
                )
                .await?;
            txn.commit().await?;
            tracing::info!(kind = %fresh.kind, id = %fresh.id, department = %fresh.department, "督办 notice issued");
            n += 1;
        }
        if n > 0 {
            self.outbox.wake();
        }
        Ok(n)
    }
}
