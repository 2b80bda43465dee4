//! Throws arbitrary bytes at the web API's JSON request bodies (`POST /webapi/login`,
//! `/webapi/signup`, `/webapi/host/join`), read with axum's `Json::<JsonObject<_>>::from_bytes`,
//! which is what the handlers' `Json` extractor does with a body under the 64 KiB limit.
//! The first byte picks the endpoint; the rest is the body.
//!
//! Besides "never panics", checks that the answer is consistent: trailing whitespace
//! changes nothing and trailing garbage is refused, every refusal is a client error
//! (4xx, never a 5xx), and an accepted body reads the same after a round trip through a
//! generic JSON value (so no field is read from anything but its own key).

#![no_main]

use axum::Json;
use axum::extract::rejection::JsonRejection;
use jumpgate_api::JsonObject;
use jumpgate_proxy::web::{JoinRequest, LoginRequest, SignupRequest};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Bodies over this are refused before they are parsed (`web::MAX_BODY`).
const MAX_BODY: usize = 64 * 1024;

/// What a handler's `Json<JsonObject<T>>` extractor does with a body.
fn read<T: DeserializeOwned>(body: &[u8]) -> Result<T, JsonRejection> {
    Json::<JsonObject<T>>::from_bytes(body).map(|Json(JsonObject(request))| request)
}

fn check<T: DeserializeOwned + PartialEq + Debug>(body: &[u8]) {
    let parsed = read::<T>(body);
    let mut spaced = body.to_vec();
    spaced.extend_from_slice(b" \r\n\t");
    let mut garbage = body.to_vec();
    garbage.extend_from_slice(b"}x");
    assert!(read::<T>(&garbage).is_err());
    match parsed {
        Ok(request) => {
            let again = read::<T>(&spaced);
            assert_eq!(again.as_ref().ok(), Some(&request));
            let value: serde_json::Value =
                serde_json::from_slice(body).expect("an accepted body is JSON");
            assert!(value.is_object());
            let encoded = serde_json::to_vec(&value).expect("a JSON value encodes");
            let round = read::<T>(&encoded).expect("re-encoded body reads");
            assert_eq!(round, request);
        }
        Err(rejection) => {
            assert!(rejection.status().is_client_error(), "{rejection:?}");
            assert!(read::<T>(&spaced).is_err());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&endpoint, body)) = data.split_first() else {
        return;
    };
    if body.len() + 4 > MAX_BODY {
        return;
    }
    match endpoint % 3 {
        0 => check::<LoginRequest>(body),
        1 => check::<SignupRequest>(body),
        _ => check::<JoinRequest>(body),
    }
});
