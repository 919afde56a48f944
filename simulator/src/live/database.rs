//! A scratch PostgreSQL database for one run: created with a random name on the server a URL
//! names, handed to the masters as their shared store, dropped (`WITH (FORCE)`) afterwards, so
//! that no run sees another's nodes or deployments. Used by live runs with several masters and
//! by the end-to-end tests and benchmarks on PostgreSQL.

/// A database made for one run; dropped when this is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    url: String,
    admin: String,
    name: String,
}

impl ScratchDatabase {
    /// Creates `hearth_<label>_<random>` on the server at `admin` (a URL or a key-value
    /// conninfo string; `label`: lowercase ASCII letters, digits and `_`).
    pub async fn create(admin: &str, label: &str) -> Result<Self, tokio_postgres::Error> {
        let name = format!("hearth_{label}_{:016x}", rand::random::<u64>());
        let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        drop(client);
        let _ = driver.await;
        Ok(Self {
            url: with_database(admin, &name),
            admin: admin.to_owned(),
            name,
        })
    }

    /// The connection URL of the scratch database.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_path(&format!("/{db}"));
            u.to_string()
        }
        // A key-value conninfo string: a later `dbname` wins.
        Err(_) => format!("{url} dbname={db}"),
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Dropped from async code too: do it on a thread of its own with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    let driver = tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    drop(client);
                    let _ = driver.await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_in_urls_and_conninfo_strings() {
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432/postgres", "x"),
            "postgres://u@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("host=/tmp user=u", "x"),
            "host=/tmp user=u dbname=x"
        );
    }
}
