//! What every command starts from: the env file, the stack built from it (validated before
//! any AWS call), the AWS clients and the state store; and, before any other AWS call, the
//! check that the credentials are of the env's account and the shell set to its region.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use infra_core::aws::Aws;
use infra_core::compliance;
use infra_core::kinds::tag_index::TagIndex;
use infra_core::model::{Address, Stack};
use infra_core::package::{Artifact, Artifacts, Packager};
use infra_core::plan::{self, Plan, PlanOptions};
use infra_core::rate_limit::RateLimits;
use infra_core::state::{Journal, StateStore, Stored};
use stacks::Env;
use stacks::linkedin_ads::FUNCTIONS;

/// Runs the built-in policy rules: waived violations and unused waivers are printed on
/// stderr; any other violation is an error listing every one.
pub fn check_policies(stack: &Stack) -> anyhow::Result<()> {
    let report = compliance::check(stack);
    for (violation, reason) in &report.waived {
        eprintln!("policy: {violation} (waived: {reason})");
    }
    for (address, rule) in &report.unused_waivers {
        eprintln!(
            "warning: the waiver of {rule} on {address} allows nothing (the resource passes the \
             rule); remove it"
        );
    }
    if report.passed() {
        return Ok(());
    }
    let lines: Vec<String> = report
        .violations
        .iter()
        .map(|v| format!("  {v}\n    rule {}: {}", v.rule, v.rule.requirement()))
        .collect();
    Err(anyhow!(
        "{} policy violation(s):\n{}\nFix the resource, or waive the rule for it with a reason \
         (`[[waivers]]` in the env file: resource, rule, reason).",
        report.violations.len(),
        lines.join("\n")
    ))
}

/// Whether a command needs the Lambda packages (plan, apply, drift) or only the stack's
/// identity (destroy, state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packaging {
    Build,
    Skip,
}

/// Where the workspace and its env files are, from the command line.
#[derive(Clone, Debug, Default)]
pub struct Paths {
    pub envs_dir: Option<PathBuf>,
    pub workspace: Option<PathBuf>,
}

/// A refusal that needs no AWS call, run on the stack before the caller is verified.
type StackCheck<'a> = Box<dyn FnOnce(&Stack) -> anyhow::Result<()> + 'a>;

pub struct Context {
    /// The checkout: runtime sources, assets and plans/.
    pub workspace: PathBuf,
    /// The env file the stack was built from.
    pub env_file: PathBuf,
    pub env: Env,
    pub stack: Stack,
    pub aws: Aws,
    pub store: StateStore,
}

impl Context {
    /// Loads and checks env `name`, packages the Lambda handlers (only those whose sources
    /// changed are rebuilt) and builds the stack; no AWS call is made before all are valid.
    /// Then checks the caller's account and region against the env file
    /// ([`infra_core::caller::verify`]), the first AWS call of every env command.
    pub async fn load(
        paths: &Paths,
        which: &super::EnvArg,
        packaging: Packaging,
    ) -> anyhow::Result<Context> {
        Self::load_checked(paths, which, packaging, |_| Ok(())).await
    }

    /// As [`Context::load`], with `check` (a refusal that needs no AWS call, e.g. a protected
    /// env) run on the stack before the caller is verified.
    pub async fn load_checked(
        paths: &Paths,
        which: &super::EnvArg,
        packaging: Packaging,
        check: impl FnOnce(&Stack) -> anyhow::Result<()>,
    ) -> anyhow::Result<Context> {
        Self::build(paths, which, packaging, Some(Box::new(check))).await
    }

    /// As [`Context::load`] without any AWS call: for commands that only read the stack
    /// (`synth`, `graph`).
    pub async fn load_offline(
        paths: &Paths,
        which: &super::EnvArg,
        packaging: Packaging,
    ) -> anyhow::Result<Context> {
        Self::build(paths, which, packaging, None).await
    }

    /// Loads the env and the stack; with `verify`, runs it and then checks the caller (before
    /// packaging, so a wrong account fails in a second, not after a build).
    async fn build(
        paths: &Paths,
        which: &super::EnvArg,
        packaging: Packaging,
        verify: Option<StackCheck<'_>>,
    ) -> anyhow::Result<Context> {
        let name = which.name.as_str();
        let dir = match &paths.envs_dir {
            Some(dir) => dir.clone(),
            None => find_envs_dir()?,
        };
        let env_file = dir.join(format!("{name}.toml"));
        let mut env =
            Env::load_named(&dir, name).map_err(|e| anyhow!("invalid environment file:\n{e}"))?;
        if let Some(instance) = &which.instance {
            env = env
                .with_instance(instance)
                .map_err(|e| anyhow!("--instance: {e}"))?;
        }
        let workspace = find_workspace(paths.workspace.as_deref(), &dir)?;
        let mut inputs = stacks::Inputs {
            artifacts: unpackaged(),
            views: infra_core::sql::load_dir(&workspace.join("assets/athena/views"))?,
            queries: infra_core::sql::load_dir(&workspace.join("assets/athena/queries"))?,
        };
        // The SQL and the rest of the stack are checked before the (slower) packaging.
        let stack = stacks::linkedin_ads(&env, &inputs).context("the stack is not valid")?;
        plan::validate(&stack).with_context(|| format!("stack for env `{name}`"))?;
        // Destroy and state commands must work even for a stack that breaks a rule.
        if packaging == Packaging::Build {
            check_policies(&stack).with_context(|| format!("stack for env `{name}`"))?;
        }
        let limits = RateLimits::new(&env.rate_limit_overrides())
            .map_err(|e| anyhow!("rate_limits: {e}"))?;
        let mut aws = Aws::connect_limited(&stack.target.region, &limits).await;
        aws.patience = env.patience();
        if let Some(check) = verify {
            check(&stack)?;
            infra_core::caller::verify(&aws, &stack.target)
                .await
                .with_context(|| format!("env `{}` ({})", env.name(), env_file.display()))?;
        }
        inputs.artifacts = match packaging {
            Packaging::Build => {
                let packager = Packager::new(&workspace);
                let announce = |handlers: &[&str]| {
                    eprintln!(
                        "Packaging Lambda handlers ({}): cargo zigbuild --profile {} --target {} ...",
                        handlers.join(", "),
                        infra_core::package::PROFILE,
                        infra_core::package::LAMBDA_TARGET
                    );
                };
                tokio::task::block_in_place(|| packager.package(&FUNCTIONS, &announce))
                    .context("packaging the Lambda handlers")?
            }
            Packaging::Skip => unpackaged(),
        };
        let stack = stacks::linkedin_ads(&env, &inputs).context("the stack is not valid")?;
        plan::validate(&stack).with_context(|| format!("stack for env `{name}`"))?;
        let store = StateStore::new(aws.clone(), stack.target.state.clone());
        Ok(Context {
            workspace,
            env_file,
            env,
            stack,
            aws,
            store,
        })
    }

    /// Reads state and live resources, and diffs them against the stack.
    pub async fn plan(&self, stored: &Stored, options: PlanOptions) -> anyhow::Result<Plan> {
        self.plan_with_tags(stored, options, None).await
    }

    /// As [`Context::plan`], with the env's tagging-API listing already read.
    pub async fn plan_with_tags(
        &self,
        stored: &Stored,
        options: PlanOptions,
        tags: Option<&TagIndex>,
    ) -> anyhow::Result<Plan> {
        plan_stack(&self.aws, &self.stack, &self.store, stored, options, tags)
            .await
            .map_err(|error| match error.downcast::<plan::PlanError>() {
                Ok(plan::PlanError::Import(refused)) => anyhow!(
                    "{} [[import]] entr{} cannot be done; nothing was written:\n{}",
                    refused.len(),
                    if refused.len() == 1 { "y" } else { "ies" },
                    self.env.import_errors(&refused)
                ),
                Ok(plan::PlanError::Unmanaged(found)) => {
                    let suggestions = self.import_suggestions(&found);
                    anyhow!("{}{suggestions}", plan::PlanError::Unmanaged(found))
                }
                Ok(other) => other.into(),
                Err(error) => error,
            })
    }

    /// The `[[import]]` entries that would adopt `found` (live resources with the names the
    /// stack would create, which state does not hold): printed, never applied by themselves.
    fn import_suggestions(&self, found: &[(Address, String)]) -> String {
        if self.env.instance.is_some() {
            return String::new();
        }
        let entries: Vec<String> = found
            .iter()
            .filter(|(address, id)| infra_core::kinds::imported_name(address.kind, id).is_ok())
            .map(|(address, id)| format!("[[import]]\naddress = \"{address}\"\nid = \"{id}\"\n"))
            .collect();
        if entries.is_empty() {
            return String::new();
        }
        format!(
            "\n\nIf they are this stack's resources, created before it managed them, adopt them \
             as they are with these entries in {} (`infra plan` then shows each import and what \
             it changes):\n\n{}",
            self.env_file.display(),
            entries.join("\n")
        )
    }
}

/// Plans `stack` against `stored` (read from `store`): refreshes live state, adopts what an
/// interrupted apply journaled but never recorded, and diffs.
pub async fn plan_stack(
    aws: &Aws,
    stack: &Stack,
    store: &StateStore,
    stored: &Stored,
    options: PlanOptions,
    tags: Option<&TagIndex>,
) -> anyhow::Result<Plan> {
    let live = plan::refresh(aws, stack, stored.doc.as_ref(), tags).await?;
    let possibly_ours = unfinished_creates(store).await?;
    Ok(plan::diff(
        stack,
        stored.doc.as_ref(),
        &live,
        &possibly_ours,
        options,
    )?)
}

/// Creates an interrupted apply journaled but never recorded.
async fn unfinished_creates(store: &StateStore) -> anyhow::Result<BTreeSet<Address>> {
    let keys = Journal::list_keys(store).await?;
    if keys.is_empty() {
        return Ok(BTreeSet::new());
    }
    let entries = Journal::read_entries(store, &keys).await?;
    Ok(Journal::unfinished_creates(&entries))
}

/// Stand-ins for commands that never create or update a function (destroy, state).
fn unpackaged() -> Artifacts {
    FUNCTIONS
        .iter()
        .map(|f| {
            let artifact = Artifact {
                handler: f.to_string(),
                zip: PathBuf::new(),
                code_sha256: "not-packaged".into(),
                size: 0,
                inputs: String::new(),
            };
            (f.to_string(), artifact)
        })
        .collect()
}

/// The workspace holding `runtime/`: `--workspace`, else the one the env folder is in
/// (`<workspace>/stacks/envs`), else the nearest parent of the current directory.
fn find_workspace(given: Option<&Path>, envs_dir: &Path) -> anyhow::Result<PathBuf> {
    let has_runtime = |d: &Path| d.join("runtime").join("Cargo.toml").is_file();
    if let Some(dir) = given {
        if has_runtime(dir) {
            return Ok(dir.to_path_buf());
        }
        return Err(anyhow!("{} has no runtime/Cargo.toml", dir.display()));
    }
    if let Some(root) = envs_dir.parent().and_then(Path::parent)
        && has_runtime(root)
    {
        return Ok(root.to_path_buf());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    cwd.ancestors()
        .find(|d| has_runtime(d))
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            anyhow!(
                "no workspace with runtime/Cargo.toml above {}; pass --workspace",
                cwd.display()
            )
        })
}

/// `stacks/envs` in the current directory or the nearest parent that has one.
pub fn find_envs_dir() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut dir: Option<&Path> = Some(&cwd);
    while let Some(d) = dir {
        let candidate = d.join("stacks").join("envs");
        if candidate.is_dir() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(anyhow!(
        "no stacks/envs folder in {} or its parents; pass --envs-dir",
        cwd.display()
    ))
}
