//! `infra secret set | list`: writes a secret's value from stdin, or lists which secrets have
//! one. Values are checked against the secret's declared format before anything is sent and
//! are never printed, logged or stored anywhere but in Secrets Manager.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read};

use anyhow::{Context as _, anyhow, bail};
use infra_core::kinds::secret::{self, SecretListing};
use infra_core::model::{Kind, SecretSpec, Spec};

use super::{Context, Packaging, Paths, SecretCommand};

pub async fn run(
    paths: &Paths,
    command: SecretCommand,
    used: &mut Option<Context>,
) -> anyhow::Result<u8> {
    match command {
        SecretCommand::Set { env, secret: name } => {
            let ctx = used.insert(Context::load(paths, &env, Packaging::Skip).await?);
            let spec = declared(ctx, &name)?.clone();
            let value = read_value()?;
            secret::check_value(&spec.format, &value)
                .map_err(|e| anyhow!("secret `{name}` ({}): {e}", spec.name))?;
            match secret::put_value(&ctx.aws, &spec.name, value).await {
                Ok(()) => {}
                Err(e) if secret::NOT_FOUND.matches(&e) => bail!(
                    "secret `{name}` ({}) does not exist yet: run `infra apply --env {}` first",
                    spec.name,
                    env.name
                ),
                Err(e) => {
                    return Err(e).with_context(|| format!("writing secret `{name}`"));
                }
            }
            println!(
                "Stored a new value of secret.{name} ({}) as its current version.",
                spec.name
            );
            Ok(0)
        }
        SecretCommand::List { env } => {
            let ctx = used.insert(Context::load(paths, &env, Packaging::Skip).await?);
            let declared: Vec<(&str, &SecretSpec)> = ctx
                .stack
                .resources
                .iter()
                .filter_map(|r| match &r.spec {
                    Spec::Secret(s) => Some((r.address.name.as_str(), s)),
                    _ => None,
                })
                .collect();
            let names: BTreeSet<&str> = declared.iter().map(|(_, s)| s.name.as_str()).collect();
            // Every declared secret is confirmed directly where the listing lacks it.
            let listing = SecretListing::load(&ctx.aws, &names, &names).await?;
            for (short, spec) in declared {
                let status = match listing.secrets.get(&spec.name) {
                    None => "not created yet".to_string(),
                    Some(entry) => {
                        let value = if secret::has_current_value(entry) {
                            "value set"
                        } else {
                            "NO VALUE"
                        };
                        let rotation = match (
                            entry.rotation_enabled(),
                            entry
                                .rotation_rules()
                                .and_then(|r| r.automatically_after_days()),
                        ) {
                            (Some(true), Some(days)) => format!(", rotates every {days} days"),
                            _ => String::new(),
                        };
                        format!("{value}{rotation}")
                    }
                };
                println!("{short:<24} {:<44} {status}", spec.name);
            }
            Ok(0)
        }
    }
}

fn declared<'a>(ctx: &'a Context, name: &str) -> anyhow::Result<&'a SecretSpec> {
    let found = ctx.stack.resources.iter().find_map(|r| match &r.spec {
        Spec::Secret(s) if r.address.name == name => Some(s),
        _ => None,
    });
    found.ok_or_else(|| {
        let known: Vec<&str> = ctx
            .stack
            .resources
            .iter()
            .filter(|r| r.address.kind == Kind::Secret)
            .map(|r| r.address.name.as_str())
            .collect();
        anyhow!(
            "the stack declares no secret `{name}` (it declares: {})",
            known.join(", ")
        )
    })
}

/// The value from stdin, without the one line break a shell or editor adds at the end.
fn read_value() -> anyhow::Result<String> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Reading the value from the terminal; end it with Ctrl-D (piping it is safer).");
    }
    let mut value = String::new();
    stdin
        .read_to_string(&mut value)
        .context("reading the value from stdin (it must be UTF-8 text)")?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}
