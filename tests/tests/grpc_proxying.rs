//! gRPC (HTTP/2 with trailers) through two real proxies with tonic on both ends.

use std::time::Duration;

use strait_tests::backend::start_grpc;
use strait_tests::grpc::{EchoClient, EchoRequest};
use strait_tests::mesh::LocalMesh;
use tonic::transport::{Channel, Endpoint};

async fn client(mesh: &LocalMesh) -> EchoClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", mesh.client.outbound))
        .unwrap()
        // The proxy routes by :authority, as a gRPC client addressing the service would send it.
        .origin("http://grpc.demo:80".parse().unwrap())
        .connect()
        .await
        .unwrap();
    EchoClient::new(channel)
}

#[tokio::test(flavor = "multi_thread")]
async fn unary_calls_pass_through() {
    let backend = start_grpc().await;
    let mesh = LocalMesh::start(&[("grpc", backend)]);
    let mut client = client(&mesh).await;

    let reply = client
        .say(EchoRequest {
            message: "hello mesh".into(),
            fail_with: 0,
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "hello mesh");
}

/// h2 answers a peer that sends more than 100 empty, non-final DATA frames on one connection
/// with GOAWAY `ENHANCE_YOUR_CALM`; a proxy that passed on the empty frames tonic ends a
/// message with would break every long-lived gRPC connection after 100 calls.
#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_unary_calls_share_one_connection_through_both_proxies() {
    let backend = start_grpc().await;
    let mesh = LocalMesh::start(&[("grpc", backend)]);
    let mut client = client(&mesh).await;
    for i in 0..400 {
        let reply = client
            .say(EchoRequest {
                message: format!("call {i}"),
                fail_with: 0,
            })
            .await
            .unwrap_or_else(|status| panic!("call {i} failed: {status}"));
        assert_eq!(reply.into_inner().message, format!("call {i}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_ok_status_and_its_message_arrive_intact_in_the_trailers() {
    let backend = start_grpc().await;
    let mesh = LocalMesh::start(&[("grpc", backend)]);
    let mut client = client(&mesh).await;

    let status = client
        .say(EchoRequest {
            message: "please fail".into(),
            fail_with: tonic::Code::FailedPrecondition as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(status.message(), "failing as asked: please fail");
}

#[tokio::test(flavor = "multi_thread")]
async fn bidirectional_streams_interleave_messages_without_buffering() {
    let backend = start_grpc().await;
    let mesh = LocalMesh::start(&[("grpc", backend)]);
    let mut client = client(&mesh).await;

    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut replies = client
        .chat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // Each reply arrives before the next message is sent: the stream is live both ways.
    for i in 0..20 {
        tx.send(EchoRequest {
            message: format!("message {i}"),
            fail_with: 0,
        })
        .await
        .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
            .await
            .expect("reply arrives while the stream is open")
            .unwrap()
            .expect("a reply, not the end of the stream");
        assert_eq!(reply.message, format!("message {i}"));
    }
    drop(tx);
    assert!(
        replies.message().await.unwrap().is_none(),
        "the stream ends cleanly with OK"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_to_an_unknown_service_gets_a_grpc_status_not_an_http_error() {
    let backend = start_grpc().await;
    let mesh = LocalMesh::start(&[("grpc", backend)]);
    let channel = Endpoint::from_shared(format!("http://{}", mesh.client.outbound))
        .unwrap()
        .origin("http://missing.demo:80".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let status = EchoClient::new(channel)
        .say(EchoRequest {
            message: "x".into(),
            fail_with: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(
        status.message().contains("missing.demo:80"),
        "{}",
        status.message()
    );
}
