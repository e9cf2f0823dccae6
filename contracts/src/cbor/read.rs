//! The one-pass decoder of event envelopes: the subscriber's hot path.
//!
//! [`envelope`] decodes the CBOR an EAGER publisher sends (definite lengths, text keys, the
//! envelope's own members) straight into an [`EventEnvelope`], without serde's visitor
//! dispatch or ciborium's per-item buffering. Anything outside that subset is not an error
//! here: it returns `None`, and [`EventEnvelope::from_cbor`] hands the bytes to the general
//! decoder ([`super::from_slice`]), which accepts or refuses them with its own message.
//!
//! So the general decoder stays the reference, and the one rule this module keeps is: **it
//! never accepts what the general decoder refuses, and never decodes anything to another
//! value than the general decoder does.** Where the two could disagree (an unknown member,
//! a duplicate, a tag, an indefinite length, a byte string, `undefined`, trailing bytes, a
//! nesting near the depth bound, an integer outside `i64`), it defers. The differential
//! tests (`contracts/tests/envelope_cbor.rs`) and the `envelope_cbor` fuzz target check the
//! rule on generated and mutated bytes.

use serde_json::{Map, Number, Value};

use crate::event::EventEnvelope;
use crate::pointer::RefPtr;
use crate::version::{ChangeType, Diff, OpName, PatchOp};

/// Decode `bytes` as an envelope, arrays and maps nested at most `depth` deep (counted as
/// the general decoder counts them: the envelope's own map is one level). `None`: not on
/// the fast path, ask the general decoder.
pub(crate) fn envelope(bytes: &[u8], depth: usize) -> Option<EventEnvelope> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        // One level of margin below the general decoder's bound: near the bound, defer.
        depth: depth.checked_sub(1)?,
    };
    let e = r.envelope()?;
    // The general decoder reads one item and ignores what follows; defer rather than agree.
    (r.pos == bytes.len()).then_some(e)
}

use super::{ARRAY, MAP, NINT, SIMPLE, TEXT, UINT};

/// The most items reserved ahead for an array or map; longer ones grow as they are read.
const MAX_RESERVE: usize = 256;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Levels of arrays and maps still allowed.
    depth: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn be(&mut self, n: usize) -> Option<u64> {
        let s = self.take(n as u64)?;
        Some(s.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// The next head: major type and argument (definite lengths only; the raw additional
    /// information for major type 7).
    fn head(&mut self) -> Option<(u8, u64)> {
        let b = self.byte()?;
        let (major, info) = (b >> 5, b & 0x1f);
        if major == SIMPLE {
            return Some((major, u64::from(info)));
        }
        let arg = match info {
            0..=23 => u64::from(info),
            24 => self.be(1)?,
            25 => self.be(2)?,
            26 => self.be(4)?,
            27 => self.be(8)?,
            // Reserved values and indefinite lengths.
            _ => return None,
        };
        Some((major, arg))
    }

    /// Takes a `null` if one comes next.
    fn skip_null(&mut self) -> bool {
        if self.buf.get(self.pos) == Some(&0xf6) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn text(&mut self) -> Option<&'a str> {
        match self.head()? {
            (TEXT, len) => std::str::from_utf8(self.take(len)?).ok(),
            _ => None,
        }
    }

    fn uint(&mut self) -> Option<u64> {
        match self.head()? {
            (UINT, n) => Some(n),
            _ => None,
        }
    }

    fn int(&mut self) -> Option<i64> {
        match self.head()? {
            (UINT, n) => i64::try_from(n).ok(),
            (NINT, n) => i64::try_from(n).ok().map(|n| -1 - n),
            _ => None,
        }
    }

    /// Enter an array or a map of `len` items, each at least one byte: refuses lengths the
    /// input cannot hold and nesting at the bound.
    fn enter(&mut self, len: u64) -> Option<usize> {
        self.depth = self.depth.checked_sub(1)?;
        let len = usize::try_from(len).ok()?;
        (len <= self.buf.len() - self.pos).then_some(len)
    }

    /// What to reserve for `len` items: never more than [`MAX_RESERVE`], so that a length
    /// the input merely claims costs no large allocation.
    fn reserve(len: usize) -> usize {
        len.min(MAX_RESERVE)
    }

    fn leave(&mut self) {
        self.depth += 1;
    }

    fn envelope(&mut self) -> Option<EventEnvelope> {
        let (MAP, len) = self.head()? else {
            return None;
        };
        let len = self.enter(len)?;
        let mut origin = None;
        let mut epoch = None;
        let mut seq = None;
        let mut trigger = None;
        let mut pointer = None;
        let mut version = None;
        let mut kind = None;
        let mut change = None;
        let mut diff = None;
        let mut value = None;
        let mut time = None;
        /// Set a member once: a duplicate defers (the general decoder names it).
        fn once<T>(slot: &mut Option<T>, v: T) -> Option<()> {
            if slot.is_some() {
                return None;
            }
            *slot = Some(v);
            Some(())
        }
        for _ in 0..len {
            match self.text()? {
                "seq" => once(&mut seq, self.uint()?)?,
                "diff" => once(&mut diff, self.diff()?)?,
                "kind" => once(&mut kind, self.opt_text()?)?,
                "time" => once(&mut time, self.int()?)?,
                "epoch" => once(&mut epoch, self.text()?.to_owned())?,
                "value" => once(
                    &mut value,
                    if self.skip_null() {
                        None
                    } else {
                        Some(self.value()?)
                    },
                )?,
                "change" => once(&mut change, self.change()?)?,
                "origin" => once(&mut origin, self.text()?.to_owned())?,
                "pointer" => once(&mut pointer, RefPtr::parse(self.text()?).ok()?)?,
                "trigger" => once(&mut trigger, self.text()?.to_owned())?,
                "version" => once(&mut version, self.uint()?)?,
                // `signature` and unknown members: the general decoder's business.
                _ => return None,
            }
        }
        self.leave();
        Some(EventEnvelope {
            origin: origin?,
            epoch: epoch?,
            seq: seq?,
            trigger: trigger?,
            pointer: pointer?,
            version: version?,
            kind: kind.flatten(),
            change: change.flatten(),
            diff: diff.unwrap_or_default(),
            value: value.flatten(),
            time: time?,
            signature: None,
        })
    }

    fn opt_text(&mut self) -> Option<Option<String>> {
        if self.skip_null() {
            return Some(None);
        }
        Some(Some(self.text()?.to_owned()))
    }

    fn change(&mut self) -> Option<Option<ChangeType>> {
        if self.skip_null() {
            return Some(None);
        }
        self.text()?.parse().ok().map(Some)
    }

    fn diff(&mut self) -> Option<Diff> {
        let (ARRAY, len) = self.head()? else {
            return None;
        };
        let len = self.enter(len)?;
        let mut ops = Vec::with_capacity(Self::reserve(len));
        for _ in 0..len {
            ops.push(self.patch_op()?);
        }
        self.leave();
        Some(Diff(ops))
    }

    fn patch_op(&mut self) -> Option<PatchOp> {
        let (MAP, len) = self.head()? else {
            return None;
        };
        let len = self.enter(len)?;
        let (mut op, mut path, mut from, mut value) = (None, None, None, None);
        for _ in 0..len {
            let slot_taken = match self.text()? {
                "op" => op.replace(self.text()?).is_some(),
                "path" => path.replace(self.text()?.to_owned()).is_some(),
                "from" => from.replace(self.text()?.to_owned()).is_some(),
                "value" => value.replace(self.value()?).is_some(),
                _ => return None,
            };
            if slot_taken {
                return None;
            }
        }
        self.leave();
        OpName::parse(op?)?.with(path?, from, value).ok()
    }

    /// A JSON value, as serde_json's own visitor builds it from the general decoder.
    fn value(&mut self) -> Option<Value> {
        let (major, arg) = self.head()?;
        Some(match major {
            UINT => Value::Number(arg.into()),
            NINT => Value::Number((-1 - i64::try_from(arg).ok()?).into()),
            TEXT => Value::String(std::str::from_utf8(self.take(arg)?).ok()?.to_owned()),
            ARRAY => {
                let len = self.enter(arg)?;
                let mut items = Vec::with_capacity(Self::reserve(len));
                for _ in 0..len {
                    items.push(self.value()?);
                }
                self.leave();
                Value::Array(items)
            }
            MAP => {
                let len = self.enter(arg)?;
                let mut map = Map::with_capacity(Self::reserve(len));
                for _ in 0..len {
                    let key = self.text()?.to_owned();
                    let v = self.value()?;
                    // As serde_json's visitor: a repeated key keeps its first place and its
                    // last value.
                    map.insert(key, v);
                }
                self.leave();
                Value::Object(map)
            }
            SIMPLE => match arg {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                25 => float(f16_to_f64(self.be(2)? as u16)),
                26 => float(f64::from(f32::from_bits(self.be(4)? as u32))),
                27 => float(f64::from_bits(self.be(8)?)),
                // `undefined`, other simple values, reserved values and `break`.
                _ => return None,
            },
            // Byte strings and tags.
            _ => return None,
        })
    }
}

/// A float as serde_json's visitor stores it: not finite is `null`.
fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// IEEE 754 half precision to double, exactly.
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let man = f64::from(bits & 0x3ff);
    sign * match exp {
        0 => man * 2f64.powi(-24),
        31 if man == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + man / 1024.0) * 2f64.powi(exp - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0xc000), -2.0);
        assert_eq!(f16_to_f64(0x7bff), 65504.0);
        assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
        assert_eq!(f16_to_f64(0x0400), 2f64.powi(-14));
        assert_eq!(f16_to_f64(0x3555), 0.333_251_953_125);
        assert!(f16_to_f64(0x7c00).is_infinite());
        assert!(f16_to_f64(0x7e00).is_nan());
        assert!(f16_to_f64(0x8000).is_sign_negative());
    }

    #[test]
    fn forged_lengths_defer_without_allocating() {
        // A map claiming 2^63 members in a 10-byte input.
        let bytes = [0xbb, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(envelope(&bytes, 128).is_none());
        // An array value claiming 2^32 items.
        let mut w = crate::cbor::Writer::new();
        w.map(1);
        w.text("value");
        let mut bytes = w.into_bytes();
        bytes.extend_from_slice(&[0x9b, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert!(envelope(&bytes, 128).is_none());
    }
}
