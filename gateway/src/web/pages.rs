//! The page templates (`templates/web/`, built into the binary) and how pages are answered:
//! HTML with a strict Content-Security-Policy, no caching, and framing refused.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use tera::{Context, Tera};

/// Every page template, by name.
const PAGES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../../templates/web/base.html"),
    ),
    (
        "api/docs.html",
        include_str!("../../../templates/web/api/docs.html"),
    ),
    (
        "console/users.html",
        include_str!("../../../templates/web/console/users.html"),
    ),
    (
        "console/signin.html",
        include_str!("../../../templates/web/console/signin.html"),
    ),
    (
        "console/practices.html",
        include_str!("../../../templates/web/console/practices.html"),
    ),
    (
        "console/practice.html",
        include_str!("../../../templates/web/console/practice.html"),
    ),
    (
        "public/status.html",
        include_str!("../../../templates/web/public/status.html"),
    ),
    (
        "public/banner.html",
        include_str!("../../../templates/web/public/banner.html"),
    ),
    (
        "public/banner_page.html",
        include_str!("../../../templates/web/public/banner_page.html"),
    ),
    (
        "console/approvals.html",
        include_str!("../../../templates/web/console/approvals.html"),
    ),
    (
        "console/notice_fields.html",
        include_str!("../../../templates/web/console/notice_fields.html"),
    ),
    (
        "console/scheduled.html",
        include_str!("../../../templates/web/console/scheduled.html"),
    ),
    (
        "console/broadcast.html",
        include_str!("../../../templates/web/console/broadcast.html"),
    ),
    (
        "console/templates.html",
        include_str!("../../../templates/web/console/templates.html"),
    ),
    (
        "console/template.html",
        include_str!("../../../templates/web/console/template.html"),
    ),
    (
        "console/group_new.html",
        include_str!("../../../templates/web/console/group_new.html"),
    ),
    (
        "console/group.html",
        include_str!("../../../templates/web/console/group.html"),
    ),
    (
        "console/audit.html",
        include_str!("../../../templates/web/console/audit.html"),
    ),
    (
        "error.html",
        include_str!("../../../templates/web/error.html"),
    ),
    (
        "push/signup.html",
        include_str!("../../../templates/web/push/signup.html"),
    ),
    (
        "push/stop.html",
        include_str!("../../../templates/web/push/stop.html"),
    ),
];

fn tera() -> &'static Result<Tera, String> {
    static TERA: OnceLock<Result<Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut tera = Tera::new();
        tera.autoescape_on([".html"]);
        tera.add_raw_templates(PAGES.iter().copied())
            .map_err(|e| e.to_string())?;
        Ok(tera)
    })
}

/// Renders page `name` with `context` to its HTML, for answers that set their own headers.
pub fn render(name: &str, context: &Context) -> Result<String, String> {
    match tera() {
        Ok(tera) => tera.render(name, context).map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    }
}

/// Renders page `name` with `context` and the security headers every page carries.
pub fn page(status: StatusCode, name: &str, context: &Context) -> Response {
    let rendered = match tera() {
        Ok(tera) => tera.render(name, context).map_err(|e| e.to_string()),
        Err(e) => Err(e.clone()),
    };
    match rendered {
        Ok(html) => with_headers((status, Html(html)).into_response()),
        Err(e) => {
            tracing::error!(page = name, error = %e, "page did not render");
            with_headers(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Html("<h1>Something went wrong</h1>".to_string()),
                )
                    .into_response(),
            )
        }
    }
}

/// A page saying what went wrong, with `status`.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let mut context = Context::new();
    context.insert("status", &status.as_u16());
    context.insert("message", message);
    page(status, "error.html", &context)
}

/// A static file (script or style) built into the binary.
pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
