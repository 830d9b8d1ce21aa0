//! `infra plan`: print (and optionally save) what apply would change.

use anyhow::Context as _;
use infra_core::plan::PlanOptions;
use infra_core::render;

use super::{Context, EngineArg, Format, Packaging, Paths, PlanArgs, cloudformation};

pub async fn run(paths: &Paths, args: PlanArgs, used: &mut Option<Context>) -> anyhow::Result<u8> {
    if args.engine == Some(EngineArg::Cloudformation) {
        cloudformation::check_plan_args(&args)?;
    }
    let ctx = used.insert(Context::load(paths, &args.env, Packaging::Build).await?);
    if super::engine_of(args.engine, &ctx.env) == EngineArg::Cloudformation {
        cloudformation::check_plan_args(&args)?;
        return cloudformation::plan(ctx, &args).await;
    }
    cloudformation::change_set_needs_engine(args.change_set.is_some())?;
    let stored = ctx.store.load().await?;
    let plan = ctx
        .plan(
            &stored,
            PlanOptions {
                destroy: false,
                allow_protected: args.allow_protected,
                replace_imported: args.replace_imported,
            },
        )
        .await?;
    args.outputs.emit(args.format, |format| {
        Ok(match format {
            Format::Text => render::plan_text(&plan),
            Format::Json => serde_json::to_string_pretty(&render::plan_json(&plan))? + "\n",
            Format::Markdown => render::plan_markdown(&plan),
        })
    })?;
    if let Some(out) = &args.out {
        let bytes = serde_json::to_vec_pretty(&plan)?;
        std::fs::write(out, bytes)
            .with_context(|| format!("cannot write the plan to {}", out.display()))?;
        eprintln!(
            "Saved the plan to {}; `infra apply --env {} {}` applies exactly it.",
            out.display(),
            plan.env,
            out.display()
        );
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        2
    } else {
        0
    })
}
