//! The completion rate per unit (M26's 诉求办结率), computed from the requests themselves.

use super::*;

impl Requests {
    /// The completion rate per unit of the requests received in `[from, to)`.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but liaison staff and supervision.
    pub async fn completion(
        &self,
        p: &Principal,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<pb::GetCompletionRateResponse> {
        authz::check(reads_completion(p), p, "GetCompletionRate", "requests")?;
        let rows = request::Entity::find()
            .filter(request::Column::CreatedAt.gte(from))
            .filter(request::Column::CreatedAt.lt(to))
            .all(&self.db)
            .await?;
        let per_unit = domain::completion(
            rows.iter().map(|m| (m.unit.clone(), domain::completed(m.handled_at.is_some(), state_of(m)))),
        );
        let unit = |name: String, (received, completed): (u32, u32)| {
            let rate = if received == 0 { 0.0 } else { f64::from(completed) / f64::from(received) };
            pb::UnitCompletion {
                unit: name,
                received,
                completed,
                rate,
                meets_target: received > 0 && rate >= domain::TARGET_RATE,
            }
        };
        let total = per_unit.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        Ok(pb::GetCompletionRateResponse {
            units: per_unit.into_iter().map(|(k, v)| unit(k, v)).collect(),
            overall: Some(unit("all".into(), total)),
        })
    }
}
