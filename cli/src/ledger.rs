//! `hearth ledger …`: export the credits ledger, verify an export alone, prove one entry's
//! inclusion, and run a witness (SPEC.md §15.5–15.7). The ledger's routes are public, so these
//! commands need the master's URL only (no admin token); `verify` needs nothing but the file.

use std::io::{BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use hearth_ledger::books::Books;
use hearth_ledger::checkpoint::{SignedCheckpoint, WitnessKey, WitnessVkey};
use hearth_ledger::export::{ExportHeader, ExportWriter};
use hearth_ledger::render::{Format, render};
use hearth_ledger::witness::{WitnessError, WitnessState, cosign};
use hearth_ledger::{
    ConsistencyProof, InclusionProof, Month, Report, VerifyOptions, leaf_hash, verify_inclusion,
};
use hearth_protocol::MasterId;
use serde::Deserialize;

use crate::Cli;
use crate::master_dir::MasterDir;

/// Entries per page of `GET /v1/ledger/entries` (the route's maximum).
const PAGE: u64 = 10_000;

/// `hearth ledger` subcommands.
#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// Write the ledger (or its tail) to an export file anyone can verify alone.
    Export {
        /// Start at the last checkpoint at or before this entry (default: the whole ledger).
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Write here (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify an export: chain, tree, checkpoints, signatures, co-signatures and the books.
    Verify {
        /// The export file.
        file: PathBuf,
        /// The master the export must be of (default: the one its header names).
        #[arg(long)]
        master: Option<MasterId>,
        /// A witness's verifier key (C2SP vkey) to check co-signatures against (repeatable).
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// Skip the probe and receipt signature checks (an Ed25519 verify each).
        #[arg(long)]
        no_signatures: bool,
        /// Also print the month's statements recomputed from the export (YYYY-MM).
        #[arg(long)]
        statements: Option<String>,
        /// With --statements: print JSON.
        #[arg(long, requires = "statements", conflicts_with = "csv")]
        json: bool,
        /// With --statements: print CSV.
        #[arg(long, requires = "statements")]
        csv: bool,
    },
    /// Fetch entry SEQ, its inclusion proof at the latest checkpoint and that checkpoint;
    /// check the master's signature and the proof here.
    Prove {
        /// The entry.
        seq: u64,
        /// The master to check the checkpoint against (default: the one its origin names).
        #[arg(long)]
        master: Option<MasterId>,
    },
    /// A witness: co-signs the master's checkpoints only if each extends the last it signed.
    #[command(subcommand)]
    Witness(WitnessCmd),
}

/// `hearth ledger witness` subcommands.
#[derive(Debug, Subcommand)]
pub enum WitnessCmd {
    /// Create a witness key in DIR and print the verifier key to register with the master.
    Init {
        /// The witness's directory (created).
        #[arg(long)]
        dir: PathBuf,
        /// The witness's key name (no spaces, no `+`), e.g. witness.example.org.
        #[arg(long)]
        name: String,
    },
    /// Follow the master: fetch its checkpoint and a consistency proof, co-sign, post.
    Run {
        /// The witness's directory (from `init`).
        #[arg(long)]
        dir: PathBuf,
        /// Check every this long (e.g. 60s).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "60s", conflicts_with = "once")]
        every: Duration,
        /// Check once and exit (status 1 if the checkpoint was refused).
        #[arg(long)]
        once: bool,
        /// The master to follow (default: the one the first checkpoint's origin names, then
        /// the one in the state).
        #[arg(long)]
        master: Option<MasterId>,
    },
    /// The master's witness registry: add, list, remove (`witnesses.rs`).
    #[command(flatten)]
    Registry(crate::witnesses::RegistryCmd),
}

/// Runs a `hearth ledger` command.
pub async fn run(cli: &Cli, cmd: &LedgerCmd) -> anyhow::Result<()> {
    match cmd {
        LedgerCmd::Verify {
            file,
            master,
            witnesses,
            no_signatures,
            statements,
            json,
            csv,
        } => verify_file(
            file,
            *master,
            witnesses,
            !*no_signatures,
            statements.as_deref(),
            *json,
            *csv,
        ),
        LedgerCmd::Witness(WitnessCmd::Init { dir, name }) => witness_init(dir, name),
        LedgerCmd::Witness(WitnessCmd::Registry(cmd)) => {
            crate::witnesses::run(&crate::client::Client::new(cli)?, cmd).await
        }
        LedgerCmd::Export { since, out } => {
            export(&Public::new(cli)?, *since, out.as_deref()).await
        }
        LedgerCmd::Prove { seq, master } => prove(&Public::new(cli)?, *seq, *master).await,
        LedgerCmd::Witness(WitnessCmd::Run {
            dir,
            every,
            once,
            master,
        }) => witness_run(&Public::new(cli)?, dir, *every, *once, *master).await,
    }
}

/// A client of the master's public ledger routes.
struct Public {
    http: reqwest::Client,
    url: String,
}

impl Public {
    fn new(cli: &Cli) -> anyhow::Result<Self> {
        let url = match (&cli.url, &cli.data_dir) {
            (Some(u), _) => u.trim_end_matches('/').to_owned(),
            (None, Some(d)) => MasterDir::new(d).url()?,
            (None, None) => {
                bail!("say where the master is: --url URL, HEARTH_URL, or --data-dir D")
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { http, url })
    }

    async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the master at {}: {e}", self.url))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .with_context(|| format!("reading the answer to GET {path}"))?;
        if !status.is_success() {
            bail!("GET {path}: the master answered {status}: {}", body.trim());
        }
        Ok(body)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let body = self.get_text(path).await?;
        serde_json::from_str(&body)
            .with_context(|| format!("the answer to GET {path} is not what SPEC §15 says"))
    }

    async fn post_text(&self, path: &str, body: String) -> anyhow::Result<(u16, String)> {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the master at {}: {e}", self.url))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await.unwrap_or_default()))
    }
}

/// One element of `GET /v1/ledger/checkpoints`.
#[derive(Debug, Deserialize)]
struct CheckpointItem {
    size: u64,
    note: String,
}

/// The master a note's origin names (`hearth-ledger/hm-…`).
fn master_of(note: &str) -> anyhow::Result<MasterId> {
    let origin = note.lines().next().unwrap_or_default();
    let id = origin.strip_prefix("hearth-ledger/").ok_or_else(|| {
        anyhow!("checkpoint origin `{origin}` is not `hearth-ledger/<master id>`")
    })?;
    id.parse()
        .map_err(|e| anyhow!("checkpoint origin `{origin}`: {e}"))
}

async fn export(api: &Public, since: u64, out: Option<&Path>) -> anyhow::Result<()> {
    let checkpoints: Vec<CheckpointItem> = api.get_json("/v1/ledger/checkpoints?since=0").await?;
    let latest = checkpoints
        .last()
        .ok_or_else(|| anyhow!("the ledger has no checkpoint yet: nothing verifiable to export"))?;
    let master = master_of(&latest.note)?;
    let base = checkpoints
        .iter()
        .rev()
        .find(|c| c.size <= since && c.size > 0);
    let header = match base {
        Some(c) if since > 0 => {
            let p: InclusionProof = api
                .get_json(&format!(
                    "/v1/ledger/proof/inclusion?seq={}&size={}",
                    c.size - 1,
                    c.size
                ))
                .await?;
            ExportHeader::from_checkpoint(master, c.size, c.note.clone(), p.leaf_hash, &p.path)
        }
        _ => {
            if since > 0 {
                eprintln!("no checkpoint at or before entry {since}: exporting from entry 0");
            }
            ExportHeader::from_start(master)
        }
    };
    let start = header.start;
    let cps = checkpoints.into_iter().map(|c| (c.size, c.note)).collect();
    let (sink, tmp): (Box<dyn std::io::Write>, Option<PathBuf>) = match out {
        Some(path) => {
            let tmp = path.with_extension("partial");
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            (Box::new(std::io::BufWriter::new(f)), Some(tmp))
        }
        None => (
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            None,
        ),
    };
    let mut w = ExportWriter::new(sink, &header, cps)?;
    loop {
        let next = w.next_seq();
        let page = api
            .get_text(&format!("/v1/ledger/entries?start={next}&limit={PAGE}"))
            .await?;
        let mut n = 0;
        for line in page.split_terminator('\n') {
            w.entry(next + n, line.as_bytes())?;
            n += 1;
        }
        if n < PAGE {
            break;
        }
    }
    let end = w.next_seq();
    w.finish()?.flush()?;
    if let (Some(tmp), Some(path)) = (tmp, out) {
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "exported entries {start}..{} of {master}'s ledger to {}",
            end,
            path.display()
        );
    }
    Ok(())
}

fn verify_file(
    file: &Path,
    master: Option<MasterId>,
    witnesses: &[String],
    signatures: bool,
    statements: Option<&str>,
    json: bool,
    csv: bool,
) -> anyhow::Result<()> {
    let witnesses = witnesses
        .iter()
        .map(|w| WitnessVkey::parse(w).map_err(|e| anyhow!("--witness: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = VerifyOptions {
        master,
        witnesses,
        signatures,
    };
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let report = verify_with_books(
        BufReader::with_capacity(1 << 20, f),
        &opts,
        statements,
        json,
        csv,
    )?;
    summary(&report, master.is_some(), signatures)?;
    if let Some(f) = &report.failure {
        bail!("verification failed at {f}");
    }
    if report.problems_total > 0 {
        bail!("{} problem(s) found (listed above)", report.problems_total);
    }
    Ok(())
}

/// Verifies, replaying the books (when the export starts at entry 0), and prints the month's
/// recomputed statements if asked.
fn verify_with_books(
    input: impl std::io::BufRead,
    opts: &VerifyOptions,
    statements: Option<&str>,
    json: bool,
    csv: bool,
) -> anyhow::Result<Report> {
    let month: Option<Month> = statements
        .map(|m| m.parse().map_err(|e| anyhow!("--statements {m}: {e}")))
        .transpose()?;
    let mut books = Books::new();
    let report = hearth_ledger::verify(input, opts, Some(&mut books));
    if let Some(month) = month {
        if !report.replayed {
            bail!(
                "--statements needs an export from entry 0 (the books need the whole history): export without --since"
            );
        }
        if report.failure.is_none() {
            let format = match (json, csv) {
                (true, _) => Format::Json,
                (_, true) => Format::Csv,
                _ => Format::Table,
            };
            let text = render(&books.statements(month), format);
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(report)
}

fn summary(r: &Report, pinned: bool, signatures: bool) -> anyhow::Result<()> {
    let mut err = std::io::stderr().lock();
    if let Some(h) = &r.header {
        writeln!(
            err,
            "export of {} ({}), from entry {}",
            h.master,
            if pinned {
                "as --master requires"
            } else {
                "as its header says; pass --master to pin it"
            },
            h.start
        )?;
    }
    let kinds: Vec<String> = r.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    writeln!(
        err,
        "entries: {} verified (seq {}..{}): {}",
        r.entries,
        r.end - r.entries,
        r.end,
        kinds.join(", ")
    )?;
    match &r.last_checkpoint {
        Some(c) => writeln!(
            err,
            "checkpoints: {} verified, the last of size {} (root {})",
            r.checkpoints, c.size, c.root
        )?,
        None => writeln!(err, "checkpoints: none: no signature covers these entries")?,
    }
    if r.uncovered() > 0 && r.failure.is_none() {
        writeln!(
            err,
            "warning: the last {} entries are after the last checkpoint: no signature covers them yet",
            r.uncovered()
        )?;
    }
    for (w, n) in &r.cosignatures {
        writeln!(err, "co-signatures: {n} by {w}")?;
    }
    if !r.unknown_witnesses.is_empty() {
        let names: Vec<&str> = r.unknown_witnesses.iter().map(String::as_str).collect();
        writeln!(
            err,
            "co-signed also by witnesses not given with --witness (not checked): {}",
            names.join(", ")
        )?;
    }
    if r.replayed {
        writeln!(
            err,
            "books: every entry replayed; scores, statements and receipts recomputed"
        )?;
    } else {
        writeln!(
            err,
            "books: not replayed (the export starts at entry {}; they need the whole history)",
            r.end - r.entries
        )?;
    }
    if signatures {
        writeln!(
            err,
            "signatures: {} probe and receipt signatures checked",
            r.signatures_checked
        )?;
    } else {
        writeln!(err, "signatures: not checked (--no-signatures)")?;
    }
    for p in &r.problems {
        writeln!(err, "problem: {p}")?;
    }
    if r.problems_total > r.problems.len() as u64 {
        writeln!(
            err,
            "… and {} more problems",
            r.problems_total - r.problems.len() as u64
        )?;
    }
    Ok(())
}

async fn prove(api: &Public, seq: u64, master: Option<MasterId>) -> anyhow::Result<()> {
    let note = api.get_text("/v1/ledger/checkpoint").await?;
    let master = match master {
        Some(m) => m,
        None => master_of(&note)?,
    };
    let cp = SignedCheckpoint::open(&note, &master)
        .map_err(|e| anyhow!("the latest checkpoint: {e}"))?;
    let size = cp.checkpoint.size;
    if seq >= size {
        bail!(
            "entry {seq} is not covered by the latest checkpoint (size {size}) yet: try again after the next checkpoint"
        );
    }
    let page = api
        .get_text(&format!("/v1/ledger/entries?start={seq}&limit=1"))
        .await?;
    let line = page
        .split_terminator('\n')
        .next()
        .ok_or_else(|| anyhow!("the master sent no entry {seq}"))?;
    let proof: InclusionProof = api
        .get_json(&format!("/v1/ledger/proof/inclusion?seq={seq}&size={size}"))
        .await?;
    if proof.seq != seq || proof.size != size {
        bail!(
            "the master sent a proof for entry {} at size {}, not {seq} at {size}",
            proof.seq,
            proof.size
        );
    }
    let leaf = leaf_hash(line.as_bytes());
    verify_inclusion(&proof, &leaf, &cp.checkpoint.root)
        .map_err(|e| anyhow!("entry {seq} is NOT proven in the checkpoint of size {size}: {e}"))?;
    outln!("{line}")?;
    outln!("leaf hash: {leaf}")?;
    outln!(
        "inclusion path ({} hashes): {}",
        proof.path.len(),
        hearth_ledger::proof::encode_path(&proof.path)
    )?;
    outln!("checkpoint:\n{}", cp.note())?;
    outln!(
        "verified: entry {seq} is in {master}'s ledger of size {size} (root {})",
        cp.checkpoint.root
    )?;
    Ok(())
}

const KEY_FILE: &str = "witness.key";
const VKEY_FILE: &str = "witness.vkey";
const STATE_FILE: &str = "state.json";

fn witness_init(dir: &Path, name: &str) -> anyhow::Result<()> {
    let key_path = dir.join(KEY_FILE);
    if key_path.exists() {
        bail!(
            "{} already exists: a witness keeps its key (remove the directory to start over)",
            key_path.display()
        );
    }
    let key = WitnessKey::generate(name)?;
    std::fs::create_dir_all(dir.join("evidence"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    write_private(&key_path, &format!("{}\n", key.to_text()))?;
    std::fs::write(dir.join(VKEY_FILE), format!("{}\n", key.vkey()))?;
    outln!("{}", key.vkey())?;
    eprintln!(
        "witness key written to {}; register the verifier key above with the master's admin \
         (POST /v1/ledger/witnesses {{\"name\":\"{name}\",\"vkey\":…}}) and give it to auditors \
         (`hearth ledger verify --witness VKEY`)",
        key_path.display()
    );
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn witness_run(
    api: &Public,
    dir: &Path,
    every: Duration,
    once: bool,
    master: Option<MasterId>,
) -> anyhow::Result<()> {
    let key_path = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "cannot read {} (run `hearth ledger witness init` first)",
            key_path.display()
        )
    })?;
    let key = WitnessKey::parse(&text)?;
    loop {
        match witness_round(api, dir, &key, master).await {
            Ok(msg) => eprintln!("{msg}"),
            Err(Round::Evidence(msg)) => bail!("{msg}"),
            Err(Round::Refused(msg)) if once => bail!("{msg}"),
            Err(Round::Refused(msg)) => eprintln!(
                "warning: {msg}; trying again in {}",
                humantime::format_duration(every)
            ),
        }
        if once {
            return Ok(());
        }
        tokio::time::sleep(every).await;
    }
}

/// A round that did not co-sign.
enum Round {
    /// The master misbehaved: evidence was kept; the witness stops.
    Evidence(String),
    /// Anything else (unreachable master, a bad answer): try again later.
    Refused(String),
}

impl From<anyhow::Error> for Round {
    fn from(e: anyhow::Error) -> Self {
        Self::Refused(format!("{e:#}"))
    }
}

async fn witness_round(
    api: &Public,
    dir: &Path,
    key: &WitnessKey,
    pinned: Option<MasterId>,
) -> Result<String, Round> {
    let state_path = dir.join(STATE_FILE);
    let state: Option<WitnessState> = match std::fs::read(&state_path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes).map_err(|e| anyhow!("{}: {e}", state_path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(anyhow!("cannot read {}: {e}", state_path.display()).into()),
    };
    let note = api.get_text("/v1/ledger/checkpoint").await?;
    let master = match (&state, pinned) {
        (_, Some(m)) => m,
        (Some(s), None) => master_of(&s.note)?,
        (None, None) => master_of(&note)?,
    };
    let offered = SignedCheckpoint::open(&note, &master)
        .map_err(|e| anyhow!("the master's checkpoint is refused: {e}"))?;
    let size = offered.checkpoint.size;
    let proof: Option<ConsistencyProof> = match &state {
        Some(s) if size > s.size => Some(
            api.get_json(&format!(
                "/v1/ledger/proof/consistency?from={}&to={size}",
                s.size
            ))
            .await?,
        ),
        _ => None,
    };
    let (new_state, line) = match cosign(state.as_ref(), &note, proof.as_ref(), &master, key) {
        Ok(ok) => ok,
        Err(e) => return Err(refused(dir, state.as_ref(), &note, proof.as_ref(), &e)),
    };
    let first = state.is_none();
    let body = serde_json::to_vec_pretty(&new_state).map_err(anyhow::Error::from)?;
    write_atomic(&state_path, &body)?;
    let (status, answer) = api
        .post_text(
            "/v1/ledger/cosignatures",
            format!("{}\n{line}", offered.text()),
        )
        .await?;
    match status {
        200 | 201 => Ok(format!(
            "co-signed {master}'s checkpoint of size {size}{}",
            if first {
                " (first checkpoint seen: trusted on first use)"
            } else {
                ""
            }
        )),
        403 => Err(Round::Refused(format!(
            "the master does not know this witness ({}): register {}",
            answer.trim(),
            key.vkey()
        ))),
        _ => Err(Round::Refused(format!(
            "the master refused the co-signature ({status}): {}",
            answer.trim()
        ))),
    }
}

/// Records a refusal; keeps both notes (and the proof) in DIR/evidence when it shows a
/// misbehaving master.
fn refused(
    dir: &Path,
    state: Option<&WitnessState>,
    note: &str,
    proof: Option<&ConsistencyProof>,
    e: &WitnessError,
) -> Round {
    let keep = matches!(e, WitnessError::Fork { .. } | WitnessError::Rollback { .. });
    if !keep {
        return Round::Refused(e.to_string());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let evidence = dir.join("evidence").join(stamp.to_string());
    let kept = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(&evidence)?;
        if let Some(s) = state {
            std::fs::write(evidence.join("signed.note"), &s.note)?;
        }
        std::fs::write(evidence.join("offered.note"), note)?;
        if let Some(p) = proof {
            std::fs::write(
                evidence.join("consistency.json"),
                serde_json::to_vec_pretty(p)?,
            )?;
        }
        std::fs::write(evidence.join("why.txt"), format!("{e}\n"))?;
        Ok(())
    })();
    match kept {
        Ok(()) => Round::Evidence(format!("{e}; both notes kept in {}", evidence.display())),
        Err(k) => Round::Evidence(format!(
            "{e}; and the evidence could not be written to {}: {k:#}",
            evidence.display()
        )),
    }
}
