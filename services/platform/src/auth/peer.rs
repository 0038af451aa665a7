//! A service's own identity towards the others: short-lived service tokens, on-behalf
//! tokens that carry the end user as actor, and the client interceptors that attach them.

use super::*;

/// This service's own identity (kind `service`, `sub` = the service name) for calling
/// others: [`ServiceIdentity::to`] makes the client interceptor for one callee.
#[derive(Clone)]
pub struct ServiceIdentity {
    minter: Arc<Minter>,
    name: String,
    /// Per callee, the token sent lately and when it was signed: reused for
    /// [`TOKEN_REUSE`], so the peer's verifier recognises it, and neither side spends a
    /// signature per call.
    current: Arc<std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>>,
}

/// A tonic client interceptor that sends this service's token addressed to one callee
/// (`aud` = [`service_audience`]) and the current trace context with every call.
#[derive(Clone)]
pub struct PeerIdentity {
    identity: ServiceIdentity,
    callee: String,
}

/// Lifetime of a service token.
pub(super) const SERVICE_TOKEN_TTL_SECONDS: u64 = 300;

/// How long a service token is sent again before a fresh one is signed (well inside its
/// lifetime, so it never arrives expired).
pub(super) const TOKEN_REUSE: std::time::Duration = std::time::Duration::from_secs(60);

/// Lifetime of a token made for one call on a user's behalf.
pub(super) const ON_BEHALF_TTL_SECONDS: u64 = 60;

/// Sends a token made by [`ServiceIdentity::acting_for`] (and the trace context).
#[derive(Clone)]
pub struct OnBehalf(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl ServiceIdentity {
    /// The identity of service `name`, signed with `settings.signing_key_file`.
    ///
    /// # Errors
    /// No or an unreadable signing key.
    pub fn load(name: &str, settings: &AuthSettings) -> anyhow::Result<Self> {
        if settings.signing_key_file.is_empty() {
            bail!("auth.signing_key_file is required for {name} to call other services");
        }
        let minter = Minter::load(Path::new(&settings.signing_key_file), settings.clone())?;
        Ok(Self { minter: Arc::new(minter), name: name.to_string(), current: Default::default() })
    }

    /// The client interceptor for calls to `callee` (a service name, e.g. `household`).
    pub fn to(&self, callee: &str) -> PeerIdentity {
        PeerIdentity { identity: self.clone(), callee: callee.to_string() }
    }

    pub(super) fn token(&self, callee: &str) -> anyhow::Result<String> {
        let mut current = self.current.lock().map_err(|_| anyhow::anyhow!("service token poisoned"))?;
        if let Some((token, signed)) = current.get(callee)
            && signed.elapsed() < TOKEN_REUSE
        {
            return Ok(token.clone());
        }
        let token = self.minter.mint_to(self.principal(), callee, SERVICE_TOKEN_TTL_SECONDS)?;
        current.insert(callee.to_string(), (token.clone(), std::time::Instant::now()));
        Ok(token)
    }

    pub(super) fn principal(&self) -> Principal {
        Principal { dept: self.name.clone(), ..Principal::bare(&self.name, SubjectKind::Service) }
    }

    /// A client interceptor that calls as this service acting for `user` (an applicant):
    /// this service's own short-lived token with the user in its `act` claim, so the callee
    /// decides as for the user while the user's own token never leaves the service it was
    /// sent to.
    ///
    /// # Errors
    /// The user is not an applicant, or signing failed.
    pub fn acting_for(&self, user: &Principal, callee: &str) -> anyhow::Result<OnBehalf> {
        if !user.kind.is_applicant() {
            bail!("a service acts only for an applicant");
        }
        let actor = Principal {
            id_number: user.id_number.clone(),
            credit_code: user.credit_code.clone(),
            passport_number: user.passport_number.clone(),
            ..Principal::bare(&user.sub, user.kind)
        };
        let principal = Principal { actor: Some(Box::new(actor)), ..self.principal() };
        let token = self.minter.mint_to(principal, callee, ON_BEHALF_TTL_SECONDS)?;
        Ok(OnBehalf(format!("Bearer {token}").parse().context("token is not ASCII")?))
    }
}

impl tonic::service::Interceptor for OnBehalf {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut req = crate::telemetry::inject_grpc(req)?;
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

impl tonic::service::Interceptor for PeerIdentity {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut req = crate::telemetry::inject_grpc(req)?;
        // Signed at most once a minute per callee, lazily: no refresh task.
        let token =
            self.identity.token(&self.callee).map_err(|_| tonic::Status::internal("cannot sign the service token"))?;
        let value = format!("Bearer {token}").parse().map_err(|_| tonic::Status::internal("token is not ASCII"))?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}
