//! `infra state list | show | unlock`.

use anyhow::{anyhow, bail};
use infra_core::model::Address;
use infra_core::state::lock;

use super::{Context, Packaging, Paths, StateCommand};

pub async fn run(
    paths: &Paths,
    command: StateCommand,
    used: &mut Option<Context>,
) -> anyhow::Result<u8> {
    match command {
        StateCommand::List { env } => {
            let ctx = used.insert(Context::load(paths, &env, Packaging::Skip).await?);
            let stored = ctx.store.load().await?;
            let Some(doc) = stored.doc else {
                eprintln!("No state yet for env `{}`.", env.name);
                return Ok(0);
            };
            for (address, entry) in &doc.resources {
                println!(
                    "{address:<32} {:<50}{}",
                    entry.physical_id,
                    if entry.protected { " (protected)" } else { "" }
                );
            }
            eprintln!(
                "{} resources, serial {}, lineage {}",
                doc.resources.len(),
                doc.serial,
                doc.lineage
            );
            Ok(0)
        }
        StateCommand::Show { env, address } => {
            let ctx = used.insert(Context::load(paths, &env, Packaging::Skip).await?);
            let address: Address = address.parse()?;
            let stored = ctx.store.load().await?;
            let entry = stored
                .doc
                .as_ref()
                .and_then(|d| d.resources.get(&address))
                .ok_or_else(|| anyhow!("{address} is not in the state of env `{}`", env.name))?;
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "address": address, "entry": entry })
                )?
            );
            Ok(0)
        }
        StateCommand::Unlock { env, lock_id } => {
            let ctx = used.insert(Context::load(paths, &env, Packaging::Skip).await?);
            let current = lock::read(&ctx.store).await?;
            match (current, lock_id) {
                (None, _) => {
                    println!("State of env `{}` is not locked.", env.name);
                    Ok(0)
                }
                (Some(holder), None) => {
                    println!("{}", holder.describe());
                    println!(
                        "Release it with `infra state unlock --env {} {}`.",
                        env.name, holder.id
                    );
                    Ok(0)
                }
                (Some(holder), Some(id)) => {
                    if holder.id != id {
                        bail!("the state is held by another lock: {}", holder.describe());
                    }
                    lock::release(&ctx.store, &id).await?;
                    println!("Released {}.", holder.describe());
                    Ok(0)
                }
            }
        }
    }
}
