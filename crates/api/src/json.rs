//! [`JsonObject`]: a JSON message that must be an object.
//!
//! serde's derived `Deserialize` reads a struct from a JSON object *or* from a JSON array
//! holding its fields by position (`["web-1","root"]` as a `DialRequest`), and
//! `deny_unknown_fields` says nothing about the second form. Our protocols are objects
//! only; the array form would be a second, undocumented encoding that clients could come
//! to depend on and that does not round-trip (re-encoded as an object, a request that fit
//! a line limit may not). Found by the `ssh_dial` fuzz target.

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// A `T` read only from a JSON object; an array (or anything else) is refused with
/// "invalid type: ..., expected a JSON object". Field errors keep their paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonObject<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(JsonObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        a: String,
        #[serde(default)]
        b: u8,
    }

    fn read(text: &str) -> Result<Pair, String> {
        serde_json::from_str::<JsonObject<Pair>>(text)
            .map(|JsonObject(pair)| pair)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn objects_are_read_as_the_struct_says() {
        assert_eq!(
            read(r#"{"a":"x","b":2}"#),
            Ok(Pair {
                a: "x".to_string(),
                b: 2
            })
        );
        assert_eq!(
            read(r#" {"a":"x"} "#),
            Ok(Pair {
                a: "x".to_string(),
                b: 0
            })
        );
        let unknown = read(r#"{"a":"x","c":1}"#).unwrap_err();
        assert!(unknown.contains("unknown field `c`"), "{unknown}");
        let missing = read(r#"{"b":1}"#).unwrap_err();
        assert!(missing.contains("missing field `a`"), "{missing}");
        let duplicate = read(r#"{"a":"x","a":"y"}"#).unwrap_err();
        assert!(duplicate.contains("duplicate field `a`"), "{duplicate}");
    }

    #[test]
    fn arrays_and_other_values_are_refused() {
        // Without the wrapper serde reads the array by position.
        assert!(serde_json::from_str::<Pair>(r#"["x",2]"#).is_ok());
        for text in [r#"["x",2]"#, r#"["x"]"#, "[]", "\"x\"", "1", "null"] {
            let err = read(text).unwrap_err();
            assert!(err.contains("expected a JSON object"), "{text}: {err}");
        }
    }

    #[test]
    fn field_errors_keep_their_path() {
        let err = serde_path_to_error::deserialize::<_, JsonObject<Pair>>(
            &mut serde_json::Deserializer::from_str(r#"{"a":"x","b":"two"}"#),
        )
        .unwrap_err();
        assert_eq!(err.path().to_string(), "b");
    }
}
