//! Enrolment tokens, nodes and their persisted liveness (the SQLite engine's queries, ported).

use hearth_protocol::{Hex, NodeFacts, NodeId, Sha256};
use tokio_postgres::Row;

use super::super::users::VolunteerEnrolment;
use super::super::{
    AdminChange, AdminState, LivenessUpdate, NodeRecord, RedeemError, StoreError, TokenRecord,
};
use super::bridge::{Tx, corrupt, ms, pg, unms};
use super::users;

/// Version of the JSON encoding of [`NodeFacts`] in the `nodes.facts` column.
const FACTS_VERSION: i64 = 1;

/// The arguments of [`redeem_and_enrol`].
#[derive(Debug)]
pub(super) struct Redeem {
    pub(super) token_id: Hex<4>,
    pub(super) secret_hash: Sha256,
    pub(super) node: NodeId,
    pub(super) facts: NodeFacts,
    pub(super) now_ms: u64,
}

fn token_from_row(r: &Row) -> Result<TokenRecord, StoreError> {
    let id: String = r.try_get("id").map_err(pg)?;
    let hash: String = r.try_get("secret_hash").map_err(pg)?;
    let spent_by: Option<String> = r.try_get("spent_by").map_err(pg)?;
    let volunteer: Option<String> = r.try_get("volunteer").map_err(pg)?;
    let opt = |c: &str| -> Result<Option<u64>, StoreError> {
        Ok(r.try_get::<_, Option<i64>>(c).map_err(pg)?.map(unms))
    };
    Ok(TokenRecord {
        id: id.parse().map_err(|e| corrupt("token id", e))?,
        secret_hash: hash.parse().map_err(|e| corrupt("token hash", e))?,
        label: r.try_get("label").map_err(pg)?,
        created_at_ms: unms(r.try_get("created_at_ms").map_err(pg)?),
        expires_at_ms: opt("expires_at_ms")?,
        spent_at_ms: opt("spent_at_ms")?,
        spent_by: spent_by
            .map(|s| s.parse().map_err(|e| corrupt("spent_by", e)))
            .transpose()?,
        revoked_at_ms: opt("revoked_at_ms")?,
        volunteer: volunteer
            .map(|v| v.parse().map_err(|e| corrupt("token volunteer", e)))
            .transpose()?,
    })
}

fn node_from_row(r: &Row) -> Result<NodeRecord, StoreError> {
    let id: String = r.try_get("id").map_err(pg)?;
    let facts: String = r.try_get("facts").map_err(pg)?;
    let version: i64 = r.try_get("facts_version").map_err(pg)?;
    if version != FACTS_VERSION {
        return Err(corrupt("facts_version", version));
    }
    let admin: String = r.try_get("admin").map_err(pg)?;
    let token: String = r.try_get("token_id").map_err(pg)?;
    Ok(NodeRecord {
        id: id.parse().map_err(|e| corrupt("node id", e))?,
        facts: serde_json::from_str(&facts).map_err(|e| corrupt("facts", e))?,
        admin: AdminState::parse(&admin).ok_or_else(|| corrupt("admin", &admin))?,
        enrolled_at_ms: unms(r.try_get("enrolled_at_ms").map_err(pg)?),
        token_id: token.parse().map_err(|e| corrupt("token_id", e))?,
        last_seen_ms: r
            .try_get::<_, Option<i64>>("last_seen_ms")
            .map_err(pg)?
            .map(unms),
        liveness: r.try_get("liveness").map_err(pg)?,
    })
}

pub(super) async fn create_token(tx: &Tx<'_>, t: &TokenRecord) -> Result<bool, StoreError> {
    let inserted = tx
        .execute(
            "INSERT INTO tokens (id, secret_hash, label, created_at_ms, expires_at_ms, volunteer)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            &[
                &t.id.to_string(),
                &t.secret_hash.to_string(),
                &t.label,
                &ms(t.created_at_ms),
                &t.expires_at_ms.map(ms),
                &t.volunteer.as_ref().map(hearth_api::UserName::as_str),
            ],
        )
        .await?;
    Ok(inserted == 1)
}

pub(super) async fn tokens(tx: &Tx<'_>, _: &()) -> Result<Vec<TokenRecord>, StoreError> {
    tx.query("SELECT * FROM tokens ORDER BY created_at_ms DESC, id", &[])
        .await?
        .iter()
        .map(token_from_row)
        .collect()
}

pub(super) async fn revoke_token(
    tx: &Tx<'_>,
    (id, now_ms): &(Hex<4>, u64),
) -> Result<Option<bool>, StoreError> {
    let id = id.to_string();
    let Some(row) = tx
        .opt("SELECT spent_at_ms FROM tokens WHERE id = $1", &[&id])
        .await?
    else {
        return Ok(None);
    };
    if row.try_get::<_, Option<i64>>(0).map_err(pg)?.is_some() {
        return Ok(Some(false));
    }
    tx.execute(
        "UPDATE tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE id = $1",
        &[&id, &ms(*now_ms)],
    )
    .await?;
    Ok(Some(true))
}

pub(super) async fn redeem_and_enrol(
    tx: &Tx<'_>,
    a: &Redeem,
) -> Result<Result<NodeRecord, RedeemError>, StoreError> {
    let token = match tx
        .opt(
            "SELECT * FROM tokens WHERE id = $1",
            &[&a.token_id.to_string()],
        )
        .await?
    {
        Some(row) => Some(token_from_row(&row)?),
        None => None,
    };
    let token = match token {
        None => Err(RedeemError::Invalid),
        Some(t) if t.secret_hash != a.secret_hash => Err(RedeemError::Invalid),
        Some(t) if t.spent_at_ms.is_some() => Err(RedeemError::Spent),
        Some(t) if t.revoked_at_ms.is_some() => Err(RedeemError::Revoked),
        Some(t) if t.expires_at_ms.is_some_and(|e| e <= a.now_ms) => Err(RedeemError::Expired),
        Some(t) => Ok(t),
    };
    let token = match token {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let node = a.node.to_string();
    if tx
        .opt("SELECT 1 FROM nodes WHERE id = $1", &[&node])
        .await?
        .is_some()
    {
        return Ok(Err(RedeemError::AlreadyEnrolled));
    }
    let facts = serde_json::to_string(&a.facts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    tx.execute(
        "UPDATE tokens SET spent_at_ms = $2, spent_by = $3 WHERE id = $1",
        &[&a.token_id.to_string(), &ms(a.now_ms), &node],
    )
    .await?;
    tx.execute(
        "INSERT INTO nodes (id, facts, facts_version, admin, enrolled_at_ms, token_id, liveness)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending')",
        &[
            &node,
            &facts,
            &FACTS_VERSION,
            &AdminState::Active.as_str(),
            &ms(a.now_ms),
            &a.token_id.to_string(),
        ],
    )
    .await?;
    if let Some(name) = token.volunteer {
        let enrolment = VolunteerEnrolment {
            name,
            node: a.node,
            token_id: a.token_id,
            secret_hash: token.secret_hash,
            now_ms: a.now_ms,
        };
        users::enrol_volunteer(tx, &enrolment).await?;
    }
    tx.note_nodes([a.node]);
    Ok(Ok(NodeRecord {
        id: a.node,
        facts: a.facts.clone(),
        admin: AdminState::Active,
        enrolled_at_ms: a.now_ms,
        token_id: a.token_id,
        last_seen_ms: None,
        liveness: "pending".into(),
    }))
}

pub(super) async fn nodes(tx: &Tx<'_>, _: &()) -> Result<Vec<NodeRecord>, StoreError> {
    tx.query("SELECT * FROM nodes ORDER BY enrolled_at_ms, id", &[])
        .await?
        .iter()
        .map(node_from_row)
        .collect()
}

pub(super) async fn node(tx: &Tx<'_>, id: &NodeId) -> Result<Option<NodeRecord>, StoreError> {
    tx.opt("SELECT * FROM nodes WHERE id = $1", &[&id.to_string()])
        .await?
        .as_ref()
        .map(node_from_row)
        .transpose()
}

pub(super) async fn set_admin(
    tx: &Tx<'_>,
    (id, admin): &(NodeId, AdminState),
) -> Result<AdminChange, StoreError> {
    let text = id.to_string();
    // The condition is in the write itself: a revoked node stays revoked whatever races it.
    let n = tx
        .execute(
            "UPDATE nodes SET admin = $2 WHERE id = $1 AND (admin <> 'revoked' OR $2 = 'revoked')",
            &[&text, &admin.as_str()],
        )
        .await?;
    if n == 1 {
        tx.note_nodes([*id]);
        return Ok(AdminChange::Set);
    }
    Ok(
        match tx
            .opt("SELECT 1 FROM nodes WHERE id = $1", &[&text])
            .await?
        {
            Some(_) => AdminChange::Revoked,
            None => AdminChange::Unknown,
        },
    )
}

/// One statement for the whole batch: per node, the last liveness and the last known
/// heartbeat time (what SQLite's one-by-one updates leave).
pub(super) async fn record_liveness(
    tx: &Tx<'_>,
    updates: &[LivenessUpdate],
) -> Result<(), StoreError> {
    let mut last: std::collections::BTreeMap<NodeId, (&'static str, Option<u64>)> =
        std::collections::BTreeMap::new();
    for u in updates {
        let e = last.entry(u.node).or_insert((u.liveness, None));
        e.0 = u.liveness;
        if u.last_seen_ms.is_some() {
            e.1 = u.last_seen_ms;
        }
    }
    let ids: Vec<String> = last.keys().map(ToString::to_string).collect();
    let states: Vec<&str> = last.values().map(|(l, _)| *l).collect();
    let seen: Vec<Option<i64>> = last.values().map(|(_, s)| s.map(ms)).collect();
    tx.execute(
        "UPDATE nodes SET liveness = u.liveness, last_seen_ms = COALESCE(u.seen, nodes.last_seen_ms)
         FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(id, liveness, seen)
         WHERE nodes.id = u.id",
        &[&ids, &states, &seen],
    )
    .await?;
    Ok(())
}
