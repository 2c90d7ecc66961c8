//! Secrets masked out of settings before they are printed (`gateway print-config`).
//!
//! A database URL or a provider setting can carry a password in three forms, and each is
//! replaced with `***`:
//! - in a URL's user information, `postgres://user:p@ss@host/db`: an unescaped `@` may sit
//!   inside the password, so the host starts after the *last* `@` (an `@` later in the path
//!   or query makes the mask cover more than the password, never less);
//! - as a query parameter, `?sslmode=require&password=...` (also `sslpassword`, `secret`,
//!   `token`, `pwd`, ...);
//! - in a libpq key/value string, `host=db password='it\'s' dbname=gw`, quoted or not.

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Whether a parameter or key of this name holds a secret.
fn is_secret_name(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "api_key", "apikey"]
        .iter()
        .any(|word| name.contains(word))
        || matches!(name.as_str(), "pass" | "pwd")
}

/// `text` with every password and secret parameter in it replaced by [`MASK`].
pub fn mask_secrets(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => {
            format!("{scheme}://{}", mask_after_scheme(rest))
        }
        _ => {
            let ranges = text
                .find('?')
                .map(|q| query_secrets(text, q + 1))
                .unwrap_or_default();
            mask_key_values(&replace_ranges(text, ranges))
        }
    }
}

/// Whether `text` is a URL scheme (RFC 3986: a letter, then letters, digits, `+`, `-`, `.`),
/// so a key/value string whose password holds `://` is not read as a URL.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// The part of a URL after `scheme://`. An unescaped `/`, `?`, `#` or `@` in a password makes
/// a URL ambiguous, so every reading's secrets are masked: the user information up to the
/// last `@` of the authority and up to the last `@` of the whole text (a password may hold a
/// `/`; an `@` later in the path or query then masks more than the password, never less),
/// and secret query parameters counted from the first `?` anywhere and from the first `?`
/// after the host.
fn mask_after_scheme(rest: &str) -> String {
    let mut ranges = Vec::new();
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut host_start = None;
    for at in [rest[..authority_end].rfind('@'), rest.rfind('@')]
        .into_iter()
        .flatten()
    {
        let userinfo = &rest[..at];
        if let Some(colon) = userinfo.find(':') {
            if !userinfo[..colon].contains(['/', '?', '#']) {
                ranges.push((colon + 1, at));
                host_start = host_start.or(Some(at + 1));
            }
        }
    }
    let host_start = host_start.unwrap_or(0);
    let first = rest.find('?');
    let after_host = rest[host_start..].find('?').map(|q| q + host_start);
    for q in [first, after_host].into_iter().flatten() {
        ranges.extend(query_secrets(rest, q + 1));
    }
    replace_ranges(rest, ranges)
}

/// Byte ranges of the values of secret parameters in the query starting at `from` (up to
/// a `#`).
fn query_secrets(text: &str, from: usize) -> Vec<(usize, usize)> {
    let end = text[from..].find('#').map_or(text.len(), |i| i + from);
    let mut ranges = Vec::new();
    let mut pos = from;
    for pair in text[from..end].split('&') {
        if let Some(eq) = pair.find('=') {
            if is_secret_name(&decode(&pair[..eq])) {
                ranges.push((pos + eq + 1, pos + pair.len()));
            }
        }
        pos += pair.len() + 1;
    }
    ranges
}

/// `text` with each of the byte `ranges` (merged where they overlap or touch) replaced by
/// one [`MASK`]; an empty range still shows a mask. Ranges start and end at ASCII
/// delimiters, so they fall on character boundaries.
fn replace_ranges(text: &str, mut ranges: Vec<(usize, usize)>) -> String {
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (start, end) in merged {
        out.push_str(text.get(pos..start).unwrap_or_default());
        out.push_str(MASK);
        pos = end;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    out
}

/// A query parameter's name with `%XX` escapes and `+` decoded (so `pass%77ord` is seen).
fn decode(name: &str) -> String {
    url::form_urlencoded::parse(name.as_bytes())
        .next()
        .map(|(k, v)| {
            if v.is_empty() {
                k.into_owned()
            } else {
                format!("{k}={v}")
            }
        })
        .unwrap_or_default()
}

/// Masks the values of secret keys in a libpq-style `key=value key='quoted value'` string.
/// Anything that is not such a pair is copied as it is.
fn mask_key_values(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let key_start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().collect();
        out.push_str(&key);
        // Spaces may stand around the `=`.
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        if j >= chars.len() || chars[j] != '=' {
            continue;
        }
        out.extend(&chars[i..=j]);
        i = j + 1;
        while i < chars.len() && chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
        }
        let value_start = i;
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                // A backslash escapes the next character (a quote or a backslash).
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(chars.len());
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
        }
        if is_secret_name(&key) {
            out.push_str(MASK);
        } else {
            out.extend(&chars[value_start..i.min(chars.len())]);
        }
        i = i.min(chars.len());
    }
    out
}

/// Masks every string inside a provider setting's value (URLs with credentials in them).
pub fn mask_strings_in(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => *text = mask_secrets(text),
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_strings_in),
        serde_json::Value::Object(map) => map.values_mut().for_each(mask_strings_in),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn url_passwords_are_masked_up_to_the_last_at() {
        let cases = [
            (
                "postgres://gw:secret@db:5432/gw",
                "postgres://gw:***@db:5432/gw",
            ),
            (
                "postgres://gw:p@ss@db:5432/gw",
                "postgres://gw:***@db:5432/gw",
            ),
            (
                "postgres://gw:p@s:s/w?rd@db/gw?sslmode=require",
                "postgres://gw:***@db/gw?sslmode=require",
            ),
            ("postgres://gw@db/gw", "postgres://gw@db/gw"),
            ("postgres://db:5432/gw", "postgres://db:5432/gw"),
            ("sqlite://data/gateway.db", "sqlite://data/gateway.db"),
            (
                "sqlite://data/gateway.db?mode=rwc",
                "sqlite://data/gateway.db?mode=rwc",
            ),
            (
                "https://user:tok@api.example.com/v1",
                "https://user:***@api.example.com/v1",
            ),
        ];
        for (given, shown) in cases {
            assert_eq!(mask_secrets(given), shown, "{given}");
        }
    }

    #[test]
    fn query_passwords_are_masked() {
        assert_eq!(
            mask_secrets("postgres://db/gw?user=gw&password=hunter2&sslmode=require"),
            "postgres://db/gw?user=gw&password=***&sslmode=require"
        );
        assert_eq!(
            mask_secrets("postgres://u:a@b@db/gw?sslpassword=x#frag"),
            "postgres://u:***@db/gw?sslpassword=***#frag"
        );
        assert_eq!(
            mask_secrets("postgres://db/gw?PassWord=x&pass%77ord=y"),
            "postgres://db/gw?PassWord=***&pass%77ord=***"
        );
        assert_eq!(
            mask_secrets("sqlite:gw.db?password=x"),
            "sqlite:gw.db?password=***"
        );
    }

    #[test]
    fn key_value_passwords_are_masked() {
        assert_eq!(
            mask_secrets("host=db user=gw password=Z9:// dbname=gw"),
            "host=db user=gw password=*** dbname=gw"
        );
        assert_eq!(
            mask_secrets("host=db user=gw password=hunter2 dbname=gw"),
            "host=db user=gw password=*** dbname=gw"
        );
        assert_eq!(
            mask_secrets("host=db password = 'it\\'s a secret' dbname=gw"),
            "host=db password = *** dbname=gw"
        );
        assert_eq!(mask_secrets("password='unterminated"), "password=***");
        assert_eq!(mask_secrets("password="), "password=***");
        assert_eq!(mask_secrets("host=db port=5432"), "host=db port=5432");
    }

    #[test]
    fn printed_settings_show_no_password() {
        use figment::providers::{Format, Serialized, Toml};
        let figment = figment::Figment::from(Toml::string(crate::config::DEFAULT_TOML)).merge(
            Serialized::default(
                "database.url",
                "postgres://gw:p@ss@db:5432/gw?sslpassword=k3y",
            ),
        );
        let shown = crate::config::Config::from_figment(figment)
            .unwrap()
            .to_masked_toml();
        assert!(!shown.contains("p@ss") && !shown.contains("k3y"), "{shown}");
        assert!(
            shown.contains("postgres://gw:***@db:5432/gw?sslpassword=***"),
            "{shown}"
        );
        let mut setting = serde_json::json!({
            "url": "https://user:s3cret@sms.example/send?token=t0k",
            "hosts": ["host=db password=pw"],
            "timeout_ms": 5000,
        });
        mask_strings_in(&mut setting);
        assert_eq!(
            setting,
            serde_json::json!({
                "url": "https://user:***@sms.example/send?token=***",
                "hosts": ["host=db password=***"],
                "timeout_ms": 5000,
            })
        );
    }

    /// A password that cannot appear by chance in the rest of the generated text (which is
    /// lower-case letters and digits other than 9).
    fn password() -> impl Strategy<Value = String> {
        "Z9[A-Z0-9@:/?#%&= !'\\\\.-]{0,24}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_url_form_shows_the_password(
            user in "[a-z]{1,8}",
            secret in password(),
            host in "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
            port in proptest::option::of(1u16..9000),
            db in "[a-z]{0,8}",
            query_secret in "Z9[A-Za-z0-9@:/?%= !'.-]{0,16}",
        ) {
            let port = port.map(|p| format!(":{}", p.to_string().replace('9', "8"))).unwrap_or_default();
            let url = format!("postgres://{user}:{secret}@{host}{port}/{db}");
            let shown = mask_secrets(&url);
            prop_assert!(!shown.contains(&secret), "{url} shown as {shown}");
            if !secret.contains('?') {
                prop_assert_eq!(&shown, &format!("postgres://{user}:***@{host}{port}/{db}"));
            }

            let url = format!("postgres://{host}{port}/{db}?sslmode=require&password={query_secret}&x=1");
            let shown = mask_secrets(&url);
            prop_assert!(!shown.contains(&query_secret), "{url} shown as {shown}");
            prop_assert!(shown.contains(&host));
        }

        #[test]
        fn no_key_value_form_shows_the_password(
            secret in password(),
            quoted in any::<bool>(),
            spaced in any::<bool>(),
        ) {
            let value = if quoted || secret.contains(char::is_whitespace) {
                format!("'{}'", secret.replace('\\', "\\\\").replace('\'', "\\'"))
            } else {
                secret.clone()
            };
            let equals = if spaced { " = " } else { "=" };
            let text = format!("host=db user=gw password{equals}{value} dbname=gw");
            let shown = mask_secrets(&text);
            prop_assert!(!shown.contains(&secret), "{text} shown as {shown}");
            prop_assert!(shown.ends_with("dbname=gw"), "{text} shown as {shown}");
        }

        #[test]
        fn any_text_is_masked_without_panic(text in "\\PC{0,200}") {
            let shown = mask_secrets(&text);
            prop_assert!(shown.len() <= text.len() + 3 * (text.len() + 1));
        }
    }
}
