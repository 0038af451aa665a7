//! The event contract other departments subscribe to: every subject onething publishes,
//! its stream, its CloudEvents type (the payload's proto full name) and its publisher, and
//! `docs/events.md` generated from it and from the comments of the protos themselves.

use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet, field_descriptor_proto::Label};
use std::fmt::Write as _;

/// One kind of published event.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// NATS subject (a `{state}` placeholder for case events).
    pub subject: &'static str,
    /// Proto full name of the payload, also the CloudEvents `type`.
    pub message: &'static str,
    /// Publishing service.
    pub publisher: &'static str,
}

/// The departments whose case events follow the shared lifecycle.
pub const DEPARTMENTS: [&str; 4] = crate::service_kind::DEPARTMENT_NAMES;

/// Every event onething publishes.
pub const EVENTS: &[Published] = &[
    Published {
        subject: "onething.<department>.v1.case.<state>",
        message: "onething.common.v1.CaseStateChanged",
        publisher: "every department",
    },
    Published {
        subject: "onething.household.v1.person.born",
        message: "onething.household.v1.PersonBorn",
        publisher: "household",
    },
    Published {
        subject: "onething.household.v1.person.deceased",
        message: "onething.household.v1.PersonDeceased",
        publisher: "household",
    },
    Published {
        subject: "onething.household.v1.person.corrected",
        message: "onething.household.v1.PersonCorrected",
        publisher: "household",
    },
    Published {
        subject: "onething.household.v1.collective_household.established",
        message: "onething.household.v1.CollectiveHouseholdEstablished",
        publisher: "household",
    },
    Published {
        subject: "onething.exit_entry.v1.residence_permit.granted",
        message: "onething.exit_entry.v1.WorkResidencePermitGranted",
        publisher: "exit_entry",
    },
    Published {
        subject: "onething.exit_entry.v1.violation.recorded",
        message: "onething.exit_entry.v1.ViolationRecorded",
        publisher: "exit_entry",
    },
    Published {
        subject: "onething.exit_entry.v1.travel_documents.cancelled",
        message: "onething.exit_entry.v1.TravelDocumentsCancelled",
        publisher: "exit_entry",
    },
    Published {
        subject: "onething.vehicle.v1.driving_licence.cancelled",
        message: "onething.vehicle.v1.DrivingLicenceCancelled",
        publisher: "vehicle",
    },
    Published {
        subject: "onething.vehicle.v1.booking.rescheduled",
        message: "onething.vehicle.v1.BookingRescheduled",
        publisher: "vehicle",
    },
    Published {
        subject: "onething.vehicle.v1.proxy_inspection.advanced",
        message: "onething.vehicle.v1.ProxyInspectionAdvanced",
        publisher: "vehicle",
    },
    Published {
        subject: "onething.liaison.v1.enterprise_request.<step>",
        message: "onething.liaison.v1.EnterpriseRequestChanged",
        publisher: "liaison",
    },
    Published {
        subject: "onething.coordinator.v1.bundle.<state>",
        message: "onething.coordinator.v1.BundleChanged",
        publisher: "coordinator",
    },
];

struct Found<'a> {
    file: &'a FileDescriptorProto,
    index: usize,
}

fn find<'a>(set: &'a FileDescriptorSet, full_name: &str) -> Option<Found<'a>> {
    set.file.iter().find_map(|f| {
        let pkg = f.package();
        f.message_type
            .iter()
            .position(|m| format!("{pkg}.{}", m.name()) == full_name)
            .map(|index| Found { file: f, index })
    })
}

fn comment(file: &FileDescriptorProto, path: &[i32]) -> String {
    file.source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .map(|l| l.leading_comments().split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn type_name(f: &prost_types::FieldDescriptorProto) -> String {
    use prost_types::field_descriptor_proto::Type as T;
    let base = match f.r#type() {
        T::Message | T::Enum => f.type_name().trim_start_matches('.').to_string(),
        T::String => "string".into(),
        T::Bool => "bool".into(),
        T::Int64 => "int64".into(),
        T::Uint32 => "uint32".into(),
        T::Int32 => "int32".into(),
        T::Bytes => "bytes".into(),
        other => format!("{other:?}").to_lowercase(),
    };
    if f.label() == Label::Repeated { format!("repeated {base}") } else { base }
}

/// `docs/events.md`: the contract, generated from [`EVENTS`] and the protos' comments.
///
/// # Panics
/// When an event's message is missing from the protos (a test keeps them in step).
pub fn markdown() -> String {
    let set = FileDescriptorSet::decode(onething_proto::FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    let mut out = String::new();
    let _ = writeln!(out, "# onething events\n");
    let _ = writeln!(
        out,
        "<!-- GENERATED by `make docs` from services/platform/src/events/contract.rs and proto/: do not edit. -->\n"
    );
    out.push_str(INTRO);
    let _ = writeln!(out, "\n## Streams\n\n| stream | subjects | publisher |\n|---|---|---|");
    for d in crate::service_kind::ServiceKind::ALL {
        let _ = writeln!(out, "| `{}` | `onething.{d}.>` | {d} |", d.stream());
    }
    let _ = writeln!(out, "\n## Events\n");
    for e in EVENTS {
        let found = find(&set, e.message).unwrap_or_else(|| panic!("{} is not in the protos", e.message));
        let _ = writeln!(out, "### `{}`\n", e.subject);
        let _ = writeln!(out, "- CloudEvents type: `{}`", e.message);
        let _ = writeln!(out, "- publisher: {} (`ce-source: /onething/<publisher>`)", e.publisher);
        let _ = writeln!(out, "- proto: `proto/{}`\n", found.file.name());
        let _ = writeln!(out, "{}\n", comment(found.file, &[4, i32::try_from(found.index).unwrap_or(0)]));
        fields_table(&found, &mut out);
    }
    types(&set, &mut out);
    out.push_str(RULES);
    out
}

/// The messages the events' fields are made of (evidence and the like), each with its
/// fields, once.
fn types(set: &FileDescriptorSet, out: &mut String) {
    use prost_types::field_descriptor_proto::Type as T;
    let mut seen = std::collections::BTreeSet::new();
    for e in EVENTS {
        let Some(found) = find(set, e.message) else { continue };
        for f in &found.file.message_type[found.index].field {
            if f.r#type() == T::Message && f.type_name().starts_with(".onething.") {
                seen.insert(f.type_name().trim_start_matches('.').to_string());
            }
        }
    }
    if seen.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Types the events use\n");
    for name in seen {
        let Some(found) = find(set, &name) else { continue };
        let index = i32::try_from(found.index).unwrap_or(0);
        let _ = writeln!(out, "### `{name}`\n\n{}\n", comment(found.file, &[4, index]));
        fields_table(&found, out);
    }
}

/// The table of the fields of the message `found`, each with its proto comment.
fn fields_table(found: &Found<'_>, out: &mut String) {
    let index = i32::try_from(found.index).unwrap_or(0);
    let _ = writeln!(out, "| field | type | meaning |\n|---|---|---|");
    for (j, f) in found.file.message_type[found.index].field.iter().enumerate() {
        let path = [4, index, 2, i32::try_from(j).unwrap_or(0)];
        let _ =
            writeln!(out, "| {} `{}` | `{}` | {} |", f.number(), f.name(), type_name(f), comment(found.file, &path));
    }
    out.push('\n');
}

const INTRO: &str = "Facts onething publishes on NATS JetStream for other departments (社保, 医保, 教育,
民政, 市场监管 …). Every event is a CloudEvents 1.0 event in binary mode: the context
attributes are NATS headers (`ce-specversion: 1.0`, `ce-id`, `ce-source`, `ce-type`,
`ce-subject`, `ce-time`), `content-type: application/protobuf`, and the payload is the
protobuf message named by `ce-type`. `Nats-Msg-Id` equals `ce-id`; `traceparent` carries the
W3C trace context. The same `ce-id` never means two facts: a subscriber that records the ids
it handled is safe against redelivery.

## Subscribing

- Connect as your department's own NATS user (one per outside department, from
  `deploy/nats/departments.toml`, which lists the subjects each is entitled to; see
  `docs/deploy.md`, \"NATS users\") with the inbox prefix `_INBOX.<user>`, the only inbox it
  may subscribe to. It reads its entitled subjects and nothing else, publishes nothing on
  `onething.>`, and cannot read single messages of a stream (`MSG.GET`, `DIRECT.GET`).
- Create a **durable pull consumer** per entitled subject, named `<user>-` and the subject
  after `onething.` with `.` as `-` (`*` as `any`), e.g.
  `social_security-household-v1-person-born`, with that subject as its one
  `filter_subject`: the permission to create it names the filter, so another filter, a list
  of filters or another name is refused. Explicit acks, and `deliver_policy` `all` (from
  the start), `by_start_time` (from a time) or `by_start_sequence` (from a sequence) to
  replay after an outage. Ack after your own transaction commits; record `ce-id` to drop
  duplicates.
- Retention: streams keep every event (limits policy, no age limit in the default
  configuration; operators may set `max_age` per stream). Duplicates are dropped by the
  broker within a two-minute window of the same `Nats-Msg-Id`.
- A worked example in Python is in `docs/examples/subscriber.py`; `onething events tail` and
  `onething events replay --since` read the streams from a terminal (on a server without
  authentication, e.g. `make run`'s).
";

const RULES: &str = "## Evolving an event

The protos are checked with `buf breaking` against the previous commit of `main` in
`make test`, so a change that breaks subscribers fails the build. The rules:

1. Never change or reuse a field number, and never change a field's type or name.
2. Add fields with new numbers; subscribers ignore fields they do not know.
3. Remove a field only by reserving its number and name (`reserved`), after every known
   subscriber has stopped reading it.
4. New enum values are allowed; subscribers must treat unknown values as unspecified.
5. A new meaning is a new message (and a new subject); the old one is published alongside
   until subscribers have moved (a new package version `v2` for incompatible changes).
6. Personal data in an event is listed in the message's comment; adding any needs review.
";

#[cfg(test)]
mod tests {
    #[test]
    fn every_event_message_is_in_the_protos() {
        let doc = super::markdown();
        assert!(doc.contains("onething.household.v1.PersonDeceased"));
        assert!(doc.contains("| 1 `id_number` | `string` |"));
    }
}
