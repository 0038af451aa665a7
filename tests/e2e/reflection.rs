//! Each port's reflection lists exactly the APIs that answer there: for every service of the
//! mesh, every onething API is called once without a token — a listed one must answer
//! (UNAUTHENTICATED: it is there and wants a token), an unlisted one must be UNIMPLEMENTED —
//! and health and reflection are listed too.

use crate::common::*;
use prost::Message as _;
use std::collections::BTreeSet;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

/// The services `channel`'s reflection lists.
pub(crate) async fn listed(channel: tonic::transport::Channel) -> BTreeSet<String> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    list.service.into_iter().map(|s| s.name).collect()
}

/// Every onething API with one of its methods: `(service full name, method)`.
fn every_api() -> Vec<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(onething_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut apis = Vec::new();
    for file in set.file {
        for s in &file.service {
            let name = format!("{}.{}", file.package(), s.name());
            apis.push((name, s.method[0].name().to_string()));
        }
    }
    assert!(apis.len() >= 8, "{apis:?}");
    apis
}

/// The status of calling `/service/method` with an empty message and no token.
async fn call(channel: tonic::transport::Channel, service: &str, method: &str) -> tonic::Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path: tonic::codegen::http::uri::PathAndQuery = format!("/{service}/{method}").parse().unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match grpc.unary(tonic::Request::new(()), path, codec).await {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_port_lists_exactly_what_answers_there() {
    let nats = NatsServer::start().await;
    let apis = every_api();
    for name in onething_platform::service_kind::SERVICE_NAMES {
        let db = TestDb::fresh(Backend::Sqlite).await.unwrap();
        let service = start_named(name, test_settings(&db.url, &nats.url())).await;
        let channel = tonic::transport::Channel::from_shared(service.endpoint()).unwrap().connect().await.unwrap();
        let listed = listed(channel.clone()).await;
        for always in ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"] {
            assert!(listed.contains(always), "{name}: {always} missing from {listed:?}");
        }
        let mut served = 0;
        for (api, method) in &apis {
            let code = call(channel.clone(), api, method).await;
            if listed.contains(api) {
                assert_eq!(code, tonic::Code::Unauthenticated, "{name} lists {api}, which must answer");
                served += 1;
            } else {
                assert_eq!(code, tonic::Code::Unimplemented, "{name} serves {api} without listing it");
            }
        }
        let unknown: Vec<&String> =
            listed.iter().filter(|l| !l.starts_with("grpc.") && !apis.iter().any(|(a, _)| a == *l)).collect();
        assert!(unknown.is_empty(), "{name} lists what is not an onething API: {unknown:?}");
        assert!(served >= 1, "{name} serves its own API");
        service.stop().await;
    }
}
