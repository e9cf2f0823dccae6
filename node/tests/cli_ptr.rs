//! `bver ptr parse` end to end: runs the built `bver` binary on a good pointer, a bad one and
//! stdin mode, and checks the JSON it prints and its exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn bver(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bver"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bver");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(data).expect("write stdin");
    }
    child.wait_with_output().expect("wait for bver")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("UTF-8 stdout")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn good_pointer_prints_its_parts() {
    let out = bver(
        &[
            "ptr",
            "parse",
            "BVER://sites/site/7@terminals[0][\"label\"]",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(
        json_lines(&out),
        vec![json!({
            "canonical": "bver://sites/site/7@terminals[0].label",
            "reference": "bver://sites/site/7",
            "namespace": "sites",
            "repo": "site",
            "id": "7",
            "id_encoded": "7",
            "path": ["terminals", 0, "label"],
            "attribute_pointer": true
        })]
    );
}

#[test]
fn whole_reference_has_no_path() {
    let out = bver(&["ptr", "parse", "bver://sites/site/a%20b"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v = &json_lines(&out)[0];
    assert_eq!(v["id"], "a b");
    assert_eq!(v["id_encoded"], "a%20b");
    assert_eq!(v["path"], Value::Null);
    assert_eq!(v["attribute_pointer"], false);
}

#[test]
fn bad_pointer_prints_the_structured_error() {
    let out = bver(&["ptr", "parse", "bver://sites/site/1@a..b"], None);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let e = &lines[0];
    assert_eq!(e["code"], "invalid_pointer");
    assert_eq!(e["phase"], "input_validation");
    assert_eq!(e["retryable"], false);
    assert_eq!(
        e["details"],
        json!({"reason": "empty_segment", "offset": 22, "input": "bver://sites/site/1@a..b"})
    );
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("byte 22")),
        "{e}"
    );
}

#[test]
fn stdin_mode_answers_each_line() {
    let input = b"bver://sites/site/1\nhttp://x\r\nbver://drawings/drawing/456@meta.sheet_number\r\nbver://s/r/\xff\n";
    let out = bver(&["ptr", "parse", "-"], Some(input));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["canonical"], "bver://sites/site/1");
    assert_eq!(lines[1]["details"]["reason"], "bad_scheme");
    assert_eq!(lines[1]["details"]["offset"], 0);
    assert_eq!(lines[2]["path"], json!(["meta", "sheet_number"]));
    assert_eq!(lines[3]["details"]["reason"], "not_utf8");
    assert_eq!(lines[3]["details"]["offset"], 11);
}

#[test]
fn stdin_mode_all_good_exits_zero() {
    let out = bver(
        &["ptr", "parse", "-"],
        Some(b"bver://a/b/c\nbver://a/b/d@x"),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json_lines(&out).len(), 2);
    let out = bver(&["ptr", "parse", "-"], Some(b""));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty());
}
