//! Connections: accepting them, serving HTTP/1 on each with the limits a server facing
//! untrusted clients needs, and a graceful stop.
//!
//! - A client must send a request's headers within `header_timeout` of connecting (or of the
//!   previous response): half-sent headers and idle keep-alive connections are closed, so slow
//!   clients cannot exhaust the file limit.
//! - A request body must keep arriving: a gap of `body_idle` between two pieces ends it with an
//!   error (the handler sees an interrupted upload), however long the whole transfer takes.
//! - What hyper refuses itself before any handler runs (an address or headers too long, a
//!   request that is not HTTP) it answers with an empty body; [`ErrorBodies`] gives those
//!   answers the API's error format.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tower::ServiceExt;

use coffer_types::ErrorBody;

/// How long a client may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To send a request's headers, from connecting or from the previous response.
    pub header: Duration,
    /// Between two pieces of a request body.
    pub body_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(30),
            body_idle: Duration::from_secs(60),
        }
    }
}

/// Serve `app` on `listener` until `stop` resolves; then stop accepting, let each connection
/// finish the request it is serving, and return once all have closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    let (stopping, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a sender; when all are gone, every connection has closed.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<Infallible>(1);
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: axum::http::Request<Incoming>| {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo::<SocketAddr>(addr));
            let body = idle_limited(Body::new(body), timeouts.body_idle);
            app.clone()
                .oneshot(axum::http::Request::from_parts(parts, body))
        });
        let http = http.clone();
        let mut stop_rx = stop_rx.clone();
        let open = open.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(ErrorBodies::new(tcp));
            let conn = http.serve_connection(io, service).with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let stopping = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %addr, "connection ended");
                    }
                }
                () = stopping => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(open);
    let _ = all_closed.recv().await;
}

/// `body`, ended with an error when no piece of it arrives for `idle`.
fn idle_limited(body: Body, idle: Duration) -> Body {
    let stream = body
        .into_data_stream()
        .timeout(idle)
        .map(move |piece| match piece {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "nothing arrived for {} seconds",
                    idle.as_secs_f64().round() as u64
                ),
            )),
        });
    Body::from_stream(stream)
}

/// A connection's byte stream that replaces the bodiless error responses hyper writes for
/// requests it cannot parse (status 400, 414 or 431 with `content-length: 0`; every response of
/// the API itself carries a body) by the same status with the API's error body.
struct ErrorBodies<T> {
    io: T,
    /// A replacement response, and how much of it is written.
    pending: Vec<u8>,
    sent: usize,
}

impl<T> ErrorBodies<T> {
    fn new(io: T) -> Self {
        ErrorBodies {
            io,
            pending: vec![],
            sent: 0,
        }
    }
}

/// The API's version of a response head hyper wrote without a body, if `head` is one.
fn with_error_body(head: &[u8]) -> Option<Vec<u8>> {
    let (status, code, message) = match head.get(..13)? {
        b"HTTP/1.1 400 " => (
            "400 Bad Request",
            "bad_request",
            "the request is not valid HTTP",
        ),
        b"HTTP/1.1 414 " => (
            "414 URI Too Long",
            "uri_too_long",
            "the request's address (URL) is too long",
        ),
        b"HTTP/1.1 431 " => (
            "431 Request Header Fields Too Large",
            "headers_too_large",
            "the request's headers are too large",
        ),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?.to_ascii_lowercase();
    if !text.ends_with("\r\n\r\n") || !text.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let body = serde_json::to_vec(&ErrorBody {
        error: message.into(),
        code: code.into(),
        field: None,
    })
    .expect("the error body serializes");
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncWrite + Unpin> ErrorBodies<T> {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ErrorBodies<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ErrorBodies<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        // Not vectored: hyper then hands over each head whole, in one write.
        if let Some(replacement) = with_error_body(buf) {
            this.pending = replacement;
            if let Poll::Ready(Err(e)) = this.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodiless_parse_errors_get_a_body() {
        let hyper = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(with_error_body(hyper).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        assert!(
            out.ends_with(
                r#"{"error":"the request's address (URL) is too long","code":"uri_too_long"}"#
            ),
            "{out}"
        );
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 40\r\n\r\n";
        assert!(with_error_body(ours).is_none());
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(with_error_body(ok).is_none());
    }
}
