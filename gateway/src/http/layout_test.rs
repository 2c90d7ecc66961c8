//! Keeps the shape `http` promises: every route is declared in `http/`, `api` and `web` do not
//! import each other, `auth` sits below all three, and the code map in `docs/architecture.md`
//! names every route with its handlers. A plain scan of the source tree, so a route added
//! anywhere else, an import across, or a route the map misses fails `cargo test` with the
//! place to look.

use std::path::{Path, PathBuf};

/// The library's source, from the package root.
const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway/src");

/// The architecture record, whose code map names every route and its handlers.
const ARCHITECTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/architecture.md");

/// Every `.rs` file under `dir`, as (path relative to `SOURCE` with `/` separators, text).
fn sources(dir: &Path, found: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(SOURCE)
                .expect("under the source root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            found.push((relative, text));
        }
    }
}

/// The file's lines without comments (a line's text from `//` on), numbered from 1. Good
/// enough for this source: no string literal here holds `//` before a path or a route.
fn code_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split("//").next().unwrap_or("")))
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `line` names this crate's module `module`: `crate::module` or `super::module`
/// anywhere, a bare `module::` path (after `use crate::module;`), or the name inside a
/// `use crate::{...}` group. Inside another crate's group (`use axum::{http::HeaderMap}`) a
/// bare path is that crate's.
fn names_module(line: &str, module: &str, group: Option<Group>) -> bool {
    let whole_word_at = |at: usize, len: usize| {
        line[..at].chars().next_back().is_none_or(|c| !is_ident(c))
            && line[at + len..].chars().next().is_none_or(|c| !is_ident(c))
    };
    let words = || {
        line.match_indices(module)
            .filter(move |(at, m)| whole_word_at(*at, m.len()))
            .map(|(at, _)| at)
    };
    let rooted =
        words().any(|at| line[..at].ends_with("crate::") || line[..at].ends_with("super::"));
    let bare_path = group.is_none()
        && words().any(|at| {
            line[at + module.len()..].starts_with("::")
                && line[..at].chars().next_back().is_none_or(|c| c != ':')
        });
    let in_crate_group = group == Some(Group::Crate) && words().next().is_some();
    rooted || bare_path || in_crate_group
}

/// The `use` group a line is inside: the crate root's (`use crate::{...}`), whose names are
/// this crate's modules, or another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Crate,
    Other,
}

/// Where a `use` group opens on `line`: the index of its `{` and whose group it is.
fn group_opening(line: &str) -> Option<(usize, Group)> {
    let statement = line.trim_start();
    let after_use = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
        .iter()
        .find_map(|prefix| statement.strip_prefix(prefix))?;
    let brace = after_use.find('{')?;
    let root = after_use[..brace].trim();
    let at = line.len() - after_use.len() + brace;
    Some((
        at,
        if root == "crate::" {
            Group::Crate
        } else {
            Group::Other
        },
    ))
}

/// Where (line numbers) a file names this crate's module `module`.
fn mentions(text: &str, module: &str) -> Vec<usize> {
    let mut hits = Vec::new();
    let mut open: Option<(Group, usize)> = None;
    for (number, line) in code_lines(text) {
        let mut from = 0;
        if open.is_none() {
            if let Some((at, group)) = group_opening(line) {
                open = Some((group, 0));
                from = at;
            }
        }
        if names_module(line, module, open.map(|(group, _)| group)) {
            hits.push(number);
        }
        if let Some((_, depth)) = open.as_mut() {
            for c in line[from..].chars() {
                match c {
                    '{' => *depth += 1,
                    '}' => *depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            if *depth == 0 {
                open = None;
            }
        }
    }
    hits
}

/// Where a file declares routes: `.route(`, `.nest(`, their `_service` forms, a new or typed
/// `Router`, and `.merge(` in a file that uses axum's `Router` (figment also merges).
fn route_declarations(text: &str) -> Vec<usize> {
    let uses_router = code_lines(text)
        .iter()
        .any(|(_, line)| line.contains("Router"));
    code_lines(text)
        .into_iter()
        .filter(|(_, line)| {
            [
                ".route(",
                ".route_service(",
                ".nest(",
                ".nest_service(",
                "Router::new()",
                "Router<",
            ]
            .iter()
            .any(|needle| line.contains(needle))
                || (uses_router && line.contains(".merge("))
        })
        .map(|(number, _)| number)
        .collect()
}

#[test]
fn routes_are_declared_only_in_http_and_api_and_web_stay_apart() {
    let mut files = Vec::new();
    sources(Path::new(SOURCE), &mut files);
    assert!(
        files.iter().any(|(path, _)| path == "http/mod.rs"),
        "the scan did not find the source tree at {SOURCE}"
    );
    let mut problems = Vec::new();
    for (path, text) in &files {
        if !path.starts_with("http/") {
            for line in route_declarations(text) {
                problems.push(format!(
                    "{path}:{line}: declares a route; routes belong in gateway/src/http/"
                ));
            }
        }
        let forbidden: &[&str] = match path.split('/').next() {
            Some("api") => &["web"],
            Some("web") => &["api"],
            Some("auth") => &["api", "web", "http"],
            _ => &[],
        };
        for module in forbidden {
            for line in mentions(text, module) {
                problems.push(format!(
                    "{path}:{line}: uses `{module}`; share through auth, http or a service instead"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// A route as `http/` declares it: its path and each method with its handler
/// (`module::function`, `crate::` dropped; `None` for an inline closure).
#[derive(Debug, PartialEq)]
pub(super) struct Declared {
    pub(super) path: String,
    pub(super) handlers: Vec<(String, Option<String>)>,
}

/// The text from an opening parenthesis at `open` to its match, without either.
fn inside_parentheses(text: &str, open: usize) -> &str {
    let mut depth = 0usize;
    for (at, c) in text[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..open + at];
                }
            }
            _ => {}
        }
    }
    &text[open + 1..]
}

/// Every `.route(...)` in a file, with rustfmt's line breaks undone.
pub(super) fn declared_routes(text: &str) -> Vec<Declared> {
    let flat: String = code_lines(text)
        .iter()
        .map(|(_, line)| line.trim())
        .collect();
    let mut routes = Vec::new();
    for (at, _) in flat.match_indices(".route(") {
        let arguments = inside_parentheses(&flat, at + ".route".len());
        let Some(path) = arguments.split('"').nth(1) else {
            continue;
        };
        let mut handlers = Vec::new();
        for method in ["get", "post", "put", "patch", "delete"] {
            for (found, _) in arguments.match_indices(&format!("{method}(")) {
                let before = arguments[..found].chars().next_back();
                if before.is_some_and(|c| is_ident(c) || c == ':') {
                    continue;
                }
                let handler = inside_parentheses(arguments, found + method.len());
                let named = handler.chars().all(|c| is_ident(c) || c == ':');
                handlers.push((
                    method.to_uppercase(),
                    named.then(|| handler.trim_start_matches("crate::").to_string()),
                ));
            }
        }
        routes.push(Declared {
            path: path.to_string(),
            handlers,
        });
    }
    routes
}

#[test]
fn the_code_map_names_every_route_and_its_handlers() {
    let mut files = Vec::new();
    sources(&Path::new(SOURCE).join("http"), &mut files);
    let routes: Vec<Declared> = files
        .iter()
        .filter(|(path, _)| path != "http/layout_test.rs")
        .flat_map(|(_, text)| declared_routes(text))
        .collect();
    assert!(routes.len() > 40, "the scan found only {routes:?}");
    let map = std::fs::read_to_string(ARCHITECTURE)
        .unwrap_or_else(|e| panic!("cannot read {ARCHITECTURE}: {e}"));
    let rows: Vec<&str> = map.lines().filter(|l| l.starts_with("| `/")).collect();
    let mut problems = Vec::new();
    for route in &routes {
        let cell = format!("| `{}` |", route.path);
        let Some(row) = rows.iter().find(|row| row.starts_with(&cell)) else {
            problems.push(format!("{} is not in the code map", route.path));
            continue;
        };
        for (method, handler) in &route.handlers {
            let named = handler
                .as_ref()
                .is_none_or(|h| row.contains(&format!("{h}`")));
            if !row.contains(&format!("{method} ")) || !named {
                problems.push(format!(
                    "{}: the code map does not say {method} {}",
                    route.path,
                    handler.as_deref().unwrap_or("(inline)")
                ));
            }
        }
    }
    if rows.len() != routes.len() {
        problems.push(format!(
            "the code map has {} route rows for {} routes",
            rows.len(),
            routes.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "docs/architecture.md, section Code map:\n{}",
        problems.join("\n")
    );
}

#[test]
fn route_declarations_are_read_across_lines() {
    let text = ".route(\n    \"/a/{id}\",\n    get(x::show).post(crate::y::save),\n)\n.route(\"/h\", get(|| async { \"ok\" }))";
    assert_eq!(
        declared_routes(text),
        [
            Declared {
                path: "/a/{id}".into(),
                handlers: vec![
                    ("GET".into(), Some("x::show".into())),
                    ("POST".into(), Some("y::save".into())),
                ],
            },
            Declared {
                path: "/h".into(),
                handlers: vec![("GET".into(), None)],
            },
        ]
    );
}

#[test]
fn the_scan_sees_what_it_is_meant_to() {
    assert_eq!(mentions("use crate::web::session;", "web"), [1]);
    assert_eq!(
        mentions("use crate::web;\nweb::pages::page()", "web"),
        [1, 2]
    );
    assert_eq!(mentions("use crate::{\n    api,\n    web,\n};", "web"), [3]);
    assert_eq!(mentions("use crate::{a::{b, c}, web};", "web"), [1]);
    assert!(mentions("use crate::webhook;\n// crate::web", "web").is_empty());
    assert!(mentions("use crate::{a::{b}};\nlet web = 1;", "web").is_empty());
    assert!(mentions("crate::providers::webpush::x", "web").is_empty());
    assert!(mentions("use axum::http::HeaderMap;", "http").is_empty());
    assert!(mentions(
        "use axum::{\n    http::HeaderMap,\n};\nlet s = axum::http::StatusCode::OK;",
        "http"
    )
    .is_empty());
    assert_eq!(
        mentions(
            "use crate::auth::Principal;\nuse crate::http::ApiError;",
            "http"
        ),
        [2]
    );
    assert_eq!(mentions("use super::super::web::pages;", "web"), [1]);
    assert_eq!(
        route_declarations("let r = Router::new()\n    .route(\"/x\", get(x));"),
        [1, 2]
    );
    assert!(route_declarations("figment.merge(Toml::file(path))").is_empty());
    assert_eq!(
        route_declarations("r: Router<AppState>,\nr.merge(other)"),
        [1, 2]
    );
}
