//! Authentication for the API server: a self-generated CA, the serving certificate, an admin
//! client certificate and bearer tokens, plus the admin kubeconfig written on first start.
//!
//! Authenticated users are authorized by [`rbac`]; unauthenticated requests get 401.

pub mod authorizer;
pub mod bootstrap_tokens;
pub mod certificates;
pub mod impersonation;
pub mod kubeconfig;
pub mod node;
pub mod node_authorizer;
pub mod pki;
pub mod rbac;
pub mod service_accounts;

use std::{collections::HashMap, path::Path};

use rustls::pki_types::CertificateDer;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name (the certificate's CN, or the token's user).
    pub name: String,
    /// Groups (the certificate's O values, or the token's groups).
    pub groups: Vec<String>,
}

/// What a TokenReview learns of a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The user it authenticates as.
    pub user: User,
    /// The user's uid (a ServiceAccount's), if it has one.
    pub uid: String,
    /// What else the token says (upstream's `authentication.kubernetes.io/*` extras).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
    /// The audiences asked for that the token is valid for.
    pub audiences: Vec<String>,
}

/// Authenticates bearer tokens for TokenReviews.
pub trait TokenAuthenticator: Send + Sync {
    /// Who `token` authenticates as for one of `audiences` (the API server's when empty), or
    /// why it does not.
    fn authenticate_token<'a>(
        &'a self,
        token: &'a str,
        audiences: &'a [String],
    ) -> futures::future::BoxFuture<'a, Result<TokenIdentity, String>>;
}

/// Errors reading or writing authentication material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A PEM file could not be parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The token file has a bad line.
    #[error("{path} line {line}: {message}")]
    TokenFile {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        message: String,
    },
}

/// Bearer tokens, loaded from a kube-apiserver style static token file
/// (`token,user,uid,"group1,group2"` per line).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    users: HashMap<String, User>,
}

impl Tokens {
    /// Parses a static token file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
            action: "reading",
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, message)| AuthError::TokenFile {
            path: path.to_owned(),
            line,
            message,
        })
    }

    /// Parses the text of a static token file; errors carry the line number.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.splitn(4, ',');
            let token = fields.next().unwrap_or_default().trim();
            let user = fields.next().unwrap_or_default().trim();
            let _uid = fields.next();
            let groups = fields
                .next()
                .map(|groups| {
                    groups
                        .trim()
                        .trim_matches('"')
                        .split(',')
                        .map(str::trim)
                        .filter(|group| !group.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if token.is_empty() || user.is_empty() {
                return Err((index + 1, "expected token,user[,uid[,\"groups\"]]".into()));
            }
            users.insert(
                token.to_owned(),
                User {
                    name: user.to_owned(),
                    groups,
                },
            );
        }
        Ok(Self { users })
    }

    /// The user a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<User> {
        self.users.get(token).cloned()
    }
}

/// The user named by a verified client certificate: CN is the user, O values are groups.
pub fn user_from_certificate(certificate: &CertificateDer<'_>) -> Option<User> {
    pki::subject_of(certificate).map(|(common_name, organizations)| User {
        name: common_name,
        groups: organizations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_token_file_lines_parse() {
        let tokens =
            Tokens::parse("# comment\nabc,admin,uid-1,\"system:masters,dev\"\n\nxyz,alice,uid-2\n")
                .unwrap();
        let admin = tokens.authenticate("abc").unwrap();
        assert_eq!(admin.name, "admin");
        assert_eq!(admin.groups, vec!["system:masters", "dev"]);
        assert_eq!(
            tokens.authenticate("xyz").unwrap().groups,
            Vec::<String>::new()
        );
        assert_eq!(tokens.authenticate("nope"), None);
        assert_eq!(Tokens::parse("onlytoken\n").unwrap_err().0, 1);
    }
}
