//! Files every master serves (blobs, repository metadata), stored in parts of at most
//! [`FILE_PART`] bytes (`bytea`), with a head row holding their SHA-256, size and number of
//! parts, checked when a file is read back (see the SQLite engine's `sqlite_coord.rs`).

use hearth_protocol::Sha256;

use super::super::coord::FILE_PART;
use super::super::{FileKind, StoreError};
use super::bridge::{Tx, corrupt, ms, pg};

/// Stores (or replaces) a file, part by part.
pub(super) async fn put(
    tx: &Tx<'_>,
    (kind, name, bytes): &(FileKind, String, Vec<u8>),
) -> Result<(), StoreError> {
    let kind_text = kind.as_str();
    tx.execute(
        "DELETE FROM shared_file_parts WHERE kind = $1 AND name = $2",
        &[&kind_text, name],
    )
    .await?;
    let mut parts = 0i64;
    for chunk in bytes.chunks(FILE_PART) {
        tx.execute(
            "INSERT INTO shared_file_parts (kind, name, part, bytes) VALUES ($1, $2, $3, $4)",
            &[&kind_text, name, &parts, &chunk],
        )
        .await?;
        parts += 1;
    }
    tx.execute(
        "INSERT INTO shared_files (kind, name, sha256, size, parts) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (kind, name) DO UPDATE SET sha256 = EXCLUDED.sha256,
             size = EXCLUDED.size, parts = EXCLUDED.parts",
        &[
            &kind_text,
            name,
            &Sha256::digest(bytes).to_string(),
            &ms(u64::try_from(bytes.len()).unwrap_or(u64::MAX)),
            &parts,
        ],
    )
    .await?;
    tx.note_files([(*kind, name.clone())]);
    Ok(())
}

/// A file's bytes, checked against its head row.
pub(super) async fn get(
    tx: &Tx<'_>,
    (kind, name): &(FileKind, String),
) -> Result<Option<Vec<u8>>, StoreError> {
    let kind = kind.as_str();
    let Some(head) = tx
        .opt(
            "SELECT sha256, size, parts FROM shared_files WHERE kind = $1 AND name = $2",
            &[&kind, name],
        )
        .await?
    else {
        return Ok(None);
    };
    let (sha, size, parts): (String, i64, i64) = (
        head.try_get(0).map_err(pg)?,
        head.try_get(1).map_err(pg)?,
        head.try_get(2).map_err(pg)?,
    );
    let rows = tx
        .query(
            "SELECT part, bytes FROM shared_file_parts WHERE kind = $1 AND name = $2 ORDER BY part",
            &[&kind, name],
        )
        .await?;
    // The head row says how much to expect, but is no reason to allocate before reading.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(FILE_PART));
    let mut seen = 0i64;
    for row in rows {
        let part: i64 = row.try_get(0).map_err(pg)?;
        if part != seen {
            return Err(StoreError::Corrupt(format!(
                "shared file {kind} {name}: part {seen} missing"
            )));
        }
        let chunk: &[u8] = row.try_get(1).map_err(pg)?;
        bytes.extend_from_slice(chunk);
        seen += 1;
    }
    if seen != parts || Sha256::digest(&bytes).to_string() != sha {
        return Err(StoreError::Corrupt(format!(
            "shared file {kind} {name}: {seen} of {parts} parts, or its bytes do not match its SHA-256"
        )));
    }
    Ok(Some(bytes))
}

/// Every file of a kind: name and SHA-256, by name.
pub(super) async fn list(
    tx: &Tx<'_>,
    kind: &FileKind,
) -> Result<Vec<(String, Sha256)>, StoreError> {
    tx.query(
        "SELECT name, sha256 FROM shared_files WHERE kind = $1 ORDER BY name",
        &[&kind.as_str()],
    )
    .await?
    .iter()
    .map(|r| {
        let sha: String = r.try_get(1).map_err(pg)?;
        Ok((
            r.try_get(0).map_err(pg)?,
            sha.parse().map_err(|e| corrupt("shared file sha256", e))?,
        ))
    })
    .collect()
}
