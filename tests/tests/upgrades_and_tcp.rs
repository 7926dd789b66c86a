//! Connections that stop being HTTP: WebSocket upgrades and CONNECT tunnels (the local-mode
//! way to carry opaque TCP), through two real proxies.

use futures_util::{SinkExt, StreamExt};
use strait_tests::backend::{HttpBackend, start_tcp_echo};
use strait_tests::mesh::LocalMesh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn websocket_echo_works_through_an_upgrade() {
    let backend = HttpBackend::start("web").await;
    let mesh = LocalMesh::start(&[("web", backend.addr)]);

    let stream = TcpStream::connect(mesh.client.outbound).await.unwrap();
    let (mut ws, response) = tokio_tungstenite::client_async("ws://web.demo/ws", stream)
        .await
        .expect("the upgrade succeeds through both proxies");
    assert_eq!(response.status(), 101);
    for i in 0..10 {
        ws.send(Message::text(format!("text {i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("text {i}"))
        );
    }
    let binary = vec![0u8, 1, 2, 255, 254];
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(binary));
    ws.close(None).await.unwrap();
}

async fn read_http_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "head ended early: {head:?}"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_tunnels_opaque_tcp_with_half_close_both_ways() {
    let echo = start_tcp_echo().await;
    let mesh = LocalMesh::start(&[("tcp:9000", echo)]);

    let mut stream = TcpStream::connect(mesh.client.outbound).await.unwrap();
    stream
        .write_all(b"CONNECT tcp.demo:9000 HTTP/1.1\r\nHost: tcp.demo:9000\r\n\r\n")
        .await
        .unwrap();
    let head = read_http_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Arbitrary bytes, then a half-close: the echo server answers only after it sees EOF,
    // so the answer proves the FIN crossed both proxies while the other direction stayed open.
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    stream.write_all(&payload).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert_eq!(&answer[..5], b"echo:");
    assert_eq!(&answer[5..], &payload[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_to_an_unknown_service_is_refused_with_a_reason() {
    let echo = start_tcp_echo().await;
    let mesh = LocalMesh::start(&[("tcp:9000", echo)]);

    let mut stream = TcpStream::connect(mesh.client.outbound).await.unwrap();
    stream
        .write_all(b"CONNECT elsewhere.demo:22 HTTP/1.1\r\nHost: elsewhere.demo:22\r\n\r\n")
        .await
        .unwrap();
    let head = read_http_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.contains("strait-proxy-error: no-route"), "{head}");
}
