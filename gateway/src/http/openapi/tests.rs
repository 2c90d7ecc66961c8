//! The document is valid OpenAPI 3.1, names exactly the routes the router nests under
//! `/api/v1`, and every schema in it compiles with its references resolved.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{document, PREFIX};
use crate::http::layout_test::{declared_routes, Declared};

/// The official JSON Schema of OpenAPI 3.1 documents (OAI/OpenAPI-Specification,
/// `schemas/v3.1/schema.json`, `$id` `https://spec.openapis.org/oas/3.1/schema/2022-10-07`).
const OPENAPI_3_1_SCHEMA: &str = include_str!("../../../../tests/fixtures/openapi-3.1-schema.json");

/// The router's source, whose `api_routes` lists what is nested under `/api/v1`.
const ROUTER_SOURCE: &str = include_str!("../mod.rs");

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[test]
fn the_document_is_valid_openapi_3_1() {
    let schema: Value = serde_json::from_str(OPENAPI_3_1_SCHEMA).expect("the schema is JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let document = document();
    assert_eq!(document["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
    let problems: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect();
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Every `.route(...)` inside `fn api_routes` in `http/mod.rs`.
fn api_routes() -> Vec<Declared> {
    let body = ROUTER_SOURCE
        .split("fn api_routes()")
        .nth(1)
        .and_then(|rest| rest.split("\n}\n").next())
        .expect("http/mod.rs has fn api_routes");
    declared_routes(body)
}

#[test]
fn every_api_route_is_documented_and_nothing_else() {
    let routes = api_routes();
    assert!(routes.len() > 40, "the scan found only {routes:?}");
    let declared: BTreeSet<(String, String)> = routes
        .iter()
        .flat_map(|route| {
            route
                .handlers
                .iter()
                .map(|(method, _)| (format!("{PREFIX}{}", route.path), method.to_lowercase()))
        })
        .collect();
    let paths = document()["paths"].as_object().expect("paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (path.clone(), m.to_string()))
        })
        .collect();
    let missing: Vec<_> = declared.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&declared).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without documentation: {missing:?}\ndocumented but not routed: {extra:?}"
    );
}

#[test]
fn operations_have_unique_ids_tags_and_answers() {
    let mut ids = BTreeSet::new();
    for (path, item) in document()["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_string()),
                "{method} {path}: id {id:?} twice"
            );
            assert!(operation["tags"][0].is_string(), "{method} {path}: no tag");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path}: no success answer"
            );
            assert!(responses.contains_key("default"), "{method} {path}");
        }
    }
}

/// Every schema of parameters, bodies and answers under `at`, with its pointer.
fn schemas(at: &str, value: &Value, found: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let pointer = format!("{at}/{}", key.replace('~', "~0").replace('/', "~1"));
                if key == "schema" {
                    found.push((pointer.clone(), inner.clone()));
                }
                schemas(&pointer, inner, found);
            }
        }
        Value::Array(items) => {
            for (i, inner) in items.iter().enumerate() {
                schemas(&format!("{at}/{i}"), inner, found);
            }
        }
        _ => {}
    }
}

#[test]
fn every_schema_compiles_with_its_references() {
    let document = document();
    let components = &document["components"];
    let mut found = Vec::new();
    schemas("", &document["paths"], &mut found);
    for (name, schema) in components["schemas"].as_object().expect("schemas") {
        found.push((format!("components/schemas/{name}"), schema.clone()));
    }
    assert!(found.len() > 80, "only {} schemas", found.len());
    for (at, schema) in found {
        let root = json!({ "allOf": [schema], "components": components });
        if let Err(e) = jsonschema::draft202012::new(&root) {
            panic!("{at}: {e}");
        }
    }
}
