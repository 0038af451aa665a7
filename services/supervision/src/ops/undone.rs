//! The 办不成事 window: requests that could not be done, listed and resolved.

use super::*;

impl Supervision {
    /// The 办不成事 window.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff.
    pub async fn unresolved(&self, p: &Principal, include_resolved: bool) -> Result<Vec<unresolved::Model>> {
        authz::check(staff(p), p, "ListUnresolved", "unresolved")?;
        let mut q = unresolved::Entity::find().order_by_asc(unresolved::Column::ResponseDue);
        if !include_resolved {
            q = q.filter(unresolved::Column::Resolved.eq(false));
        }
        Ok(q.all(&self.db).await?)
    }

    /// Resolves a window item.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff; NOT_FOUND.
    pub async fn resolve(&self, p: &Principal, id: &str) -> Result<unresolved::Model> {
        authz::check(staff(p), p, "ResolveItem", id)?;
        let txn = begin_write(&self.db).await?;
        let m = unresolved::Entity::find_by_id(id.to_string())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found(Reason::SupervisionItemNotFound, "no such item"))?;
        let mut am: unresolved::ActiveModel = m.clone().into();
        am.resolved = Set(true);
        let m = am.update(&txn).await?;
        self.outbox
            .enqueue(
                &txn,
                OutgoingEvent::new(
                    "onething.supervision.v1.unresolved.resolved",
                    format!("unresolved/{}", m.id),
                    &pb::UnresolvedResolved {
                        source: m.source.clone(),
                        ref_id: m.ref_id.clone(),
                        occur_time: Some(timestamp(self.clock.now())),
                    },
                ),
            )
            .await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok(m)
    }
}

/// The API message of a window item.
pub fn unresolved_pb(m: &unresolved::Model) -> pb::UnresolvedItem {
    pb::UnresolvedItem {
        item_id: m.id.clone(),
        source: m.source.clone(),
        ref_id: m.ref_id.clone(),
        department: m.department.clone(),
        tier: m.tier.clone(),
        response_due: Some(timestamp(m.response_due)),
        resolved: m.resolved,
        reason: m.reason.clone(),
    }
}
