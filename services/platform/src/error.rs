//! The one error type of the workspace and its one mapping to `tonic::Status`: a gRPC code,
//! a stable reason (`HOUSEHOLD_PERSON_NOT_FOUND`) in `google.rpc.ErrorInfo`, field problems
//! in `google.rpc.BadRequest`. Internal detail is logged, never sent to the caller.

use crate::reason::Reason;
use std::fmt;
use tonic::{Code, Status};
use tonic_types::{BadRequest, ErrorDetail, ErrorInfo, StatusExt};

/// The `ErrorInfo.domain` of every onething error.
pub const ERROR_DOMAIN: &str = "onething.gov.cn";

/// What kind of failure; decides the gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Malformed input: INVALID_ARGUMENT.
    InvalidArgument,
    /// The resource does not exist: NOT_FOUND.
    NotFound,
    /// The resource exists already: ALREADY_EXISTS.
    AlreadyExists,
    /// Not allowed in the current state: FAILED_PRECONDITION.
    FailedPrecondition,
    /// A concurrent change won (optimistic version mismatch): ABORTED.
    Aborted,
    /// A quota or capacity is used up: RESOURCE_EXHAUSTED.
    ResourceExhausted,
    /// No valid credentials: UNAUTHENTICATED.
    Unauthenticated,
    /// Credentials valid but not allowed: PERMISSION_DENIED.
    PermissionDenied,
    /// A dependency is down; retry later: UNAVAILABLE.
    Unavailable,
    /// A bug or an unexpected failure: INTERNAL.
    Internal,
}

impl Kind {
    /// The gRPC code of this kind.
    pub fn code(self) -> Code {
        match self {
            Kind::InvalidArgument => Code::InvalidArgument,
            Kind::NotFound => Code::NotFound,
            Kind::AlreadyExists => Code::AlreadyExists,
            Kind::FailedPrecondition => Code::FailedPrecondition,
            Kind::Aborted => Code::Aborted,
            Kind::ResourceExhausted => Code::ResourceExhausted,
            Kind::Unauthenticated => Code::Unauthenticated,
            Kind::PermissionDenied => Code::PermissionDenied,
            Kind::Unavailable => Code::Unavailable,
            Kind::Internal => Code::Internal,
        }
    }
}

/// One field of a request that is wrong, and why (no personal data in `description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `applicant.identifier` or `form.birth_date`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// The workspace's error: a kind, a stable reason code, a caller-safe message, field
/// violations, and (internal only) the underlying cause.
pub struct Error {
    kind: Kind,
    reason: Reason,
    message: String,
    violations: Vec<FieldViolation>,
    source: Option<anyhow::Error>,
}

/// Result with the workspace error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error. `reason` is one of the stable codes of [`Reason`], declared for `kind`
    /// (a debug build panics on a reason used with a kind it does not declare); `message` is
    /// shown to the caller and must hold no personal data.
    pub fn new(kind: Kind, reason: Reason, message: impl Into<String>) -> Self {
        debug_assert!(reason.allows(kind), "{reason} is not declared for {kind:?}");
        Self { kind, reason, message: message.into(), violations: Vec::new(), source: None }
    }

    /// INVALID_ARGUMENT with one field violation.
    pub fn invalid_field(reason: Reason, field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::new(Kind::InvalidArgument, reason, "the request has invalid fields").with_violation(field, description)
    }

    /// INVALID_ARGUMENT carrying all `violations`, or `None` when there are none.
    pub fn from_violations(reason: Reason, violations: Vec<FieldViolation>) -> Option<Self> {
        if violations.is_empty() {
            return None;
        }
        let mut e = Self::new(Kind::InvalidArgument, reason, "the request has invalid fields");
        // The catalog's form check and a department's may say the same of a field: once.
        let mut seen = std::collections::HashSet::new();
        e.violations =
            violations.into_iter().filter(|v| seen.insert((v.field.clone(), v.description.clone()))).collect();
        Some(e)
    }

    /// NOT_FOUND.
    pub fn not_found(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, reason, message)
    }

    /// FAILED_PRECONDITION.
    pub fn failed_precondition(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(Kind::FailedPrecondition, reason, message)
    }

    /// INTERNAL; `cause` is logged when the error is turned into a status, never sent.
    /// A database failure that means "try again" is no bug: a lost or unavailable
    /// connection answers UNAVAILABLE (`DATABASE_UNAVAILABLE`), a serialization failure or
    /// deadlock ABORTED (`DATABASE_CONFLICT`), so clients and the coordinator retry.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let cause = cause.into();
        let mut e = match transient(&cause) {
            Some(Kind::Aborted) => {
                Self::new(Kind::Aborted, Reason::DatabaseConflict, "a concurrent change won; try again")
            }
            Some(kind) => Self::new(kind, Reason::DatabaseUnavailable, "the database is unavailable; try again"),
            None => Self::new(Kind::Internal, Reason::Internal, "internal error"),
        };
        e.source = Some(cause);
        e
    }

    /// Adds a field violation.
    pub fn with_violation(mut self, field: impl Into<String>, description: impl Into<String>) -> Self {
        self.violations.push(FieldViolation { field: field.into(), description: description.into() });
        self
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The stable reason code.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The field violations.
    pub fn violations(&self) -> &[FieldViolation] {
        &self.violations
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("reason", &self.reason)
            .field("message", &self.message)
            .field("violations", &self.violations)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)?;
        if let Some(src) = &self.source {
            write!(f, " ({src:#})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Whether `e` is a failure that goes away by itself: the database unreachable or a lost
/// race (as [`Error::internal`] classifies them), a peer UNAVAILABLE or out of time, or one
/// of our errors saying so. A consumer retries such an event for as long as it takes rather
/// than dead-letter it: the event is good, the moment is not.
pub fn is_retryable(e: &anyhow::Error) -> bool {
    transient(e).is_some()
        || e.chain().any(|c| {
            c.downcast_ref::<Error>().is_some_and(|x| matches!(x.kind, Kind::Unavailable | Kind::Aborted))
                || c.downcast_ref::<tonic::Status>().is_some_and(|s| {
                    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Aborted)
                })
        })
}

/// Whether `cause` is a database failure worth retrying, and which: UNAVAILABLE (the
/// connection or the server) or ABORTED (a transaction lost a race).
fn transient(cause: &anyhow::Error) -> Option<Kind> {
    cause.chain().find_map(|c| {
        if let Some(db) = c.downcast_ref::<sea_orm::DbErr>() {
            return transient_db(db);
        }
        c.downcast_ref::<sea_orm::sqlx::Error>().and_then(transient_sqlx)
    })
}

fn transient_db(e: &sea_orm::DbErr) -> Option<Kind> {
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Some(Kind::Unavailable),
        DbErr::Exec(RuntimeErr::SqlxError(x)) | DbErr::Query(RuntimeErr::SqlxError(x)) => transient_sqlx(x),
        _ => None,
    }
}

fn transient_sqlx(e: &sea_orm::sqlx::Error) -> Option<Kind> {
    use sea_orm::sqlx::Error as X;
    match e {
        X::Io(_) | X::Tls(_) | X::PoolTimedOut | X::PoolClosed | X::WorkerCrashed | X::Protocol(_) => {
            Some(Kind::Unavailable)
        }
        X::Database(d) => match d.code().as_deref() {
            // PostgreSQL: serialization failure, deadlock.
            Some("40001" | "40P01") => Some(Kind::Aborted),
            // PostgreSQL: server shutting down, starting, or the connection failed (class 08);
            // SQLite: busy or locked beyond the busy timeout.
            Some("57P01" | "57P02" | "57P03" | "5" | "6" | "517" | "262") => Some(Kind::Unavailable),
            Some(c) if c.starts_with("08") => Some(Kind::Unavailable),
            _ => None,
        },
        _ => None,
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        // The outbox refused an event too large for the broker: the request made it so.
        if let sea_orm::DbErr::Custom(m) = &e
            && let Some(detail) = m.strip_prefix(crate::events::outbox::EVENT_TOO_LARGE)
        {
            let message = format!("the request would make an event too large to publish{detail}");
            return Error::new(Kind::InvalidArgument, Reason::EventTooLarge, message);
        }
        Error::internal(e)
    }
}

impl From<sea_orm::TransactionError<Error>> for Error {
    fn from(e: sea_orm::TransactionError<Error>) -> Self {
        match e {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(inner) => inner,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        if let Some(src) = &e.source {
            // Causes are for operators; they may name tables or SQL but never request data.
            tracing::error!(reason = %e.reason, error = %format!("{src:#}"), "request failed");
        }
        let mut details = vec![ErrorDetail::ErrorInfo(ErrorInfo::new(
            e.reason.as_str(),
            ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        ))];
        if !e.violations.is_empty() {
            let mut br = BadRequest::new(Vec::new());
            for v in &e.violations {
                br.add_violation(v.field.clone(), v.description.clone());
            }
            details.push(ErrorDetail::BadRequest(br));
        }
        Status::with_error_details_vec(e.kind.code(), e.message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_carries_reason_and_violations() {
        let e = Error::invalid_field(Reason::CaseInvalidIdNumber, "applicant.identifier", "wrong check digit")
            .with_violation("form.birth_date", "not a date");
        let s: Status = e.into();
        assert_eq!(s.code(), Code::InvalidArgument);
        let d = s.get_error_details();
        assert_eq!(d.error_info().unwrap().reason, Reason::CaseInvalidIdNumber);
        assert_eq!(d.bad_request().unwrap().field_violations.len(), 2);
    }

    #[test]
    fn database_failures_worth_retrying_say_so() {
        use sea_orm::DbErr;
        let lost: Status = Error::from(DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout)).into();
        assert_eq!(lost.code(), Code::Unavailable);
        assert_eq!(lost.get_error_details().error_info().unwrap().reason, Reason::DatabaseUnavailable);
        let io = sea_orm::sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let wrapped = Error::internal(anyhow::Error::new(DbErr::Exec(sea_orm::RuntimeErr::SqlxError(io.into()))));
        assert_eq!(wrapped.kind(), Kind::Unavailable);
        // Anything else is still a bug to look at.
        assert_eq!(Error::from(DbErr::RecordNotFound("x".into())).kind(), Kind::Internal);
    }

    #[test]
    fn internal_hides_its_cause() {
        let s: Status = Error::internal(anyhow::anyhow!("table cases locked")).into();
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(s.message(), "internal error");
    }
}
