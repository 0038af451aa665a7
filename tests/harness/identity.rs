//! Who calls: the development keys, tokens for every kind of caller, and clients that send
//! them.

use onething_platform::auth::{AuthSettings, DevKeys, Minter, Principal, SubjectKind};
use std::sync::OnceLock;

/// The development key pair of this test process (made once, in a temporary folder).
pub fn dev_keys() -> &'static DevKeys {
    static KEYS: OnceLock<(DevKeys, tempfile::TempDir)> = OnceLock::new();
    &KEYS
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("key folder");
            (onething_platform::auth::ensure_dev_keys(dir.path()).expect("dev keys"), dir)
        })
        .0
}

/// The development e-licence issuers of this test process (卫健 `dev.wjw`, 市场监管
/// `dev.scjg`) and their trust list, beside [`dev_keys`].
pub fn dev_issuers() -> &'static onething_platform::elicence::DevIssuers {
    static ISSUERS: OnceLock<onething_platform::elicence::DevIssuers> = OnceLock::new();
    ISSUERS.get_or_init(|| {
        onething_platform::elicence::ensure_dev_issuers(dev_keys().folder()).expect("development issuers")
    })
}

/// A verified 死亡医学证明 of `subject`, number `number`, death on `death_date`, signed by 卫健.
pub fn death_elicence(subject: &str, number: &str, death_date: &str) -> String {
    death_elicence_by("dev.wjw", subject, number, death_date, |_| {})
}

/// A 死亡医学证明 as [`death_elicence`], changed by `change` and signed by `issuer` (a
/// development issuer): for licences an issuer should not have made.
pub fn death_elicence_by(
    issuer: &str,
    subject: &str,
    number: &str,
    death_date: &str,
    change: impl FnOnce(&mut onething_platform::elicence::Licence),
) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut licence = onething_platform::elicence::Licence {
        jti: number.into(),
        kind: "death_medical_certificate".into(),
        sub: subject.into(),
        iat: now - 3600,
        nbf: now - 3600,
        fields: [("death_date".to_string(), death_date.to_string())].into(),
        ..Default::default()
    };
    change(&mut licence);
    dev_issuers().key(issuer).expect("a development issuer's key").issue(&licence).expect("issue")
}

/// A verified 出生医学证明, number `number`, of the child `(name, sex)` born on `birth_date`
/// to `mother` and `father`, signed by 卫健.
pub fn birth_elicence(
    number: &str,
    (child_name, child_sex): (&str, &str),
    birth_date: &str,
    mother: &str,
    father: &str,
) -> String {
    let now = chrono::Utc::now().timestamp();
    let fields = [
        ("child_name", child_name),
        ("child_sex", child_sex),
        ("birth_date", birth_date),
        ("mother_id_number", mother),
        ("father_id_number", father),
    ];
    let licence = onething_platform::elicence::Licence {
        jti: number.into(),
        kind: "birth_medical_certificate".into(),
        iat: now - 3600,
        nbf: now - 3600,
        fields: fields.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect(),
        ..Default::default()
    };
    dev_issuers().key("dev.wjw").expect("卫健's key").issue(&licence).expect("issue")
}

/// A verified 电子营业执照 of the enterprise `credit_code`, signed by 市场监管.
pub fn business_elicence(credit_code: &str) -> String {
    let licence =
        onething_platform::elicence::Licence::business(credit_code, "威海示例企业", chrono::Utc::now().timestamp());
    dev_issuers().key("dev.scjg").expect("市场监管's key").issue(&licence).expect("issue")
}

/// Auth settings that trust [`dev_keys`].
pub fn auth_settings() -> AuthSettings {
    AuthSettings { jwks_file: dev_keys().jwks.display().to_string(), ..Default::default() }
}

/// Signs tokens with [`dev_keys`].
pub fn minter() -> Minter {
    Minter::load(&dev_keys().signing_key, auth_settings()).expect("minter")
}

/// A one-hour token for `p`.
pub fn token(p: Principal) -> String {
    minter().mint(p, 3600).expect("mint")
}

fn principal(sub: &str, kind: SubjectKind, dept: &str, roles: &[&str]) -> Principal {
    Principal {
        sub: sub.into(),
        kind,
        dept: dept.into(),
        roles: roles.iter().map(|r| (*r).to_string()).collect(),
        id_number: String::new(),
        credit_code: String::new(),
        passport_number: String::new(),
        actor: None,
    }
}

/// The identity of service `name`, signing with the development key.
pub fn service_identity(name: &str) -> onething_platform::auth::ServiceIdentity {
    let settings = onething_platform::auth::AuthSettings {
        signing_key_file: dev_keys().signing_key.display().to_string(),
        ..auth_settings()
    };
    onething_platform::auth::ServiceIdentity::load(name, &settings).expect("service identity")
}

/// Staff of `dept` with `roles`, as a principal (to sign with another key or issuer).
pub fn staff_principal(dept: &str, roles: &[&str]) -> Principal {
    principal(&format!("{dept}-staff"), SubjectKind::Staff, dept, roles)
}

/// Staff of `dept` with `roles`.
pub fn staff(dept: &str, roles: &[&str]) -> String {
    token(staff_principal(dept, roles))
}

/// A token of our service `name` (e.g. `coordinator`) addressed to service `callee`.
pub fn service(name: &str, callee: &str) -> String {
    minter().mint_to(principal(name, SubjectKind::Service, name, &[]), callee, 3600).expect("mint")
}

/// A citizen with ID number `id`.
pub fn citizen_token(id: &str) -> String {
    let mut p = principal(&format!("citizen-{}", &id[id.len().saturating_sub(4)..]), SubjectKind::Citizen, "", &[]);
    p.id_number = id.into();
    token(p)
}

/// An enterprise with credit code `code`, as a principal (to sign with another key or issuer).
pub fn enterprise_principal(code: &str) -> Principal {
    let mut p = principal(&format!("enterprise-{code}"), SubjectKind::Enterprise, "", &[]);
    p.credit_code = code.into();
    p
}

/// An enterprise with credit code `code`.
pub fn enterprise_token(code: &str) -> String {
    token(enterprise_principal(code))
}

/// Adds `authorization: Bearer …` to every request.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Bearer {
    /// With `token`; `None` sends no header at all.
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(|t| format!("Bearer {t}").parse().expect("ASCII token")))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel whose requests carry `token`.
pub type Authed = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// Connects to `endpoint` as `token`.
///
/// # Panics
/// When the service is not there.
pub async fn connect_as(endpoint: &str, token: Option<&str>) -> Authed {
    let channel = tonic::transport::Channel::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    tonic::service::interceptor::InterceptedService::new(channel, Bearer::new(token))
}

/// A foreign national with passport `passport`.
pub fn foreigner_token(passport: &str) -> String {
    token(Principal {
        sub: format!("foreigner-{passport}"),
        kind: SubjectKind::Foreigner,
        dept: String::new(),
        roles: vec![],
        id_number: String::new(),
        credit_code: String::new(),
        passport_number: passport.into(),
        actor: None,
    })
}
