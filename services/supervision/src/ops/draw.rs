//! Random inspections (双随机): the draw, reproducible from its published seed.

use super::*;

impl Supervision {
    /// Draws random inspections and publishes the seed, the inputs and the result.
    ///
    /// # Errors
    /// PERMISSION_DENIED for anyone but supervision staff; INVALID_ARGUMENT for an unknown
    /// risk class, no candidates or no inspectors.
    pub async fn draw(&self, p: &Principal, r: pb::DrawInspectionsRequest) -> Result<(String, domain::Draw)> {
        authz::check(staff(p), p, "DrawInspections", "inspections")?;
        if r.candidates.is_empty() || r.inspectors.is_empty() || r.count == 0 {
            return Err(Error::invalid_field(
                Reason::SupervisionInvalidRequest,
                "candidates",
                "candidates, inspectors and a count are required",
            ));
        }
        if let Some(i) = r.candidates.iter().position(|c| domain::weight(&c.risk_class) == 0) {
            return Err(Error::invalid_field(
                Reason::SupervisionInvalidRequest,
                format!("candidates[{i}].risk_class"),
                "A, B, C or D",
            ));
        }
        let mut prior: BTreeMap<String, u32> = BTreeMap::new();
        for d in drawn::Entity::find().filter(drawn::Column::Year.eq(r.year)).all(&self.db).await? {
            *prior.entry(d.credit_code).or_default() += 1;
        }
        let candidates: Vec<(String, String)> =
            r.candidates.iter().map(|c| (c.credit_code.clone(), c.risk_class.clone())).collect();
        let per = usize::try_from(r.inspectors_per_target.max(1)).unwrap_or(1);
        let result =
            domain::draw(r.seed, usize::try_from(r.count).unwrap_or(0), &candidates, &prior, &r.inspectors, per);
        let id = uuid::Uuid::now_v7().to_string();
        let txn = begin_write(&self.db).await?;
        for (code, _) in &result.inspections {
            drawn::Entity::insert(drawn::ActiveModel {
                draw_id: Set(id.clone()),
                credit_code: Set(code.clone()),
                year: Set(r.year),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        self.outbox
            .enqueue(
                &txn,
                OutgoingEvent::new(
                    "onething.supervision.v1.inspections.drawn",
                    format!("draws/{id}"),
                    &pb::InspectionsDrawn {
                        draw_id: id.clone(),
                        year: r.year,
                        seed: r.seed,
                        count: r.count,
                        candidates: r.candidates.clone(),
                        inspectors: r.inspectors.clone(),
                        inspectors_per_target: r.inspectors_per_target,
                        prior_this_year: prior.iter().map(|(c, n)| format!("{c}={n}")).collect(),
                        inspections: result
                            .inspections
                            .iter()
                            .map(|(c, t)| pb::DrawnInspection { credit_code: c.clone(), inspectors: t.clone() })
                            .collect(),
                        occur_time: Some(timestamp(self.clock.now())),
                    },
                ),
            )
            .await?;
        txn.commit().await?;
        self.outbox.wake();
        Ok((id, result))
    }
}
