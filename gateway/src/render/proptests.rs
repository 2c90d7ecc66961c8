//! Property tests: whatever template text an administrator saves and whatever values a
//! status change carries, checking and rendering never panic and stay within the render
//! budget's time and size.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::structure;
use super::validate::{check, Draft, Limits};
use super::{MessageTemplates, RenderBudget};
use crate::domain::{Channel, Language, TemplateVersionId};
use crate::store::TemplateVersion;

/// Pieces templates are made of: delimiters with and without whitespace control, loops,
/// conditions, filters that grow values, strings and stray characters.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{% for a in status.details %}".to_string()),
        Just("{%- for b in status.details -%}".to_string()),
        Just("{% endfor %}".to_string()),
        Just("{%- endfor %}".to_string()),
        Just("{% if status.until %}".to_string()),
        Just("{% else %}".to_string()),
        Just("{% endif %}".to_string()),
        Just("{{ status.details }}".to_string()),
        Just("{{ status.until | replace(from=\"on \", to=\"\") }}".to_string()),
        Just("{{ status.details | replace(from=\"x\", to=status.details) }}".to_string()),
        Just("{{ practice.name | upper }}".to_string()),
        Just("{{ status.headline | sentence }}{{ status.until | sentence }}".to_string()),
        Just("{% for i in range(end=50) %}".to_string()),
        Just("{# {% include \"x\" %} #}".to_string()),
        Just("{% set x = 1 %}".to_string()),
        Just("{{ \"%}\" }}".to_string()),
        "[a-z {}%#\"'`|()=.-]{0,12}",
        "\\PC{0,8}",
    ]
}

fn template() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..16).prop_map(|parts| parts.concat())
}

fn budget() -> RenderBudget {
    RenderBudget {
        max_output_bytes: 16 * 1024,
        max_loop_iterations: 2_000,
        max_time: Duration::from_millis(50),
        ..RenderBudget::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reading_the_structure_never_panics(text in "\\PC{0,200}", built in template()) {
        for t in [&text, &built] {
            let _ = structure::problems(t);
            let _ = structure::instrument(t);
        }
    }

    #[test]
    fn checking_a_draft_is_bounded(body in template()) {
        let limits = Limits { budget: budget(), ..Limits::default() };
        let started = Instant::now();
        let result = check(
            "status.custom",
            Channel::Email,
            Language::English,
            &Draft { subject: Some("s".into()), body, ..Draft::default() },
            &limits,
        );
        // Four cases of data, two parts each, each stopped at 50 ms at the latest.
        prop_assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        if let Ok(checked) = result {
            prop_assert!(checked.rendered.body.len() <= limits.budget.max_output_bytes);
        }
    }

    #[test]
    fn rendering_any_template_with_any_values_is_bounded(
        body in template(),
        details in proptest::option::of("\\PC{0,2000}"),
        until in proptest::option::of("\\PC{0,40}"),
    ) {
        let version = TemplateVersion {
            id: TemplateVersionId::new(1),
            practice_id: None,
            key: "status.custom".into(),
            channel: Channel::Sms,
            language: Language::English,
            version: 1,
            subject: None,
            body,
            html: None,
            link: None,
            author: String::new(),
            note: None,
            created_at: chrono::Utc::now(),
        };
        let (templates, _) = MessageTemplates::compile(std::slice::from_ref(&version));
        let templates = templates.with_budget(budget());
        let Some(chosen) = templates.global("status.custom", Channel::Sms, Language::English)
        else {
            return Ok(());
        };
        let mut context = tera::Context::new();
        context.insert("practice", &serde_json::json!({ "name": "Riverside", "phone": null }));
        context.insert(
            "status",
            &serde_json::json!({ "kind": "custom", "headline": "h", "details": details, "until": until }),
        );
        let started = Instant::now();
        if let Ok(rendered) = templates.render_chosen(chosen, &context) {
            prop_assert!(rendered.body.len() <= budget().max_output_bytes);
        }
        prop_assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    }
}
