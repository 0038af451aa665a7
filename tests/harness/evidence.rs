//! Evidence for test applications: e-licences from the development issuers that meet the
//! catalog's own evidence rules, so a test's application takes the real verification path
//! as an applicant's e-licence wallet would give it, whatever rules the catalog declares.

use onething_platform::catalog::Catalog;
use onething_proto::{common as cpb, coordinator as bpb};
use std::{collections::BTreeMap, sync::OnceLock};

/// The catalog built into the binary.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::load("").expect("the built-in catalog"))
}

/// `req` with verified e-licences on the materials its matter weighs (those without one).
pub fn verified(mut req: cpb::CreateCaseRequest) -> cpb::CreateCaseRequest {
    let Some(matter) = catalog().get(&req.matter_code) else { return req };
    let form: BTreeMap<String, String> = req.form.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let applicant = req.applicant.as_ref().map(|a| a.identifier.clone()).unwrap_or_default();
    crate::dev_issuers().attach(matter, &mut req.materials, &form, &applicant).expect("development e-licences");
    req
}

/// `req` with verified e-licences on the materials each of its steps weighs, from the
/// step's form.
pub fn verified_bundle(mut req: bpb::SubmitBundleRequest) -> bpb::SubmitBundleRequest {
    crate::dev_issuers().attach_to_bundle(catalog(), &mut req).expect("development e-licences");
    req
}
