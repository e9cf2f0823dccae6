//! A small deterministic CBOR writer: RFC 8949 §4.2.1 "core deterministic encoding".
//!
//! Used for the bytes that are hashed and signed ([`crate::event::EventEnvelope`] and
//! [`crate::event::BatchHeader`]). It writes exactly the subset those types need and cannot
//! fail: definite lengths only, every integer and length in its shortest head, floats in the
//! shortest of half, single and double precision that keeps the value, no tags, and map keys
//! in the bytewise order of their encodings (for text keys: shorter first, then bytewise).
//! Callers write struct maps with their keys already in that order; JSON objects are sorted
//! here.
//!
//! Also the one bounded decoder for CBOR from peers ([`from_slice`], [`MAX_JSON_DEPTH`]).

pub(crate) mod read;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The deepest nesting of arrays and objects in a JSON document BVER stores. serde_json reads
/// no deeper (its recursion limit of 128 counts the level that fails), and whatever BVER
/// decodes from a peer's CBOR goes on to be stored as JSON and read back: a value it could
/// decode but not read back would stop every later read of its row.
pub const MAX_JSON_DEPTH: usize = 127;

/// Decode one `T` from the CBOR `bytes`, refusing arrays, maps and tags nested more than
/// `depth` deep. A type that carries JSON values inside its own maps and arrays passes
/// [`MAX_JSON_DEPTH`] plus those levels, so that every value it accepts can be stored as
/// JSON and read back (an event envelope: one level, its own map).
///
/// # Errors
///
/// The bytes are not a CBOR `T`, or nest deeper than `depth` (`recursion limit exceeded`).
pub fn from_slice<T: DeserializeOwned>(
    bytes: &[u8],
    depth: usize,
) -> Result<T, ciborium::de::Error<std::io::Error>> {
    ciborium::de::from_reader_with_recursion_limit(bytes, depth)
}

/// Major types (the top three bits of the initial byte).
const UINT: u8 = 0;
const NINT: u8 = 1;
const BYTES: u8 = 2;
const TEXT: u8 = 3;
const ARRAY: u8 = 4;
const MAP: u8 = 5;
/// Simple values and floats.
const SIMPLE: u8 = 7;

/// A buffer that deterministic CBOR items are appended to.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The bytes written.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// An initial byte and argument in the shortest form (§4.2.1, first rule).
    fn head(&mut self, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            self.out.push(m | n as u8);
        } else if let Ok(n) = u8::try_from(n) {
            self.out.extend_from_slice(&[m | 24, n]);
        } else if let Ok(n) = u16::try_from(n) {
            self.out.push(m | 25);
            self.out.extend_from_slice(&n.to_be_bytes());
        } else if let Ok(n) = u32::try_from(n) {
            self.out.push(m | 26);
            self.out.extend_from_slice(&n.to_be_bytes());
        } else {
            self.out.push(m | 27);
            self.out.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// An unsigned integer.
    pub(crate) fn uint(&mut self, n: u64) {
        self.head(UINT, n);
    }

    /// A signed integer (major type 1 for negatives: `-1 - n`).
    pub(crate) fn int(&mut self, i: i64) {
        match u64::try_from(i) {
            Ok(n) => self.head(UINT, n),
            // `-1 - i` for a negative i64 is in 0..=i64::MAX.
            Err(_) => self.head(NINT, (-1 - i) as u64),
        }
    }

    /// A float in the shortest of the three widths that preserves its value (NaN as the
    /// canonical half-precision quiet NaN `0xf97e00`).
    pub(crate) fn float(&mut self, v: f64) {
        if let Some(half) = f16_bits(v) {
            self.out.push(0xf9);
            self.out.extend_from_slice(&half.to_be_bytes());
        } else if f64::from(v as f32) == v {
            self.out.push(0xfa);
            self.out
                .extend_from_slice(&(v as f32).to_bits().to_be_bytes());
        } else {
            self.out.push(0xfb);
            self.out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
    }

    /// A text string.
    pub(crate) fn text(&mut self, s: &str) {
        self.head(TEXT, s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A byte string.
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.head(BYTES, b.len() as u64);
        self.out.extend_from_slice(b);
    }

    /// The head of an array of `len` items (the items follow).
    pub(crate) fn array(&mut self, len: usize) {
        self.head(ARRAY, len as u64);
    }

    /// The head of a map of `len` pairs (keys and values follow, keys in canonical order).
    pub(crate) fn map(&mut self, len: usize) {
        self.head(MAP, len as u64);
    }

    /// `true` or `false`.
    pub(crate) fn bool(&mut self, b: bool) {
        self.out.push(if b { 0xf5 } else { 0xf4 });
    }

    /// `null`.
    pub(crate) fn null(&mut self) {
        self.out.push(0xf6);
    }

    /// A JSON value: numbers as integers when serde_json holds them as integers, floats
    /// otherwise; objects with their keys sorted canonically.
    pub(crate) fn json(&mut self, v: &Value) {
        match v {
            Value::Null => self.null(),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    self.uint(u);
                } else if let Some(i) = n.as_i64() {
                    self.int(i);
                } else if let Some(f) = n.as_f64() {
                    self.float(f);
                } else {
                    // Unreachable without serde_json's arbitrary_precision feature.
                    self.null();
                }
            }
            Value::String(s) => self.text(s),
            Value::Array(items) => {
                self.array(items.len());
                for item in items {
                    self.json(item);
                }
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|(a, _), (b, _)| text_key_order(a, b));
                self.map(entries.len());
                for (k, v) in entries {
                    self.text(k);
                    self.json(v);
                }
            }
        }
    }
}

/// The canonical order of two text keys: the bytewise order of their encodings, which for
/// text strings is shorter first, then bytewise.
pub(crate) fn text_key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// The IEEE 754 half-precision bits of `v`, if `v` converts to half precision exactly.
fn f16_bits(v: f64) -> Option<u16> {
    if v.is_nan() {
        return Some(0x7e00);
    }
    let f = v as f32;
    if f64::from(f) != v {
        return None;
    }
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        return Some(sign | 0x7c00); // an infinity (NaN is handled above)
    }
    if exp == 0 {
        // Zero, or a single-precision subnormal: far below half precision's range.
        return (man == 0).then_some(sign);
    }
    let e = exp - 127;
    if (-14..=15).contains(&e) {
        // A half-precision normal: 10 mantissa bits, the 13 low bits must be zero.
        (man & 0x1fff == 0).then(|| sign | (((e + 15) as u16) << 10) | (man >> 13) as u16)
    } else if (-24..-14).contains(&e) {
        // A half-precision subnormal m × 2^-24: the significand (with its implicit bit)
        // times 2^(e - 23) must be a whole multiple of 2^-24.
        let full = man | 0x80_0000;
        let shift = (-(e + 1)) as u32;
        (full & ((1 << shift) - 1) == 0).then(|| sign | (full >> shift) as u16)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ciborium_bytes(v: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc_8949_appendix_a_examples() {
        let enc = |f: &dyn Fn(&mut Writer)| {
            let mut w = Writer::new();
            f(&mut w);
            hex(&w.into_bytes())
        };
        assert_eq!(enc(&|w| w.uint(0)), "00");
        assert_eq!(enc(&|w| w.uint(23)), "17");
        assert_eq!(enc(&|w| w.uint(24)), "1818");
        assert_eq!(enc(&|w| w.uint(1000)), "1903e8");
        assert_eq!(enc(&|w| w.uint(1_000_000)), "1a000f4240");
        assert_eq!(enc(&|w| w.uint(1_000_000_000_000)), "1b000000e8d4a51000");
        assert_eq!(enc(&|w| w.uint(u64::MAX)), "1bffffffffffffffff");
        assert_eq!(enc(&|w| w.int(-1)), "20");
        assert_eq!(enc(&|w| w.int(-100)), "3863");
        assert_eq!(enc(&|w| w.int(-1000)), "3903e7");
        assert_eq!(enc(&|w| w.int(i64::MIN)), "3b7fffffffffffffff");
        assert_eq!(enc(&|w| w.float(0.0)), "f90000");
        assert_eq!(enc(&|w| w.float(-0.0)), "f98000");
        assert_eq!(enc(&|w| w.float(1.0)), "f93c00");
        assert_eq!(enc(&|w| w.float(1.1)), "fb3ff199999999999a");
        assert_eq!(enc(&|w| w.float(1.5)), "f93e00");
        assert_eq!(enc(&|w| w.float(65504.0)), "f97bff");
        assert_eq!(enc(&|w| w.float(100000.0)), "fa47c35000");
        assert_eq!(enc(&|w| w.float(3.4028234663852886e+38)), "fa7f7fffff");
        assert_eq!(enc(&|w| w.float(1.0e+300)), "fb7e37e43c8800759c");
        assert_eq!(enc(&|w| w.float(5.960464477539063e-8)), "f90001");
        assert_eq!(enc(&|w| w.float(0.00006103515625)), "f90400");
        assert_eq!(enc(&|w| w.float(-4.0)), "f9c400");
        assert_eq!(enc(&|w| w.float(-4.1)), "fbc010666666666666");
        assert_eq!(enc(&|w| w.float(f64::INFINITY)), "f97c00");
        assert_eq!(enc(&|w| w.float(f64::NAN)), "f97e00");
        assert_eq!(enc(&|w| w.float(f64::NEG_INFINITY)), "f9fc00");
        assert_eq!(enc(&|w| w.bytes(&[1, 2, 3, 4])), "4401020304");
        assert_eq!(enc(&|w| w.text("IETF")), "6449455446");
        assert_eq!(enc(&|w| w.text("\u{fc}")), "62c3bc");
        assert_eq!(
            enc(&|w| w.json(&serde_json::json!({"a": 1, "b": [2, 3]}))),
            "a26161016162820203"
        );
        assert_eq!(
            enc(&|w| w.json(&serde_json::json!({"aa": null, "b": true, "a": false}))),
            "a36161f46162f5626161f6"
        );
    }

    #[test]
    fn floats_match_ciborium_shortest_form() {
        let mut samples = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            0.1,
            1.0e-7,
            6.1e-5,
            65504.0,
            65505.0,
            65536.0,
            1.0e10,
            1.0e38,
            1.0e39,
            -2.5e-8,
            3.0e-8,
            1.401298464324817e-45,
            2.2250738585072014e-308,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::EPSILON,
        ];
        for e in -30..=20 {
            samples.push(2f64.powi(e));
            samples.push(-(2f64.powi(e)) * 1.5);
            samples.push(2f64.powi(e) * 1.0009765625);
        }
        for v in samples {
            let mut w = Writer::new();
            w.float(v);
            assert_eq!(
                hex(&w.into_bytes()),
                hex(&ciborium_bytes(&ciborium::Value::Float(v))),
                "{v:e}"
            );
        }
    }

    #[test]
    fn json_keys_sort_by_encoded_bytes() {
        let v = serde_json::json!({"bb": 1, "a": 2, "c": 3, "": 4, "ab": 5});
        let mut w = Writer::new();
        w.json(&v);
        let back: ciborium::Value = ciborium::from_reader(&w.into_bytes()[..]).unwrap();
        let keys: Vec<String> = back
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_text().unwrap().to_owned())
            .collect();
        assert_eq!(keys, ["", "a", "c", "ab", "bb"]);
    }
}
