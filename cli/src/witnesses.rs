//! `hearth ledger witness add NAME VKEY | list | remove NAME`: the master's witness registry
//! (admin token for add and remove; the list is public). The lead merges these into the
//! `hearth ledger witness` enum beside `init` and `run` (`ledger.rs`).

use clap::Subcommand;
use hearth_api::WitnessSpec;

use crate::client::Client;

/// Registry subcommands.
#[derive(Debug, Subcommand)]
pub enum RegistryCmd {
    /// Register a witness whose co-signatures the master accepts.
    Add {
        /// Its name (the key name of its signature lines).
        name: String,
        /// Its C2SP verifier key (what `hearth ledger witness init` printed).
        vkey: String,
    },
    /// List the registered witnesses.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a witness (its stored co-signatures stay).
    Remove {
        /// Its name.
        name: String,
    },
}

/// Runs a registry command.
pub(crate) async fn run(client: &Client, cmd: &RegistryCmd) -> anyhow::Result<()> {
    match cmd {
        RegistryCmd::Add { name, vkey } => {
            let body = WitnessSpec {
                name: name.clone(),
                vkey: vkey.trim().to_owned(),
            };
            client
                .send(
                    reqwest::Method::POST,
                    "/v1/ledger/witnesses",
                    Some(&body),
                    None,
                )
                .await?;
            outln!("witness {name} registered")?;
        }
        RegistryCmd::List { json } => {
            let v = client.get("/v1/ledger/witnesses").await?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                let list: Vec<WitnessSpec> = serde_json::from_value(v)?;
                if list.is_empty() {
                    eprintln!("no witnesses registered");
                }
                for w in list {
                    outln!("{}\t{}", w.name, w.vkey)?;
                }
            }
        }
        RegistryCmd::Remove { name } => {
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/v1/ledger/witnesses/{name}"),
                    None,
                )
                .await?;
            outln!("witness {name} removed")?;
        }
    }
    Ok(())
}
