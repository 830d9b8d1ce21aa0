//! `infra drift`: compare every managed resource with the stack; exit 2 on drift.

use infra_core::drift::DriftReport;
use infra_core::kinds::tag_index::TagIndex;
use infra_core::plan::PlanOptions;
use infra_core::render;

use super::{Context, DriftArgs, EngineArg, Format, Packaging, Paths, cloudformation};

pub async fn run(paths: &Paths, args: DriftArgs, used: &mut Option<Context>) -> anyhow::Result<u8> {
    let ctx = used.insert(Context::load(paths, &args.env, Packaging::Build).await?);
    if super::engine_of(args.engine, &ctx.env) == EngineArg::Cloudformation {
        return cloudformation::drift(ctx, &args).await;
    }
    let stored = ctx.store.load().await?;
    // One tagging-API listing serves the refresh (tags) and the orphan search.
    let tagged = TagIndex::load(&ctx.aws, &ctx.stack.target).await?;
    let plan = ctx
        .plan_with_tags(
            &stored,
            PlanOptions {
                destroy: false,
                // Drift reports; it never deletes or replaces, so neither protection nor an
                // import's replacement is in question here.
                allow_protected: true,
                replace_imported: true,
            },
            Some(&tagged),
        )
        .await?;
    let mut report = DriftReport::from_plan(&plan, stored.doc.as_ref());
    let candidates = infra_core::drift::find_orphans(&tagged, stored.doc.as_ref());
    report.orphans =
        infra_core::drift::confirm_orphans(&ctx.aws, &ctx.stack.target, candidates).await?;
    args.outputs.emit(args.format, |format| {
        Ok(match format {
            Format::Text => render::drift_text(&report),
            Format::Json => serde_json::to_string_pretty(&render::drift_json(&report))? + "\n",
            Format::Markdown => render::drift_markdown(&report),
        })
    })?;
    Ok(if report.has_drift() { 2 } else { 0 })
}
