//! What every command starts from: the env file, the stack built from it (validated before
//! any AWS call), the AWS clients and the state store.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use infra_core::aws::Aws;
use infra_core::model::{Address, Stack};
use infra_core::plan::{self, Plan, PlanOptions};
use infra_core::state::{Journal, StateStore, Stored};
use stacks::Env;

pub struct Context {
    pub env: Env,
    pub stack: Stack,
    pub aws: Aws,
    pub store: StateStore,
}

impl Context {
    /// Loads and checks env `name` and its stack; no AWS call is made before both are valid.
    pub async fn load(envs_dir: Option<PathBuf>, name: &str) -> anyhow::Result<Context> {
        let dir = match envs_dir {
            Some(dir) => dir,
            None => find_envs_dir()?,
        };
        let env =
            Env::load_named(&dir, name).map_err(|e| anyhow!("invalid environment file:\n{e}"))?;
        let stack = stacks::linkedin_ads(&env);
        plan::validate(&stack).with_context(|| format!("stack for env `{name}`"))?;
        let aws = Aws::connect(&stack.target.region).await;
        let store = StateStore::new(aws.clone(), stack.target.state.clone());
        Ok(Context {
            env,
            stack,
            aws,
            store,
        })
    }

    /// Reads state and live resources, and diffs them against the stack.
    pub async fn plan(&self, stored: &Stored, options: PlanOptions) -> anyhow::Result<Plan> {
        let live = plan::refresh(&self.aws, &self.stack, stored.doc.as_ref()).await?;
        let possibly_ours = self.unfinished_creates().await?;
        Ok(plan::diff(
            &self.stack,
            stored.doc.as_ref(),
            &live,
            &possibly_ours,
            options,
        )?)
    }

    /// Creates an interrupted apply journaled but never recorded.
    async fn unfinished_creates(&self) -> anyhow::Result<BTreeSet<Address>> {
        let keys = Journal::list_keys(&self.store).await?;
        if keys.is_empty() {
            return Ok(BTreeSet::new());
        }
        let entries = Journal::read_entries(&self.store, &keys).await?;
        Ok(Journal::unfinished_creates(&entries))
    }
}

/// `stacks/envs` in the current directory or the nearest parent that has one.
fn find_envs_dir() -> anyhow::Result<PathBuf> {
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
