//! Every JSON answer the suite's client receives from `/api/v1` is checked against the
//! OpenAPI document (`gateway::http::openapi::document`): the schema of its operation and
//! status, or of `default`. An answer the document does not describe fails the test that
//! received it, so every end-to-end test is also a test of the document.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use gateway::http::openapi::{document, PREFIX};
use jsonschema::Validator;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Validators by `METHOD path-template status`, compiled once per test binary.
fn cache() -> &'static Mutex<HashMap<String, Arc<Validator>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Validator>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The documented path template `path` (without its query) falls under, preferring the
/// template with the most literal segments (`/patients/import` over `/patients/{nhs}`).
fn template_of(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    document()["paths"]
        .as_object()?
        .keys()
        .filter_map(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (part, segment) in parts.iter().zip(&segments) {
                if part.starts_with('{') && part.ends_with('}') {
                    if segment.is_empty() {
                        return None;
                    }
                } else if part == segment {
                    literal += 1;
                } else {
                    return None;
                }
            }
            Some((literal, template.as_str()))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, template)| template)
}

/// The schema the document gives for this answer, with where it was found; `Err` when the
/// document does not describe it.
fn expected(method: &Method, path: &str, status: StatusCode) -> Result<(String, Value), String> {
    let error_body = json!({ "$ref": "#/components/schemas/ErrorBody" });
    let Some(template) = template_of(path) else {
        // No such route: the router's fallback answers with the error body.
        return Ok((format!("{method} {path} (no route)"), error_body));
    };
    let method_name = method.as_str().to_lowercase();
    let Some(operation) = document()["paths"][template].get(&method_name) else {
        return Ok((format!("{method} {template} (no such method)"), error_body));
    };
    let responses = &operation["responses"];
    let code = status.as_str();
    let answer = responses
        .get(code)
        .or_else(|| responses.get("default"))
        .ok_or_else(|| format!("{method} {template} does not document status {code}"))?;
    let schema = answer["content"]["application/json"]["schema"].clone();
    if schema.is_null() {
        return Err(format!(
            "{method} {template} documents no JSON body for status {code}"
        ));
    }
    Ok((format!("{method} {template} {code}"), schema))
}

/// Checks one answer from the gateway. Only JSON answers under `/api/v1` are checked; an
/// empty answer must be one the document gives no body.
pub fn check(method: &Method, path: &str, status: StatusCode, content_type: &str, body: &Value) {
    let path = path.split('?').next().unwrap_or(path);
    if !path.starts_with(PREFIX) || !content_type.starts_with("application/json") {
        return;
    }
    let (at, schema) = match expected(method, path, status) {
        Ok(found) => found,
        Err(problem) => {
            panic!("the OpenAPI document does not describe this answer: {problem}\n{body}")
        }
    };
    let validator = {
        let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(&at) {
            Some(v) => v.clone(),
            None => {
                let root = json!({ "allOf": [schema], "components": document()["components"] });
                let compiled = jsonschema::options()
                    .should_validate_formats(true)
                    .build(&root)
                    .unwrap_or_else(|e| {
                        panic!("{at}: the document's schema does not compile: {e}")
                    });
                let compiled = Arc::new(compiled);
                cache.insert(at.clone(), compiled.clone());
                compiled
            }
        }
    };
    let problems: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("  at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "the answer to {at} does not match the OpenAPI document:\n{}\nbody: {body}",
        problems.join("\n")
    );
}
