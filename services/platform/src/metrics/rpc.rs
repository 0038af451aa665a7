//! The RED metrics of every gRPC server: a tower layer counting each finished RPC by method
//! and status code (from the trailers, the headers, or `CANCELLED` when the client went
//! away) and timing it until its response headers.

use super::{MethodLabels, RpcLabels, metrics};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

/// A tower layer recording [`Metrics::rpc_requests`] and [`Metrics::rpc_duration`] for every
/// request of a gRPC server.
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// The service [`RpcMetricsLayer`] wraps around the gRPC routes.
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: http_body::Body,
{
    type Response = http::Response<Counted<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Labels from the known RPCs only: a path is whatever the caller sent, before any check.
        let (service, method) = crate::policy::rpc_labels(req.uri().path());
        let labels = MethodLabels { service: service.to_string(), method: method.to_string() };
        let started = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            // Duration until the response headers: a stream's length is not its handling time.
            metrics().rpc_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
            match result {
                Ok(resp) => {
                    // The status is in the headers of an error without messages, else in the
                    // trailers after the last message (a stream may fail after its first).
                    let in_headers = resp.headers().contains_key("grpc-status");
                    let code = crate::grpc::status_in_headers(resp.headers());
                    Ok(resp.map(|body| Counted {
                        inner: Box::pin(body),
                        pending: Some(Pending { labels, code: in_headers.then_some(code) }),
                    }))
                }
                Err(e) => {
                    count_rpc(labels, tonic::Code::Unavailable);
                    Err(e)
                }
            }
        })
    }
}

/// What a response body still has to count when it ends.
#[derive(Debug)]
struct Pending {
    labels: MethodLabels,
    /// The status the headers carried, if they did.
    code: Option<tonic::Code>,
}

/// A gRPC response body that counts its RPC in [`Metrics::rpc_requests`] once the status is
/// known: from the trailers, from the headers of a response without messages, or, when the
/// body is dropped before its end (the client went away), as `CANCELLED`.
#[derive(Debug)]
pub struct Counted<R> {
    inner: Pin<Box<R>>,
    pending: Option<Pending>,
}

impl<R> Counted<R> {
    fn finish(&mut self, trailers: Option<&http::HeaderMap>) {
        if let Some(p) = self.pending.take() {
            let code = trailers.map(crate::grpc::status_in_headers).or(p.code).unwrap_or(tonic::Code::Ok);
            count_rpc(p.labels, code);
        }
    }
}

impl<R: http_body::Body> http_body::Body for Counted<R> {
    type Data = R::Data;
    type Error = R::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => self.finish(frame.trailers_ref()),
            Poll::Ready(None) => self.finish(None),
            Poll::Ready(Some(Err(_))) => {
                if let Some(p) = self.pending.as_mut() {
                    p.code = Some(tonic::Code::Unknown);
                }
                self.finish(None);
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<R> Drop for Counted<R> {
    fn drop(&mut self) {
        if let Some(p) = self.pending.as_mut()
            && p.code.is_none()
        {
            // Dropped before its trailers: the response never finished.
            p.code = Some(tonic::Code::Cancelled);
        }
        self.finish(None);
    }
}

fn count_rpc(labels: MethodLabels, code: tonic::Code) {
    metrics()
        .rpc_requests
        .get_or_create(&RpcLabels { service: labels.service, method: labels.method, code: code_name(code).into() })
        .inc();
}

/// The canonical upper-case name of a gRPC status code, as grpc-go and grpcurl print it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
