//! Regression tests for hostile and clumsy input (issue 10): no panic, no quadratic time, no
//! raw control characters in messages, strict JSON numbers and escapes.

use super::node::{parse_json, parse_toml, Value};
use super::*;
use crate::model::Origin;
use std::time::{Duration, Instant};

fn file(name: &str, text: &str) -> SourceFile {
    SourceFile {
        origin: Origin {
            file: name.into(),
            commit: None,
        },
        bytes: text.as_bytes().to_vec(),
    }
}

fn pod(id: &str) -> String {
    format!(
        r#"{{"kind":"Pod","id":"{id}","desiredState":{{"manifest":{{"version":"v1beta1","id":"{id}","containers":[{{"name":"c","image":"busybox"}}]}}}}}}"#
    )
}

#[test]
fn a_backslash_before_a_non_ascii_character_is_an_error_not_a_panic() {
    for text in [
        "\"\\\u{feff}",
        "{\"kind\":\"Pod\",\"id\":\"x\\é\"}",
        "[\"\\€",
    ] {
        let err = parse_json(text).unwrap_err();
        assert!(err.message.contains("invalid escape"), "{}", err.message);
    }
    let err = parse_json("{\"id\":\"x\\é\"}").unwrap_err();
    // At the backslash, counted in characters.
    assert_eq!((err.pos.line, err.pos.col), (1, 9));
    assert!(err.message.contains("`\\é`"), "{}", err.message);
    // Through the whole file path too (the exit-101 report).
    let diags = parse_file("x.json", b"\x22\x5c\xef\xbb\xbf").unwrap_err();
    assert!(diags[0].message.contains("invalid escape"));
}

#[test]
fn leading_zeros_and_signed_unicode_escapes_are_not_json() {
    for bad in [
        "01", "-01", "[00]", "1.", ".5", "1e", "-", "1x", "[1.2.3]", "+1",
    ] {
        assert!(parse_json(bad).is_err(), "{bad} was accepted");
    }
    for bad in [r#""\u+041""#, r#""\u-041""#, r#""\u 041""#, r#""\u04""#] {
        let err = parse_json(bad).unwrap_err();
        assert!(err.message.contains("\\u escape"), "{bad}: {}", err.message);
    }
    assert_eq!(parse_json("0").unwrap().value, Value::Int(0));
    assert_eq!(parse_json("-0.5e-2").unwrap().value, Value::Float(-0.005));
    assert_eq!(
        parse_json(r#""\u0041""#).unwrap().value,
        Value::Str("A".into())
    );
}

#[test]
fn integers_beyond_i64_are_reported_as_out_of_range_integers() {
    let text = pod("p").replace(
        r#""image":"busybox""#,
        r#""image":"busybox","ports":[{"containerPort":99999999999999999999999}]"#,
    );
    let diags = parse_file("p.json", text.as_bytes()).unwrap_err();
    let msg = &diags[0].message;
    assert!(
        msg.contains("99999999999999999999999 is outside the allowed range"),
        "{msg}"
    );
    assert!(!msg.contains("fraction"), "{msg}");
    let toml = "kind = \"Pod\"\nid = \"p\"\n[desiredState.manifest]\nversion = \"v1beta1\"\nid = \"p\"\n[[desiredState.manifest.containers]]\nname = \"c\"\nimage = \"busybox\"\nports = [{containerPort = 0x7fffffffffffffffff}]\n";
    let diags = parse_file("p.toml", toml.as_bytes()).unwrap_err();
    assert!(
        diags[0].message.contains("is outside the allowed range"),
        "{}",
        diags[0].message
    );
    assert_eq!(parse_toml("a = 1").unwrap().type_name(), "an object");
}

#[test]
fn control_characters_in_ids_are_escaped_in_messages() {
    let text = pod("\\u001b[31mred\\r");
    let diags = parse_file("p.json", text.as_bytes()).unwrap_err();
    let shown = diags[0].to_string();
    assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
    assert!(shown.contains("\\u{1b}[31mred\\u{d}"), "{shown}");
    assert_eq!(printable("plain ü"), "plain ü");
    assert_eq!(printable("a\u{202e}b"), "a\\u{202e}b");
}

#[test]
fn an_explicit_pod_may_not_take_a_replica_name() {
    let rc = r#"{"kind":"ReplicationController","id":"web","desiredState":{"replicas":1,"replicaSelector":{"app":"web"},"podTemplate":{"desiredState":{"manifest":{"version":"v1beta1","id":"web","containers":[{"name":"c","image":"busybox"}]}},"labels":{"app":"web"}}}}"#;
    let diags =
        desired_state(&[file("rc.json", rc), file("pod.json", &pod("web-819565-1"))]).unwrap_err();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0].file, "pod.json");
    assert!(diags[0].message.contains("replica"), "{}", diags[0].message);
    // Names that merely start like the RC are fine.
    desired_state(&[file("rc.json", rc), file("pod.json", &pod("web-main"))]).unwrap();
    desired_state(&[file("rc.json", rc), file("pod.json", &pod("web-81956z-1"))]).unwrap();
    // A long RC id is cut in replica names: the cut form is reserved too.
    let long = "a".repeat(60);
    let rc_long = rc.replace(
        "\"id\":\"web\",\"desiredState\":{\"replicas\"",
        &format!("\"id\":\"{long}\",\"desiredState\":{{\"replicas\""),
    );
    let cut = format!("{}-abcdef-1", &long[..54]);
    assert!(desired_state(&[file("rc.json", &rc_long), file("pod.json", &pod(&cut))]).is_err());
}

#[test]
fn a_file_over_the_size_limit_is_named_and_not_parsed() {
    let big = file("big.json", &pod("p"));
    let diags = desired_state_limited(std::slice::from_ref(&big), 10).unwrap_err();
    assert_eq!(diags.len(), 1);
    assert_eq!(diags[0].file, "big.json");
    assert!(
        diags[0].message.contains("max_manifest_bytes"),
        "{}",
        diags[0].message
    );
    desired_state_limited(&[big], 1 << 20).unwrap();
}

/// Parses `n` and `16 * n` items and returns the time ratio: linear is about 16, quadratic
/// 256. The margin between them (asserted below 64) is wide enough for a loaded machine.
fn growth(make: impl Fn(usize) -> String, n: usize) -> f64 {
    growth_of("x.json", make, n)
}

/// `growth` for a file of another format (by its name).
fn growth_of(name: &str, make: impl Fn(usize) -> String, n: usize) -> f64 {
    let time = |text: &str| {
        // Best of nine, so scheduling hiccups on a shared machine do not decide.
        (0..9)
            .map(|_| {
                let t = Instant::now();
                let _ = std::hint::black_box(parse_file(name, text.as_bytes()));
                t.elapsed()
            })
            .min()
            .unwrap()
            .max(Duration::from_micros(1))
    };
    let (small, large) = (make(n), make(16 * n));
    time(&large).as_secs_f64() / time(&small).as_secs_f64()
}

#[test]
fn a_long_line_parses_in_linear_time() {
    // Before the fix every position re-counted the line from its start: 256x for 16x the input.
    let line = |n: usize| {
        let items: Vec<String> = (0..n).map(|i| pod(&format!("p{i}"))).collect();
        format!("{{\"kind\":\"List\",\"items\":[{}]}}", items.join(","))
    };
    let ratio = growth(line, 500);
    assert!(ratio < 64.0, "16x the input took {ratio:.1}x the time");
}

#[test]
fn a_long_toml_line_parses_in_linear_time() {
    // Every value's column was counted from its line's start: 29 s for 20,000 inline tables.
    for label in ["web", "wéb"] {
        let line = |n: usize| {
            let items: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        "{{kind = \"Pod\", id = \"p{i}\", labels = {{app = \"{label}\"}}, desiredState = {{manifest = {{version = \"v1beta1\", id = \"p{i}\", containers = [{{name = \"c\", image = \"i\"}}]}}}}}}"
                    )
                })
                .collect();
            format!("kind = \"List\"\nitems = [{}]\n", items.join(", "))
        };
        assert!(parse_file("x.toml", line(2).as_bytes()).is_ok());
        let ratio = growth_of("x.toml", line, 300);
        assert!(
            ratio < 64.0,
            "{label}: 16x the input took {ratio:.1}x the time"
        );
    }
}

#[test]
fn many_fields_are_checked_for_duplicates_in_linear_time() {
    let fields = |n: usize| {
        let f: Vec<String> = (0..n).map(|i| format!("\"f{i}\":1")).collect();
        format!("{{{}}}", f.join(",\n"))
    };
    // Large enough that the small case takes about a millisecond: timer and cache noise on
    // a tiny input would decide the ratio otherwise.
    let ratio = growth(fields, 4000);
    assert!(ratio < 64.0, "16x the fields took {ratio:.1}x the time");
    let diags = parse_file("x.json", br#"{"kind":"Pod","id":"a","id":"b","a1":1,"a2":1,"a3":1,"a4":1,"a5":1,"a6":1,"a7":1,"a8":1,"a9":1,"b1":1,"b2":1,"b3":1,"b4":1,"b5":1,"b6":1,"id":"c"}"#).unwrap_err();
    let dups = diags
        .iter()
        .filter(|d| d.message.contains("duplicate field (first given at 1:15)"))
        .count();
    assert_eq!(dups, 2, "{diags:#?}");
}

#[test]
fn columns_count_characters_after_non_ascii_text_on_the_same_line_only() {
    // `image` is a number after a string with two two-byte characters on its line: the column
    // counts characters (25), not bytes (27). The next line's field is counted from its start.
    let text = "{\"kind\": \"Pod\", \"id\": \"p\", \"desiredState\": {\"manifest\": {\"containers\": [\n{\"name\": \"éé\", \"image\": 5},\n {\"name\": \"b\", \"image\": 6}]}}}";
    let diags = parse_file("x.json", text.as_bytes()).unwrap_err();
    let at: Vec<(u32, u32)> = diags
        .iter()
        .filter(|d| d.path.ends_with("image"))
        .map(|d| (d.pos.line, d.pos.col))
        .collect();
    assert_eq!(at, vec![(2, 25), (3, 25)], "{diags:?}");
}

#[test]
fn a_toml_nesting_error_is_located() {
    for text in [
        format!(
            "kind = \"Pod\"\na = {}{}\n",
            "[".repeat(400),
            "]".repeat(400)
        ),
        format!(
            "kind = \"Pod\"\na = {}{}\n",
            "{b = ".repeat(400),
            "}".repeat(400)
        ),
        format!("kind = \"Pod\"\na{} = 1\n", ".b".repeat(400)),
        format!("kind = \"Pod\"\n[a{}]\n", ".b".repeat(400)),
        format!(
            "kind = \"Pod\"\na = {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    ] {
        let diags = parse_file("x.toml", text.as_bytes()).unwrap_err();
        let d = &diags[0];
        assert_eq!(d.pos.line, 2, "{d} in {}", &text[..40]);
    }
}
