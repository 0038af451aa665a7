//! KPIs per department and period, computed from the projection.

use super::*;

impl Supervision {
    /// KPIs per department over `[from, to)`, overdue counts judged at `at`.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff.
    pub async fn kpis(
        &self,
        p: &Principal,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<pb::DepartmentKpi>> {
        authz::check(staff(p), p, "GetKpis", "kpis")?;
        self.compute_kpis(from, to, at).await
    }

    /// [`Self::kpis`] without the caller check (the replay test compares two instances).
    ///
    /// # Errors
    /// A database failure.
    pub async fn compute_kpis(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<pb::DepartmentKpi>> {
        let mut by: BTreeMap<String, pb::DepartmentKpi> = BTreeMap::new();
        for t in tracked::Entity::find().filter(tracked::Column::Kind.eq("case")).all(&self.db).await? {
            let k = row(&mut by, &t.department);
            if let Some(closed) = t.closed_at.filter(|c| *c >= from && *c < to) {
                k.cases_finished += 1;
                if t.due_at.is_none_or(|due| closed <= due) {
                    k.cases_on_time += 1;
                }
            }
            if deadline(&t, at) == pb::DeadlineState::Overdue {
                k.overdue_now += 1;
            }
        }
        let mut scores: BTreeMap<String, (u32, u32)> = BTreeMap::new();
        for r in rating::Entity::find()
            .filter(rating::Column::CreatedAt.gte(from))
            .filter(rating::Column::CreatedAt.lt(to))
            .all(&self.db)
            .await?
        {
            let e = scores.entry(r.department.clone()).or_default();
            e.0 += 1;
            e.1 += u32::try_from(r.score).unwrap_or(0);
        }
        for (d, (n, sum)) in scores {
            let k = row(&mut by, &d);
            k.ratings = n;
            k.satisfaction = f64::from(sum) / f64::from(n);
        }
        let requests = request::Entity::find()
            .filter(request::Column::ReceivedAt.gte(from))
            .filter(request::Column::ReceivedAt.lt(to))
            .all(&self.db)
            .await?;
        if !requests.is_empty() {
            let k = row(&mut by, "liaison");
            k.requests_received = u32::try_from(requests.len()).unwrap_or(u32::MAX);
            k.requests_completed =
                u32::try_from(requests.iter().filter(|r| r.handled && !r.responsibility).count()).unwrap_or(0);
            k.request_completion_rate = f64::from(k.requests_completed) / f64::from(k.requests_received);
        }
        for k in by.values_mut() {
            k.on_time_rate =
                if k.cases_finished == 0 { 0.0 } else { f64::from(k.cases_on_time) / f64::from(k.cases_finished) };
        }
        Ok(by.into_values().collect())
    }
}
