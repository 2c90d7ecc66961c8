//! The patient notification gateway: practice status changes and appointment changes in,
//! rate-limited SMS, email and web push out, with nothing lost on a crash.
//!
//! The modules follow a message through the pipeline:
//! intake -> fan-out -> outbox -> dispatch -> providers, with the API on top and the store below.
//!
//! Tools stay out of the library and the shipped binary: the benchmarks are their own target
//! (`benches/gateway`), and test scaffolding (scratch databases, synthetic patients) lives in
//! `tests/support`.

/// The HTTP JSON API's handlers, one file per resource.
pub mod api;
/// Wiring the state together and running the API and workers.
pub mod app;
/// Who is calling and what they may do: API keys, console users and sessions, one `Principal`.
pub mod auth;
/// The `gateway` command line (`main.rs` only parses it): serve, keys, users, imports, demo.
pub mod cli;
/// Several instances on one database: heartbeats, shares of the rate limits, the leader.
pub mod cluster;
/// Typed settings from `config/default.toml`, a file and the environment.
pub mod config;
/// What messages cost: providers' prices, broadcasts' estimates and actuals, monthly costs.
pub mod cost;
/// Workers that claim due messages with a lease and hand them to providers.
pub mod dispatch;
/// Domain types that are valid by construction: NHS number, ODS code, phone, email, states.
pub mod domain;
/// Messages not confirmed delivered by their deadline, followed once on the next channel.
pub mod fallback;
/// One trigger into one outbox message per eligible patient, in batches.
pub mod fanout;
/// The one place routes are assembled: API, pages, ops routes, fallbacks and middleware.
pub mod http;
/// What comes in: status changes and patient lists, parsed and recorded.
pub mod intake;
/// Signed links: email unsubscribe and push invitation, one secret, one kind per prefix.
pub mod links;
/// Outgoing requests to addresses from outside: public addresses only, checked at connect.
pub mod outbound;
/// The outbox's rules: next state after a send, and the retry schedule.
pub mod outbox;
/// The provider plugins messages leave through.
pub mod providers;
/// Delivery receipts and patients' replies (STOP/START), checked and mapped to state.
pub mod receipts;
/// Message wording: Tera templates per key and channel.
pub mod render;
/// Time for fan-out and dispatch: the clock, practices' timezones, quiet hours.
pub mod schedule;
/// Storage traits with a SQLite and a PostgreSQL implementation.
pub mod store;
/// Logging set-up and Prometheus metrics.
pub mod telemetry;
/// Web pages: the admin console and the patients' push sign-up pages.
pub mod web;
