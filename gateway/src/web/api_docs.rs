//! `/api/docs`: the API's reference, rendered on the server from the OpenAPI document
//! (`http::openapi`), so it can never disagree with `/api/v1/openapi.json`. Operations are
//! grouped by tag with their parameters, bodies, answers and examples; the schemas follow,
//! each linked from where it is used. Nothing is fetched from elsewhere: the page and its
//! stylesheet are built into the binary, and it needs no script.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use tera::Context;

use super::pages;
use crate::http::openapi::document;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `GET /api/docs`.
pub(crate) async fn page() -> Response {
    let view = Reference::of(document());
    match Context::from_serialize(&view) {
        Ok(context) => pages::page(StatusCode::OK, "api/docs.html", &context),
        Err(e) => {
            tracing::error!(error = %e, "the API reference did not render");
            pages::error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong.")
        }
    }
}

/// `/static/api-docs.css`.
pub(crate) async fn stylesheet() -> Response {
    pages::asset(
        "text/css; charset=utf-8",
        include_str!("../../../static/api-docs.css"),
    )
}

/// The whole page.
#[derive(Serialize)]
struct Reference {
    title: String,
    version: String,
    description: String,
    tags: Vec<Tag>,
    schemas: Vec<SchemaView>,
}

/// One tag's operations.
#[derive(Serialize)]
struct Tag {
    name: String,
    description: String,
    operations: Vec<Operation>,
}

#[derive(Serialize)]
struct Operation {
    /// The page anchor: the operation id.
    id: String,
    method: String,
    path: String,
    summary: String,
    description: String,
    /// Whether it needs `Authorization: Bearer`.
    needs_key: bool,
    parameters: Vec<Parameter>,
    request: Vec<Body>,
    responses: Vec<Answer>,
}

#[derive(Serialize)]
struct Parameter {
    name: String,
    location: String,
    required: bool,
    kind: Kind,
    description: String,
}

/// A body of one media type, with its schema and example.
#[derive(Serialize)]
struct Body {
    media_type: String,
    kind: Kind,
    /// Pretty JSON, or the text itself for a text example.
    example: Option<String>,
}

#[derive(Serialize)]
struct Answer {
    status: String,
    description: String,
    bodies: Vec<Body>,
}

#[derive(Serialize)]
struct SchemaView {
    name: String,
    description: String,
    kind: Kind,
    properties: Vec<Property>,
    example: Option<String>,
}

#[derive(Serialize)]
struct Property {
    name: String,
    required: bool,
    kind: Kind,
    description: String,
}

/// A schema's type in words, linked to the named schema it is (or holds), if any.
#[derive(Serialize)]
struct Kind {
    text: String,
    link: Option<String>,
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

impl Reference {
    fn of(document: &Value) -> Self {
        let mut tags: Vec<Tag> = document["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| Tag {
                name: text(&t["name"]),
                description: text(&t["description"]),
                operations: Vec::new(),
            })
            .collect();
        for (path, item) in document["paths"].as_object().into_iter().flatten() {
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let tag = text(&operation["tags"][0]);
                let index = match tags.iter().position(|t| t.name == tag) {
                    Some(i) => i,
                    None => {
                        tags.push(Tag {
                            name: tag,
                            description: String::new(),
                            operations: Vec::new(),
                        });
                        tags.len() - 1
                    }
                };
                tags[index]
                    .operations
                    .push(Operation::of(method, path, operation));
            }
        }
        tags.retain(|t| !t.operations.is_empty());
        let schemas = document["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, schema)| SchemaView::of(name, schema))
            .collect();
        Self {
            title: text(&document["info"]["title"]),
            version: text(&document["info"]["version"]),
            description: text(&document["info"]["description"]),
            tags,
            schemas,
        }
    }
}

impl Operation {
    fn of(method: &str, path: &str, operation: &Value) -> Self {
        let parameters = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Parameter {
                name: text(&p["name"]),
                location: text(&p["in"]),
                required: p["required"].as_bool().unwrap_or(false),
                kind: Kind::of(&p["schema"]),
                description: text(&p["description"]),
            })
            .collect();
        let mut responses: Vec<Answer> = operation["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(status, answer)| Answer {
                status: status.clone(),
                description: text(&answer["description"]),
                bodies: bodies(&answer["content"]),
            })
            .collect();
        // Successes first, then errors by code, `default` last.
        responses.sort_by_key(|a| (a.status == "default", a.status.clone()));
        Self {
            id: text(&operation["operationId"]),
            method: method.to_uppercase(),
            path: path.to_string(),
            summary: text(&operation["summary"]),
            description: text(&operation["description"]),
            needs_key: operation.get("security").is_some(),
            parameters,
            request: bodies(&operation["requestBody"]["content"]),
            responses,
        }
    }
}

/// Each media type of a `content` object.
fn bodies(content: &Value) -> Vec<Body> {
    content
        .as_object()
        .into_iter()
        .flatten()
        .map(|(media_type, body)| Body {
            media_type: media_type.clone(),
            kind: Kind::of(&body["schema"]),
            example: example(&body["example"]).or_else(|| example(&body["schema"]["example"])),
        })
        .collect()
}

/// An example as the page shows it: a text example as it is, anything else as pretty JSON.
fn example(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => serde_json::to_string_pretty(other).ok(),
    }
}

impl SchemaView {
    fn of(name: &str, schema: &Value) -> Self {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut properties = Vec::new();
        // A flattened schema (`allOf`) lists its parts' properties together.
        let parts = std::iter::once(schema).chain(schema["allOf"].as_array().into_iter().flatten());
        for part in parts {
            for (field, property) in part["properties"].as_object().into_iter().flatten() {
                properties.push(Property {
                    name: field.clone(),
                    required: required.contains(&field.as_str())
                        || part["required"]
                            .as_array()
                            .is_some_and(|r| r.iter().any(|n| n == field)),
                    kind: Kind::of(property),
                    description: text(&property["description"]),
                });
            }
        }
        Self {
            name: name.to_string(),
            description: text(&schema["description"]),
            kind: Kind::of(schema),
            properties,
            example: example(&schema["example"]),
        }
    }
}

impl Kind {
    fn of(schema: &Value) -> Self {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap_or(reference);
            return Self {
                text: name.to_string(),
                link: Some(format!("schema-{name}")),
            };
        }
        for combiner in ["oneOf", "anyOf", "allOf"] {
            if let Some(options) = schema[combiner].as_array() {
                let kinds: Vec<Kind> = options
                    .iter()
                    .filter(|o| o["type"] != "null")
                    .map(Kind::of)
                    .collect();
                let nullable = options.iter().any(|o| o["type"] == "null");
                let joined = kinds
                    .iter()
                    .map(|k| k.text.as_str())
                    .collect::<Vec<_>>()
                    .join(if combiner == "allOf" { " and " } else { " or " });
                let link = match kinds.as_slice() {
                    [only] => only.link.clone(),
                    _ => None,
                };
                return Self {
                    text: or_null(joined, nullable),
                    link,
                };
            }
        }
        if let Some(values) = schema["enum"].as_array() {
            let words: Vec<String> = values
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| v.to_string())
                .collect();
            return Self {
                text: or_null(
                    format!("one of {}", words.join(", ")),
                    values.contains(&Value::Null),
                ),
                link: None,
            };
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let nullable = types.contains(&"null");
        let main = types.iter().find(|t| **t != "null").copied();
        let (words, link) = match main {
            None => ("any".to_string(), None),
            Some("array") => {
                let items = Kind::of(&schema["items"]);
                (format!("array of {}", items.text), items.link)
            }
            Some("object") if schema["additionalProperties"].is_object() => {
                let values = Kind::of(&schema["additionalProperties"]);
                (format!("map of {}", values.text), values.link)
            }
            Some(other) => match schema["format"].as_str() {
                Some(format) => (format!("{other} ({format})"), None),
                None => (other.to_string(), None),
            },
        };
        Self {
            text: or_null(words, nullable),
            link,
        }
    }
}

fn or_null(text: String, nullable: bool) -> String {
    if nullable {
        format!("{text} or null")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn kinds_read_as_words_with_links() {
        let kind = Kind::of(
            &json!({ "type": ["array", "null"], "items": { "$ref": "#/components/schemas/Practice" } }),
        );
        assert_eq!(kind.text, "array of Practice or null");
        assert_eq!(kind.link.as_deref(), Some("schema-Practice"));
        let kind = Kind::of(
            &json!({ "oneOf": [{ "type": "null" }, { "$ref": "#/components/schemas/CancelView" }] }),
        );
        assert_eq!(kind.text, "CancelView or null");
        assert_eq!(
            Kind::of(&json!({ "type": "string", "format": "date-time" })).text,
            "string (date-time)"
        );
        assert_eq!(Kind::of(&json!({})).text, "any");
        assert_eq!(
            Kind::of(&json!({ "type": "string", "enum": ["sms", "email"] })).text,
            "one of \"sms\", \"email\""
        );
    }

    #[test]
    fn the_reference_lists_every_operation_under_its_tag() {
        let reference = Reference::of(document());
        let operations: usize = reference.tags.iter().map(|t| t.operations.len()).sum();
        let documented: usize = document()["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .values()
                    .map(|item| METHODS.iter().filter(|m| item.get(**m).is_some()).count())
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(operations, documented);
        let html = pages::render(
            "api/docs.html",
            &Context::from_serialize(&reference).expect("context"),
        )
        .expect("the page renders");
        assert!(
            html.contains("/api/v1/practices/{ods}/status"),
            "the page lists the paths"
        );
        assert!(
            html.contains("id=\"schema-ErrorBody\""),
            "the page lists the schemas"
        );
    }
}
