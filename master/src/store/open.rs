//! Choosing the engine at start: `sqlite:PATH` (the embedded default, one master) or
//! `postgres://…` / `postgresql://…` (several masters on one database).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::{SqliteStore, Store, StoreError};

/// Where the master's state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgres://user:password@host:port/db?…` or a
    /// `host=/run/postgresql dbname=hearth` key-value string after `postgres:`).
    Postgres(String),
}

/// Why a `--store` value is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    /// Neither form.
    #[error("unknown store `{0}`: expected `sqlite:PATH` or `postgres://USER@HOST:PORT/DATABASE`")]
    Unknown(String),
    /// `sqlite:` with no path.
    #[error("`sqlite:` needs a file path, as in `sqlite:/var/lib/hearth/master.db`")]
    EmptyPath,
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(StoreUrlError::EmptyPath);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Self::Postgres(s.to_owned()));
        }
        if let Some(kv) = s.strip_prefix("postgres:") {
            return Ok(Self::Postgres(kv.to_owned()));
        }
        Err(StoreUrlError::Unknown(s.to_owned()))
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Prints the URL without a password.
impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Self::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) if u.password().is_some() => {
                    let _ = u.set_password(Some("…"));
                    write!(f, "{u}")
                }
                _ => write!(f, "{url}"),
            },
        }
    }
}

/// Opens (creating and migrating if needed) the store at `url`.
pub fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url {
        StoreUrl::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        StoreUrl::Postgres(conn) => Arc::new(super::postgres::PostgresStore::connect(conn)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_engines_and_refuses_others() {
        assert_eq!(
            "sqlite:/x/master.db".parse::<StoreUrl>(),
            Ok(StoreUrl::Sqlite("/x/master.db".into()))
        );
        assert_eq!(
            "postgres://h@127.0.0.1:5432/hearth".parse::<StoreUrl>(),
            Ok(StoreUrl::Postgres(
                "postgres://h@127.0.0.1:5432/hearth".into()
            ))
        );
        assert_eq!("sqlite:".parse::<StoreUrl>(), Err(StoreUrlError::EmptyPath));
        assert!(matches!(
            "mysql://x".parse::<StoreUrl>(),
            Err(StoreUrlError::Unknown(_))
        ));
    }

    #[test]
    fn display_hides_the_password() {
        let url: StoreUrl = "postgres://h:secret@127.0.0.1/db".parse().unwrap();
        assert!(!url.to_string().contains("secret"));
    }
}
