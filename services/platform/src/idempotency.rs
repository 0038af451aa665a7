//! Idempotency keys scoped by caller. A client's key names one request *of that caller*:
//! stored as `<length of scope>:<scope><key>`, so the same key sent by someone else finds
//! nothing of the first caller's (no answer, no "already used" that would tell the record
//! exists) and the stored value splits back into the client's key without ambiguity.
//!
//! The scope of an applicant is the applicant (kind and identifier: the same person on a
//! phone and at the window is one caller), of staff their department (length-prefixed)
//! and subject, of a
//! service its name. Every store with an idempotency key uses [`scoped`] to write and look
//! up, and [`client_key`] to show it.

use crate::auth::{Principal, SubjectKind};

/// The scope of `p`'s keys.
pub fn scope(p: &Principal) -> String {
    match (p.applicant(), p.kind) {
        (Some((kind, id)), _) => format!("{}:{id}", crate::store::case::ApplicantKind::from_proto(kind)),
        (None, SubjectKind::Service) => format!("service:{}", p.sub),
        (None, _) => format!("{}{}", staff_scope(&p.dept), p.sub),
    }
}

/// The start of every staff scope of `dept`: `staff:<length of dept>:<dept>:`, so no
/// department and subject can be cut to look like another's.
fn staff_scope(dept: &str) -> String {
    format!("staff:{}:{dept}:", dept.chars().count())
}

/// Whether the stored key `stored` was sent by staff of `dept`.
pub fn sent_by_staff_of(stored: &str, dept: &str) -> bool {
    caller_scope(stored).is_some_and(|s| s.starts_with(&staff_scope(dept)))
}

/// The stored form of `key` sent by `p`.
pub fn scoped(p: &Principal, key: &str) -> String {
    with_scope(&scope(p), key)
}

/// The stored form of `key` in `scope`.
pub fn with_scope(scope: &str, key: &str) -> String {
    format!("{}:{scope}{key}", scope.chars().count())
}

/// The caller scope of a stored key (`citizen:<id>`, `staff:<dept>:<sub>`,
/// `service:<name>`), or `None` for a value stored before keys were scoped.
pub fn caller_scope(stored: &str) -> Option<&str> {
    let (n, rest) = stored.split_once(':')?;
    let n: usize = n.parse().ok()?;
    let end = rest.char_indices().nth(n).map_or(rest.len(), |(at, _)| at);
    (rest.chars().count() >= n).then(|| &rest[..end])
}

/// The client's key of a stored one (a value stored before keys were scoped comes back as
/// it is).
pub fn client_key(stored: &str) -> &str {
    let Some((n, rest)) = stored.split_once(':') else { return stored };
    let Ok(n) = n.parse::<usize>() else { return stored };
    match rest.char_indices().nth(n) {
        Some((at, _)) => &rest[at..],
        None if rest.chars().count() == n => "",
        None => stored,
    }
}

/// SQL (SQLite and PostgreSQL alike) that scopes every key of `table` by `scope_sql`, an
/// SQL text expression per row: the one-time migration of rows written before keys were
/// scoped (their caller was not stored, so each gets the caller that most likely sent it).
pub fn rescope_sql(table: &str, scope_sql: &str) -> String {
    format!("UPDATE {table} SET idempotency_key = length({scope_sql}) || ':' || {scope_sql} || idempotency_key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn citizen(id: &str) -> Principal {
        Principal { id_number: id.into(), ..Principal::bare("c", SubjectKind::Citizen) }
    }

    #[test]
    fn the_same_key_of_two_callers_is_two_keys() {
        let a = scoped(&citizen("11010519491231002X"), "k1");
        let foreigner =
            Principal { passport_number: "11010519491231002X".into(), ..Principal::bare("f", SubjectKind::Foreigner) };
        let b = scoped(&foreigner, "k1");
        assert_ne!(a, b, "same identifier, another kind: another caller");
        assert_eq!(client_key(&a), "k1");
        assert_eq!(client_key(&b), "k1");
    }

    #[test]
    fn a_scope_cannot_be_forged_inside_a_key() {
        // A subject "a" sending key "b:x" must not meet subject "a:b" sending "x".
        let s1 = Principal { dept: "d".into(), ..Principal::bare("a", SubjectKind::Staff) };
        let s2 = Principal { dept: "d".into(), ..Principal::bare("a:b", SubjectKind::Staff) };
        assert_ne!(scoped(&s1, "b:x"), scoped(&s2, "x"));
        assert_eq!(client_key(&scoped(&s2, "x")), "x");
        assert_eq!(client_key(&scoped(&s1, "b:x")), "b:x");
        // Non-ASCII subjects count characters, as SQL's length() does.
        let s3 = Principal { dept: "d".into(), ..Principal::bare("窗口一", SubjectKind::Staff) };
        assert_eq!(client_key(&scoped(&s3, "键")), "键");
        // Nor can a department and subject be cut another way: household + "a:b" against
        // "household:a" + "b".
        let d1 = Principal { dept: "household".into(), ..Principal::bare("a:b", SubjectKind::Staff) };
        let d2 = Principal { dept: "household:a".into(), ..Principal::bare("b", SubjectKind::Staff) };
        assert_ne!(scope(&d1), scope(&d2));
    }

    #[test]
    fn the_scope_of_a_stored_key_is_its_caller() {
        let s = Principal { dept: "household".into(), ..Principal::bare("窗口一", SubjectKind::Staff) };
        assert_eq!(caller_scope(&scoped(&s, "k:1")), Some("staff:9:household:窗口一"));
        assert!(sent_by_staff_of(&scoped(&s, "k"), "household") && !sent_by_staff_of(&scoped(&s, "k"), "house"));
        assert_eq!(caller_scope("plain"), None);
    }

    #[test]
    fn unscoped_values_come_back_as_they_are() {
        assert_eq!(client_key("plain"), "plain");
        assert_eq!(client_key("bundle:b1:s1"), "bundle:b1:s1");
        assert_eq!(client_key("99:short"), "99:short");
    }
}
