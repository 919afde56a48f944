//! Schema migrations, numbered from 1 and applied in order, each in its own transaction.
//! A released migration is never edited; changes are new migrations.

use rusqlite::Connection;

use super::StoreError;

/// Each entry brings the schema from `version - 1` to `version`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE tokens (
        id            TEXT PRIMARY KEY,
        secret_hash   TEXT NOT NULL,
        label         TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        expires_at_ms BIGINT,
        spent_at_ms   BIGINT,
        spent_by      TEXT,
        revoked_at_ms BIGINT
    );
    CREATE TABLE nodes (
        id             TEXT PRIMARY KEY,
        facts          TEXT NOT NULL,
        facts_version  INTEGER NOT NULL,
        admin          TEXT NOT NULL,
        enrolled_at_ms BIGINT NOT NULL,
        token_id       TEXT NOT NULL REFERENCES tokens(id),
        last_seen_ms   BIGINT,
        liveness       TEXT NOT NULL
    );",
    ),
    (
        2,
        "CREATE TABLE assignments (
        instance      TEXT PRIMARY KEY,
        node          TEXT NOT NULL REFERENCES nodes(id),
        generation    BIGINT NOT NULL,
        spec          TEXT NOT NULL,
        spec_version  INTEGER NOT NULL
    );
    CREATE INDEX assignments_by_node ON assignments(node);
    CREATE TABLE node_revisions (
        node          TEXT PRIMARY KEY REFERENCES nodes(id),
        revision      BIGINT NOT NULL
    );",
    ),
    (
        3,
        "CREATE TABLE deployments (
        name          TEXT PRIMARY KEY,
        spec          TEXT NOT NULL,
        spec_version  INTEGER NOT NULL
    );",
    ),
    (4, "ALTER TABLE deployments ADD COLUMN rollout TEXT;"),
    (
        5,
        "CREATE TABLE deployment_status (
        name           TEXT PRIMARY KEY,
        status         TEXT NOT NULL,
        status_version INTEGER NOT NULL
    );
    CREATE TABLE deployment_events (
        seq            INTEGER PRIMARY KEY,
        deployment     TEXT NOT NULL,
        at_ms          BIGINT NOT NULL,
        kind           TEXT NOT NULL,
        text           TEXT NOT NULL
    );
    CREATE INDEX deployment_events_by_name ON deployment_events(deployment, seq);
    CREATE TABLE retired_instances (
        instance       TEXT PRIMARY KEY,
        generation     BIGINT NOT NULL
    );",
    ),
    (
        6,
        "CREATE TABLE gateways (
        name           TEXT PRIMARY KEY,
        key            TEXT NOT NULL UNIQUE,
        tunnel_addr    TEXT NOT NULL,
        created_ms     BIGINT NOT NULL,
        last_seen_ms   BIGINT
    );",
    ),
    // The gateway's overlay relay address (SPEC §16.3), if it runs one.
    (7, "ALTER TABLE gateways ADD COLUMN overlay_addr TEXT;"),
    // Backups (issue 18): each deployment's key, the homes that keep its copies, the snapshots
    // its replicas' nodes reported, and the operator's requests (`backup now`, `restore`).
    (
        8,
        "CREATE TABLE backup_keys (
        deployment     TEXT PRIMARY KEY,
        key            TEXT NOT NULL,
        created_ms     BIGINT NOT NULL
    );
    CREATE TABLE backup_holders (
        deployment     TEXT NOT NULL,
        node           TEXT NOT NULL REFERENCES nodes(id),
        since_ms       BIGINT NOT NULL,
        PRIMARY KEY (deployment, node)
    );
    CREATE INDEX backup_holders_by_node ON backup_holders(node);
    CREATE TABLE snapshots (
        deployment     TEXT NOT NULL,
        snapshot       TEXT NOT NULL,
        instance       TEXT NOT NULL,
        node           TEXT NOT NULL,
        taken_ms       BIGINT NOT NULL,
        bytes          BIGINT NOT NULL,
        stored_bytes   BIGINT NOT NULL,
        sent_bytes     BIGINT NOT NULL,
        held_by        TEXT NOT NULL,
        received_ms    BIGINT NOT NULL,
        PRIMARY KEY (deployment, snapshot)
    );
    CREATE TABLE backup_requests (
        deployment       TEXT PRIMARY KEY,
        now_seq          BIGINT NOT NULL,
        restore_seq      BIGINT NOT NULL,
        restore_snapshot TEXT,
        restore_ms       BIGINT NOT NULL DEFAULT 0
    );",
    ),
    // Several masters (issue 19): an integer version for compare-and-set on deployments, the
    // scheduler lease, the masters' registry, and what each master heard and was told by its
    // nodes (the same tables as PostgreSQL's, so the conformance suite covers one behaviour).
    (
        9,
        "ALTER TABLE deployments ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
    CREATE TABLE leases (
        name           TEXT PRIMARY KEY,
        holder         TEXT NOT NULL,
        epoch          BIGINT NOT NULL,
        expires_ms     BIGINT NOT NULL
    );
    CREATE TABLE masters (
        name           TEXT PRIMARY KEY,
        quic_addr      TEXT NOT NULL,
        api_addr       TEXT,
        seen_ms        BIGINT NOT NULL
    );
    CREATE TABLE heard (
        node           TEXT NOT NULL,
        master         TEXT NOT NULL,
        heard_ms       BIGINT NOT NULL,
        PRIMARY KEY (node, master)
    );
    CREATE INDEX heard_by_time ON heard(heard_ms);
    CREATE TABLE shared_files (
        kind           TEXT NOT NULL,
        name           TEXT NOT NULL,
        sha256         TEXT NOT NULL,
        size           BIGINT NOT NULL,
        parts          BIGINT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE shared_file_parts (
        kind           TEXT NOT NULL,
        name           TEXT NOT NULL,
        part           BIGINT NOT NULL,
        bytes          BLOB NOT NULL,
        PRIMARY KEY (kind, name, part)
    );
    CREATE TABLE instance_reports (
        instance       TEXT PRIMARY KEY,
        node           TEXT NOT NULL,
        master         TEXT NOT NULL,
        report         TEXT NOT NULL,
        report_version INTEGER NOT NULL,
        at_ms          BIGINT NOT NULL
    );",
    ),
    // Users and their roles: each person's role, a volunteer's nodes (a JSON array of node
    // ids), the store id and SHA-256 of their credential; and the volunteer an enrolment token
    // makes (or joins) when its node enrols.
    (
        10,
        "CREATE TABLE users (
        name           TEXT PRIMARY KEY,
        role           TEXT NOT NULL,
        nodes          TEXT NOT NULL,
        credential     TEXT NOT NULL UNIQUE,
        secret_hash    TEXT NOT NULL,
        created_at_ms  BIGINT NOT NULL,
        expires_at_ms  BIGINT
    );
    ALTER TABLE tokens ADD COLUMN volunteer TEXT;",
    ),
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = 10;

/// Brings the database to [`LATEST`], refusing one written by a newer build.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if current > LATEST {
        return Err(StoreError::TooNew {
            found: current,
            supported: LATEST,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}
