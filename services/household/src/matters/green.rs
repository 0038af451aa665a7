//! M12's green channel for private-enterprise employees (ID cards and residence permits:
//! 优先受理、优先制证): household asks liaison's enterprise register, with its own service
//! identity, whether the employer named is a private enterprise on record and reported the
//! applicant among its staff — nothing more is asked, nothing more is learnt.

use onething_platform::{
    auth::{PeerIdentity, ServiceIdentity},
    cases::{CaseRecord, Refusal},
    error::{Error, Kind, Result},
    grpc::{Peers, TracedChannel},
    reason::Reason,
};
use onething_proto::liaison::{CheckEmploymentRequest, liaison_service_client::LiaisonServiceClient};
use tonic::service::interceptor::InterceptedService;

/// The result field naming the green channel a case is in.
pub const GREEN_CHANNEL: &str = "green_channel";
/// Its value for an employee of a private enterprise on record.
pub const PRIVATE_ENTERPRISE_EMPLOYEE: &str = "private_enterprise_employee";
/// Why a green channel is refused, whichever of its conditions failed.
pub const NOT_GREEN_CHANNEL: &str =
    "the green channel is for employees a private enterprise on record has reported among its staff";
/// The result field saying why a case that asked for the green channel is handled in the
/// ordinary way.
pub const GREEN_CHANNEL_REFUSED: &str = "green_channel_refused";

type Client = LiaisonServiceClient<InterceptedService<TracedChannel, PeerIdentity>>;

/// Asks liaison about an applicant's employer; `None` when household is not configured to
/// (no liaison peer or no signing key): then every green channel answers "cannot be
/// verified now" rather than let anyone through.
#[derive(Clone)]
pub struct Employment {
    client: Option<Client>,
}

impl Employment {
    /// Through `peers`' liaison, as `identity`.
    pub fn new(peers: &Peers, identity: Option<ServiceIdentity>) -> Self {
        let client = match (peers.channel("liaison"), identity) {
            (Some(channel), Some(identity)) => {
                Some(LiaisonServiceClient::new(InterceptedService::new(channel, identity.to("liaison"))))
            }
            _ => None,
        };
        Self { client }
    }

    /// One that cannot ask (tests of rules that do not reach it).
    pub fn unconfigured() -> Self {
        Self { client: None }
    }

    /// Whether `employee` (the person the matter is for: the subject of an ID card, the
    /// applicant of a residence permit) works for the private enterprise on record named in
    /// `case`'s `employer_credit_code`: when so, the case is put in the green channel
    /// (handled first, marked in its result); otherwise one refusal, the same whichever
    /// condition failed (an applicant learns nothing of an enterprise's register or staff
    /// from it).
    ///
    /// # Errors
    /// UNAVAILABLE (`HOUSEHOLD_REGISTER_UNAVAILABLE`) when the register cannot be asked.
    pub async fn admit(&self, case: &mut CaseRecord, employee: &str) -> Result<Option<Refusal>> {
        let unavailable = || {
            Error::new(
                Kind::Unavailable,
                Reason::HouseholdRegisterUnavailable,
                "the enterprise register cannot be asked now; retry",
            )
        };
        let Some(client) = &self.client else { return Err(unavailable()) };
        let request = CheckEmploymentRequest {
            credit_code: case.field("employer_credit_code").to_string(),
            id_number: employee.to_string(),
        };
        let answer = client.clone().check_employment(request).await.map_err(|status| {
            tracing::warn!(code = ?status.code(), "the enterprise register did not answer");
            unavailable()
        })?;
        let a = answer.into_inner();
        if !(a.on_record && a.private_enterprise && a.employed) {
            // Which condition failed, for the operators (no identifiers).
            let failed = match (a.on_record, a.private_enterprise) {
                (false, _) => "employer_not_on_record",
                (true, false) => "employer_not_private",
                (true, true) => "not_reported_employee",
            };
            tracing::info!(case_id = %case.id, failed, "green channel refused");
            return Ok(Some(Refusal::new(Reason::HouseholdNotGreenChannel, NOT_GREEN_CHANNEL)));
        }
        case.priority = true;
        case.result.insert(GREEN_CHANNEL.into(), PRIVATE_ENTERPRISE_EMPLOYEE.into());
        Ok(None)
    }
}

/// Whether `case` was admitted to the green channel.
pub fn in_green_channel(case: &CaseRecord) -> bool {
    case.result.get(GREEN_CHANNEL).is_some_and(|v| v == PRIVATE_ENTERPRISE_EMPLOYEE)
}
