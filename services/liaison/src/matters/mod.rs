//! Liaison's matters for enterprises, one plug-in each
//! ([`onething_platform::cases::MatterRules`]), registered in [`department`]: seal engraving
//! filing (done when complete), seal cancellation on deregistration or bankruptcy, the hotel
//! special-trade licence (clerk review with an on-site inspection), and the precursor
//! chemical filing decided within 24 clock hours (M16). Every one is applied for by the
//! enterprise itself.

mod hotel;
mod precursor;
mod seals;

use onething_platform::{cases::ApplicantRecord, catalog::form::FormCheck};
use onething_proto::common::ApplicantKind;

/// Department name and event namespace.
pub const DEPARTMENT: &str = "liaison";

/// Liaison and the rules of each of its matters.
pub fn department() -> onething_platform::cases::Department {
    onething_platform::cases::Department::new(DEPARTMENT)
        .with(seals::SealEngravingFiling)
        .with(seals::SealCancellation)
        .with(hotel::HotelSpecialTradeLicence)
        .with(precursor::PrecursorChemicalFiling)
}

/// Every liaison matter is applied for by the enterprise.
fn by_the_enterprise(f: &mut FormCheck<'_>, applicant: Option<&ApplicantRecord>) {
    f.applicant_kind(applicant, ApplicantKind::Enterprise, "the enterprise");
}

#[cfg(test)]
mod tests {
    use onething_platform::{
        cases::{Form, check_case_form},
        catalog::Catalog,
    };

    #[test]
    fn forms_as_create_case_checks_them() {
        let c = Catalog::load("").unwrap();
        let dept = super::department();
        let check = |code: &str, pairs: &[(&str, &str)]| {
            let m = c.get(code).unwrap();
            let form: Form = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
            let v = check_case_form(&c, m, dept.rules(code).unwrap(), None, &form, chrono::Utc::now());
            let mut got: Vec<String> = v.into_iter().map(|v| v.field).collect();
            got.sort_unstable();
            got
        };
        let seals = "liaison.seal_engraving_filing";
        assert!(check(seals, &[("seal_kinds", "official, finance"), ("engraving_company", "某刻章厂")]).is_empty());
        assert_eq!(check(seals, &[("seal_kinds", "official,secret")]), ["form.engraving_company", "form.seal_kinds"]);
        let chem = "liaison.precursor_chemical_filing";
        let good = [
            ("chemical", "acetone"),
            ("quantity_kg", "12.5"),
            ("purpose", "purchase"),
            ("counterparty_credit_code", "91350100M000100Y43"),
        ];
        assert!(check(chem, &good).is_empty());
        let bad =
            [("chemical", "gold"), ("quantity_kg", "0"), ("purpose", "resale"), ("counterparty_credit_code", "x")];
        assert_eq!(
            check(chem, &bad),
            ["form.chemical", "form.counterparty_credit_code", "form.purpose", "form.quantity_kg"]
        );
        assert_eq!(check("liaison.seal_cancellation", &[("reason", "boredom")]), ["form.reason"]);
        assert_eq!(
            check(
                "liaison.hotel_special_trade_licence",
                &[("hotel_name", "海景"), ("address", "威海"), ("rooms", "0")]
            ),
            ["form.rooms"]
        );
    }
}
