//! OTLP push failures are said once, at warn, and the recovery once, at info
//! (the SDK logs nothing in this build). Its own test binary: the log
//! capture is the process's global subscriber.

#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used)] // tests fail by panicking

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fetchq_testing::TestDb;
use fetchq_worker::{HandlerOptions, OtlpOptions, Outcome, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{eventually, handler};

/// A log sink the test reads.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self, having: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).to_string();
        text.lines().filter(|l| l.contains(having)).count()
    }
}

#[tokio::test]
async fn a_collector_down_then_up_is_one_warning_and_one_recovery() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("fetchq_worker=info")
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();
    let db = TestDb::new().await;
    db.client.queue_create("q").await.unwrap();
    // a port nobody listens on, for now
    let port = common::free_port();
    let h = handler(HandlerOptions::new("q"), |_doc, _ctx| {
        Box::pin(async { Ok(Outcome::complete()) })
    });
    let rt = Runtime::new(db.pool.clone())
        .handle_signals(false)
        .otlp(
            OtlpOptions::new()
                .endpoint(format!("http://127.0.0.1:{port}"))
                .interval(Duration::from_millis(100)),
        )
        .register(h);
    let stop = rt.shutdown_token();
    let run = tokio::spawn(rt.run());
    // ten refused pushes or so: one warning
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(logs.lines("otlp: pushing metrics failed"), 1);
    // the collector comes up: one recovery line
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                // one answer per read is enough for these small pushes
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                    if stream.write_all(ok.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    eventually(Duration::from_secs(10), "the recovery said", || async {
        logs.lines("otlp: pushing metrics works again") == 1
    })
    .await;
    stop.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(logs.lines("otlp: pushing metrics failed"), 1);
    assert_eq!(logs.lines("otlp: pushing metrics works again"), 1);
}
