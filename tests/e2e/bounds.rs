//! Every request field is bounded, whatever RPC it comes through: every method of every
//! service, called over a real socket with each string field of its request far past any
//! bound, is refused with INVALID_ARGUMENT, reason `REQUEST_FIELD_TOO_LARGE`, and a field
//! violation naming each such field and its bound; the service writes nothing.

use crate::common::*;
use bytes::{Buf, BufMut};
use prost::Message as _;
use std::collections::BTreeSet;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_types::StatusExt;

/// Sends a message's wire bytes as they are; reads nothing of the answer.
#[derive(Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

/// (API, `/path`, server streaming, the request's top-level string fields by number).
type Method = (String, String, bool, Vec<(i32, String)>);

/// Every method of every API with its request's top-level string fields.
fn methods() -> Vec<Method> {
    let set = prost_types::FileDescriptorSet::decode(onething_proto::FILE_DESCRIPTOR_SET).unwrap();
    let messages: std::collections::HashMap<String, &prost_types::DescriptorProto> = set
        .file
        .iter()
        .flat_map(|f| f.message_type.iter().map(move |m| (format!(".{}.{}", f.package(), m.name()), m)))
        .collect();
    let mut out = Vec::new();
    for file in &set.file {
        for s in &file.service {
            // A client stream (an import's file) is read chunk by chunk by its handler, its
            // fields checked there (reference_data.rs); the layer leaves it alone.
            for m in s.method.iter().filter(|m| !m.client_streaming()) {
                let input = messages[m.input_type()];
                let strings = input
                    .field
                    .iter()
                    .filter(|f| {
                        f.r#type() == prost_types::field_descriptor_proto::Type::String
                            && f.label() != prost_types::field_descriptor_proto::Label::Repeated
                    })
                    .map(|f| (f.number(), f.name().to_string()))
                    .collect();
                out.push((
                    format!("{}.{}", file.package(), s.name()),
                    format!("/{}.{}/{}", file.package(), s.name(), m.name()),
                    m.server_streaming(),
                    strings,
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_every_rpc_has_a_bound() {
    let nats = NatsServer::start().await;
    let mut checked = 0;
    for name in onething_platform::service_kind::SERVICE_NAMES {
        let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
        let r = start_named(name, test_settings(&db.url, &nats.url())).await;
        let channel = tonic::transport::Channel::from_shared(r.endpoint()).unwrap().connect().await.unwrap();
        let listed = crate::reflection::listed(channel.clone()).await;
        let cases_before = count(&r.db, "outbox").await;
        for (_, path, streaming, strings) in methods().into_iter().filter(|m| listed.contains(&m.0)) {
            if strings.is_empty() {
                continue;
            }
            let mut wire = Vec::new();
            let long = "长".repeat(3000);
            for (number, _) in &strings {
                prost::encoding::string::encode(*number as u32, &long, &mut wire);
            }
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let mut request = tonic::Request::new(wire);
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {}", citizen_token(&seeded_person())).parse().unwrap());
            let at: tonic::codegen::http::uri::PathAndQuery = path.parse().unwrap();
            let status = if streaming {
                grpc.server_streaming(request, at, Raw).await.err()
            } else {
                grpc.unary(request, at, Raw).await.err()
            }
            .unwrap_or_else(|| panic!("{path} took fields of 3000 characters"));
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{path}: {status:?}");
            let details = status.get_error_details();
            assert_eq!(details.error_info().map(|i| i.reason.as_str()), Some("REQUEST_FIELD_TOO_LARGE"), "{path}");
            let named: BTreeSet<String> = details
                .bad_request()
                .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
                .unwrap_or_default();
            let sent: BTreeSet<String> = strings.iter().map(|(_, n)| n.clone()).collect();
            assert_eq!(named, sent, "{path}: every oversized field named");
            assert!(
                details.bad_request().unwrap().field_violations.iter().all(|v| v.description.starts_with("at most ")),
                "{path}: the bound is named"
            );
            checked += 1;
        }
        assert_eq!(count(&r.db, "outbox").await, cases_before, "{name} wrote nothing");
        r.stop().await;
    }
    assert!(checked >= 30, "only {checked} methods checked");
}
