//! 督办 notices as a department receives them: supervision's `notice.issued` events for this
//! department kept for its clerks' list (`ListNotices`), and a case under notice marked
//! (`Case.notice_time`, `ListCases` with `under_notice`). Idempotent: a notice twice is one;
//! an item missing a later deadline gets another.

use crate::{
    events::{ConsumerSpec, Envelope, Handler, nats::stream_name},
    store::{case, notice},
};
use onething_proto::supervision::NoticeIssued;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, sea_query::Expr};

/// The subject of supervision's 督办 notices.
pub const SUBJECT: &str = "onething.supervision.v1.notice.issued";

/// The durable consumer `<service>-notices` on supervision's stream.
pub fn notices_spec(service: &str) -> ConsumerSpec {
    ConsumerSpec {
        name: format!("{service}-notices"),
        stream: stream_name("supervision"),
        filter_subjects: vec![SUBJECT.into()],
        batch: 16,
    }
}

/// Keeps the notices issued to `department`.
pub struct NoticeProjection {
    department: &'static str,
}

impl NoticeProjection {
    /// The projection of `department`'s notices.
    pub fn new(department: &'static str) -> Self {
        Self { department }
    }
}

fn instant(t: Option<prost_types::Timestamp>) -> Option<chrono::DateTime<chrono::Utc>> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
}

impl Handler for NoticeProjection {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Envelope) -> anyhow::Result<()> {
        let n: NoticeIssued = event.decode()?;
        if n.department != self.department {
            return Ok(()); // Another department's.
        }
        let issued = instant(n.occur_time).unwrap_or(event.time);
        notice::Entity::insert(notice::ActiveModel {
            kind: Set(n.kind.clone()),
            item_id: Set(n.id.clone()),
            due_at: Set(instant(n.due_time)),
            issued_at: Set(issued),
        })
        .on_conflict_do_nothing_on([notice::Column::Kind, notice::Column::ItemId, notice::Column::IssuedAt])
        .exec_without_returning(txn)
        .await?;
        if n.kind == "case" {
            // The latest notice of the case.
            case::Entity::update_many()
                .col_expr(case::Column::NoticeAt, Expr::value(issued))
                .filter(case::Column::Id.eq(n.id.clone()))
                .filter(case::Column::Department.eq(self.department))
                .filter(
                    sea_orm::Condition::any()
                        .add(case::Column::NoticeAt.is_null())
                        .add(case::Column::NoticeAt.lt(issued)),
                )
                .exec(txn)
                .await?;
        }
        tracing::info!(kind = %n.kind, id = %n.id, "督办 notice received");
        Ok(())
    }
}
