//! Small value types shared by several kinds: AS numbers (plain or dotted), Go-style
//! durations, and the string enums whose bad values must name the allowed ones.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A BGP AS number. Accepts `64512`, `"64512"` and dotted (asdot) `"1.10"` (= 65546);
/// serialized as a plain number as Calico does. Range 0..=4294967295 (0 is rejected by
/// validation, not by parsing, so the error names the field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsNumber(pub u32);

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for AsNumber {
    type Err = String;
    fn from_str(s: &str) -> Result<AsNumber, String> {
        let bad = || format!("invalid AS number '{s}'");
        let s = s.trim();
        if let Some((hi, lo)) = s.split_once('.') {
            let hi: u32 = hi.parse().map_err(|_| bad())?;
            let lo: u32 = lo.parse().map_err(|_| bad())?;
            if hi > 0xffff || lo > 0xffff {
                return Err(bad());
            }
            return Ok(AsNumber((hi << 16) | lo));
        }
        s.parse::<u32>().map(AsNumber).map_err(|_| bad())
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AsNumber, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AsNumber;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AS number (1..4294967295 or dotted \"1.10\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AsNumber, E> {
                u32::try_from(v)
                    .map(AsNumber)
                    .map_err(|_| E::custom(format!("invalid AS number '{v}'")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AsNumber, E> {
                u32::try_from(v)
                    .map(AsNumber)
                    .map_err(|_| E::custom(format!("invalid AS number '{v}'")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<AsNumber, E> {
                // YAML reads an unquoted `1.10` as a float; treat it as asdot text.
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AsNumber, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A Go `time.Duration` in text form (`120s`, `1m30s`, `500ms`), as Kubernetes'
/// `metav1.Duration` serializes it. Serialized back in Go's canonical form (`2m0s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    /// Parses Go duration syntax: a sequence of `<number><unit>` with units
    /// `ns us µs ms s m h`, e.g. `1h2m3.5s`; a bare `0` is zero.
    pub fn parse(s: &str) -> Result<GoDuration, String> {
        let bad = || format!("invalid duration '{s}'");
        let t = s.trim();
        if t == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        if t.is_empty() || t.starts_with('-') {
            return Err(bad());
        }
        let mut total = 0f64;
        let mut rest = t;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            if num_len == 0 {
                return Err(bad());
            }
            let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
            rest = &rest[num_len..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            total += n * scale;
            rest = &rest[unit_len..];
        }
        Duration::try_from_secs_f64(total)
            .map(GoDuration)
            .map_err(|_| bad())
    }
}

impl fmt::Display for GoDuration {
    /// Go's `Duration.String()` for whole and fractional seconds: `2m0s`, `1h0m0s`,
    /// `1.5s`, `500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            let nanos = d.subsec_nanos();
            return if nanos.is_multiple_of(1_000_000) {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos.is_multiple_of(1000) {
                write!(f, "{}µs", nanos / 1000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        let frac = d.subsec_nanos();
        let sec_text = if frac == 0 {
            format!("{s}")
        } else {
            let f9 = format!("{frac:09}");
            format!("{s}.{}", f9.trim_end_matches('0'))
        };
        if h > 0 {
            write!(f, "{h}h{m}m{sec_text}s")
        } else if m > 0 {
            write!(f, "{m}m{sec_text}s")
        } else {
            write!(f, "{sec_text}s")
        }
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GoDuration, D::Error> {
        let s = String::deserialize(d)?;
        GoDuration::parse(&s).map_err(de::Error::custom)
    }
}

/// Prefix of a serde error raised for a string outside an enum's allowed values; the
/// document parser turns it into Calico's `error with field X = 'v' (...)` form.
pub const BAD_ENUM_MARKER: &str = "\u{1}bad-enum\u{1}";

/// Declares a string enum with exact Calico spellings. A wrong value (e.g. `always`)
/// fails deserialization naming the value and the allowed spellings.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const ALLOWED: &'static [&'static str] = &[$($text),+];

            /// The exact Calico spelling.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "{}{}{}{}",
                        $crate::model::types::BAD_ENUM_MARKER,
                        s,
                        $crate::model::types::BAD_ENUM_MARKER,
                        Self::ALLOWED.join(", ")
                    )),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_enum;

/// Splits a [`BAD_ENUM_MARKER`] error message into (value, allowed values).
pub fn parse_bad_enum(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix(BAD_ENUM_MARKER)?;
    let (value, allowed) = rest.split_once(BAD_ENUM_MARKER)?;
    Some((value.to_string(), allowed.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn as_numbers_plain_and_dotted() {
        assert_eq!("64512".parse::<AsNumber>(), Ok(AsNumber(64512)));
        assert_eq!("1.10".parse::<AsNumber>(), Ok(AsNumber(65546)));
        assert_eq!("4294967295".parse::<AsNumber>(), Ok(AsNumber(u32::MAX)));
        assert!("4294967296".parse::<AsNumber>().is_err());
        assert!("1.70000".parse::<AsNumber>().is_err());
        let a: AsNumber = serde_json::from_str("\"1.10\"").unwrap();
        assert_eq!(a, AsNumber(65546));
        let a: AsNumber = serde_json::from_str("64567").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "64567");
    }

    #[test]
    fn go_durations() {
        let d = GoDuration::parse("120s").unwrap();
        assert_eq!(d.0, Duration::from_secs(120));
        assert_eq!(d.to_string(), "2m0s");
        assert_eq!(GoDuration::parse("1h").unwrap().to_string(), "1h0m0s");
        assert_eq!(GoDuration::parse("1.5s").unwrap().to_string(), "1.5s");
        assert_eq!(GoDuration::parse("500ms").unwrap().to_string(), "500ms");
        assert_eq!(
            GoDuration::parse("1m30s").unwrap().0,
            Duration::from_secs(90)
        );
        assert_eq!(GoDuration::parse("0").unwrap().to_string(), "0s");
        assert!(GoDuration::parse("10").is_err());
        assert!(GoDuration::parse("10x").is_err());
        assert!(GoDuration::parse("-1s").is_err());
    }
}
