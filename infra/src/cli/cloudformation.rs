//! `plan`, `apply`, `destroy` and `drift` with `--engine cloudformation` (or `engine =
//! "cloudformation"` in the env file): the env as one CloudFormation stack, through change
//! sets (`infra_core::cloudformation_engine`). Same formats and exit codes as the native
//! engine: 0 success or no changes, 1 error, 2 changes (`--detailed-exitcode`) or drift.

use anyhow::{anyhow, bail};
use infra_core::cloudformation_engine::{self, Engine, StackEvent};
use infra_core::render;

use super::{ApplyArgs, Context, DestroyArgs, DriftArgs, Format, PlanArgs};

/// Flags of the native engine that have no meaning here, refused before any AWS call.
fn refuse(flag: &str, given: bool, instead: &str) -> anyhow::Result<()> {
    if given {
        bail!("{flag} is for the native engine; with --engine cloudformation {instead}");
    }
    Ok(())
}

pub async fn plan(ctx: &Context, args: &PlanArgs) -> anyhow::Result<u8> {
    let engine = Engine::new(&ctx.aws, &ctx.stack);
    let plan = engine.plan(args.change_set.as_deref()).await?;
    args.outputs.emit(args.format, |format| {
        Ok(match format {
            Format::Text => render::change_set_text(&plan),
            Format::Json => serde_json::to_string_pretty(&render::change_set_json(&plan))? + "\n",
            Format::Markdown => render::change_set_markdown(&plan),
        })
    })?;
    if let (Some(name), Some(_)) = (&args.change_set, &plan.change_set) {
        eprintln!(
            "Kept the change set {name} of stack {}; `infra apply --env {} --engine cloudformation --change-set {name}` executes exactly it.",
            plan.stack_name, args.env.name
        );
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        2
    } else {
        0
    })
}

/// Checks done before loading: flags that belong to the native engine.
pub fn check_plan_args(args: &PlanArgs) -> anyhow::Result<()> {
    refuse(
        "--out",
        args.out.is_some(),
        "`--change-set NAME` keeps the change set for `infra apply --change-set NAME`",
    )
}

pub fn check_apply_args(args: &ApplyArgs) -> anyhow::Result<()> {
    refuse(
        "a saved plan file",
        args.plan_file.is_some(),
        "`infra plan --change-set NAME` saves a change set and `infra apply --change-set NAME` executes it",
    )
}

pub async fn apply(ctx: &Context, args: &ApplyArgs) -> anyhow::Result<u8> {
    let engine = Engine::new(&ctx.aws, &ctx.stack);
    let plan = match &args.change_set {
        Some(name) => engine.saved(name).await?,
        None => {
            let name = cloudformation_engine::fresh_change_set_name("apply");
            engine.plan(Some(&name)).await?
        }
    };
    print!("{}", render::change_set_text(&plan));
    engine.protect().await?;
    if !plan.has_changes() {
        return Ok(0);
    }
    let question = format!(
        "\nExecute this change set on stack {} ({} / {})? Only `yes` is accepted: ",
        plan.stack_name, plan.stack, plan.env
    );
    if !args.auto_approve && !super::apply::confirm_with(&question)? {
        println!(
            "Nothing applied (the change set {} stays in CloudFormation until it is executed or deleted).",
            plan.change_set_name
        );
        return Ok(1);
    }
    let outcome = engine.execute(&plan, &mut print_event).await?;
    println!(
        "\nApply complete: stack {} is {}.",
        plan.stack_name, outcome.status
    );
    Ok(0)
}

pub async fn destroy(ctx: &Context, args: &DestroyArgs) -> anyhow::Result<u8> {
    let engine = Engine::new(&ctx.aws, &ctx.stack);
    let Some(live) = engine.describe().await? else {
        println!(
            "Stack {} does not exist: nothing to destroy.",
            engine.stack_name
        );
        return Ok(0);
    };
    println!(
        "Destroy stack {} ({} / {}, {}): CloudFormation deletes every resource it holds{}.",
        engine.stack_name,
        ctx.stack.target.stack,
        ctx.stack.target.env,
        live.status,
        if args.purge_data {
            ", after the buckets are emptied"
        } else {
            " (keeping those with DeletionPolicy Retain)"
        }
    );
    let question = format!(
        "\nDelete stack {}? Only `yes` is accepted: ",
        engine.stack_name
    );
    if !args.auto_approve && !super::apply::confirm_with(&question)? {
        println!("Nothing deleted.");
        return Ok(1);
    }
    match engine.destroy(args.purge_data, &mut print_event).await? {
        Some(outcome) => println!(
            "\nDestroy complete: stack {} is {}.",
            engine.stack_name, outcome.status
        ),
        None => println!("Stack {} was already gone.", engine.stack_name),
    }
    Ok(0)
}

pub async fn drift(ctx: &Context, args: &DriftArgs) -> anyhow::Result<u8> {
    let engine = Engine::new(&ctx.aws, &ctx.stack);
    let drifts = engine.drift().await?;
    args.outputs.emit(args.format, |format| {
        Ok(match format {
            Format::Text => render::stack_drift_text(&engine.stack_name, &drifts),
            Format::Json => {
                serde_json::to_string_pretty(&render::stack_drift_json(
                    &engine.stack_name,
                    &drifts,
                ))? + "\n"
            }
            Format::Markdown => render::stack_drift_markdown(&engine.stack_name, &drifts),
        })
    })?;
    Ok(if drifts.is_empty() { 0 } else { 2 })
}

/// One line per stack event, as CloudFormation reports it.
fn print_event(event: &StackEvent) {
    let reason = if event.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", event.reason)
    };
    println!(
        "  {:<40} {:<32} {}{reason}",
        event.logical_id, event.resource_type, event.status
    );
}

/// `--change-set` without the engine it belongs to.
pub fn change_set_needs_engine(given: bool) -> anyhow::Result<()> {
    if given {
        return Err(anyhow!(
            "--change-set is for --engine cloudformation (or `engine = \"cloudformation\"` in the env file)"
        ));
    }
    Ok(())
}
