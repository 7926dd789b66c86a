//! The `Discovery` gRPC service's HTTP side: routes `Discovery.Watch` to
//! [`DiscoveryService::open`] and writes each snapshot's shared, already-encoded bytes.
//!
//! Why not the generated `DiscoveryServer`: its codec (prost) encodes every message on every
//! stream, and a snapshot is the same bytes for every proxy of its class
//! (`discovery::shared`). [`SharedSnapshotCodec`] writes those bytes through instead, and asks
//! tonic for no standing encode buffer (tonic's default keeps 8 KiB per stream for the life of
//! the stream; a snapshot is sent seldom and sized exactly when it is). The request side is
//! prost's decoding, as generated. Wire format and the client are unchanged.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::BufMut as _;
use prost::Message as _;
use strait_proto::discovery::v1::WatchRequest;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};

use crate::discovery::service::{DiscoveryService, WatchStream};
use crate::discovery::shared::EncodedSnapshot;

/// The gRPC path of `Discovery.Watch`.
pub const WATCH_PATH: &str = "/strait.discovery.v1.Discovery/Watch";

/// Encodes [`EncodedSnapshot`]s by copying their bytes; decodes [`WatchRequest`]s with prost.
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedSnapshotCodec;

impl Codec for SharedSnapshotCodec {
    type Encode = Arc<EncodedSnapshot>;
    type Decode = WatchRequest;
    type Encoder = SharedSnapshotCodec;
    type Decoder = SharedSnapshotCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for SharedSnapshotCodec {
    type Item = Arc<EncodedSnapshot>;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.bytes.len());
        dst.put_slice(&item.bytes);
        Ok(())
    }

    /// No standing encode buffer: each message reserves its own size (tonic's default yield
    /// threshold kept).
    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(0, 32 * 1024)
    }
}

impl Decoder for SharedSnapshotCodec {
    type Item = WatchRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<WatchRequest>, Status> {
        WatchRequest::decode(src)
            .map(Some)
            .map_err(|error| Status::invalid_argument(format!("undecodable WatchRequest: {error}")))
    }
}

/// The `Discovery` service as tonic routes serve it.
#[derive(Clone)]
pub struct DiscoveryServer {
    service: Arc<DiscoveryService>,
    max_request_bytes: usize,
}

impl DiscoveryServer {
    /// Serves `service`, refusing request messages over `max_request_bytes`.
    pub fn new(service: DiscoveryService, max_request_bytes: usize) -> Self {
        Self {
            service: Arc::new(service),
            max_request_bytes,
        }
    }
}

impl tonic::server::NamedService for DiscoveryServer {
    const NAME: &'static str = strait_proto::discovery::v1::discovery_server::SERVICE_NAME;
}

/// One `Watch` call.
struct Watch(Arc<DiscoveryService>);

impl tonic::server::ServerStreamingService<WatchRequest> for Watch {
    type Response = Arc<EncodedSnapshot>;
    type ResponseStream = WatchStream;
    type Future = BoxFuture<tonic::Response<WatchStream>, Status>;

    fn call(&mut self, request: tonic::Request<WatchRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.watch(request).map(tonic::Response::new) })
    }
}

impl<B> Service<http::Request<B>> for DiscoveryServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != WATCH_PATH {
            let path = request.uri().path().to_owned();
            return Box::pin(async move {
                Ok(Status::unimplemented(format!("no method {path} in Discovery")).into_http())
            });
        }
        let service = self.service.clone();
        let max_request_bytes = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(SharedSnapshotCodec)
                .apply_max_message_size_config(Some(max_request_bytes), None);
            Ok(grpc.server_streaming(Watch(service), request).await)
        })
    }
}
