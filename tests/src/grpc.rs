//! The test gRPC service (`proto/echo.proto`) and a server implementing it.

#![allow(missing_docs, clippy::all)]

use std::pin::Pin;

use futures_util::Stream;
use tonic::{Request, Response, Status, Streaming};

tonic::include_proto!("strait.test.v1");

pub use echo_client::EchoClient;
pub use echo_server::EchoServer;

/// Echoes messages; fails with the status code a request asks for (a unary call trailers-only,
/// a stream in its trailers after the replies before it).
#[derive(Clone, Debug, Default)]
pub struct EchoService;

fn client_id<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get("strait-client-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tonic::async_trait]
impl echo_server::Echo for EchoService {
    async fn say(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let client_id = client_id(&request);
        let message = request.into_inner();
        if message.fail_with != 0 {
            return Err(Status::new(
                tonic::Code::from(message.fail_with),
                format!("failing as asked: {}", message.message),
            ));
        }
        Ok(Response::new(EchoReply {
            message: message.message,
            client_id,
        }))
    }

    type ChatStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

    async fn chat(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::ChatStream>, Status> {
        let client_id = client_id(&request);
        let mut incoming = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(message) = incoming.message().await.transpose() {
                // A message asking to fail ends the stream with that status, in trailers after
                // the replies already sent.
                let reply = message.and_then(|m| match m.fail_with {
                    0 => Ok(EchoReply {
                        message: m.message,
                        client_id: client_id.clone(),
                    }),
                    code => Err(Status::new(
                        tonic::Code::from(code),
                        format!("failing as asked: {}", m.message),
                    )),
                });
                let last = reply.is_err();
                if tx.send(reply).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
