//! `infra models list | register | promote | rollback`: the stack's model registry (the
//! `registry` crate), in the bucket and under the prefix the stack declares. Names, artifact
//! files and metadata are checked before any AWS call.

use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use chrono::Utc;
use registry::{NewVersion, Registry};

use super::{Context, ModelsCommand, Packaging, Paths};

fn registry(ctx: &Context) -> anyhow::Result<Registry> {
    let declared = ctx.stack.model_registry.as_ref().ok_or_else(|| {
        anyhow!(
            "stack {} declares no model registry",
            ctx.stack.target.stack
        )
    })?;
    Ok(Registry::new(
        ctx.aws.s3.clone(),
        &declared.bucket,
        &declared.prefix,
    ))
}

fn read_metadata(path: &Path) -> anyhow::Result<NewVersion> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(json)
        .map_err(|e| anyhow!("{}: field `{}`: {}", path.display(), e.path(), e.inner()))
}

pub async fn run(
    paths: &Paths,
    command: ModelsCommand,
    used: &mut Option<Context>,
) -> anyhow::Result<u8> {
    match command {
        ModelsCommand::List { env, model } => {
            if let Some(model) = &model {
                registry::check_name(model)?;
            }
            let ctx = used.insert(Context::load(paths, &env, Packaging::Skip).await?);
            let registry = registry(ctx)?;
            let models = match model {
                Some(m) => vec![m],
                None => registry.models().await?,
            };
            if models.is_empty() {
                println!(
                    "No models in s3://{}/{}/ yet.",
                    registry.bucket, registry.prefix
                );
            }
            for model in models {
                let listing = registry.list(&model).await?;
                let promoted = listing.promoted.as_ref().map(|p| p.version);
                println!(
                    "{model}: {} version(s), promoted: {}",
                    listing.versions.len(),
                    promoted.map_or("none".to_string(), |v| format!("v{v}"))
                );
                for v in &listing.versions {
                    let metrics: Vec<String> = v
                        .details
                        .metrics
                        .iter()
                        .map(|(k, x)| format!("{k}={x:.4}"))
                        .collect();
                    println!(
                        "  {} v{:<4} {}  {}  {}",
                        if promoted == Some(v.version) {
                            "*"
                        } else {
                            " "
                        },
                        v.version,
                        v.created_at.format("%Y-%m-%d %H:%M:%SZ"),
                        v.artifact,
                        metrics.join(" ")
                    );
                }
            }
            Ok(0)
        }
        ModelsCommand::Register {
            env,
            model,
            artifact,
            metadata,
            promote,
        } => {
            registry::check_name(&model)?;
            let file_name = artifact
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default();
            registry::check_artifact(&file_name)
                .with_context(|| format!("--artifact {}", artifact.display()))?;
            let bytes = std::fs::read(&artifact)
                .with_context(|| format!("reading {}", artifact.display()))?;
            if file_name.ends_with(".json")
                && serde_json::from_slice::<serde_json::Value>(&bytes).is_err()
            {
                bail!("{}: not JSON", artifact.display());
            }
            let details = match &metadata {
                Some(path) => read_metadata(path)?,
                None => NewVersion::default(),
            };
            let ctx = used.insert(Context::load(paths, &env, Packaging::Skip).await?);
            let registry = registry(ctx)?;
            let registered = registry
                .register(&model, &file_name, bytes, details, Utc::now())
                .await?;
            println!(
                "Registered {} v{} (s3://{}/{}/{}/v{}/).",
                model,
                registered.version,
                registry.bucket,
                registry.prefix,
                model,
                registered.version
            );
            if promote {
                registry
                    .promote(&model, registered.version, Utc::now())
                    .await?;
                println!("Promoted {} v{}.", model, registered.version);
            }
            Ok(0)
        }
        ModelsCommand::Promote {
            env,
            model,
            version,
        } => {
            registry::check_name(&model)?;
            let ctx = used.insert(Context::load(paths, &env, Packaging::Skip).await?);
            let pointer = registry(ctx)?.promote(&model, version, Utc::now()).await?;
            println!(
                "Promoted {} v{} (before: {}).",
                model,
                pointer.version,
                pointer
                    .history
                    .last()
                    .map_or("none".to_string(), |v| format!("v{v}"))
            );
            Ok(0)
        }
        ModelsCommand::Rollback { env, model } => {
            registry::check_name(&model)?;
            let ctx = used.insert(Context::load(paths, &env, Packaging::Skip).await?);
            let pointer = registry(ctx)?.rollback(&model, Utc::now()).await?;
            println!("Rolled {} back to v{}.", model, pointer.version);
            Ok(0)
        }
    }
}
