//! `infra apply` and `infra destroy`: lock the state, plan (or load a saved plan), confirm,
//! apply, record, unlock.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use infra_core::apply::{self, ApplyOptions, ApplyReport, Event, StateSession};
use infra_core::aws::Aws;
use infra_core::kinds::DeleteOptions;
use infra_core::plan::{Action, Plan, PlanMode, PlanOptions};
use infra_core::render;
use infra_core::state::{Journal, LockInfo, StateDoc, StateStore, Stored, lock};
use tokio::sync::Mutex;

use super::{ApplyArgs, Context, DestroyArgs, EngineArg, Packaging, Paths, cloudformation};

pub async fn run(paths: &Paths, args: ApplyArgs, used: &mut Option<Context>) -> anyhow::Result<u8> {
    if args.engine == Some(EngineArg::Cloudformation) {
        cloudformation::check_apply_args(&args)?;
        let ctx = used.insert(Context::load(paths, &args.env, Packaging::Build).await?);
        return cloudformation::apply(ctx, &args).await;
    }
    let saved = match &args.plan_file {
        Some(path) => Some(read_plan(path)?),
        None => None,
    };
    let for_this_env = |stack: &infra_core::model::Stack| match &saved {
        Some(plan) if plan.env != stack.target.env || plan.stack != stack.target.stack => {
            Err(anyhow!(
                "the saved plan is for {} / {}, not {} / {}",
                plan.stack,
                plan.env,
                stack.target.stack,
                stack.target.env
            ))
        }
        Some(plan) => check_saved(plan, stack),
        None => Ok(()),
    };
    let ctx =
        used.insert(Context::load_checked(paths, &args.env, Packaging::Build, for_this_env).await?);
    if super::engine_of(args.engine, &ctx.env) == EngineArg::Cloudformation {
        cloudformation::check_apply_args(&args)?;
        return cloudformation::apply(ctx, &args).await;
    }
    cloudformation::change_set_needs_engine(args.change_set.is_some())?;
    let run = Run {
        command: format!("infra apply --env {}", args.env.name),
        compact: args.compact,
        auto_approve: args.auto_approve,
        lock_timeout: args.lock_timeout,
        options: ApplyOptions {
            parallelism: args.parallelism as usize,
            delete: DeleteOptions::default(),
            lock: None,
        },
        plan_options: PlanOptions {
            destroy: false,
            allow_protected: args.allow_protected,
            replace_imported: args.replace_imported,
        },
    };
    run.execute(ctx, saved).await
}

pub async fn destroy(
    paths: &Paths,
    args: DestroyArgs,
    used: &mut Option<Context>,
) -> anyhow::Result<u8> {
    let protected = |stack: &infra_core::model::Stack| {
        if stack.target.protected && !args.allow_protected {
            bail!(
                "env `{}` is protected (`protected = true` in its env file); destroy refuses \
                 it unless you pass --allow-protected",
                args.env.name
            );
        }
        Ok(())
    };
    let ctx =
        used.insert(Context::load_checked(paths, &args.env, Packaging::Skip, protected).await?);
    if super::engine_of(args.engine, &ctx.env) == EngineArg::Cloudformation {
        return cloudformation::destroy(ctx, &args).await;
    }
    let run = Run {
        command: format!("infra destroy --env {}", args.env.name),
        compact: args.compact,
        auto_approve: args.auto_approve,
        lock_timeout: args.lock_timeout,
        options: ApplyOptions {
            parallelism: args.parallelism as usize,
            delete: DeleteOptions {
                purge_data: args.purge_data,
            },
            lock: None,
        },
        plan_options: PlanOptions {
            destroy: true,
            allow_protected: args.allow_protected,
            replace_imported: false,
        },
    };
    run.execute(ctx, None).await
}

fn read_plan(path: &std::path::Path) -> anyhow::Result<Plan> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the plan file {}", path.display()))?;
    let plan = Plan::parse(&bytes).with_context(|| {
        format!(
            "{} is not a plan file saved by `infra plan --out`",
            path.display()
        )
    })?;
    if plan.format_version != infra_core::plan::PLAN_FORMAT_VERSION {
        bail!(
            "{} has plan format {}, this infra reads format {}",
            path.display(),
            plan.format_version,
            infra_core::plan::PLAN_FORMAT_VERSION
        );
    }
    Ok(plan)
}

struct Run {
    command: String,
    /// One line per change, and per finished change.
    compact: bool,
    auto_approve: bool,
    lock_timeout: Duration,
    options: ApplyOptions,
    plan_options: PlanOptions,
}

impl Run {
    async fn execute(&self, ctx: &Context, saved: Option<Plan>) -> anyhow::Result<u8> {
        ctx.store
            .ensure_bucket()
            .await
            .context("preparing the state bucket")?;
        let guard = lock::acquire(
            &ctx.store,
            &ctx.stack.target.env,
            LockInfo::for_this_process(&self.command),
            self.lock_timeout,
        )
        .await?;
        if let Some(took_over) = &guard.took_over {
            eprintln!("State lock: {}", took_over.describe());
        }
        let result = self.locked(ctx, saved, guard.watch()).await;
        let released = guard.release().await;
        let code = result?;
        released.context("releasing the state lock")?;
        Ok(code)
    }

    async fn locked(
        &self,
        ctx: &Context,
        saved: Option<Plan>,
        lock: lock::LockWatch,
    ) -> anyhow::Result<u8> {
        let stored = ctx.store.load().await?;
        let plan = match saved {
            Some(plan) => {
                check_protected(
                    &plan,
                    &stored,
                    &ctx.stack,
                    self.plan_options.allow_protected,
                )?;
                check_replaced_imports(&plan, self.plan_options.replace_imported)?;
                check_fresh(&plan, &stored)?;
                let changed = infra_core::plan::changed_since(&ctx.aws, &plan).await?;
                if !changed.is_empty() {
                    let names: Vec<String> = changed.iter().map(|a| a.to_string()).collect();
                    bail!(
                        "the saved plan is stale: {} changed live since it was made ({}). \
                         Nothing was applied; plan again.",
                        if names.len() == 1 {
                            "a resource it changes".to_string()
                        } else {
                            format!("{} resources it changes", names.len())
                        },
                        names.join(", ")
                    );
                }
                plan
            }
            None => ctx.plan(&stored, self.plan_options).await?,
        };
        if self.compact {
            print!("{}", render::plan_summary_text(&plan));
        } else {
            print!("{}", render::plan_text(&plan));
        }
        if !plan.has_changes() {
            return Ok(0);
        }
        if !self.auto_approve && !confirm(&plan)? {
            println!("Nothing applied.");
            return Ok(1);
        }
        let compact = self.compact;
        let print_event = |event: Event| match event {
            Event::Started { .. } if compact => {}
            Event::Started { address, action } => {
                eprintln!("{address}: {}...", present(action.as_str()))
            }
            Event::Finished {
                address,
                action,
                elapsed,
            } => {
                eprintln!(
                    "{address}: {} in {:.1}s",
                    past(action.as_str()),
                    elapsed.as_secs_f64()
                )
            }
            Event::Failed {
                address,
                action,
                error,
            } => eprintln!("{address}: {} failed: {error}", action.as_str()),
            Event::Skipped { address, because } => {
                eprintln!("{address}: not started ({because} failed)")
            }
        };
        let options = ApplyOptions {
            lock: Some(lock),
            ..self.options.clone()
        };
        let (report, serial) =
            apply_plan(&ctx.aws, &ctx.store, &stored, &plan, options, &print_event).await?;
        println!(
            "\n{} complete: {} changes applied. State serial {serial}.",
            if plan.mode == PlanMode::Destroy {
                "Destroy"
            } else {
                "Apply"
            },
            report.applied.len()
        );
        Ok(0)
    }
}

/// Applies `plan` to the state `stored` was read from: every outcome is written to state as
/// it arrives, and the journal (this run's and any interrupted run's, whose creates the plan
/// adopted) is checkpointed once all are. Returns the report and the final state serial.
pub async fn apply_plan(
    aws: &Aws,
    store: &StateStore,
    stored: &Stored,
    plan: &Plan,
    options: ApplyOptions,
    on_event: &(dyn Fn(Event) + Sync),
) -> anyhow::Result<(ApplyReport, u64)> {
    let session = Arc::new(Mutex::new(StateSession {
        store: store.clone(),
        doc: stored
            .doc
            .clone()
            .unwrap_or_else(|| StateDoc::new(&plan.stack, &plan.env)),
        etag: stored.etag.clone(),
    }));
    let journal_before = Journal::list_keys(store).await?;
    let journal = Arc::new(Journal::start(store.clone()));
    let lock = options.lock.clone();
    let report = apply::apply(aws, plan, session.clone(), journal, options, on_event)
        .await
        .map_err(|e| match e {
            // Whoever holds the lock now is applying; re-running would wait for it.
            apply::ApplyError::LockLost { .. } => anyhow!("{e}"),
            e => anyhow!("{e}\nState records everything that finished; fix the cause and re-run."),
        })?;
    // The journal is this holder's to clear only while it holds the lock: a new holder's
    // intents must stay for its own recovery.
    if let Some(lock) = &lock {
        lock.check().map_err(|lost| {
            anyhow!("{lost}; every change finished and is in state, the journal is left as it is")
        })?;
    }
    let mut keys = journal_before;
    keys.extend(Journal::list_keys(store).await?);
    keys.sort();
    keys.dedup();
    Journal::checkpoint(store, &keys).await?;
    let serial = session.lock().await.doc.serial;
    Ok((report, serial))
}

/// A saved plan is held to what `infra plan` enforces: the same target, and its resources pass
/// validation and the policy rules (waivers from the env file, not from the plan file).
fn check_saved(plan: &Plan, current: &infra_core::model::Stack) -> anyhow::Result<()> {
    if plan.mode != PlanMode::Normal {
        bail!(
            "the saved plan is not an apply plan (`infra plan --out` makes those); nothing was applied"
        );
    }
    if let Some(change) = plan.changes.iter().find(|c| {
        c.desired
            .as_ref()
            .is_some_and(|desired| desired.address != c.address)
    }) {
        bail!(
            "the saved plan's change of {} carries another resource; nothing was applied",
            change.address
        );
    }
    if plan.target != current.target {
        bail!(
            "the saved plan targets account {} in {} (state s3://{}/{}), the env file account {} \
             in {} (state s3://{}/{}). Nothing was applied; plan again.",
            plan.target.account_id,
            plan.target.region,
            plan.target.state.bucket,
            plan.target.state.prefix,
            current.target.account_id,
            current.target.region,
            current.target.state.bucket,
            current.target.state.prefix,
        );
    }
    let planned = infra_core::plan::planned_stack(plan, current);
    infra_core::plan::validate(&planned)
        .context("the saved plan is not valid; nothing was applied")?;
    super::context::check_policies(&planned)
        .context("the saved plan breaks the policy rules; nothing was applied")?;
    Ok(())
}

/// A saved plan replaces an imported resource only with `--replace-imported`, as a fresh plan
/// would.
fn check_replaced_imports(plan: &Plan, replace_imported: bool) -> anyhow::Result<()> {
    let replaced: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.import && c.action == Action::Replace)
        .map(|c| c.address.to_string())
        .collect();
    if !replace_imported && !replaced.is_empty() {
        bail!(
            "the saved plan replaces imported resources ({}): deleting what they hold; nothing \
             was applied. Pass --replace-imported to allow it.",
            replaced.join(", ")
        );
    }
    Ok(())
}

/// A saved plan deletes or replaces a protected resource only with `--allow-protected`, as a
/// fresh plan would: protection is read from state and the stack, not from the plan file.
fn check_protected(
    plan: &Plan,
    stored: &Stored,
    current: &infra_core::model::Stack,
    allow_protected: bool,
) -> anyhow::Result<()> {
    if allow_protected {
        return Ok(());
    }
    let protected: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .filter(|c| {
            c.protected
                || stored
                    .doc
                    .as_ref()
                    .and_then(|d| d.resources.get(&c.address))
                    .is_some_and(|entry| entry.protected)
                || current.get(&c.address).is_some_and(|r| r.protected)
        })
        .map(|c| c.address.to_string())
        .collect();
    if !protected.is_empty() {
        bail!(
            "the saved plan deletes or replaces protected resources ({}); nothing was applied. \
             Pass --allow-protected to allow it.",
            protected.join(", ")
        );
    }
    Ok(())
}

/// A saved plan applies only to the state it was made against.
fn check_fresh(plan: &Plan, stored: &Stored) -> anyhow::Result<()> {
    let now = stored.doc.as_ref().map(|d| (d.lineage.clone(), d.serial));
    let then = plan.state_lineage.clone().zip(plan.state_serial);
    if now != then {
        let show = |s: &Option<(String, u64)>| match s {
            Some((lineage, serial)) => format!(
                "serial {serial} of lineage {}",
                lineage.chars().take(8).collect::<String>()
            ),
            None => "no state".to_string(),
        };
        bail!(
            "the saved plan is stale: it was made against {}, the state is now {}. Plan again.",
            show(&then),
            show(&now)
        );
    }
    Ok(())
}

fn confirm(plan: &Plan) -> anyhow::Result<bool> {
    confirm_with(&format!(
        "\nApply these changes to {} / {}? Only `yes` is accepted: ",
        plan.stack, plan.env
    ))
}

/// Asks `question` on the terminal; only `yes` confirms. No terminal is an error, not a no.
pub fn confirm_with(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to confirm the changes on; pass --auto-approve to apply without asking");
    }
    print!("{question}");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

fn present(action: &str) -> &'static str {
    match action {
        "create" => "creating",
        "update" => "updating",
        "replace" => "replacing",
        "delete" => "deleting",
        _ => "working",
    }
}

fn past(action: &str) -> &'static str {
    match action {
        "create" => "created",
        "update" => "updated",
        "replace" => "replaced",
        "delete" => "deleted",
        _ => "done",
    }
}
