//! `infra synth [--env E] [--check]`: writes each environment's desired state to
//! `plans/<env>.json` (deterministic, `plan::desired_document`), committed so that a pull
//! request's diff shows the desired change without AWS access. `--check` writes nothing and
//! exits 2 naming every file that is out of date.
//!
//! `infra synth --env E --format cloudformation [--out FILE]`: the env as a CloudFormation
//! template (`infra_core::cloudformation`), after packaging the handlers, whose hashes are
//! their code keys. Deterministic: the same sources give the same bytes on any checkout.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

use super::{Context, Packaging, Paths, SynthArgs, SynthFormat};

fn env_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
        .collect();
    names.sort();
    Ok(names)
}

/// Env `name`'s stack, without AWS, held to the policy rules: what synth writes is what
/// reviewers read.
async fn load_checked<'a>(
    paths: &Paths,
    name: &str,
    packaging: Packaging,
    used: &'a mut Option<Context>,
) -> anyhow::Result<&'a Context> {
    let env = super::EnvArg {
        name: name.to_string(),
        instance: None,
    };
    let ctx = used.insert(Context::load_offline(paths, &env, packaging).await?);
    super::context::check_policies(&ctx.stack)
        .with_context(|| format!("stack for env `{name}`"))?;
    Ok(ctx)
}

pub async fn run(paths: &Paths, args: SynthArgs, used: &mut Option<Context>) -> anyhow::Result<u8> {
    if args.format == SynthFormat::Cloudformation {
        return cloudformation(paths, &args, used).await;
    }
    let envs_dir = match &paths.envs_dir {
        Some(d) => d.clone(),
        None => super::context::find_envs_dir()?,
    };
    let names = match &args.env {
        Some(name) => vec![name.clone()],
        None => env_names(&envs_dir)?,
    };
    if names.is_empty() {
        return Err(anyhow!("no env files in {}", envs_dir.display()));
    }
    let mut stale = Vec::new();
    for name in names {
        let ctx = load_checked(paths, &name, Packaging::Skip, used).await?;
        let plans_dir: PathBuf = match &args.plans_dir {
            Some(d) => d.clone(),
            None => ctx.workspace.join("plans"),
        };
        let document = infra_core::plan::desired_document(&ctx.stack);
        // Paths relative to the checkout, so that every clone writes the same bytes.
        let text = (serde_json::to_string_pretty(&document)? + "\n")
            .replace(&format!("{}/", ctx.workspace.display()), "");
        let path = plans_dir.join(format!("{name}.json"));
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(text.as_str()) {
            continue;
        }
        if args.check {
            stale.push(path.display().to_string());
        } else {
            std::fs::create_dir_all(&plans_dir)
                .with_context(|| format!("creating {}", plans_dir.display()))?;
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("Wrote {}.", path.display());
        }
    }
    if stale.is_empty() {
        if args.check {
            println!("plans/ is up to date.");
        }
        Ok(0)
    } else {
        for path in &stale {
            eprintln!("{path} is out of date: run `infra synth` and commit it.");
        }
        Ok(2)
    }
}

async fn cloudformation(
    paths: &Paths,
    args: &SynthArgs,
    used: &mut Option<Context>,
) -> anyhow::Result<u8> {
    let Some(name) = &args.env else {
        return Err(anyhow!(
            "--format cloudformation writes one env's template: name it with --env"
        ));
    };
    if args.check {
        return Err(anyhow!(
            "--check compares plans/ only; it has no cloudformation form"
        ));
    }
    let ctx = load_checked(paths, name, Packaging::Build, used).await?;
    let assets = infra_core::cloudformation::Assets::of(&ctx.stack.target);
    let template = infra_core::cloudformation::template(&ctx.stack, &assets)
        .with_context(|| format!("CloudFormation template of env `{name}`"))?;
    let text = infra_core::cloudformation::to_text(&template);
    infra_core::cloudformation::route(&text)
        .with_context(|| format!("CloudFormation template of env `{name}`"))?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("Wrote {}.", path.display());
        }
        None => print!("{text}"),
    }
    Ok(0)
}
