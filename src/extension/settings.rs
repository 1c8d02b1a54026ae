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

/// Declares what a factory of one kind of extension is given and the factory trait itself.
///
/// `$build` holds the kind's own fields plus the entry's `config:` and its place, and
/// `$build::settings` decodes that config; `$factory` builds an `$output` from a `$build`, and
/// closures of that shape are factories. The kinds differ only in their own fields and in
/// what the factory makes.
macro_rules! factory {
    (
        $(#[$build_meta:meta])*
        pub struct $build:ident<$lt:lifetime> {
            $( $(#[$field_meta:meta])* pub $field:ident: $field_ty:ty, )*
        }
        $(#[$factory_meta:meta])*
        pub trait $factory:ident -> $output:ty;
    ) => {
        $(#[$build_meta])*
        pub struct $build<$lt> {
            $( $(#[$field_meta])* pub $field: $field_ty, )*
            /// The entry's `config:`, with `${VAR}` already expanded.
            pub config: &$lt serde_json::Value,
            /// The place of `config` in the document, for errors.
            pub place: &$lt str,
        }

        impl $build<'_> {
            /// Decodes `config` into the type's settings; see
            /// [`decode_settings`](crate::extension::decode_settings).
            pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigErrors> {
                crate::extension::decode_settings(self.config, self.place)
            }
        }

        $(#[$factory_meta])*
        pub trait $factory: Send + Sync + 'static {
            /// Builds what `build` describes, or explains with places what is wrong with its
            /// config. No outside effects.
            fn build(&self, build: &$build<'_>) -> Result<$output, ConfigErrors>;
        }

        impl<F> $factory for F
        where
            F: Fn(&$build<'_>) -> Result<$output, ConfigErrors> + Send + Sync + 'static,
        {
            fn build(&self, build: &$build<'_>) -> Result<$output, ConfigErrors> {
                self(build)
            }
        }
    };
}

pub(super) use factory;

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
