//! [`Timestamp`]: the one timestamp style of every payload and API answer.
//!
//! RFC 3339 in UTC with exactly three fractional digits and `Z`, e.g.
//! `2026-03-31T09:00:00.000Z`. A timestamp holds milliseconds, no more, so
//! what is written is exactly what is read back. Input in any RFC 3339 offset
//! is accepted and converted to UTC.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// `t` truncated to milliseconds.
    pub fn new(t: DateTime<Utc>) -> Self {
        Timestamp(DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t))
    }

    /// Now, truncated to milliseconds.
    pub fn now() -> Self {
        Timestamp::new(Utc::now())
    }

    /// The instant.
    pub fn get(self) -> DateTime<Utc> {
        self.0
    }

    /// Parses RFC 3339 in any offset.
    pub fn parse(s: &str) -> Result<Self, chrono::ParseError> {
        DateTime::<FixedOffset>::parse_from_rfc3339(s).map(|t| Timestamp::new(t.to_utc()))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp::new(t)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

impl std::ops::Deref for Timestamp {
    type Target = DateTime<Utc>;
    fn deref(&self) -> &DateTime<Utc> {
        &self.0
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339, UTC, exactly three fractional digits and `Z`.",
            "examples": ["2026-03-31T09:00:00.000Z"],
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(feature = "openapi")]
mod openapi {
    use std::borrow::Cow;

    use poem_openapi::{
        registry::{MetaSchema, MetaSchemaRef},
        types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
    };
    use serde_json::Value;

    use super::Timestamp;

    impl Type for Timestamp {
        const IS_REQUIRED: bool = true;
        type RawValueType = Self;
        type RawElementValueType = Self;

        fn name() -> Cow<'static, str> {
            "string(date-time)".into()
        }

        fn schema_ref() -> MetaSchemaRef {
            MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date-time")))
        }

        fn as_raw_value(&self) -> Option<&Self::RawValueType> {
            Some(self)
        }

        fn raw_element_iter<'a>(
            &'a self,
        ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
            Box::new(std::iter::once(self))
        }
    }

    impl ParseFromJSON for Timestamp {
        fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
            match value.unwrap_or_default() {
                Value::String(s) => Timestamp::parse(&s).map_err(ParseError::custom),
                other => Err(ParseError::expected_type(other)),
            }
        }
    }

    impl ToJSON for Timestamp {
        fn to_json(&self) -> Option<Value> {
            Some(Value::String(self.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_exactly_three_fractional_digits() {
        let t = Timestamp::parse("2026-03-31T11:00:00+02:00").unwrap();
        assert_eq!(t.to_string(), "2026-03-31T09:00:00.000Z");
        let t = Timestamp::parse("2026-03-01T08:30:00.123456Z").unwrap();
        assert_eq!(serde_json::to_value(t).unwrap(), "2026-03-01T08:30:00.123Z");
    }

    #[test]
    fn a_timestamp_reads_back_exactly_as_written() {
        let t = Timestamp::new(Utc::now());
        let back: Timestamp = serde_json::from_value(serde_json::to_value(t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn malformed_times_are_refused() {
        assert!(serde_json::from_value::<Timestamp>(serde_json::json!("yesterday")).is_err());
        assert!(serde_json::from_value::<Timestamp>(serde_json::json!(5)).is_err());
    }
}
