//! The poller against real loopback HTTP servers (axum on 127.0.0.1), with intervals of
//! tens of milliseconds. Each server is one handler that answers by path: routes are
//! declared only in `http/` (see `http/layout_test.rs`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::handler::{Handler, HandlerWithoutStateExt};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::*;
use crate::intake::sources::{MAX_DOCUMENT_BYTES, MAX_INCIDENTS};

const SUMMARY: &[u8] =
    include_bytes!("../../../../../tests/fixtures/sources/statuspage_summary.json");
const ATOM: &[u8] = include_bytes!("../../../../../tests/fixtures/sources/supplier_status.atom");

/// Records every delivery, with when it came.
#[derive(Default)]
struct Recorder {
    deliveries: Mutex<Vec<(String, Instant, Vec<Incident>)>>,
    /// Deliveries to refuse before taking any.
    refusals: AtomicUsize,
}

#[async_trait]
impl IncidentSink for Recorder {
    async fn incidents(&self, source: &Source, incidents: Vec<Incident>) -> Result<(), SinkError> {
        if self.refusals.load(Ordering::SeqCst) > 0 {
            self.refusals.fetch_sub(1, Ordering::SeqCst);
            return Err("the database is away".into());
        }
        self.lock()
            .push((source.name.clone(), Instant::now(), incidents));
        Ok(())
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Instant, Vec<Incident>)>> {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, name: &str) -> usize {
        self.lock().iter().filter(|(n, ..)| n == name).count()
    }

    fn times(&self, name: &str) -> Vec<Instant> {
        self.lock()
            .iter()
            .filter(|(n, ..)| n == name)
            .map(|(_, at, _)| *at)
            .collect()
    }

    fn last(&self, name: &str) -> Option<Vec<Incident>> {
        self.lock()
            .iter()
            .rev()
            .find(|(n, ..)| n == name)
            .map(|(.., incidents)| incidents.clone())
    }
}

/// Serves `handler` for every request on a loopback port.
async fn serve<H, T>(handler: H) -> SocketAddr
where
    H: Handler<T, ()> + Send + Sync + 'static,
    T: 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, handler.into_make_service()).await;
    });
    address
}

fn not_found() -> Response {
    StatusCode::NOT_FOUND.into_response()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn source(name: &str, kind: SourceKind, url: String, interval: Duration) -> Source {
    Source {
        name: name.into(),
        kind,
        url: url.parse().unwrap(),
        interval,
        timeout: ms(500),
        link: None,
        mapping: SourceMapping::default(),
    }
}

fn loopback() -> AddressPolicy {
    AddressPolicy::parse(&["127.0.0.0/8"]).unwrap()
}

/// Pollers leading from the start; the sender must be kept alive.
fn start(
    sources: Vec<Source>,
    addresses: AddressPolicy,
    sink: Arc<Recorder>,
    leading: bool,
) -> (Pollers, watch::Sender<bool>, CancellationToken) {
    let (leads, watching) = watch::channel(leading);
    let stop = CancellationToken::new();
    let pollers = spawn_pollers(
        sources,
        addresses,
        sink,
        watching,
        SourcesHealth::default(),
        stop.clone(),
    )
    .unwrap();
    (pollers, leads, stop)
}

async fn eventually(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ms(10)).await;
    }
}

/// A handler counting its requests into `hits`.
fn counted(hits: &Arc<AtomicUsize>) -> Arc<AtomicUsize> {
    hits.clone()
}

fn json(body: &'static [u8]) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// 50 MiB in 64 KiB chunks with no declared length, counting what the server produced.
fn fifty_megabytes(served: Arc<AtomicUsize>) -> Body {
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    let stream = futures_util::stream::iter((0..800).map(move |_| {
        served.fetch_add(chunk.len(), Ordering::SeqCst);
        Ok::<_, Infallible>(chunk.clone())
    }));
    Body::from_stream(stream)
}

#[tokio::test]
async fn statuspage_and_atom_sources_deliver_their_incidents() {
    let at = serve(|uri: Uri| async move {
        match uri.path() {
            "/api/v2/summary.json" => json(SUMMARY).into_response(),
            "/history.atom" => {
                ([(header::CONTENT_TYPE, "application/atom+xml")], ATOM).into_response()
            }
            _ => not_found(),
        }
    })
    .await;
    let sink = Arc::new(Recorder::default());
    let sources = vec![
        source(
            "emis",
            SourceKind::Statuspage,
            format!("http://{at}/api/v2/summary.json"),
            ms(100),
        ),
        source(
            "tpp",
            SourceKind::Feed,
            format!("http://127.0.0.1:{}/history.atom", at.port()),
            ms(100),
        ),
    ];
    let (pollers, _leads, stop) = start(sources, loopback(), sink.clone(), true);
    eventually("both deliveries", ms(3_000), || {
        sink.count("emis") > 0 && sink.count("tpp") > 0
    })
    .await;
    let summary = statuspage::parse_summary(SUMMARY).unwrap();
    let feed = feed::parse_feed(ATOM).unwrap();
    assert!(!summary.is_empty() && !feed.is_empty());
    assert_eq!(sink.last("emis").unwrap(), summary);
    assert_eq!(sink.last("tpp").unwrap(), feed);
    let health = pollers.health().get("emis").unwrap();
    assert!(health.last_success.is_some(), "{health:?}");
    assert_eq!(health.consecutive_failures, 0);
    assert_eq!(health.incidents, summary.len());
    assert!(health.next_poll.is_some());
    // Each successful poll delivers the whole list again: nothing is remembered here.
    eventually("a second delivery", ms(3_000), || sink.count("emis") >= 2).await;
    assert_eq!(sink.last("emis").unwrap(), summary);
    stop.cancel();
    pollers.stopped().await;
}

/// The `If-None-Match` and `If-Modified-Since` a request carried.
type Conditions = (Option<String>, Option<String>);

const MODIFIED: &str = "Fri, 19 Jul 2024 06:10:00 GMT";

/// A server of the summary with `ETag: "v1"` and a `Last-Modified`, answering 304 to
/// `If-None-Match: "v1"`, and the conditions each request carried.
async fn conditional_server() -> (SocketAddr, Arc<Mutex<Vec<Conditions>>>) {
    let seen: Arc<Mutex<Vec<Conditions>>> = Arc::default();
    let record = seen.clone();
    let at = serve(move |headers: HeaderMap| {
        let record = record.clone();
        async move {
            let value = |name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            };
            let etag = value(header::IF_NONE_MATCH);
            let since = value(header::IF_MODIFIED_SINCE);
            record
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((etag.clone(), since));
            if etag.as_deref() == Some("\"v1\"") {
                return StatusCode::NOT_MODIFIED.into_response();
            }
            (
                [
                    (header::ETAG, "\"v1\""),
                    (header::LAST_MODIFIED, MODIFIED),
                    (header::CONTENT_TYPE, "application/json"),
                ],
                SUMMARY,
            )
                .into_response()
        }
    })
    .await;
    (at, seen)
}

#[tokio::test]
async fn an_unchanged_document_is_not_delivered_again() {
    let (at, seen) = conditional_server().await;
    let sink = Arc::new(Recorder::default());
    let url = format!("http://{at}/summary.json");
    let (pollers, _leads, stop) = start(
        vec![source("emis", SourceKind::Statuspage, url, ms(50))],
        loopback(),
        sink.clone(),
        true,
    );
    let requests = || seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    eventually("four polls", ms(3_000), || requests().len() >= 4).await;
    assert_eq!(sink.count("emis"), 1, "a 304 delivered again");
    let requests = requests();
    assert_eq!(requests[0], (None, None), "the first poll is unconditional");
    for later in &requests[1..] {
        assert_eq!(
            later,
            &(Some("\"v1\"".into()), Some(MODIFIED.into())),
            "validators not sent back"
        );
    }
    let health = pollers.health().get("emis").unwrap();
    assert_eq!(health.consecutive_failures, 0);
    assert!(health.last_error.is_none(), "{health:?}");
    stop.cancel();
    pollers.stopped().await;
}

#[tokio::test]
async fn a_delivery_the_sink_refuses_is_fetched_whole_again() {
    let (at, seen) = conditional_server().await;
    let sink = Arc::new(Recorder::default());
    sink.refusals.store(1, Ordering::SeqCst);
    let url = format!("http://{at}/summary.json");
    let (pollers, _leads, stop) = start(
        vec![source("emis", SourceKind::Statuspage, url, ms(50))],
        loopback(),
        sink.clone(),
        true,
    );
    eventually("a delivery", ms(3_000), || sink.count("emis") == 1).await;
    let requests = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(
        requests[..2],
        [(None, None), (None, None)],
        "a 304 hid the list"
    );
    let health = pollers.health().get("emis").unwrap();
    let (_, error) = health.last_error.unwrap();
    assert!(error.contains("incidents not recorded"), "{error}");
    assert_eq!(health.consecutive_failures, 0);
    stop.cancel();
    pollers.stopped().await;
}

#[tokio::test]
async fn failing_sources_back_off_while_a_healthy_one_keeps_delivering() {
    let errors = Arc::new(AtomicUsize::new(0));
    let error_hits = counted(&errors);
    let served = Arc::new(AtomicUsize::new(0));
    let huge = served.clone();
    let at = serve(move |uri: Uri| {
        let (error_hits, huge) = (error_hits.clone(), huge.clone());
        async move {
            match uri.path() {
                "/ok.json" => json(SUMMARY).into_response(),
                "/error.json" => {
                    error_hits.fetch_add(1, Ordering::SeqCst);
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
                "/hang.json" => std::future::pending().await,
                "/huge.json" => fifty_megabytes(huge).into_response(),
                "/bad.json" => json(b"{\"incidents\": [{\"id\": ").into_response(),
                "/bad.atom" => "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><title>x</ti"
                    .into_response(),
                _ => not_found(),
            }
        }
    })
    .await;
    let url = |path: &str| format!("http://{at}/{path}");
    let failing = |name: &str, kind, path: &str| {
        let mut s = source(name, kind, url(path), ms(50));
        s.timeout = ms(150);
        s
    };
    let sources = vec![
        source("healthy", SourceKind::Statuspage, url("ok.json"), ms(100)),
        failing("error", SourceKind::Statuspage, "error.json"),
        failing("hang", SourceKind::Statuspage, "hang.json"),
        failing("huge", SourceKind::Statuspage, "huge.json"),
        failing("bad-json", SourceKind::Statuspage, "bad.json"),
        failing("bad-xml", SourceKind::Feed, "bad.atom"),
    ];
    let sink = Arc::new(Recorder::default());
    let started = Instant::now();
    let (pollers, _leads, stop) = start(sources, loopback(), sink.clone(), true);
    let health = pollers.health();
    let failing_names = ["error", "hang", "huge", "bad-json", "bad-xml"];
    eventually("every failing source to fail twice", ms(5_000), || {
        failing_names.iter().all(|name| {
            health
                .get(name)
                .is_some_and(|h| h.consecutive_failures >= 2)
        })
    })
    .await;
    tokio::time::sleep_until(started + ms(1_500)).await;
    let elapsed = started.elapsed();

    // The healthy source kept its interval throughout.
    let times = sink.times("healthy");
    let expected = (elapsed.as_millis() / 100) as usize;
    assert!(
        times.len() * 2 >= expected,
        "{} deliveries in {elapsed:?}",
        times.len()
    );
    let longest_gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest_gap < ms(600), "a gap of {longest_gap:?}");
    assert_eq!(health.get("healthy").unwrap().consecutive_failures, 0);

    // Each failure is recorded with a short reason; nothing was delivered.
    for (name, reason) in [
        ("error", "HTTP 500"),
        ("hang", "no complete answer within"),
        ("huge", "cap"),
        ("bad-json", "malformed"),
        ("bad-xml", "malformed"),
    ] {
        let h = health.get(name).unwrap();
        let (_, error) = h.last_error.clone().unwrap();
        assert!(error.contains(reason), "{name}: {error}");
        assert!(error.len() < 300, "{name}: {error}");
        assert!(h.last_success.is_none());
        assert_eq!(sink.count(name), 0);
    }
    // Backoff: every 50 ms would be about 30 polls by now.
    let polls = errors.load(Ordering::SeqCst);
    assert!(
        (2..=12).contains(&polls),
        "{polls} polls of a failing source"
    );

    stop.cancel();
    tokio::time::timeout(ms(2_000), pollers.stopped())
        .await
        .expect("pollers stop while a request hangs");
}

#[tokio::test]
async fn reading_stops_at_the_cap() {
    let served = Arc::new(AtomicUsize::new(0));
    let huge = served.clone();
    let declared = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    let at = serve(move |uri: Uri| {
        let (huge, declared) = (huge.clone(), declared.clone());
        async move {
            match uri.path() {
                "/streamed.json" => fifty_megabytes(huge).into_response(),
                "/declared.json" => declared.into_response(),
                _ => not_found(),
            }
        }
    })
    .await;
    let client = fetch::client(loopback()).unwrap();
    for path in ["streamed.json", "declared.json"] {
        let mut s = source(
            "huge",
            SourceKind::Statuspage,
            format!("http://{at}/{path}"),
            ms(50),
        );
        s.timeout = ms(5_000);
        let fetched = fetch::fetch(&client, &loopback(), &s, &Validators::default()).await;
        assert_eq!(
            fetched.unwrap_err(),
            PollError::TooLarge {
                cap: MAX_DOCUMENT_BYTES
            },
            "{path}"
        );
    }
    // The connection was dropped at the cap: the server got nowhere near 50 MiB out (what it
    // wrote beyond the cap sits in the sockets' buffers).
    tokio::time::sleep(ms(300)).await;
    let written = served.load(Ordering::SeqCst);
    assert!(written >= MAX_DOCUMENT_BYTES, "{written}");
    assert!(written < 20 * 1024 * 1024, "{written} bytes served");
}

#[tokio::test]
async fn an_internal_address_is_refused_unless_allowed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = counted(&hits);
    let at = serve(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { json(SUMMARY) }
    })
    .await;
    let sources = vec![
        source(
            "literal",
            SourceKind::Statuspage,
            format!("http://{at}/summary.json"),
            ms(50),
        ),
        source(
            "named",
            SourceKind::Statuspage,
            format!("http://localhost:{}/summary.json", at.port()),
            ms(50),
        ),
    ];
    let sink = Arc::new(Recorder::default());
    let (pollers, _leads, stop) = start(
        sources.clone(),
        AddressPolicy::default(),
        sink.clone(),
        true,
    );
    let health = pollers.health();
    eventually("both refused", ms(3_000), || {
        ["literal", "named"].iter().all(|name| {
            health
                .get(name)
                .is_some_and(|h| h.consecutive_failures >= 1)
        })
    })
    .await;
    for name in ["literal", "named"] {
        let (_, error) = health.get(name).unwrap().last_error.unwrap();
        assert_eq!(error, "address not allowed", "{name}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a request reached loopback");
    assert_eq!(sink.count("literal") + sink.count("named"), 0);
    stop.cancel();
    pollers.stopped().await;

    // Allowed, the same sources are read.
    let (pollers, _leads, stop) = start(sources[..1].to_vec(), loopback(), sink.clone(), true);
    eventually("a delivery", ms(3_000), || sink.count("literal") > 0).await;
    stop.cancel();
    pollers.stopped().await;
}

#[tokio::test]
async fn polls_run_only_while_leading() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = counted(&hits);
    let at = serve(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { json(SUMMARY) }
    })
    .await;
    let s = source(
        "emis",
        SourceKind::Statuspage,
        format!("http://{at}/summary.json"),
        ms(50),
    );
    let sink = Arc::new(Recorder::default());
    let (pollers, leads, stop) = start(vec![s], loopback(), sink.clone(), false);
    tokio::time::sleep(ms(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "polled without leading");
    assert_eq!(pollers.health().get("emis").unwrap().next_poll, None);

    leads.send_replace(true);
    eventually("a delivery once leading", ms(3_000), || {
        sink.count("emis") > 0
    })
    .await;

    leads.send_replace(false);
    tokio::time::sleep(ms(200)).await;
    let after = hits.load(Ordering::SeqCst);
    tokio::time::sleep(ms(300)).await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        after,
        "polled after losing the lead"
    );
    stop.cancel();
    pollers.stopped().await;
}

#[test]
fn backoff_doubles_with_jitter_up_to_its_cap() {
    let interval = Duration::from_secs(60);
    for failures in 1..=12 {
        let base = interval
            .saturating_mul(1 << failures)
            .min(Duration::from_secs(600));
        let low = backoff(interval, failures, 0.0);
        let high = backoff(interval, failures, 0.999_999);
        assert_eq!(low, (base / 2).max(interval), "{failures}");
        assert!(high <= base && high > base.mul_f64(0.99), "{failures}");
    }
    assert_eq!(backoff(interval, 1, 0.0), interval);
    assert_eq!(backoff(interval, u32::MAX, 0.5), Duration::from_secs(450));
    // A fast source's cap is ten intervals; a slow one's is its own interval.
    assert_eq!(backoff_cap(ms(100)), Duration::from_secs(1));
    assert_eq!(
        backoff_cap(Duration::from_secs(60)),
        Duration::from_secs(600)
    );
    let hourly = Duration::from_secs(3600);
    assert_eq!(backoff_cap(hourly), hourly);
    assert_eq!(backoff(hourly, 5, 0.0), hourly);
}

#[test]
fn a_configured_source_maps_components_and_keywords() {
    let config = SourceConfig {
        name: "emis".into(),
        kind: SourceKind::Statuspage,
        url: "https://status.emis.test/api/v2/summary.json".into(),
        interval_seconds: 60,
        timeout_seconds: 10,
        link: Some("https://status.emis.test/".into()),
        components: BTreeMap::from([("EMIS Web".into(), "emis-web".into())]),
        keywords: BTreeMap::from([("Spine".into(), "spine".into())]),
    };
    let s = Source::from_config(&config).unwrap();
    assert_eq!(s.interval, Duration::from_secs(60));
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert_eq!(
        s.mapping.rules,
        [
            MappingRule::Component {
                component: "EMIS Web".into(),
                tag: "emis-web".into()
            },
            MappingRule::Keyword {
                keyword: "Spine".into(),
                tag: "spine".into()
            }
        ]
    );
    let incidents = s.parse(SUMMARY).unwrap();
    assert!(incidents.len() <= MAX_INCIDENTS);
    assert!(incidents
        .iter()
        .any(|i| s.mapping.tags_for(i).contains("emis-web")));
    let bad = SourceConfig {
        url: "not a url".into(),
        ..config
    };
    assert!(Source::from_config(&bad).is_err());
}
