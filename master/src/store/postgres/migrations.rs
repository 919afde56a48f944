//! PostgreSQL schema migrations, numbered from 1 and applied in order, each in its own
//! transaction under a transaction-scoped advisory lock, so that two masters starting together
//! on a new database do not both migrate it. A released migration is never edited; changes are
//! new migrations. The numbering is this engine's own (SQLite's migration 9 is all of 1 here,
//! its 10 is 2).
//!
//! The tables hold what SQLite's hold, with every integer a BIGINT; `assignments` also keeps
//! its instance's deployment name, so that the nodes holding a deployment's replicas are found
//! without parsing every spec. Text is in the `C` collation, so that `ORDER BY` sorts bytewise,
//! as SQLite does, whatever the database's locale.

use deadpool_postgres::Pool;

use super::super::StoreError;
use super::bridge::{pg, pool_error};

/// The advisory lock key held while migrating (`hearth` in ASCII).
const LOCK: i64 = 0x6865_6172_7468;

/// Each entry brings the schema from `version - 1` to `version`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"CREATE TABLE tokens (
        id            TEXT COLLATE "C" PRIMARY KEY,
        secret_hash   TEXT COLLATE "C" NOT NULL,
        label         TEXT COLLATE "C" NOT NULL,
        created_at_ms BIGINT NOT NULL,
        expires_at_ms BIGINT,
        spent_at_ms   BIGINT,
        spent_by      TEXT COLLATE "C",
        revoked_at_ms BIGINT
    );
    CREATE TABLE nodes (
        id             TEXT COLLATE "C" PRIMARY KEY,
        facts          TEXT COLLATE "C" NOT NULL,
        facts_version  BIGINT NOT NULL,
        admin          TEXT COLLATE "C" NOT NULL,
        enrolled_at_ms BIGINT NOT NULL,
        token_id       TEXT COLLATE "C" NOT NULL REFERENCES tokens(id),
        last_seen_ms   BIGINT,
        liveness       TEXT COLLATE "C" NOT NULL
    );
    CREATE TABLE assignments (
        instance      TEXT COLLATE "C" PRIMARY KEY,
        node          TEXT COLLATE "C" NOT NULL REFERENCES nodes(id),
        deployment    TEXT COLLATE "C" NOT NULL,
        generation    BIGINT NOT NULL,
        spec          TEXT COLLATE "C" NOT NULL,
        spec_version  BIGINT NOT NULL
    );
    CREATE INDEX assignments_by_node ON assignments(node);
    CREATE INDEX assignments_by_deployment ON assignments(deployment);
    CREATE TABLE node_revisions (
        node          TEXT COLLATE "C" PRIMARY KEY REFERENCES nodes(id),
        revision      BIGINT NOT NULL
    );
    CREATE TABLE deployments (
        name          TEXT COLLATE "C" PRIMARY KEY,
        spec          TEXT COLLATE "C" NOT NULL,
        spec_version  BIGINT NOT NULL,
        rollout       TEXT COLLATE "C",
        version       BIGINT NOT NULL DEFAULT 1
    );
    CREATE TABLE deployment_status (
        name           TEXT COLLATE "C" PRIMARY KEY,
        status         TEXT COLLATE "C" NOT NULL,
        status_version BIGINT NOT NULL
    );
    CREATE TABLE deployment_events (
        seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        deployment     TEXT COLLATE "C" NOT NULL,
        at_ms          BIGINT NOT NULL,
        kind           TEXT COLLATE "C" NOT NULL,
        text           TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX deployment_events_by_name ON deployment_events(deployment, seq);
    CREATE TABLE retired_instances (
        instance       TEXT COLLATE "C" PRIMARY KEY,
        generation     BIGINT NOT NULL
    );
    CREATE TABLE gateways (
        name           TEXT COLLATE "C" PRIMARY KEY,
        key            TEXT COLLATE "C" NOT NULL UNIQUE,
        tunnel_addr    TEXT COLLATE "C" NOT NULL,
        created_ms     BIGINT NOT NULL,
        last_seen_ms   BIGINT,
        overlay_addr   TEXT COLLATE "C"
    );
    CREATE TABLE backup_keys (
        deployment     TEXT COLLATE "C" PRIMARY KEY,
        key            TEXT COLLATE "C" NOT NULL,
        created_ms     BIGINT NOT NULL
    );
    CREATE TABLE backup_holders (
        deployment     TEXT COLLATE "C" NOT NULL,
        node           TEXT COLLATE "C" NOT NULL REFERENCES nodes(id),
        since_ms       BIGINT NOT NULL,
        PRIMARY KEY (deployment, node)
    );
    CREATE INDEX backup_holders_by_node ON backup_holders(node);
    CREATE TABLE snapshots (
        deployment     TEXT COLLATE "C" NOT NULL,
        snapshot       TEXT COLLATE "C" NOT NULL,
        instance       TEXT COLLATE "C" NOT NULL,
        node           TEXT COLLATE "C" NOT NULL,
        taken_ms       BIGINT NOT NULL,
        bytes          BIGINT NOT NULL,
        stored_bytes   BIGINT NOT NULL,
        sent_bytes     BIGINT NOT NULL,
        held_by        TEXT COLLATE "C" NOT NULL,
        received_ms    BIGINT NOT NULL,
        PRIMARY KEY (deployment, snapshot)
    );
    CREATE TABLE backup_requests (
        deployment       TEXT COLLATE "C" PRIMARY KEY,
        now_seq          BIGINT NOT NULL,
        restore_seq      BIGINT NOT NULL,
        restore_snapshot TEXT COLLATE "C",
        restore_ms       BIGINT NOT NULL DEFAULT 0
    );
    CREATE TABLE leases (
        name           TEXT COLLATE "C" PRIMARY KEY,
        holder         TEXT COLLATE "C" NOT NULL,
        epoch          BIGINT NOT NULL,
        expires_ms     BIGINT NOT NULL
    );
    CREATE TABLE masters (
        name           TEXT COLLATE "C" PRIMARY KEY,
        quic_addr      TEXT COLLATE "C" NOT NULL,
        api_addr       TEXT COLLATE "C",
        seen_ms        BIGINT NOT NULL
    );
    CREATE TABLE heard (
        node           TEXT COLLATE "C" NOT NULL,
        master         TEXT COLLATE "C" NOT NULL,
        heard_ms       BIGINT NOT NULL,
        PRIMARY KEY (node, master)
    );
    CREATE INDEX heard_by_time ON heard(heard_ms);
    CREATE TABLE shared_files (
        kind           TEXT COLLATE "C" NOT NULL,
        name           TEXT COLLATE "C" NOT NULL,
        sha256         TEXT COLLATE "C" NOT NULL,
        size           BIGINT NOT NULL,
        parts          BIGINT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE shared_file_parts (
        kind           TEXT COLLATE "C" NOT NULL,
        name           TEXT COLLATE "C" NOT NULL,
        part           BIGINT NOT NULL,
        bytes          BYTEA NOT NULL,
        PRIMARY KEY (kind, name, part)
    );
    CREATE TABLE instance_reports (
        instance       TEXT COLLATE "C" PRIMARY KEY,
        node           TEXT COLLATE "C" NOT NULL,
        master         TEXT COLLATE "C" NOT NULL,
        report         TEXT COLLATE "C" NOT NULL,
        report_version BIGINT NOT NULL,
        at_ms          BIGINT NOT NULL
    );"#,
    ),
    // Users and their roles (SQLite's migration 10): each person's role, a volunteer's nodes
    // (a JSON array of node ids), the store id and SHA-256 of their credential; and the
    // volunteer an enrolment token makes (or joins) when its node enrols.
    (
        2,
        r#"CREATE TABLE users (
        name           TEXT COLLATE "C" PRIMARY KEY,
        role           TEXT COLLATE "C" NOT NULL,
        nodes          TEXT COLLATE "C" NOT NULL,
        credential     TEXT COLLATE "C" NOT NULL UNIQUE,
        secret_hash    TEXT COLLATE "C" NOT NULL,
        created_at_ms  BIGINT NOT NULL,
        expires_at_ms  BIGINT
    );
    ALTER TABLE tokens ADD COLUMN volunteer TEXT COLLATE "C";"#,
    ),
];

/// The schema version this build writes.
pub(super) const LATEST: i64 = 2;

/// Brings the database to [`LATEST`], one migration per transaction, refusing one written by
/// a newer build.
pub(super) async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    loop {
        let tx = client.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .await
            .map_err(pg)?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await
            .map_err(pg)?;
        let current: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .await
            .map_err(pg)?
            .try_get(0)
            .map_err(pg)?;
        if current > LATEST {
            return Err(StoreError::TooNew {
                found: current,
                supported: LATEST,
            });
        }
        let Some((version, sql)) = MIGRATIONS.iter().find(|(v, _)| *v == current + 1) else {
            tx.commit().await.map_err(pg)?;
            return Ok(());
        };
        tx.batch_execute(sql).await.map_err(pg)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
}
