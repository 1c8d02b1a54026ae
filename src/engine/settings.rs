//! Decoding a type's own `config:` into its settings struct, with places in the errors.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{ConfigError, ConfigErrors, place};

/// Decodes `config` into `T`, naming the exact field in any error: for example
/// `modules[0] (name "web").config.adress: unknown field "adress", expected "address"`.
///
/// Give `T` `#[serde(deny_unknown_fields)]` so that misspelled settings are errors.
pub fn decode_settings<T: DeserializeOwned>(config: &Value, at: &str) -> Result<T, ConfigErrors> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let here = if path == "." {
            at.to_owned()
        } else {
            place::field(at, &path)
        };
        ConfigErrors::from(ConfigError::new(
            here,
            e.into_inner().to_string().replace('`', "\""),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Server {
        address: String,
        limits: Option<Limits>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        body: u32,
    }

    #[test]
    fn errors_name_the_nested_field() {
        let err = decode_settings::<Server>(
            &json!({"address": "x", "limits": {"body": "big"}}),
            "m.config",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.config.limits.body: invalid type: string \"big\", expected u32"
        );
        let err = decode_settings::<Server>(&json!({"adress": "x"}), "m.config").unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.config.adress: unknown field \"adress\", expected \"address\" or \"limits\""
        );
        let err = decode_settings::<Server>(&json!({}), "m.config").unwrap_err();
        assert_eq!(err.to_string(), "m.config: missing field \"address\"");
    }
}
