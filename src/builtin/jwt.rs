//! `step.jwt {algorithm, secretEnv | secretFile | publicKeyFile | jwksFile, issuer, audience,
//! leeway}`: verifies the bearer token of `request.headers.authorization`. Its output is the
//! token's claims; a request without a valid token is answered 401 with a `WWW-Authenticate`
//! challenge (RFC 6750), and the pipeline stops there.
//!
//! The key is read at build, from the environment or a file: every engine build reads it again
//! (a reload to an identical config builds nothing), and nothing is read while requests are
//! served. Neither the token nor the key is ever logged or
//! put in an error.

use futures::future::BoxFuture;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::{ConfigError, ConfigErrors, parse_duration, place};
use crate::extension::{Step, StepBuild, StepContext, StepError};

struct Jwt {
    keys: Keys,
    validation: Validation,
}

/// What verifies a token's signature.
enum Keys {
    /// The one key of `secretEnv`, `secretFile` or `publicKeyFile`.
    One(DecodingKey),
    /// A JWKS document's keys, with their `kid`, chosen by the token's `kid`.
    Set(Vec<(Option<String>, DecodingKey)>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Settings {
    algorithm: Alg,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    secret_file: Option<String>,
    #[serde(default)]
    public_key_file: Option<String>,
    #[serde(default)]
    jwks_file: Option<String>,
    #[serde(default)]
    issuer: Option<Value>,
    #[serde(default)]
    audience: Option<Value>,
    #[serde(default)]
    leeway: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
enum Alg {
    HS256,
    RS256,
    ES256,
}

impl Alg {
    fn algorithm(self) -> Algorithm {
        match self {
            Alg::HS256 => Algorithm::HS256,
            Alg::RS256 => Algorithm::RS256,
            Alg::ES256 => Algorithm::ES256,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }
}

pub(super) fn build(build: &StepBuild<'_>) -> Result<Box<dyn Step>, ConfigErrors> {
    let settings: Settings = build.settings()?;
    let mut errors = ConfigErrors::default();
    let keys = keys(build, &settings).map_err(|e| errors.0.push(e)).ok();
    let mut validation = Validation::new(settings.algorithm.algorithm());
    validation.validate_nbf = true;
    validation.leeway = 0;
    if let Some(leeway) = &settings.leeway {
        let at = place::field(build.place, "leeway");
        match parse_duration(leeway) {
            Ok(d) if d.subsec_nanos() == 0 => validation.leeway = d.as_secs(),
            Ok(_) => errors.push(
                at,
                format!("leeway {leeway:?} is not whole seconds; claims are checked to the second, so write \"0s\", \"30s\" or \"2m\""),
            ),
            Err(message) => errors.push(at, message),
        }
    }
    match names(build.place, "issuer", settings.issuer.as_ref()) {
        Ok(Some(issuers)) => validation.set_issuer(&issuers),
        Ok(None) => {}
        Err(e) => errors.0.push(e),
    }
    match names(build.place, "audience", settings.audience.as_ref()) {
        Ok(Some(audiences)) => validation.set_audience(&audiences),
        // Without an audience to expect, a token's `aud` is not checked.
        Ok(None) => validation.validate_aud = false,
        Err(e) => errors.0.push(e),
    }
    match keys {
        Some(keys) => errors.into_result(Box::new(Jwt { keys, validation }) as Box<dyn Step>),
        None => Err(errors),
    }
}

/// `issuer` or `audience`: a string or a list of strings.
fn names(at: &str, field: &str, value: Option<&Value>) -> Result<Option<Vec<String>>, ConfigError> {
    let list = match value {
        None => return Ok(None),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default(),
        Some(_) => Vec::new(),
    };
    if list.is_empty() {
        return Err(ConfigError::new(
            place::field(at, field),
            format!(
                "expected a string or a non-empty list of strings (the accepted {field} values)"
            ),
        ));
    }
    Ok(Some(list))
}

/// The key the settings name, read and parsed now.
fn keys(build: &StepBuild<'_>, settings: &Settings) -> Result<Keys, ConfigError> {
    let sources = [
        ("secretEnv", &settings.secret_env),
        ("secretFile", &settings.secret_file),
        ("publicKeyFile", &settings.public_key_file),
        ("jwksFile", &settings.jwks_file),
    ];
    let mut given = sources
        .iter()
        .filter_map(|(field, value)| value.as_deref().map(|v| (*field, v)));
    let alg = settings.algorithm;
    let Some((field, source)) = given.next() else {
        return Err(ConfigError::new(
            build.place,
            format!(
                "{} needs a key: give one of secretEnv or secretFile (HS256), publicKeyFile (PEM, RS256 and ES256) or jwksFile",
                alg.name()
            ),
        ));
    };
    if let Some((other, _)) = given.next() {
        return Err(ConfigError::new(
            place::field(build.place, other),
            format!("give one key source; this step has both {field} and {other}"),
        ));
    }
    let at = place::field(build.place, field);
    let fail = |message: String| ConfigError::new(at.clone(), message);
    let secret = alg == Alg::HS256;
    match field {
        "secretEnv" | "secretFile" if !secret => Err(fail(format!(
            "{} verifies with a public key; a shared secret is for HS256: give publicKeyFile (PEM) or jwksFile",
            alg.name()
        ))),
        "publicKeyFile" if secret => Err(fail(
            "HS256 verifies with a shared secret, not a public key: give secretEnv or secretFile"
                .to_owned(),
        )),
        "secretEnv" => match (build.env)(source) {
            Some(value) if !value.is_empty() => {
                Ok(Keys::One(DecodingKey::from_secret(value.as_bytes())))
            }
            Some(_) => Err(fail(format!(
                "environment variable {source:?} is empty; it must hold the HS256 secret"
            ))),
            None => Err(fail(format!(
                "environment variable {source:?} is not set; it must hold the HS256 secret"
            ))),
        },
        "secretFile" => {
            let bytes = read(source).map_err(&fail)?;
            // A file written by `echo` ends with a newline that is no part of the secret.
            let secret = bytes
                .strip_suffix(b"\n")
                .map(|s| s.strip_suffix(b"\r").unwrap_or(s))
                .unwrap_or(&bytes);
            if secret.is_empty() {
                return Err(fail(format!(
                    "{source:?} is empty; it must hold the HS256 secret"
                )));
            }
            Ok(Keys::One(DecodingKey::from_secret(secret)))
        }
        "publicKeyFile" => {
            let pem = read(source).map_err(&fail)?;
            let (key, kind) = match alg {
                Alg::ES256 => (DecodingKey::from_ec_pem(&pem), "an EC"),
                _ => (DecodingKey::from_rsa_pem(&pem), "an RSA"),
            };
            key.map(Keys::One)
                .map_err(|e| fail(format!("{source:?} is not {kind} public key in PEM: {e}")))
        }
        _ => {
            let text = read(source).map_err(&fail)?;
            let set: JwkSet = serde_json::from_slice(&text).map_err(|e| {
                fail(format!(
                    "{source:?} is not a JWKS document ({{\"keys\": [...]}}): {e}"
                ))
            })?;
            if set.keys.is_empty() {
                return Err(fail(format!("{source:?} holds no keys")));
            }
            let mut keys = Vec::with_capacity(set.keys.len());
            for (i, jwk) in set.keys.iter().enumerate() {
                let kid = jwk.common.key_id.clone();
                let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                    fail(format!(
                        "{source:?}: key {i} (kid {kid:?}) is not usable: {e}"
                    ))
                })?;
                keys.push((kid, key));
            }
            Ok(Keys::Set(keys))
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Jwt {
    /// The claims of a valid `token`, or why it is refused (words for the client: never the
    /// token).
    fn verify(&self, token: &str) -> Result<Map<String, Value>, &'static str> {
        let key = match &self.keys {
            Keys::One(key) => key,
            Keys::Set(keys) => {
                let header =
                    jsonwebtoken::decode_header(token).map_err(|_| "the token is malformed")?;
                let found = match header.kid.as_deref() {
                    Some(kid) => keys.iter().find(|(k, _)| k.as_deref() == Some(kid)),
                    None if keys.len() == 1 => keys.first(),
                    None => None,
                };
                &found
                    .ok_or("no key of the key set matches the token's kid")?
                    .1
            }
        };
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                ErrorKind::InvalidAudience => "the token's audience is not accepted",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (exp)",
                ErrorKind::InvalidClaimFormat(_) => "a claim of the token is malformed",
                _ => "the token is malformed",
            })
    }
}

impl Step for Jwt {
    fn run<'a>(&'a self, context: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        let header = context
            .request
            .get("headers")
            .and_then(|h| h.get("authorization"))
            .and_then(Value::as_str);
        let result = match header.and_then(bearer) {
            // RFC 6750 3.1: a request without credentials gets the bare challenge.
            None => Err(StepError::respond(
                401,
                [("www-authenticate".to_owned(), "Bearer".to_owned())],
                json!({"error": "missing bearer token"}),
            )),
            Some(token) => match self.verify(token) {
                Ok(claims) => Ok(Value::Object(claims)),
                Err(reason) => {
                    tracing::debug!(
                        pipeline = context.pipeline,
                        step = context.step,
                        reason,
                        "bearer token refused"
                    );
                    let challenge =
                        format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
                    Err(StepError::respond(
                        401,
                        [("www-authenticate".to_owned(), challenge)],
                        json!({"error": reason}),
                    ))
                }
            },
        };
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
