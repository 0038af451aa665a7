//! The layer of every gRPC server that reads a request's frames, checks each message
//! against the bounds before any handler decodes it, and answers INVALID_ARGUMENT itself.

use super::{MAX_VIOLATIONS, SCHEMA, Unreadable, check};
use crate::error::{Error, FieldViolation};
use crate::reason::Reason;
use bytes::Bytes;
use std::{
    pin::Pin,
    task::{Context, Poll},
};

/// The layer every gRPC server puts in front of its routes ([`Bounded`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct BoundsLayer;

impl<S> tower::Layer<S> for BoundsLayer {
    type Service = Bounded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bounded { inner }
    }
}

/// Reads a request of a known method (at most [`crate::grpc::MAX_MESSAGE_BYTES`]), checks
/// its message against the schema, and either answers INVALID_ARGUMENT or passes it on.
#[derive(Debug, Clone)]
pub struct Bounded<S> {
    inner: S,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<http::Request<B>> for Bounded<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The service that was polled ready serves this call; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // A request without credentials is refused by the service's authentication before
        // its body is read; only an authenticated one is worth reading here.
        if !SCHEMA.methods.contains_key(req.uri().path()) || !req.headers().contains_key(http::header::AUTHORIZATION) {
            return Box::pin(inner.call(req.map(tonic::body::Body::new)));
        }
        Box::pin(async move {
            use http_body_util::BodyExt;
            let (parts, body) = req.into_parts();
            // A frame header and the largest message the services decode.
            let limit = crate::grpc::MAX_MESSAGE_BYTES + 5;
            let bytes = match http_body_util::Limited::new(body, limit).collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => {
                    // As tonic's own decoder answers a message past its limit.
                    let status = tonic::Status::out_of_range("the request is larger than the 1 MiB a service decodes");
                    return Ok(status.into_http());
                }
            };
            let refusal = match check_frames(parts.uri.path(), &bytes) {
                Ok(violations) => Error::from_violations(Reason::RequestFieldTooLarge, violations),
                Err(Unreadable::Malformed) => Some(Error::new(
                    crate::error::Kind::InvalidArgument,
                    Reason::RequestMalformed,
                    "the request does not parse as its message",
                )),
                Err(Unreadable::Compressed) => Some(Error::new(
                    crate::error::Kind::InvalidArgument,
                    Reason::RequestCompressed,
                    "compressed requests are not accepted",
                )),
            };
            if let Some(e) = refusal {
                return Ok(tonic::Status::from(e).into_http());
            }
            let body = http_body_util::Full::new(bytes).map_err(|never| match never {});
            inner.call(http::Request::from_parts(parts, tonic::body::Body::new(body))).await
        })
    }
}

/// The violations of every gRPC message frame in `body`.
pub(super) fn check_frames(path: &str, mut body: &[u8]) -> Result<Vec<FieldViolation>, Unreadable> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let Some(&[flag, a, b, c, d]) = body.get(..5).and_then(|h| <&[u8; 5]>::try_from(h).ok()) else {
            return Err(Unreadable::Malformed);
        };
        let len = u32::from_be_bytes([a, b, c, d]) as usize;
        let Some(message) = body.get(5..5 + len) else { return Err(Unreadable::Malformed) };
        if flag != 0 {
            return Err(Unreadable::Compressed);
        }
        out.extend(check(path, message)?);
        out.truncate(MAX_VIOLATIONS);
        body = &body[5 + len..];
    }
    Ok(out)
}
