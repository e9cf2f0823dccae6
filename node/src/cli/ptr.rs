//! `bver ptr`: parse pointers and print their parts or structured errors as JSON.
//!
//! `bver ptr parse <pointer>` prints one JSON object on stdout: the parts on success (exit
//! 0), the structured [`BverError`] on failure (exit 1). `bver ptr parse -` reads one pointer
//! per line from stdin and prints one JSON line per input line, in order (exit 1 if any line
//! failed). Everything goes to stdout so that output line N always answers input line N;
//! stderr carries only I/O failures (exit 2). See `docs/pointers.md`.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use bver_contracts::BverError;
use bver_contracts::pointer::{PointerError, RefPtr, Segment};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Arguments of `bver ptr`.
#[derive(Debug, Args)]
pub(crate) struct PtrArgs {
    #[command(subcommand)]
    command: PtrCommand,
}

#[derive(Debug, Subcommand)]
enum PtrCommand {
    /// Parse a pointer (or `-` to read one per line from stdin) and print it as JSON.
    Parse {
        /// The pointer, or `-` for stdin.
        pointer: String,
    },
}

/// Exit code when an input was not a valid pointer.
const EXIT_INVALID: u8 = 1;
/// Exit code when stdin or stdout failed.
const EXIT_IO: u8 = 2;

pub(crate) fn run(args: PtrArgs) -> ExitCode {
    match args.command {
        PtrCommand::Parse { pointer } => {
            let stdout = io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let result = if pointer == "-" {
                parse_lines(io::stdin().lock(), &mut out)
            } else {
                write_result(&mut out, RefPtr::parse(&pointer))
            };
            match result.and_then(|ok| out.flush().map(|()| ok)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(EXIT_INVALID),
                Err(e) => {
                    eprintln!("bver ptr parse: {e}");
                    ExitCode::from(EXIT_IO)
                }
            }
        }
    }
}

/// Parses each line of `input` (a trailing `\r` is dropped as part of the line break);
/// returns whether every line was a valid pointer.
fn parse_lines(input: impl BufRead, out: &mut impl Write) -> io::Result<bool> {
    let mut all_ok = true;
    for line in input.split(b'\n') {
        let mut line = line?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        all_ok &= write_result(out, RefPtr::parse_bytes(&line))?;
    }
    Ok(all_ok)
}

/// Writes one JSON line for a parse result; returns whether it was a success.
fn write_result(out: &mut impl Write, result: Result<RefPtr, PointerError>) -> io::Result<bool> {
    let (value, ok) = match result {
        Ok(ptr) => (parts_json(&ptr), true),
        Err(e) => (
            serde_json::to_value(BverError::from(e)).map_err(io::Error::other)?,
            false,
        ),
    };
    serde_json::to_writer(&mut *out, &value).map_err(io::Error::other)?;
    out.write_all(b"\n")?;
    Ok(ok)
}

/// The parts of a pointer as one JSON object.
fn parts_json(ptr: &RefPtr) -> Value {
    let path = ptr.path().map(|path| {
        path.iter()
            .map(|seg| match seg {
                Segment::Key(k) => Value::from(k.as_str()),
                Segment::Index(i) => Value::from(*i),
            })
            .collect::<Vec<_>>()
    });
    json!({
        "canonical": ptr.to_string(),
        "reference": ptr.reference_str(),
        "namespace": ptr.namespace(),
        "repo": ptr.repo(),
        "id": ptr.id(),
        "id_encoded": ptr.id_encoded(),
        "path": path,
        "attribute_pointer": ptr.has_path(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_lines(input: &str) -> (String, bool) {
        let mut out = Vec::new();
        let ok = parse_lines(input.as_bytes(), &mut out).unwrap();
        (String::from_utf8(out).unwrap(), ok)
    }

    #[test]
    fn one_line_per_input_line() {
        let (out, ok) = run_lines("bver://sites/site/1\r\n\nbver://sites/site/2@a[0]\n");
        assert!(!ok, "the empty line is an error");
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["canonical"], "bver://sites/site/1");
        assert_eq!(lines[1]["details"]["reason"], "empty_input");
        assert_eq!(lines[2]["path"], json!(["a", 0]));
        assert_eq!(lines[2]["attribute_pointer"], true);
    }

    #[test]
    fn all_good_lines_succeed() {
        let (out, ok) = run_lines("bver://a/b/c\nBVER://a/b/%7e");
        assert!(ok);
        assert_eq!(out.lines().count(), 2);
        assert!(out.contains(r#""canonical":"bver://a/b/~""#), "{out}");
    }
}
