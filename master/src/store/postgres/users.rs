//! People and their roles (the SQLite engine's `users.rs` queries, ported; the records, the row
//! parsing and the enrolment rules are shared from there).

use hearth_api::UserName;
use tokio_postgres::Row;

use super::super::users::{Enrolment, UserRow, VolunteerEnrolment, nodes_json};
use super::super::{PutUser, StoreError, UserRecord};
use super::bridge::{Tx, ms, pg};

fn user_from_row(r: &Row) -> Result<UserRecord, StoreError> {
    UserRow {
        name: r.try_get("name").map_err(pg)?,
        role: r.try_get("role").map_err(pg)?,
        nodes: r.try_get("nodes").map_err(pg)?,
        credential: r.try_get("credential").map_err(pg)?,
        secret_hash: r.try_get("secret_hash").map_err(pg)?,
        created_at_ms: r.try_get("created_at_ms").map_err(pg)?,
        expires_at_ms: r.try_get("expires_at_ms").map_err(pg)?,
    }
    .parse()
}

/// Stores `u` unless its name or its credential is taken.
pub(super) async fn put(tx: &Tx<'_>, u: &UserRecord) -> Result<PutUser, StoreError> {
    if by_name(tx, &u.name).await?.is_some() {
        return Ok(PutUser::NameTaken);
    }
    if by_credential(tx, &u.credential).await?.is_some() {
        return Ok(PutUser::CredentialTaken);
    }
    insert(tx, u).await?;
    Ok(PutUser::Created)
}

async fn insert(tx: &Tx<'_>, u: &UserRecord) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO users (name, role, nodes, credential, secret_hash, created_at_ms, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &u.name.as_str(),
            &u.role.as_str(),
            &nodes_json(&u.nodes),
            &u.credential,
            &u.secret_hash.to_string(),
            &ms(u.created_at_ms),
            &u.expires_at_ms.map(ms),
        ],
    )
    .await?;
    Ok(())
}

/// Every user, by name.
pub(super) async fn list(tx: &Tx<'_>, _: &()) -> Result<Vec<UserRecord>, StoreError> {
    tx.query("SELECT * FROM users ORDER BY name", &[])
        .await?
        .iter()
        .map(user_from_row)
        .collect()
}

/// The user holding a credential id.
pub(super) async fn by_credential(
    tx: &Tx<'_>,
    credential: &String,
) -> Result<Option<UserRecord>, StoreError> {
    tx.opt("SELECT * FROM users WHERE credential = $1", &[credential])
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

async fn by_name(tx: &Tx<'_>, name: &UserName) -> Result<Option<UserRecord>, StoreError> {
    tx.opt("SELECT * FROM users WHERE name = $1", &[&name.as_str()])
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
}

/// Removes a user; false if there is none of that name.
pub(super) async fn remove(tx: &Tx<'_>, name: &UserName) -> Result<bool, StoreError> {
    Ok(tx
        .execute("DELETE FROM users WHERE name = $1", &[&name.as_str()])
        .await?
        == 1)
}

/// Makes or joins the volunteer an enrolment token names, in the enrolment's transaction.
pub(super) async fn enrol_volunteer(tx: &Tx<'_>, v: &VolunteerEnrolment) -> Result<(), StoreError> {
    match v.decide(by_name(tx, &v.name).await?) {
        Enrolment::Create(user) => {
            // Checked first: a unique violation would abort the whole enrolment.
            if by_credential(tx, &user.credential).await?.is_some() {
                v.warn_credential_taken();
            } else {
                insert(tx, &user).await?;
            }
        }
        Enrolment::Join(nodes) => {
            tx.execute(
                "UPDATE users SET nodes = $2 WHERE name = $1",
                &[&v.name.as_str(), &nodes_json(&nodes)],
            )
            .await?;
        }
        Enrolment::Keep => {}
    }
    Ok(())
}
