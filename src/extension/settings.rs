//! Decoding a type's own `config:` into its settings struct, with places in the errors, and the
//! factory traits every kind of extension shares the shape of.

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

/// The parts every kind of extension's build and factory share: `$build::settings`, which
/// decodes the entry's `config:` (a field of every `$build`, beside its `place`), and the
/// impl that makes closures `Fn(&$build) -> Result<$output, ConfigErrors>` factories. The
/// structs and traits themselves are written out where they are declared, so that rustfmt and
/// rustdoc see them.
macro_rules! factory_impls {
    ($build:ident, $factory:ident, $output:ty) => {
        impl $build<'_> {
            /// Decodes `config` into the type's settings; see
            /// [`decode_settings`](crate::extension::decode_settings).
            pub fn settings<T: serde::de::DeserializeOwned>(
                &self,
            ) -> Result<T, crate::config::ConfigErrors> {
                crate::extension::decode_settings(self.config, self.place)
            }
        }

        impl<F> $factory for F
        where
            F: Fn(&$build<'_>) -> Result<$output, crate::config::ConfigErrors>
                + Send
                + Sync
                + 'static,
        {
            fn build(&self, build: &$build<'_>) -> Result<$output, crate::config::ConfigErrors> {
                self(build)
            }
        }
    };
}

pub(super) use factory_impls;

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
