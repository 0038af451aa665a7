//! Every request field bounded, from one schema: the proto descriptors of every onething
//! API and one table of bounds ([`BOUNDS`], with defaults by kind of field). A layer of
//! every gRPC server reads each request message's wire form against it before any handler
//! decodes it, and refuses one with a field past its bound (INVALID_ARGUMENT, reason
//! `REQUEST_FIELD_TOO_LARGE`, a field violation naming the field and its bound), so no input
//! can grow a row, an event or a log line past what the mesh plans for — whatever RPC it
//! comes through. A form's fields have their own bounds and kinds in the catalog
//! ([`crate::catalog::fields`], checked where a case's or a bundle's form enters); this is
//! the outer bound, theirs the field's, the departments' the meaning.

use crate::error::FieldViolation;
use prost::Message as _;
use prost_types::{DescriptorProto, FileDescriptorSet, field_descriptor_proto::Type};
use std::{collections::HashMap, sync::LazyLock};

/// A field's bound: characters of a string, bytes of a `bytes`, entries of a repeated field
/// or a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// Characters of a string (UTF-8 code points).
    pub chars: usize,
    /// Bytes of a `bytes` field.
    pub bytes: usize,
    /// Entries of a repeated field or a map.
    pub items: usize,
}

/// Every field not named in [`BOUNDS`]: 2,000 characters (the longest free text a
/// service takes: a complaint, a description), 64 KiB, 64 entries.
pub const DEFAULT: Bound = Bound { chars: 2000, bytes: 64 * 1024, items: 64 };

/// Map keys (form field names and the like).
pub const MAP_KEY: Bound = Bound { chars: 64, ..DEFAULT };

/// Map values (form values).
pub const MAP_VALUE: Bound = Bound { chars: 1024, ..DEFAULT };

const fn chars(n: usize) -> Bound {
    Bound { chars: n, ..DEFAULT }
}

/// The table: a field name alone (`idempotency_key`: in every message), or
/// `Message.field` with the message's full proto name. The most specific entry wins; a name
/// ending in `_id` (an identifier) is 128 characters unless named here.
pub const BOUNDS: &[(&str, Bound)] = &[
    ("idempotency_key", chars(128)),
    ("page_token", chars(512)),
    ("document_uri", chars(1024)),
    // An e-licence: a signed document of a few hundred bytes (crate::elicence).
    (
        "elicence",
        Bound { chars: crate::elicence::MAX_ELICENCE_BYTES, bytes: crate::elicence::MAX_ELICENCE_BYTES, ..DEFAULT },
    ),
    ("name", chars(100)),
    ("phone", chars(32)),
    ("identifier", chars(64)),
    ("department", chars(64)),
    ("matter_code", chars(128)),
    ("code", chars(128)),
    ("reason_code", chars(128)),
    ("reason_text", chars(2000)),
    ("summary", chars(2000)),
    ("description", chars(2000)),
    // A 双随机 draw's pool: every enterprise of a district, and its inspectors.
    ("onething.supervision.v1.DrawInspectionsRequest.candidates", Bound { items: 20_000, ..DEFAULT }),
    ("onething.supervision.v1.DrawInspectionsRequest.inspectors", Bound { items: 2_000, ..DEFAULT }),
];

/// Violations reported at most: enough to fix a request, few enough for a status header.
pub const MAX_VIOLATIONS: usize = 20;

/// Why a request's bytes cannot be checked at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// They do not parse as protobuf (truncated, or proto2 groups, which no onething
    /// message has).
    Malformed,
    /// The message is compressed; the services accept no compression.
    Compressed,
}

/// A field of the schema.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: Kind,
    repeated: bool,
    bound: Bound,
}

#[derive(Debug, Clone)]
enum Kind {
    Str,
    Bytes,
    /// A message (its full name).
    Message(String),
    /// A map entry message (its full name): entries counted, key and value bounded.
    Map(String),
    Scalar,
}

/// The request types of every method and the fields of every message.
struct Schema {
    /// `/package.Service/Method` → its input message, unless it streams requests.
    methods: HashMap<String, String>,
    /// Full message name → field number → field.
    messages: HashMap<String, HashMap<u32, Field>>,
}

/// The bound of `field` of `message` from the table.
fn bound_of(message: &str, field: &str) -> Bound {
    let qualified = format!("{message}.{field}");
    let short = qualified.rsplit('.').nth(1).map(|m| format!("{m}.{field}"));
    for key in [Some(qualified.as_str()), short.as_deref()].into_iter().flatten() {
        if let Some((_, b)) = BOUNDS.iter().find(|(k, _)| *k == key) {
            return *b;
        }
    }
    if let Some((_, b)) = BOUNDS.iter().find(|(k, _)| *k == field) {
        return *b;
    }
    if field.ends_with("_id") || field == "id" {
        return chars(128);
    }
    DEFAULT
}

fn add_messages(prefix: &str, messages: &[DescriptorProto], out: &mut HashMap<String, HashMap<u32, Field>>) {
    for m in messages {
        let full = format!("{prefix}.{}", m.name());
        let entry = m.options.as_ref().is_some_and(|o| o.map_entry());
        let mut fields = HashMap::new();
        for f in &m.field {
            let type_name = f.type_name().trim_start_matches('.').to_string();
            let map_entry = m.nested_type.iter().any(|n| {
                n.options.as_ref().is_some_and(|o| o.map_entry()) && type_name == format!("{full}.{}", n.name())
            });
            let kind = match f.r#type() {
                Type::String => Kind::Str,
                Type::Bytes => Kind::Bytes,
                Type::Message if map_entry => Kind::Map(type_name),
                Type::Message => Kind::Message(type_name),
                _ => Kind::Scalar,
            };
            let bound = match (entry, f.number()) {
                (true, 1) => MAP_KEY,
                (true, _) => MAP_VALUE,
                _ => bound_of(&full, f.name()),
            };
            let repeated = f.label() == prost_types::field_descriptor_proto::Label::Repeated;
            // A map's value is named by its entry's path (`form[note]`), its key as `key`.
            let name = match (entry, f.number()) {
                (true, 2) => String::new(),
                _ => f.name().to_string(),
            };
            fields.insert(f.number() as u32, Field { name, kind, repeated, bound });
        }
        out.insert(full.clone(), fields);
        add_messages(&full, &m.nested_type, out);
    }
}

static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    let mut schema = Schema { methods: HashMap::new(), messages: HashMap::new() };
    let Ok(set) = FileDescriptorSet::decode(onething_proto::FILE_DESCRIPTOR_SET) else { return schema };
    for file in &set.file {
        let package = file.package();
        add_messages(package, &file.message_type, &mut schema.messages);
        for service in &file.service {
            for m in service.method.iter().filter(|m| !m.client_streaming()) {
                let path = format!("/{package}.{}/{}", service.name(), m.name());
                schema.methods.insert(path, m.input_type().trim_start_matches('.').to_string());
            }
        }
    }
    schema
});

/// How deep messages may nest in a request before the walk stops looking (no onething
/// request nests deeper than a few levels; the decoder has its own recursion limit).
const MAX_DEPTH: usize = 16;

/// A cursor over protobuf wire bytes.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        (n <= self.0.len()).then(|| {
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        })
    }
}

/// Walks message `name` in `bytes`, noting each field past its bound under `path` (at
/// most [`MAX_VIOLATIONS`]). Bytes that do not parse are refused: nothing the walk cannot
/// read may reach a handler unchecked.
fn walk(name: &str, bytes: &[u8], path: &str, depth: usize, out: &mut Vec<FieldViolation>) -> Result<(), Unreadable> {
    let Some(fields) = SCHEMA.messages.get(name) else { return Ok(()) };
    if depth > MAX_DEPTH {
        return Err(Unreadable::Malformed);
    }
    let mut wire = Wire(bytes);
    let mut counts: HashMap<u32, usize> = HashMap::new();
    while !wire.0.is_empty() {
        if out.len() >= MAX_VIOLATIONS {
            return Ok(());
        }
        let Some(tag) = wire.varint() else { return Err(Unreadable::Malformed) };
        let (number, wire_type) = ((tag >> 3) as u32, tag & 7);
        let field = fields.get(&number);
        let index = {
            let c = counts.entry(number).or_default();
            *c += 1;
            *c - 1
        };
        let read = match wire_type {
            0 => wire.varint().map(|_| ()),
            1 => wire.take(8).map(|_| ()),
            5 => wire.take(4).map(|_| ()),
            2 => {
                let Some(len) = wire.varint().and_then(|l| usize::try_from(l).ok()) else {
                    return Err(Unreadable::Malformed);
                };
                let Some(value) = wire.take(len) else { return Err(Unreadable::Malformed) };
                if let Some(f) = field {
                    check_value(f, value, &field_path(path, f, index, value), depth, out)?;
                }
                Some(())
            }
            // Groups are no part of proto3 (a decoder would skip them, and what follows).
            _ => None,
        };
        if read.is_none() || number == 0 {
            return Err(Unreadable::Malformed);
        }
    }
    for (number, n) in counts {
        if let Some(f) = fields.get(&number).filter(|f| f.repeated && n > f.bound.items) {
            out.push(violation(&join(path, &f.name), format!("at most {} entries", f.bound.items)));
        }
    }
    Ok(())
}

fn join(path: &str, field: &str) -> String {
    match (path.is_empty(), field.is_empty()) {
        (true, _) => field.to_string(),
        (_, true) => path.to_string(),
        _ => format!("{path}.{field}"),
    }
}

/// The path of one occurrence: `materials[2]`, `form[note]`, or the field's own name.
fn field_path(path: &str, f: &Field, index: usize, value: &[u8]) -> String {
    let name = join(path, &f.name);
    match &f.kind {
        Kind::Map(_) => {
            // The entry's key (field 1), when it is a short printable string.
            let mut wire = Wire(value);
            let key = (wire.varint() == Some(10))
                .then(|| wire.varint().and_then(|l| wire.take(usize::try_from(l).ok()?)))
                .flatten()
                .and_then(|k| std::str::from_utf8(k).ok())
                .filter(|k| k.chars().count() <= MAP_KEY.chars && k.chars().all(|c| !c.is_control()));
            match key {
                Some(k) => format!("{name}[{k}]"),
                None => name,
            }
        }
        _ if f.repeated => format!("{name}[{index}]"),
        _ => name,
    }
}

fn check_value(
    f: &Field,
    value: &[u8],
    path: &str,
    depth: usize,
    out: &mut Vec<FieldViolation>,
) -> Result<(), Unreadable> {
    match &f.kind {
        Kind::Str => {
            // Counted without decoding in full: UTF-8 characters are the bytes that do not
            // continue one; invalid UTF-8 is the decoder's to refuse.
            let chars = value.iter().filter(|b| (**b & 0xc0) != 0x80).count();
            if chars > f.bound.chars {
                out.push(violation(path, format!("at most {} characters", f.bound.chars)));
            }
        }
        Kind::Bytes if value.len() > f.bound.bytes => {
            out.push(violation(path, format!("at most {} bytes", f.bound.bytes)));
        }
        Kind::Message(m) | Kind::Map(m) => return walk(m, value, path, depth + 1, out),
        _ => {}
    }
    Ok(())
}

fn violation(field: &str, description: String) -> FieldViolation {
    FieldViolation { field: field.to_string(), description }
}

/// The fields of a request to `path` (`/package.Service/Method`) past their bounds (at most
/// [`MAX_VIOLATIONS`]), given its message's wire bytes. Empty for a path the schema does
/// not know.
///
/// # Errors
/// The bytes do not parse as protobuf.
pub fn check(path: &str, message: &[u8]) -> Result<Vec<FieldViolation>, Unreadable> {
    let mut out = Vec::new();
    if let Some(input) = SCHEMA.methods.get(path) {
        walk(input, message, "", 0, &mut out)?;
    }
    Ok(out)
}

/// The bound a field of message `message` (full proto name) has, for documentation and
/// tests; `None` for a field the schema does not have.
pub fn bound(message: &str, field: &str) -> Option<Bound> {
    SCHEMA.messages.get(message)?.values().find(|f| f.name == field).map(|f| f.bound)
}

mod layer;

pub use layer::{Bounded, BoundsLayer};

#[cfg(test)]
mod tests {
    use super::layer::check_frames;
    use super::*;
    use onething_proto::{common as cpb, supervision as spb};

    fn fields(v: &[FieldViolation]) -> Vec<(&str, &str)> {
        v.iter().map(|f| (f.field.as_str(), f.description.as_str())).collect()
    }

    #[test]
    fn each_field_has_its_bound_and_the_error_names_it() {
        let complaint = spb::SubmitComplaintRequest {
            department: "x".repeat(1_000_000),
            summary: "检".repeat(2000),
            idempotency_key: "k".repeat(129),
            ..Default::default()
        };
        let v =
            check("/onething.supervision.v1.SupervisionService/SubmitComplaint", &complaint.encode_to_vec()).unwrap();
        let mut got = fields(&v);
        got.sort();
        assert_eq!(got, [("department", "at most 64 characters"), ("idempotency_key", "at most 128 characters")]);
    }

    #[test]
    fn maps_and_repeated_fields_are_counted_and_their_entries_bounded() {
        let mut req =
            cpb::CreateCaseRequest { matter_code: "household.birth_registration".into(), ..Default::default() };
        req.form.insert("note".into(), "x".repeat(1025));
        for i in 0..70 {
            req.materials.push(cpb::Material {
                code: format!("m{i}"),
                document_uri: "oss://a".into(),
                ..Default::default()
            });
        }
        req.materials[3].document_uri = "u".repeat(1025);
        let v = check("/onething.common.v1.CaseService/CreateCase", &req.encode_to_vec()).unwrap();
        let mut got = fields(&v);
        got.sort();
        assert_eq!(
            got,
            [
                ("form[note]", "at most 1024 characters"),
                ("materials", "at most 64 entries"),
                ("materials[3].document_uri", "at most 1024 characters")
            ]
        );
        let fine = cpb::CreateCaseRequest { matter_code: "household.birth_registration".into(), ..Default::default() };
        assert_eq!(check("/onething.common.v1.CaseService/CreateCase", &fine.encode_to_vec()), Ok(vec![]));
        // Many fields past their bounds: the first few are reported, not a megabyte of them.
        let mut many = fine.clone();
        for i in 0..500 {
            many.form.insert(format!("{i:0>70}"), "v".into());
        }
        let v = check("/onething.common.v1.CaseService/CreateCase", &many.encode_to_vec()).unwrap();
        assert_eq!(v.len(), MAX_VIOLATIONS);
    }

    #[test]
    fn every_method_of_every_api_is_known() {
        let set = FileDescriptorSet::decode(onething_proto::FILE_DESCRIPTOR_SET).unwrap();
        for file in &set.file {
            for s in &file.service {
                for m in &s.method {
                    let path = format!("/{}.{}/{}", file.package(), s.name(), m.name());
                    // A client stream is read chunk by chunk by its handler, each message
                    // bounded by the server's decoding limit (an import's file).
                    if m.client_streaming() {
                        assert!(!SCHEMA.methods.contains_key(&path), "{path}");
                        continue;
                    }
                    assert!(SCHEMA.methods.contains_key(&path), "{path}");
                    assert!(SCHEMA.messages.contains_key(m.input_type().trim_start_matches('.')), "{path}");
                }
            }
        }
        assert_eq!(bound("onething.common.v1.CreateCaseRequest", "idempotency_key"), Some(chars(128)));
        assert_eq!(bound("onething.common.v1.Material", "document_uri"), Some(chars(1024)));
    }

    #[test]
    fn what_cannot_be_read_is_refused() {
        let path = "/onething.supervision.v1.SupervisionService/SubmitComplaint";
        let long =
            spb::SubmitComplaintRequest { department: "x".repeat(100_000), ..Default::default() }.encode_to_vec();
        // A proto2 group in front (start and end of field 15) would hide what follows.
        let hidden = [&b"\x7b\x7c"[..], &long].concat();
        for bytes in [&b"\xff\xff\xff"[..], b"\x0a\xff\x01", b"\x0b", &hidden, b"\x00"] {
            assert_eq!(check(path, bytes), Err(Unreadable::Malformed), "{bytes:?}");
        }
        assert_eq!(check(path, b""), Ok(vec![]));
        let framed = |flag: u8, m: &[u8]| [&[flag][..], &(m.len() as u32).to_be_bytes(), m].concat();
        assert_eq!(check_frames(path, &framed(1, b"")), Err(Unreadable::Compressed));
        assert_eq!(check_frames(path, &framed(0, b"")[..4]), Err(Unreadable::Malformed));
        assert_eq!(check_frames(path, b"\x00\x00\x00\x00\x09abc"), Err(Unreadable::Malformed));
        let two = [framed(0, b""), framed(0, &long)].concat();
        assert_eq!(check_frames(path, &two).unwrap().len(), 1, "every frame is read");
        assert_eq!(check_frames("/x/y", &framed(0, b"\xff")), Ok(vec![]), "an unknown path is not ours");
    }

    #[test]
    fn a_draw_takes_a_district_of_candidates() {
        let b = bound("onething.supervision.v1.DrawInspectionsRequest", "candidates").unwrap();
        assert_eq!(b.items, 20_000);
    }
}
