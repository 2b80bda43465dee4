//! The commented sample printed by `jumpgate configure`. It lives in `sample.yaml` so that it
//! reads as the YAML it is; the tests parse it with [`Config::from_yaml`](super::Config).

/// A commented sample config showing every section and field. It passes
/// [`Config::from_yaml`](super::Config::from_yaml) as printed.
pub fn sample_config() -> &'static str {
    include_str!("sample.yaml")
}
