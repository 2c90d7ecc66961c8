//! A request id on every request: the client's `X-Request-Id` if it is a short run of visible
//! ASCII, else a fresh one. It is echoed in the response's `X-Request-Id`, carried by the
//! request's tracing span (so every log line the request causes names it) and put in every
//! error body, so a support call can quote one id that finds the lines in the logs.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use rand::RngCore;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The header a request id travels in, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client; a longer one is replaced.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    /// The id of the request this task is answering.
    static CURRENT: RequestId;
}

/// A request's id, in the request's extensions and (while it is answered) its task.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The id of the request being answered on this task, if any (error bodies quote it).
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.0.clone()).ok()
}

/// The client's id if it is 1 to [`MAX_LEN`] visible ASCII characters, else a new random one.
fn chosen(given: Option<&HeaderValue>) -> String {
    given
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let mut bytes = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        })
}

/// Middleware: picks the request's id, answers within its scope and echoes it.
async fn tag(mut request: Request, next: Next) -> Response {
    let id = chosen(request.headers().get(&HEADER));
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = CURRENT
        .scope(RequestId(id.clone()), next.run(request))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// `router` with request ids and request tracing: one span per request, at info level,
/// naming its id, method and route (the route's pattern, never the path, which may hold a
/// token), and one line when it is answered.
pub fn traced<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request
                        .extensions()
                        .get::<RequestId>()
                        .map(|id| id.0.as_str())
                        .unwrap_or_default();
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str)
                        .unwrap_or("unmatched");
                    tracing::info_span!(
                        "request",
                        request_id = %id,
                        method = %request.method(),
                        route = %route,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(axum::middleware::from_fn(tag))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::config::LogFormat;
    use crate::http::ApiError;

    #[test]
    fn only_short_visible_ascii_ids_are_taken() {
        let taken = |v: &str| chosen(Some(&HeaderValue::from_str(v).unwrap()));
        assert_eq!(taken("abc-123_X.y"), "abc-123_X.y");
        assert_eq!(taken(&"a".repeat(MAX_LEN)), "a".repeat(MAX_LEN));
        for refused in ["", "has space", &"a".repeat(MAX_LEN + 1)] {
            let id = taken(refused);
            assert_eq!(id.len(), 32, "{refused:?} gave {id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        let non_ascii = HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap();
        assert_eq!(chosen(Some(&non_ascii)).len(), 32);
        assert_ne!(chosen(None), chosen(None));
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn the_clients_id_is_in_the_log_line_the_error_body_and_the_header() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(crate::telemetry::logs::layer(
            LogFormat::Json,
            buffer.clone(),
            false,
        ));
        let _guard = tracing::subscriber::set_default(subscriber);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (header, body) = runtime.block_on(async {
            // A fallback, not a route: routes are declared only in `http/mod.rs`.
            let app = traced(
                Router::new().fallback(|| async { ApiError::NotFound("no such thing".into()) }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            let response = reqwest::Client::new()
                .get(format!("http://{address}/refused"))
                .header("x-request-id", "support-call-7")
                .send()
                .await
                .unwrap();
            let header = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            let body: serde_json::Value = response.json().await.unwrap();
            (header, body)
        });
        assert_eq!(header, "support-call-7");
        assert_eq!(body["error"]["request_id"], "support-call-7", "{body}");
        let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let answered: Vec<serde_json::Value> = logged
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .filter(|line: &serde_json::Value| {
                line["span"]["request_id"] == "support-call-7"
                    && line["fields"]["message"] == "finished processing request"
            })
            .collect();
        assert_eq!(answered.len(), 1, "{logged}");
        assert_eq!(answered[0]["span"]["route"], "unmatched", "{logged}");
        assert_eq!(answered[0]["fields"]["status"], 404, "{logged}");
    }
}
