//! Why a node does not trust something: [`TrustError`], one variant per refusal a caller may
//! act on, and the mapping of `tough`'s errors onto it (rollback, expiry, hash mismatch,
//! threshold), with tough's remaining messages made into sentences.

use hearth_protocol::Sha256;

/// Why the node does not trust something.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The node has no root to start from.
    #[error("this node has no trusted root for signed recipes (enrol with --trust-root ROOT.json)")]
    NoRoot,
    /// The root offered as the anchor is not a valid, self-signed root.
    #[error("the offered root is not valid: {0}")]
    BadRoot(String),
    /// A root is already pinned: an anchor is never replaced.
    #[error(
        "this node already pins a root, and a pinned root is never replaced (new roots come \
         through the signed repository, signed by the old root keys)"
    )]
    RootPinned,
    /// The repository metadata failed verification for a reason without a variant of its own.
    #[error("signed recipe repository refused: {0}")]
    Metadata(String),
    /// Metadata older than what this node already trusted: a rollback.
    #[error(
        "signed recipe repository refused: found version {got} of {role} metadata when we had \
         previously fetched version {had} (the master serves old metadata)"
    )]
    Rollback {
        /// Role of the metadata (root, targets, snapshot, timestamp).
        role: String,
        /// Version this node trusted.
        had: u64,
        /// Version offered.
        got: u64,
    },
    /// Expired metadata: a frozen repository, or one the cooperative no longer signs.
    #[error(
        "signed recipe repository refused: {role} metadata is expired (the cooperative must sign \
         the repository again)"
    )]
    Expired {
        /// Role of the expired metadata.
        role: String,
    },
    /// A metadata file that does not hash to what the signed metadata above it lists: edited
    /// after signing, or mixed from another signing.
    #[error(
        "signed recipe repository refused: {file} does not hash to what the signed metadata \
         lists (calculated {calculated}, expected {expected}): edited or from another signing"
    )]
    HashMismatch {
        /// The file.
        file: String,
        /// Its hash.
        calculated: String,
        /// The hash the signed metadata lists.
        expected: String,
    },
    /// Metadata signed by fewer keys of its role than the threshold.
    #[error(
        "signed recipe repository refused: {role} metadata has {valid} valid signature(s), below \
         its threshold of {threshold}"
    )]
    Threshold {
        /// Role of the metadata.
        role: String,
        /// Signatures required.
        threshold: u64,
        /// Valid signatures found.
        valid: u64,
    },
    /// The recipe's bytes are not as long as the signed targets list says.
    #[error("recipe {recipe} is {got} bytes, the signed targets list {listed}")]
    RecipeLength {
        /// Name and version.
        recipe: String,
        /// Bytes received.
        got: u64,
        /// Length listed.
        listed: u64,
    },
    /// An artifact listed with another size than its recipe gives.
    #[error("{target} is listed with {listed} bytes, the recipe says {recipe}")]
    ArtifactSize {
        /// Target name of the artifact.
        target: String,
        /// Size listed in the signed targets.
        listed: u64,
        /// Size the recipe gives.
        recipe: u64,
    },
    /// The target is not listed in the signed targets.
    #[error("{0} is not listed in the signed targets metadata")]
    Unlisted(String),
    /// The master named other bytes than the signed targets list.
    #[error("{target}: the master named SHA-256 {named}, the signed targets list {listed}")]
    Mismatch {
        /// Target name.
        target: String,
        /// What the master named.
        named: Sha256,
        /// What the signed metadata lists.
        listed: Sha256,
    },
    /// Local storage failed.
    #[error("trust store {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// tough's messages as sentences where they are not: a signature listed twice is reported with
/// the key id's Rust debug form.
pub(super) fn plain(text: &str) -> String {
    if text.contains("Duplicate key ID") {
        "it carries two signatures by the same key (each key signs a root once): sign it again with `hearth recipe keys rotate-root`, or remove the repeated signature"
            .to_owned()
    } else {
        text.to_owned()
    }
}

/// What tough refused, as a variant when the failure has one: the first cause that has one
/// (a hash mismatch comes wrapped in the transport error of the fetch it ended).
pub(super) fn refused(e: &tough::error::Error) -> TrustError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(v) = c.downcast_ref::<tough::error::Error>().and_then(variant) {
            return v;
        }
        cause = c.source();
    }
    TrustError::Metadata(plain(&chain(e)))
}

/// The variant of one tough error, if it has one.
fn variant(e: &tough::error::Error) -> Option<TrustError> {
    use tough::error::Error as E;
    Some(match e {
        E::OlderMetadata {
            role,
            current_version,
            new_version,
            ..
        } => TrustError::Rollback {
            role: role.to_string(),
            had: *current_version,
            got: *new_version,
        },
        E::ExpiredMetadata { role, .. } => TrustError::Expired {
            role: role.to_string(),
        },
        E::HashMismatch {
            context,
            calculated,
            expected,
            ..
        } => TrustError::HashMismatch {
            file: context.clone(),
            calculated: calculated.clone(),
            expected: expected.clone(),
        },
        E::VerifyMetadata { source, .. }
        | E::VerifyRoleMetadata { source, .. }
        | E::VerifyTrustedMetadata { source, .. } => match source {
            tough::schema::Error::SignatureThreshold {
                role,
                threshold,
                valid,
                ..
            } => TrustError::Threshold {
                role: role.to_string(),
                threshold: *threshold,
                valid: *valid,
            },
            _ => return None,
        },
        _ => return None,
    })
}

/// An error and its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
